//! The address bar: where to connect, the PIN, recent hosts, and how the connection stands.

use egui::{RichText, Sense, Ui, vec2};

use super::ClientTab;
use super::session::Session;
use crate::gui::{Command, State, error_banner, verdict};
use crate::protocol::path::Escaped;

pub(super) fn connect_ui(ui: &mut Ui, state: &mut State, tab: &mut ClientTab, out: &mut Vec<Command>) {
    ui.heading("Download from a host");
    ui.add_space(4.0);
    let mut edited = false;
    ui.horizontal_wrapped(|ui| {
        let label = ui.label("Server address");
        let field = ui
            .add(
                egui::TextEdit::singleline(&mut state.server_addr)
                    .hint_text("192.168.1.20:7878")
                    .desired_width(220.0)
                    .font(egui::TextStyle::Monospace),
            )
            .labelled_by(label.id);
        let pin_label = ui.label("PIN");
        let pin = ui
            .add(egui::TextEdit::singleline(&mut tab.pin.0).hint_text("if asked").desired_width(70.0).password(true))
            .labelled_by(pin_label.id);
        edited = field.changed() || pin.changed();
        let entered = (field.lost_focus() || pin.lost_focus()) && ui.input(|i| i.key_pressed(egui::Key::Enter));
        let connecting = tab.sessions.connecting().is_some();
        if ui.add_enabled(!connecting, egui::Button::new("Connect")).clicked() || (entered && !connecting) {
            out.push(Command::Connect);
        }
        if (tab.sessions.current.is_some() || connecting) && ui.button("Disconnect").clicked() {
            out.push(Command::Disconnect);
        }
    });
    if edited {
        // What the banner complained about has changed: it no longer applies.
        tab.sessions.error = None;
    }
    recent_ui(ui, state, out);
    status_ui(ui, tab);
    if let Some((host, known, seen)) = &tab.sessions.changed
        && crate::gui::identity::changed_ui(ui, host, known, seen)
    {
        out.push(Command::AcceptNewIdentity);
    }
    if let Some(error) = tab.sessions.error.clone() {
        error_banner(ui, &error, || tab.sessions.error = None);
    }
}

/// Recent hosts: a click connects, the × beside each forgets it.
fn recent_ui(ui: &mut Ui, state: &mut State, out: &mut Vec<Command>) {
    if state.recent_servers.is_empty() {
        return;
    }
    let mut forget = None;
    ui.horizontal_wrapped(|ui| {
        ui.weak("Recent:");
        for addr in &state.recent_servers {
            ui.spacing_mut().item_spacing.x = 0.0;
            let b = ui.add(egui::Button::new(RichText::new(addr).monospace()).small());
            if b.on_hover_text("Connect to this host").clicked() {
                state.server_addr.clone_from(addr);
                out.push(Command::Connect);
            }
            let x = ui.add(egui::Button::new("×").small());
            let name = format!("Forget {addr}");
            x.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &name));
            if x.on_hover_text("Remove from the recent hosts").clicked() {
                forget = Some(addr.clone());
            }
            ui.add_space(10.0);
        }
    });
    if let Some(addr) = forget {
        state.forget_server(&addr);
    }
}

fn status_ui(ui: &mut Ui, tab: &ClientTab) {
    if let Some(addr) = tab.sessions.connecting() {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(format!("Connecting to {}…", Escaped(addr)));
        });
    }
    if let Some(Session { server: Some((hello, peer)), .. }) = &tab.sessions.current {
        ui.horizontal(|ui| {
            let (dot, _) = ui.allocate_exact_size(vec2(12.0, 12.0), Sense::hover());
            ui.painter().circle_filled(dot.center(), 5.0, verdict::good_text(ui));
            ui.label(format!("Connected to \"{}\" at {peer} ({})", Escaped(&hello.name), Escaped(&hello.server)));
        });
    }
    if let Some(Session { identity: Some(id), .. }) = &tab.sessions.current {
        crate::gui::identity::contact_ui(ui, id);
    }
}
