//! The Server tab's announcement on the local network: started once hosting listens, withdrawn
//! when hosting stops, and one line saying which.

use std::net::SocketAddr;
use std::path::Path;

use crossbeam_channel::Receiver;
use egui::Ui;

use crate::discovery::{AnnounceEvent, Announcement, Announcer, DiscoveryError};
use crate::protocol::path::Escaped;
use crate::sink::Notify;

/// What the announcement is doing, for the one line the Server tab shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// Not hosting, or hosting on loopback (nothing to announce).
    Idle,
    /// Probing that the name is free (about a second).
    Starting,
    Announced(String),
    /// Not announced, and why.
    Off(String),
}

pub(crate) struct Announcing {
    /// False when discovery is off (`FERRY_NO_DISCOVERY`, or the app was told so).
    pub(crate) enabled: bool,
    announcer: Option<Announcer>,
    events: Option<Receiver<AnnounceEvent>>,
    pub(crate) status: Status,
}

impl Announcing {
    pub fn new() -> Self {
        Announcing { enabled: !crate::discovery::disabled(), announcer: None, events: None, status: Status::Idle }
    }

    /// Announces a host that now listens at `addr` (returns at once).
    pub fn start(
        &mut self,
        addr: SocketAddr,
        root: &Path,
        pin: bool,
        identity: Option<&crate::transport::Fingerprint>,
        notify: Notify,
    ) {
        self.announcer = None;
        self.events = None;
        if !self.enabled {
            self.status = Status::Off("discovery is turned off".into());
            return;
        }
        let what = Announcement::for_host(addr, root, pin, identity);
        match Announcer::start(&what, Some(notify)) {
            Ok((announcer, events)) => {
                self.status = Status::Starting;
                self.announcer = Some(announcer);
                self.events = Some(events);
            }
            Err(DiscoveryError::LoopbackOnly(_)) => self.status = Status::Idle,
            Err(e) => self.status = Status::Off(e.to_string()),
        }
    }

    /// The announcer, for the caller to withdraw off the UI thread (dropping it waits for the
    /// mDNS thread, briefly).
    pub fn take(&mut self) -> Option<Announcer> {
        self.events = None;
        self.status = Status::Idle;
        self.announcer.take()
    }

    pub fn drain(&mut self) {
        let Some(rx) = &self.events else { return };
        while let Ok(event) = rx.try_recv() {
            match event {
                AnnounceEvent::Announced { .. } if self.status != Status::Starting => {}
                AnnounceEvent::Announced { instance, .. } | AnnounceEvent::Renamed { instance } => {
                    self.status = Status::Announced(instance)
                }
                AnnounceEvent::Problem(_) | AnnounceEvent::Withdrawn => {}
            }
        }
    }
}

/// One line under "Hosting …": whether other machines' Nearby lists can see this host.
pub(crate) fn announcing_ui(ui: &mut Ui, a: &Announcing) {
    match &a.status {
        Status::Idle => {}
        Status::Starting => {
            ui.weak("Announcing on the local network…");
        }
        Status::Announced(name) => {
            ui.label(format!(
                "Announced on the local network as \"{}\": it appears in other machines' Nearby list.",
                Escaped(name)
            ));
        }
        Status::Off(why) => {
            ui.weak(format!("Not announced on the local network ({}): give the address above.", Escaped(why)));
        }
    }
}
