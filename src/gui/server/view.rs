//! The Server tab's form and hosting card: what to host and how, the address and PIN to read
//! out, the index's progress, the identity.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use egui::{RichText, Ui};

use super::transfers::{clients_ui, finished_ui};
use super::{Hosting, ServerTab};
use crate::gui::announcing::announcing_ui;
use crate::gui::format;
use crate::gui::verdict;
use crate::gui::{Command, State};
use crate::protocol::message::Secret;
use crate::protocol::path::Escaped;
use crate::server::IndexProgress;

/// Draws the Server tab; what the person asks for goes to `out`.
pub(crate) fn server_ui(
    ui: &mut Ui,
    state: &mut State,
    tab: &mut ServerTab,
    dialog_open: bool,
    out: &mut Vec<Command>,
) {
    let idle = matches!(tab.hosting, Hosting::Idle);
    ui.heading("Share a folder");
    if tab.allow_upload {
        ui.label("Anyone who can reach this machine can browse the folder, download from it and upload files into it (never replacing a file).");
    } else {
        ui.label("Anyone who can reach this machine can browse the folder and download from it. Nothing can be changed or uploaded.");
    }
    dropped_folder_ui(ui, idle, out);
    ui.add_space(6.0);

    let mut edited = false;
    let mut entered = false;
    egui::Grid::new("host_form").num_columns(2).spacing([10.0, 8.0]).show(ui, |ui| {
        let label = ui.label("Folder to host");
        ui.horizontal(|ui| {
            ui.add_enabled_ui(idle, |ui| {
                let field = egui::TextEdit::singleline(&mut state.host_folder)
                    .hint_text("/path/to/folder")
                    .desired_width((ui.available_width() - 130.0).max(160.0));
                watch(&ui.add(field).labelled_by(label.id), &mut edited, &mut entered);
                let pick = egui::Button::new("Choose folder…");
                if ui.add_enabled(!dialog_open, pick).on_hover_text("Pick the folder, then host it").clicked() {
                    out.push(Command::PickHostFolder);
                }
            });
        });
        ui.end_row();

        let label = ui.label("Listen on");
        ui.horizontal(|ui| {
            ui.add_enabled_ui(idle, |ui| {
                let addr = ui
                    .add(egui::TextEdit::singleline(&mut state.bind_host).hint_text("::").desired_width(160.0))
                    .labelled_by(label.id);
                watch(&addr, &mut edited, &mut entered);
                addr.on_hover_text(":: listens on every network interface (IPv6 and IPv4), 0.0.0.0 on every IPv4 one; 127.0.0.1 on this machine only");
                let port_label = ui.label("port");
                let port_ok = tab.port_text.trim().parse::<u16>().is_ok();
                let mut port = egui::TextEdit::singleline(&mut tab.port_text).desired_width(60.0);
                if !port_ok {
                    port = port.text_color(verdict::bad_text(ui));
                }
                let port = ui.add(port).labelled_by(port_label.id);
                watch(&port, &mut edited, &mut entered);
                port.on_hover_text("0 picks any free port");
            });
        });
        ui.end_row();

        ui.label("Access");
        ui.horizontal(|ui| {
            ui.add_enabled_ui(idle, |ui| {
                let tick = ui.checkbox(&mut state.require_pin, "Require a PIN").on_hover_text(
                    "Clients must type this PIN to connect. It keeps out passers-by; it is not encryption.",
                );
                edited |= tick.changed();
                if state.require_pin {
                    let pin_label = ui.label("PIN");
                    let pin =
                        egui::TextEdit::singleline(&mut tab.pin.0).desired_width(90.0).font(egui::TextStyle::Monospace);
                    watch(&ui.add(pin).labelled_by(pin_label.id), &mut edited, &mut entered);
                    if ui.button("New PIN").clicked() {
                        tab.pin = Secret(crate::server::random_pin());
                        edited = true;
                    }
                }
            });
        });
        ui.end_row();

        ui.label("Uploads");
        ui.horizontal(|ui| {
            ui.add_enabled_ui(idle, |ui| {
                let tick = ui.checkbox(&mut tab.allow_upload, "Allow uploads").on_hover_text(
                    "Clients can upload files into the hosted folder. An existing file is never replaced, and each file is kept only once its MD5 matches the sender's.",
                );
                edited |= tick.changed();
                if tab.allow_upload {
                    let into = ui.label("into");
                    let field = egui::TextEdit::singleline(&mut state.upload_folder)
                        .hint_text("the hosted folder")
                        .desired_width(140.0);
                    let field = ui.add(field).labelled_by(into.id).on_hover_text(
                        "A folder inside the hosted one (made when the first file arrives), e.g. inbox; empty: anywhere in it",
                    );
                    watch(&field, &mut edited, &mut entered);
                    let remember = ui
                        .checkbox(&mut state.remember_uploads, "Remember this choice")
                        .on_hover_text("Otherwise uploads are off again the next time ferry starts");
                    edited |= remember.changed();
                }
            });
        });
        ui.end_row();
    });
    if edited {
        // The form changed since the complaint: it no longer applies.
        tab.error = None;
    }
    ui.add_space(6.0);

    ui.horizontal(|ui| match tab.hosting {
        Hosting::Idle => {
            let start = egui::Button::new(RichText::new("Start hosting").size(16.0)).min_size([160.0, 32.0].into());
            if ui.add(start).clicked() || entered {
                out.push(Command::StartHosting);
            }
        }
        Hosting::Starting => {
            ui.spinner();
            ui.label("Starting…");
        }
        Hosting::Listening { .. } => {
            let stop = egui::Button::new(RichText::new("Stop hosting").size(16.0)).min_size([160.0, 32.0].into());
            if ui.add(stop).clicked() {
                out.push(Command::StopHosting { confirmed: false });
            }
        }
        Hosting::Stopping => {
            ui.spinner();
            ui.label("Stopping…");
        }
    });
    confirm_stop_modal(ui, tab, out);

    if let Some(error) = tab.error.clone() {
        crate::gui::error_banner(ui, &error, || tab.error = None);
    }

    if let Hosting::Listening { addr, root, identity } = &tab.hosting {
        ui.add_space(8.0);
        listening_ui(ui, *addr, root, tab.lan.as_deref(), tab.active_pin.as_ref().map(|p| p.0.as_str()));
        if tab.hosting_uploads {
            let into = match &tab.hosting_upload_folder {
                Some(f) => format!("clients can add files to \"{}\" in this folder", Escaped(f)),
                None => "clients can add files to this folder".to_string(),
            };
            ui.label(format!("Uploads are allowed: {into}. An existing file is never replaced, and each file is kept only once its MD5 matches."));
        }
        announcing_ui(ui, &tab.announcing);
        indexing_ui(ui, tab.indexing.as_ref(), tab.index_problem.as_deref());
        if let Some(fp) = identity {
            ui.add_space(6.0);
            ui.label("This host's identity (clients see the same colours when they first connect):");
            crate::gui::identity::identity_ui(ui, fp);
        }
    }

    ui.add_space(10.0);
    ui.separator();
    clients_ui(ui, tab);
    ui.add_space(10.0);
    ui.separator();
    finished_ui(ui, tab);
}

/// A folder dropped on the tab is hosted (when nothing is); while files hover over the window
/// the tab says so.
fn dropped_folder_ui(ui: &mut Ui, idle: bool, out: &mut Vec<Command>) {
    let (hovering, dropped) = ui.input(|i| {
        let dropped: Vec<PathBuf> = i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect();
        (!i.raw.hovered_files.is_empty(), dropped)
    });
    if hovering {
        let text = if idle { "Drop a folder to host it" } else { "Stop hosting first to host another folder" };
        ui.label(RichText::new(text).strong().color(ui.visuals().hyperlink_color));
    }
    // A dropped file (not a folder) is not something to host; the first folder is.
    if let Some(dir) = dropped.into_iter().find(|p| p.is_dir()) {
        out.push(Command::HostDropped(dir));
    }
}

/// What the host's background hashing costs and how far it is: files and bytes hashed, what
/// is left, and whether it waits for transfers. Nothing until there is something to say.
fn indexing_ui(ui: &mut Ui, progress: Option<&IndexProgress>, problem: Option<&str>) {
    if let Some(problem) = problem {
        ui.label(RichText::new(format!("Digest index: {}", Escaped(problem))).color(verdict::bad_text(ui)));
    }
    let Some(p) = progress else { return };
    ui.horizontal_wrapped(|ui| {
        if p.idle() {
            ui.label(format!(
                "Fingerprints ready: {} files known, so their first download is as fast as the next ({} files, {} hashed in the background so far).",
                p.known,
                p.files_done,
                format::size(p.bytes_done)
            ));
            return;
        }
        ui.spinner();
        let folders = match p.folders_left {
            0 => String::new(),
            1 => ", 1 folder to look at".to_string(),
            n => format!(", {n} folders to look at"),
        };
        let state = if p.paused { " Paused while files are being sent." } else { "" };
        ui.label(format!(
            "Preparing fingerprints in the background: {} files ({}) done, {} files ({}) left{folders}.{state}",
            p.files_done,
            format::size(p.bytes_done),
            p.files_left,
            format::size(p.bytes_left)
        ))
        .on_hover_text("ferry hashes the hosted files at low priority, so the first download of each is as fast as the second and clients can see each file's MD5 before downloading.");
    });
}

/// Notes whether a form field was edited, or left with Enter.
fn watch(field: &egui::Response, edited: &mut bool, entered: &mut bool) {
    *edited |= field.changed();
    *entered |= field.lost_focus() && field.ctx.input(|i| i.key_pressed(egui::Key::Enter));
}

/// "Stop hosting while files are being sent?"
fn confirm_stop_modal(ui: &mut Ui, tab: &mut ServerTab, out: &mut Vec<Command>) {
    if !tab.confirm_stop {
        return;
    }
    let n = tab.active.len();
    let modal = egui::Modal::new(egui::Id::unique("confirm_stop")).show(ui.ctx(), |ui| {
        ui.set_max_width(460.0);
        ui.heading("Stop hosting?");
        ui.add_space(6.0);
        let files = if n == 1 { "1 file is".to_string() } else { format!("{n} files are") };
        ui.label(format!("{files} being sent right now. Stopping ends those transfers; the other side can resume them once you host again."));
        ui.add_space(10.0);
        ui.horizontal(|ui| {
            if ui.button("Stop anyway").clicked() {
                out.push(Command::StopHosting { confirmed: true });
            }
            if ui.button("Keep hosting").clicked() {
                tab.confirm_stop = false;
            }
        });
    });
    // Escape keeps hosting; a click beside the box does not count as an answer (it may be the
    // end of the click that opened it).
    let escaped = modal.response.ctx.input(|i| i.key_pressed(egui::Key::Escape));
    if escaped && !out.iter().any(|c| matches!(c, Command::StopHosting { .. })) {
        tab.confirm_stop = false;
    }
}

fn listening_ui(ui: &mut Ui, addr: SocketAddr, root: &std::path::Path, lan: Option<&[IpAddr]>, pin: Option<&str>) {
    egui::Frame::group(ui.style()).inner_margin(12.0).show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("Hosting").size(18.0).strong().color(verdict::good_text(ui)));
            ui.label(RichText::new(root.display().to_string()).size(18.0).strong());
            ui.label(RichText::new("at").size(18.0));
            ui.label(RichText::new(addr.to_string()).size(18.0).monospace());
            if addr.ip().is_unspecified() {
                ui.weak("(every network interface)");
            }
        });
        ui.add_space(4.0);
        let port = addr.port();
        let ip = addr.ip();
        if ip.is_loopback() {
            ui.label("Only this machine can connect (a loopback address). To share with other machines, stop and listen on :: (every interface).");
            address_row(ui, addr);
        } else if ip.is_unspecified() {
            match lan {
                None => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("Looking up this machine's addresses…");
                    });
                }
                Some([]) => {
                    ui.label("This machine has no network address other than loopback: only this machine can connect (127.0.0.1).");
                }
                Some(ips) => {
                    ui.label(RichText::new("On the other machine, open ferry's Client tab and connect to:").size(15.0));
                    for ip in ips {
                        address_row(ui, SocketAddr::new(*ip, port));
                    }
                }
            }
        } else {
            ui.label(RichText::new("On the other machine, open ferry's Client tab and connect to:").size(15.0));
            address_row(ui, addr);
        }
        ui.add_space(4.0);
        match pin {
            Some(pin) => {
                ui.horizontal(|ui| {
                    ui.label(RichText::new("PIN:").size(18.0));
                    ui.label(RichText::new(pin).size(24.0).monospace().strong());
                    ui.weak("read it out to the person connecting");
                });
            }
            None => {
                ui.weak("No PIN: anyone who can reach this address can download.");
            }
        }
    });
}

fn address_row(ui: &mut Ui, addr: SocketAddr) {
    ui.horizontal(|ui| {
        ui.add_space(12.0);
        ui.label(RichText::new(addr.to_string()).size(20.0).monospace().strong());
        let label = addr.to_string();
        crate::gui::copy_button::copy_button(ui, addr, "Copy", "Copy this address to the clipboard", &label);
    });
}
