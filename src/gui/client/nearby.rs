//! The Nearby list: ferry hosts found on the local network (and remembered hosts that answer),
//! one click to connect, and when nothing is found, what ferry tried and what to check.
//!
//! Browsing starts the first time the Client tab is shown (not at launch: a window that only
//! hosts never listens for others) and runs until the window closes.

use std::time::Instant;

use crossbeam_channel::Receiver;
use egui::{RichText, Ui};

use crate::discovery::{BrowseEvent, BrowseOptions, Browser, Diagnosis, Host, Reach, Source};
use crate::gui::{Command, State, verdict};
use crate::protocol::path::Escaped;
use crate::sink::Notify;

pub(crate) struct Nearby {
    notify: Notify,
    /// False when discovery is off (`FERRY_NO_DISCOVERY`, or the app was told so).
    enabled: bool,
    browser: Option<Browser>,
    events: Option<Receiver<BrowseEvent>>,
    /// Hosts by name (then key), as last reported.
    hosts: Vec<Host>,
    diagnosis: Option<Diagnosis>,
    /// Browsing could not start, or stopped: why.
    error: Option<String>,
}

impl Nearby {
    pub fn new(notify: Notify) -> Self {
        Nearby {
            notify,
            enabled: !crate::discovery::disabled(),
            browser: None,
            events: None,
            hosts: Vec::new(),
            diagnosis: None,
            error: None,
        }
    }

    pub fn set_enabled(&mut self, on: bool) {
        self.enabled = on;
        if !on {
            self.stop();
        }
    }

    /// Starts browsing (once), probing `remembered` hosts too.
    pub fn ensure_started(&mut self, remembered: &[String]) {
        if !self.enabled || self.browser.is_some() || self.error.is_some() {
            return;
        }
        let opts = BrowseOptions { remembered: remembered.to_vec(), ..Default::default() };
        match Browser::start(opts, Some(self.notify.clone())) {
            Ok((browser, events)) => {
                self.browser = Some(browser);
                self.events = Some(events);
            }
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    /// Stops browsing (waits for the browser's thread, briefly).
    pub fn stop(&mut self) {
        self.events = None;
        self.browser = None;
    }

    /// Handles queued events until `deadline`; true if some are left for the next frame.
    pub fn drain(&mut self, deadline: Instant) -> bool {
        loop {
            let Some(rx) = &self.events else { return false };
            if Instant::now() >= deadline {
                return !rx.is_empty();
            }
            let Ok(event) = rx.try_recv() else { return false };
            match event {
                BrowseEvent::Found(h) | BrowseEvent::Updated(h) => {
                    self.hosts.retain(|x| x.key != h.key);
                    self.hosts.push(h);
                    self.hosts.sort_by(|a, b| (a.name.to_lowercase(), &a.key).cmp(&(b.name.to_lowercase(), &b.key)));
                }
                BrowseEvent::Lost { key, .. } => self.hosts.retain(|h| h.key != key),
                BrowseEvent::NothingFound(d) => self.diagnosis = Some(d),
                BrowseEvent::Stopped { error } => {
                    self.error = Some(error.unwrap_or_else(|| "stopped".into()));
                    self.events = None;
                    self.browser = None;
                }
            }
        }
    }

    fn any_reachable(&self) -> bool {
        self.hosts.iter().any(|h| h.reach == Reach::Reachable)
    }
}

/// The Nearby row (and the diagnosis when nothing answers). A click on a host puts its address
/// in the address field and connects.
pub(crate) fn nearby_ui(ui: &mut Ui, state: &mut State, nearby: &Nearby, out: &mut Vec<Command>) {
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new("Nearby:").strong());
        if !nearby.enabled {
            ui.weak("discovery is off (FERRY_NO_DISCOVERY); type the host's address above.");
            return;
        }
        if let Some(e) = &nearby.error {
            ui.weak(format!("not looking ({}); type the host's address above.", Escaped(e)));
        }
        if nearby.hosts.is_empty() && nearby.diagnosis.is_none() && nearby.error.is_none() {
            ui.spinner();
            ui.weak("looking for hosts on this network…");
        }
        for host in &nearby.hosts {
            host_ui(ui, state, host, out);
        }
    });
    if let Some(d) = &nearby.diagnosis
        && !nearby.any_reachable()
    {
        diagnosis_ui(ui, d);
    }
}

fn host_ui(ui: &mut Ui, state: &mut State, host: &Host, out: &mut Vec<Command>) {
    let name = Escaped(&host.name).to_string();
    let mut text = match host.source {
        Source::Announced if !host.folder.is_empty() => format!("{name} · {}", Escaped(&host.folder)),
        _ => name.clone(),
    };
    if host.pin {
        text.push_str(" · PIN");
    }
    ui.spacing_mut().item_spacing.x = 4.0;
    if let Some(id) = host.id.as_deref().and_then(id_digest) {
        verdict::fingerprint_ui(ui, &id, 14.0).on_hover_text("This host's identity colours");
    }
    let (enabled, hover) = match &host.reach {
        Reach::Reachable => (true, format!("Connect to {}", host.address())),
        Reach::Checking => (false, format!("Checking that {} answers…", host.address())),
        Reach::Unreachable(why) => (false, format!("Seen but not reachable: {}", Escaped(why))),
    };
    let label = match &host.reach {
        Reach::Unreachable(_) => RichText::new(format!("{text} (seen but not reachable)")).color(verdict::bad_text(ui)),
        _ => RichText::new(text),
    };
    let button = ui.add_enabled(enabled, egui::Button::new(label));
    let what = format!("Connect to {name}");
    button.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, enabled, &what));
    if button
        .on_hover_text(hover)
        .on_disabled_hover_text(match &host.reach {
            Reach::Unreachable(why) => format!("Seen but not reachable: {}", Escaped(why)),
            _ => "Checking that it answers…".to_string(),
        })
        .clicked()
    {
        state.server_addr = host.address();
        out.push(Command::Connect);
    }
    if host.reach == Reach::Checking {
        ui.spinner();
    }
    ui.add_space(8.0);
}

/// The first 16 bytes of a 64-hex identity, to draw as a colour strip.
fn id_digest(id: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(id.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn diagnosis_ui(ui: &mut Ui, d: &Diagnosis) {
    let lines = d.lines();
    egui::CollapsingHeader::new(RichText::new(d.summary()).color(ui.visuals().warn_fg_color))
        .id_salt("nearby-diagnosis")
        .default_open(true)
        .show(ui, |ui| {
            for line in lines.iter().skip(1) {
                let shown = if let Some(rest) = line.strip_prefix("tried: ") {
                    format!("Tried: {rest}")
                } else if let Some(rest) = line.strip_prefix("check: ") {
                    format!("Check: {rest}")
                } else if let Some(rest) = line.strip_prefix("seen but not reachable: ") {
                    format!("Seen but not reachable: {rest}")
                } else {
                    line.clone()
                };
                ui.add(egui::Label::new(Escaped(&shown).to_string()).wrap());
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_gives_its_first_16_bytes_for_the_colour_strip() {
        let id = format!("{}{}", "00ff".repeat(8), "ab".repeat(16));
        let d = id_digest(&id).unwrap();
        assert_eq!(&d[..2], &[0x00, 0xff]);
        assert_eq!(id_digest("zz"), None);
    }
}
