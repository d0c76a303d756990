//! A host's identity, drawn in the same colour language as the checksum: a strip of sixteen
//! swatches and the fingerprint in groups of four hex digits. The Server tab shows its own; the
//! Client tab shows the one it reached, and the warning when a known host's has changed.

use egui::{RichText, Sense, Stroke, Ui, Vec2, vec2};

use super::verdict::{self, PALETTE};
use crate::client::HostIdentity;
use crate::format::identity_swatches;
use crate::transport::{Contact, Fingerprint};

/// The strip of swatches, `height` points tall.
pub fn strip_ui(ui: &mut Ui, fp: &Fingerprint, height: f32) -> egui::Response {
    let swatches = identity_swatches(fp);
    let gap = (height * 0.12).max(1.5);
    let size = vec2(swatches.len() as f32 * (height + gap) - gap, height);
    let (rect, response) = ui.allocate_exact_size(size, Sense::hover());
    if ui.is_rect_visible(rect) {
        let painter = ui.painter_at(rect.expand(1.0));
        let border = Stroke::new(1.0, ui.visuals().widgets.noninteractive.fg_stroke.color.gamma_multiply(0.6));
        for (i, &c) in swatches.iter().enumerate() {
            let min = rect.min + vec2(i as f32 * (height + gap), 0.0);
            let swatch = egui::Rect::from_min_size(min, Vec2::splat(height));
            painter.rect(swatch, height * 0.2, PALETTE[c].0, border, egui::StrokeKind::Inside);
        }
    }
    response
}

/// The strip above the hex groups, both selectable for comparing and copying.
pub fn identity_ui(ui: &mut Ui, fp: &Fingerprint) {
    ui.vertical(|ui| {
        let groups = fp.groups();
        strip_ui(ui, fp, 18.0).on_hover_text("Compare these colours with the other screen");
        ui.add(egui::Label::new(RichText::new(format!("identity: {groups}")).monospace()).selectable(true));
    });
}

/// What the client knows about the host it reached: new (compare!), known, or newly accepted.
pub fn contact_ui(ui: &mut Ui, id: &HostIdentity) {
    let (text, color) = match id.contact {
        Contact::First if id.pin_verified => {
            ("New host: the PIN proved it is the one you meant. Its colours:".to_string(), verdict::good_text(ui))
        }
        Contact::First => {
            ("New host: compare these colours with the host's screen".to_string(), ui.visuals().warn_fg_color)
        }
        Contact::Known => ("Known host: the same identity as before".to_string(), verdict::good_text(ui)),
        Contact::Changed { .. } => ("You accepted this host's new identity".to_string(), ui.visuals().warn_fg_color),
    };
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new(text).color(color));
    });
    identity_ui(ui, &id.fingerprint);
}

/// The red warning for a known host whose identity changed; true when the person accepts it.
pub fn changed_ui(ui: &mut Ui, host: &str, known: &Fingerprint, seen: &Fingerprint) -> bool {
    let color = verdict::bad_text(ui);
    let mut accept = false;
    egui::Frame::new()
        .stroke(Stroke::new(2.0, color))
        .corner_radius(4.0)
        .inner_margin(8.0)
        .outer_margin(egui::Margin::symmetric(0, 4))
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                verdict::mark_ui(ui, false, 18.0);
                ui.label(RichText::new(format!("The identity of {host} has CHANGED")).strong().color(color));
            });
            ui.add(
                egui::Label::new(
                    "Either the host made a new key (ferry reinstalled, another machine at this address), \
                     or someone is between you and the host, pretending to be it. Nothing was sent. \
                     Compare the new colours with the host's screen; only if they match, accept them.",
                )
                .wrap(),
            );
            ui.label("Before:");
            identity_ui(ui, known);
            ui.label("Now:");
            identity_ui(ui, seen);
            accept = ui.button("They match: accept the new identity").clicked();
        });
    accept
}
