//! The Server tab's tables: who is connected and what they transfer now, and every finished
//! transfer with its MD5, fingerprint and the client's confirmation.

use std::net::SocketAddr;

use egui::{Align, Layout, RichText, Ui};

use super::{ActiveTransfer, ServerTab};
use crate::gui::format;
use crate::gui::verdict::{self, fingerprint_ui};
use crate::protocol::hex;
use crate::protocol::path::Escaped;
use crate::server::ClientId;

/// The clients as people: connections that share an instance id (one running ferry: its
/// browsing connection and one per download) are one row group.
fn people(tab: &ServerTab) -> Vec<(SocketAddr, Vec<ClientId>)> {
    let mut groups: Vec<(Option<&str>, SocketAddr, Vec<ClientId>)> = Vec::new();
    for (&client, (peer, instance)) in &tab.clients {
        let key = instance.as_deref();
        match groups.iter_mut().find(|(k, p, _)| key.is_some() && *k == key && p.ip() == peer.ip()) {
            Some((_, _, ids)) => ids.push(client),
            None => groups.push((key, *peer, vec![client])),
        }
    }
    groups.into_iter().map(|(_, peer, ids)| (peer, ids)).collect()
}

pub(super) fn clients_ui(ui: &mut Ui, tab: &ServerTab) {
    let people = people(tab);
    let title = match people.len() {
        1 => "Connected: 1 client".to_string(),
        n => format!("Connected: {n} clients"),
    };
    ui.label(RichText::new(title).strong());
    if people.is_empty() {
        ui.weak("No one is connected.");
        return;
    }
    egui::Grid::new("clients").num_columns(4).striped(true).spacing([16.0, 6.0]).show(ui, |ui| {
        ui.weak("Address");
        ui.weak("Transfer");
        ui.weak("Progress");
        ui.weak("Speed");
        ui.end_row();
        for (peer, ids) in &people {
            let sending: Vec<&ActiveTransfer> = tab.active.values().filter(|t| ids.contains(&t.client)).collect();
            let connections = if ids.len() == 1 { String::new() } else { format!(" ({} connections)", ids.len()) };
            ui.label(RichText::new(format!("{}{connections}", peer.ip())).monospace())
                .on_hover_text("One running ferry: its browsing connection and one per download");
            if sending.is_empty() {
                ui.weak("browsing");
                ui.label("");
                ui.label("");
                ui.end_row();
            }
            for (i, t) in sending.iter().enumerate() {
                if i > 0 {
                    ui.label("");
                }
                if t.received {
                    ui.label(format!("receiving {}", Escaped(&t.path)));
                } else {
                    ui.label(Escaped(&t.path).to_string());
                }
                let frac = if t.size == 0 { 1.0 } else { t.done as f32 / t.size as f32 };
                ui.add(egui::ProgressBar::new(frac).desired_width(200.0).text(format!(
                    "{} of {}",
                    format::size(t.done),
                    format::size(t.size)
                )));
                ui.label(format::speed(t.bytes_per_sec));
                ui.end_row();
            }
        }
    });
}

pub(super) fn finished_ui(ui: &mut Ui, tab: &mut ServerTab) {
    ui.horizontal(|ui| {
        ui.label(RichText::new("Finished transfers").strong());
        ui.weak("— compare the MD5 or the colours with the other machine's window");
    });
    if tab.finished.is_empty() {
        ui.weak("Nothing sent yet.");
    } else {
        egui::ScrollArea::both().id_salt("finished").max_height(ui.available_height() - 60.0).show(ui, |ui| {
            egui::Grid::new("finished_grid").num_columns(7).striped(true).spacing([16.0, 6.0]).show(ui, |ui| {
                for heading in ["Time", "File", "Peer", "Size", "Delivered", "MD5", "Fingerprint"] {
                    ui.weak(heading);
                }
                ui.end_row();
                for t in &tab.finished {
                    ui.weak(&t.when);
                    ui.add(egui::Label::new(RichText::new(Escaped(&t.path).to_string()).strong()).extend());
                    ui.add(egui::Label::new(RichText::new(t.peer.ip().to_string()).monospace()).extend())
                        .on_hover_text(t.peer.to_string());
                    ui.add(egui::Label::new(format::size(t.size)).extend());
                    match &t.result {
                        Ok((md5, elapsed)) => {
                            let mismatch_hover;
                            let (status, color, hover) = match (t.received, t.client_md5, t.confirmed) {
                                (true, Some(sent), _) if sent == *md5 => (
                                    "received, MD5 verified",
                                    verdict::good_text(ui),
                                    "Uploaded by the client: the MD5 computed here over what arrived equals the client's, and the file was saved",
                                ),
                                (true, sent, _) => {
                                    mismatch_hover = format!(
                                        "Uploaded by the client, damaged on the way: the client's MD5 was {}; nothing was kept",
                                        sent.map_or_else(|| "not known".to_string(), |s| hex(&s))
                                    );
                                    ("received, MD5 differs: not kept", verdict::bad_text(ui), mismatch_hover.as_str())
                                }
                                (false, _, confirmed) => match confirmed {
                                None => (
                                    "sent, not confirmed",
                                    ui.visuals().weak_text_color(),
                                    "All the bytes went out; the client has not said it verified and saved the file",
                                ),
                                Some(true) => (
                                    "confirmed",
                                    verdict::good_text(ui),
                                    "The client computed the same MD5 and saved the file",
                                ),
                                    Some(false) => (
                                        "client's MD5 differs",
                                        verdict::bad_text(ui),
                                        "The client computed another MD5 and did not keep the file",
                                    ),
                                },
                            };
                            ui.add(egui::Label::new(RichText::new(status).color(color)).extend()).on_hover_text(hover);
                            let text = RichText::new(format::grouped_hex(&hex(md5))).monospace();
                            ui.add(egui::Label::new(text).extend())
                                .on_hover_text(format!(
                                    "{} in {}",
                                    if t.received { "received" } else { "sent" },
                                    format::duration(*elapsed)
                                ));
                            ui.horizontal(|ui| {
                                fingerprint_ui(ui, md5, 15.0);
                                let hover = "Copy the MD5 (32 hex digits) to the clipboard";
                                crate::gui::copy_button::copy_button(ui, (&t.when, &t.path), "Copy MD5", hover, &hex(md5));
                            });
                        }
                        Err(error) => {
                            let what = if t.received { "not received" } else { "not sent" };
                            let text =
                                RichText::new(format!("{what}: {}", Escaped(error))).color(verdict::bad_text(ui));
                            ui.add(egui::Label::new(text).extend());
                            ui.label("");
                            ui.label("");
                        }
                    }
                    ui.end_row();
                }
            });
        });
    }
    if !tab.activity.is_empty() {
        egui::CollapsingHeader::new(format!("Activity ({})", tab.activity.len())).id_salt("activity").show(ui, |ui| {
            egui::ScrollArea::vertical().id_salt("activity_scroll").max_height(160.0).show(ui, |ui| {
                ui.with_layout(Layout::top_down(Align::Min), |ui| {
                    for line in &tab.activity {
                        ui.weak(line);
                    }
                });
            });
        });
    }
}
