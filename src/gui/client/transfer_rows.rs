//! The Downloads list: one card per download with its progress or its verdict, and the
//! question asked when a download would replace an existing file.

use egui::{Align, Layout, RichText, Stroke, Ui};

use super::transfers::{Download, Phase, Transfers};
use crate::client::{FileReport, FileResult};
use crate::gui::verdict::{self, Verdict, verdict_ui, verdict_ui_labelled};
use crate::gui::{Command, format};
use crate::protocol::path::Escaped;
use crate::protocol::{Md5Digest, hex};

pub(super) fn transfers_ui(ui: &mut Ui, transfers: &Transfers, out: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        ui.label(RichText::new("Downloads").strong());
        let finished = transfers.rows.iter().filter(|d| !d.is_running()).count();
        if finished > 0 {
            ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                if ui.small_button("Clear finished").clicked() {
                    out.push(Command::ClearFinished);
                }
            });
        }
    });
    if transfers.rows.is_empty() {
        ui.weak("Downloads appear here with their progress and their MD5 verdict.");
        return;
    }
    egui::ScrollArea::vertical().id_salt("downloads").auto_shrink(false).show(ui, |ui| {
        for d in &transfers.rows {
            // The frame takes the verdict's colour, so it reads at a glance.
            let mut frame = egui::Frame::group(ui.style()).inner_margin(10.0);
            let ok = match &d.phase {
                Phase::Done { verdict: v, .. } => Some(v.is_ok()),
                Phase::FolderDone { problems, .. } => Some(problems.is_empty()),
                _ => None,
            };
            if let Some(ok) = ok {
                let color = if ok { verdict::good_text(ui) } else { verdict::bad_text(ui) };
                frame = frame.stroke(Stroke::new(2.0, color));
            }
            frame.show(ui, |ui| {
                ui.set_width(ui.available_width());
                download_ui(ui, d, out);
            });
            ui.add_space(4.0);
        }
    });
}

/// The card's buttons, right-aligned. While the download runs, Cancel is the rightmost; once
/// it has ended, the rightmost is the way to try again, and Remove sits to its left: never
/// where Cancel was, so a double click on Cancel cannot remove the card.
fn buttons_ui(ui: &mut Ui, d: &Download, out: &mut Vec<Command>) {
    match &d.phase {
        Phase::Connecting | Phase::Running => {
            if ui.button("Cancel").clicked() {
                out.push(Command::Cancel(d.row));
            }
        }
        Phase::Exists => {}
        phase => {
            let again = match phase {
                Phase::Cancelled { part: Some(_) } => Some(("Resume", "Continue from where it stopped")),
                Phase::Cancelled { .. } | Phase::Failed { .. } if d.upload => {
                    Some(("Resume", "Try again; what the host already has is kept and checked"))
                }
                Phase::Done { verdict: Verdict::Mismatch { .. }, .. } if d.upload => {
                    Some(("Upload again", "Try again"))
                }
                Phase::Failed { .. } if d.done > 0 => {
                    Some(("Resume", "Try again; what already arrived is kept and checked"))
                }
                Phase::Cancelled { .. } | Phase::Failed { .. } => Some(("Retry", "Try again")),
                Phase::Done { verdict: Verdict::Mismatch { .. }, .. } => Some(("Download again", "Try again")),
                Phase::FolderDone { problems, .. } if !problems.is_empty() => {
                    Some(("Retry failed", "Try only the files that failed again (the verified ones stay as they are)"))
                }
                Phase::Kept => Some(("Download again", "Ask again whether to replace the existing file")),
                _ => None,
            };
            match again {
                Some((label, hint)) => {
                    if ui.button(label).on_hover_text(hint).clicked() {
                        out.push(Command::Restart(d.row));
                    }
                }
                // Keep Remove out of the slot Cancel had.
                None => {
                    ui.add_space(70.0);
                }
            }
            if ui.small_button("Remove").on_hover_text("Remove from this list").clicked() {
                out.push(Command::Dismiss(d.row));
            }
        }
    }
}

fn download_ui(ui: &mut Ui, d: &Download, out: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        ui.label(RichText::new(d.name()).strong().size(15.0));
        let whence = if d.upload { "upload to" } else { "from" };
        let line = format!("{whence} {} · {}", d.addr, Escaped(&d.remote));
        ui.add(egui::Label::new(RichText::new(line).weak()).truncate());
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| buttons_ui(ui, d, out));
    });
    match &d.phase {
        Phase::Connecting => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Connecting…");
            });
        }
        Phase::Running if d.total == 0 => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(if d.resuming { "Checking the part that already arrived…" } else { "Starting…" });
            });
        }
        Phase::Running => {
            let frac = if d.total == 0 { 0.0 } else { d.done as f32 / d.total as f32 };
            ui.add(egui::ProgressBar::new(frac).show_percentage().desired_height(20.0));
            let mut line = format!("{} of {}", format::size(d.done), format::size(d.total));
            if d.folder {
                line = format!("{} of {} files  ·  {line}", d.files.0, d.files.1);
            }
            if d.total > 0 && d.done == d.total {
                line += "  ·  checking the MD5…";
            } else {
                if d.bytes_per_sec > 0.0 {
                    line += &format!("  ·  {}", format::speed(d.bytes_per_sec));
                }
                if let Some(eta) = format::eta(d.total.saturating_sub(d.done), d.bytes_per_sec) {
                    line += &format!("  ·  {eta} left");
                }
            }
            ui.label(line);
        }
        Phase::Done { verdict, size, resumed_from } if d.upload => {
            let (detail, copy) = match verdict {
                Verdict::Verified(md5) => {
                    let mut detail = format!(
                        "The host verified it and saved it as {} ({})",
                        Escaped(&d.remote),
                        format::size(*size)
                    );
                    if *resumed_from > 0 {
                        detail += &format!(", resumed after {}", format::size(*resumed_from));
                    }
                    (detail, hex(md5))
                }
                // Uploads are never skipped as identical.
                Verdict::Identical(md5) => (String::new(), hex(md5)),
                Verdict::Mismatch { expected, actual } => (
                    format!(
                        "The {} that reached the host differ from what was sent, so the host kept nothing. Upload it again.",
                        format::size(*size)
                    ),
                    format!("sent:          {}\nhost computed: {}", hex(expected), hex(actual)),
                ),
            };
            verdict_ui_labelled(ui, d.row, verdict, &detail, &copy, ("Sent", "Host computed"));
        }
        Phase::Done { verdict, size, resumed_from } => {
            let (detail, copy) = match verdict {
                Verdict::Verified(md5) => {
                    let mut detail = format!("Saved to {} ({})", d.dest.display(), format::size(*size));
                    if *resumed_from > 0 {
                        detail += &format!(", resumed after {}", format::size(*resumed_from));
                    }
                    (detail, hex(md5))
                }
                Verdict::Identical(md5) => (
                    format!(
                        "Nothing downloaded: {} ({}) already has the MD5 the host lists for this file.",
                        d.dest.display(),
                        format::size(*size)
                    ),
                    hex(md5),
                ),
                Verdict::Mismatch { expected, actual } => (
                    format!(
                        "The {} that arrived differ from what the host sent, so nothing was saved. Download it again.",
                        format::size(*size)
                    ),
                    format!("host sent:     {}\ncomputed here: {}", hex(expected), hex(actual)),
                ),
            };
            verdict_ui(ui, d.row, verdict, &detail, &copy);
        }
        Phase::Failed { message } => {
            let text = RichText::new(format!("Failed: {message}")).color(verdict::bad_text(ui));
            ui.add(egui::Label::new(text).wrap());
            if d.done > 0 {
                ui.weak(format!(
                    "{} of {} arrived; Resume continues from there.",
                    format::size(d.done),
                    format::size(d.total)
                ));
            }
        }
        Phase::Cancelled { .. } if d.upload => {
            ui.label("Cancelled. The host keeps what already arrived; Resume continues from there.");
        }
        Phase::Cancelled { part } => {
            if part.is_some() {
                ui.label(format!(
                    "Cancelled. The {} already downloaded are kept; Resume continues from there.",
                    format::size(d.done)
                ));
            } else {
                ui.label("Cancelled.");
            }
        }
        Phase::Exists => {
            ui.label(format!("{} already exists: replace it?", d.dest.display()));
        }
        Phase::Kept => {
            ui.weak(format!("Not downloaded: kept the existing {}.", d.dest.display()));
        }
        Phase::FolderDone { problems, manifest, fingerprint } => {
            folder_verdict_ui(ui, d, manifest.len(), problems, fingerprint)
        }
    }
}

/// A folder's one verdict: all verified (green, with the folder's fingerprint), or which files
/// did not and why.
fn folder_verdict_ui(ui: &mut Ui, d: &Download, verified: usize, problems: &[FileReport], fingerprint: &Md5Digest) {
    ui.horizontal(|ui| {
        verdict::mark_ui(ui, problems.is_empty(), 22.0);
        if problems.is_empty() {
            let files = if verified == 1 { "1 file" } else { &format!("{verified} files") };
            ui.colored_label(verdict::good_text(ui), RichText::new(format!("{files}, all MD5 verified")).strong());
        } else {
            let headline = format!("{} of {} files did not verify", problems.len(), verified + problems.len());
            ui.colored_label(verdict::bad_text(ui), RichText::new(headline).strong());
        }
    });
    ui.horizontal(|ui| {
        ui.weak("Folder fingerprint");
        verdict::fingerprint_ui(ui, fingerprint, 16.0);
        ui.weak(hex(fingerprint));
    });
    ui.weak(format!("Saved into {}", d.dest.display()));
    for p in problems.iter().take(8) {
        let why = match &p.result {
            FileResult::Mismatch { .. } => "damaged in transit, not saved".to_string(),
            FileResult::Failed(why) => why.clone(),
            _ => continue,
        };
        ui.colored_label(verdict::bad_text(ui), format!("{}: {}", Escaped(&p.rel), Escaped(&why)));
    }
    if problems.len() > 8 {
        ui.weak(format!("and {} more", problems.len() - 8));
    }
}

/// "Delete the partial download too?" after a cancelled card is removed.
pub(super) fn delete_part_modal(ui: &mut Ui, transfers: &Transfers, out: &mut Vec<Command>) {
    let Some((_, _, size)) = &transfers.offer_delete else { return };
    egui::Modal::new(egui::Id::unique("offer_delete_part")).show(ui.ctx(), |ui| {
        ui.set_max_width(460.0);
        ui.heading("Delete what was downloaded?");
        ui.add_space(6.0);
        ui.label(format!(
            "The {} that arrived before you cancelled are kept on disk, so that the download can resume. Nothing in this window points to them once the card is gone.",
            format::size(*size)
        ));
        ui.add_space(10.0);
        ui.horizontal(|ui| {
            if ui.button("Delete it").clicked() {
                out.push(Command::DeletePart);
            }
            if ui.button("Keep it").clicked() || ui.input(|i| i.key_pressed(egui::Key::Escape)) {
                out.push(Command::KeepPart);
            }
        });
    });
}

pub(super) fn overwrite_modal(ui: &mut Ui, transfers: &Transfers, out: &mut Vec<Command>) {
    let Some(row) = transfers.confirm else { return };
    let Some(d) = transfers.rows.iter().find(|d| d.row == row) else { return };
    let modal = egui::Modal::new(egui::Id::unique("confirm_overwrite")).show(ui.ctx(), |ui| {
        ui.set_max_width(460.0);
        ui.heading("Replace the existing file?");
        ui.add_space(6.0);
        ui.label(format!("{} already exists.", d.dest.display()));
        ui.label("If you replace it, the new copy takes its place only after its MD5 is verified.");
        ui.add_space(10.0);
        ui.horizontal(|ui| {
            if ui.button("Replace").clicked() {
                out.push(Command::ReplaceExisting(row));
            }
            if ui.button("Keep the existing file").clicked() {
                out.push(Command::KeepExisting(row));
            }
        });
    });
    if modal.should_close() && !out.iter().any(|c| matches!(c, Command::ReplaceExisting(_))) {
        out.push(Command::KeepExisting(row));
    }
}
