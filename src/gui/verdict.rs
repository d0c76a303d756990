//! The checksum verdict, drawn so nobody has to read hex: a big green check or red cross, the
//! two digests aligned character by character, and a colour **fingerprint** of the digest that
//! the host's window shows beside the same transfer.

use egui::text::LayoutJob;
use egui::{Color32, FontId, Role, Sense, Stroke, TextFormat, Ui, Vec2, WidgetInfo, vec2};

use super::format::grouped_hex;
use crate::protocol::{Md5Digest, hex};

/// Sixteen colours far apart from each other (after Sasha Trubetskoy's list of distinct
/// colours), each with a name to read out across the room.
pub const PALETTE: [(Color32, &str); 16] = [
    (Color32::from_rgb(230, 25, 75), "red"),
    (Color32::from_rgb(60, 180, 75), "green"),
    (Color32::from_rgb(255, 225, 25), "yellow"),
    (Color32::from_rgb(67, 99, 216), "blue"),
    (Color32::from_rgb(245, 130, 49), "orange"),
    (Color32::from_rgb(145, 30, 180), "purple"),
    (Color32::from_rgb(66, 212, 244), "cyan"),
    (Color32::from_rgb(240, 50, 230), "magenta"),
    (Color32::from_rgb(191, 239, 69), "lime"),
    (Color32::from_rgb(250, 190, 212), "pink"),
    (Color32::from_rgb(70, 153, 144), "teal"),
    (Color32::from_rgb(220, 190, 255), "lavender"),
    (Color32::from_rgb(154, 99, 36), "brown"),
    (Color32::from_rgb(128, 0, 0), "maroon"),
    (Color32::from_rgb(0, 0, 117), "navy"),
    (Color32::from_rgb(128, 128, 0), "olive"),
];

/// Number of colour swatches in a fingerprint.
pub const SWATCHES: usize = 8;

/// The palette indices of a digest's fingerprint. Each swatch folds two bytes into four bits
/// with XOR, so flipping any single bit of the digest changes exactly one swatch.
pub fn fingerprint(digest: &Md5Digest) -> [usize; SWATCHES] {
    std::array::from_fn(|i| {
        let x = digest[2 * i] ^ digest[2 * i + 1];
        usize::from((x >> 4) ^ (x & 0x0f))
    })
}

/// The fingerprint's colour names, e.g. "red, teal, navy, …".
pub fn fingerprint_names(digest: &Md5Digest) -> String {
    fingerprint(digest).iter().map(|&i| PALETTE[i].1).collect::<Vec<_>>().join(", ")
}

/// Paints a digest's fingerprint as a strip of rounded swatches `height` points tall.
pub fn fingerprint_ui(ui: &mut Ui, digest: &Md5Digest, height: f32) -> egui::Response {
    let gap = (height * 0.15).max(2.0);
    let size = vec2(SWATCHES as f32 * (height + gap) - gap, height);
    let (rect, response) = ui.allocate_exact_size(size, Sense::hover());
    if ui.is_rect_visible(rect) {
        let painter = ui.painter_at(rect.expand(1.0));
        let border = Stroke::new(1.0, ui.visuals().widgets.noninteractive.fg_stroke.color.gamma_multiply(0.6));
        for (i, &c) in fingerprint(digest).iter().enumerate() {
            let min = rect.min + vec2(i as f32 * (height + gap), 0.0);
            let swatch = egui::Rect::from_min_size(min, Vec2::splat(height));
            painter.rect(swatch, height * 0.2, PALETTE[c].0, border, egui::StrokeKind::Inside);
        }
    }
    let names = fingerprint_names(digest);
    response.widget_info(|| WidgetInfo::labeled(Role::Image, true, format!("fingerprint: {names}")));
    response.on_hover_text(format!(
        "Colour fingerprint of MD5 {}\n({names})\nThe other machine shows the same colours for the same file.",
        hex(digest)
    ))
}

/// How a download ended, for [`verdict_ui`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The digest computed here equals the host's.
    Verified(Md5Digest),
    /// They differ: the file was damaged in transit and not saved.
    Mismatch { expected: Md5Digest, actual: Md5Digest },
    /// Nothing was downloaded: the file here already has the digest the host lists.
    Identical(Md5Digest),
}

impl Verdict {
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Verified(_) | Verdict::Identical(_))
    }

    /// (what the host sent, what was computed here)
    pub fn digests(&self) -> (Md5Digest, Md5Digest) {
        match *self {
            Verdict::Verified(d) | Verdict::Identical(d) => (d, d),
            Verdict::Mismatch { expected, actual } => (expected, actual),
        }
    }

    pub fn headline(&self) -> &'static str {
        match self {
            Verdict::Verified(_) => "MD5 verified",
            Verdict::Mismatch { .. } => "MD5 mismatch: file not saved",
            Verdict::Identical(_) => "Identical: already have it (MD5 matches)",
        }
    }
}

/// Text colour for success, readable on the current theme.
pub fn good_text(ui: &Ui) -> Color32 {
    good_color(ui.visuals())
}

/// Text colour for failure, readable on the current theme.
pub fn bad_text(ui: &Ui) -> Color32 {
    bad_color(ui.visuals())
}

/// Text colour for success on `visuals`' page.
pub fn good_color(visuals: &egui::Visuals) -> Color32 {
    if visuals.dark_mode { Color32::from_rgb(96, 210, 120) } else { Color32::from_rgb(10, 120, 40) }
}

/// Text colour for failure on `visuals`' page.
pub fn bad_color(visuals: &egui::Visuals) -> Color32 {
    if visuals.dark_mode { Color32::from_rgb(255, 110, 100) } else { Color32::from_rgb(185, 20, 20) }
}

const GOOD_FILL: Color32 = Color32::from_rgb(30, 150, 64);
const BAD_FILL: Color32 = Color32::from_rgb(205, 40, 40);

/// A filled circle with a white check (ok) or cross, `size` points across.
pub fn mark_ui(ui: &mut Ui, ok: bool, size: f32) -> egui::Response {
    let (rect, response) = ui.allocate_exact_size(Vec2::splat(size), Sense::hover());
    if ui.is_rect_visible(rect) {
        let painter = ui.painter();
        let c = rect.center();
        let r = size / 2.0;
        painter.circle_filled(c, r, if ok { GOOD_FILL } else { BAD_FILL });
        let width = (r * 0.22).max(2.0);
        let stroke = Stroke::new(width, Color32::WHITE);
        let points: Vec<egui::Pos2> = if ok {
            vec![c + vec2(-0.45 * r, 0.02 * r), c + vec2(-0.13 * r, 0.34 * r), c + vec2(0.47 * r, -0.33 * r)]
        } else {
            vec![c + vec2(-0.36 * r, -0.36 * r), c + vec2(0.36 * r, 0.36 * r)]
        };
        painter.add(egui::Shape::line(points.clone(), stroke));
        if !ok {
            painter.line_segment([c + vec2(0.36 * r, -0.36 * r), c + vec2(-0.36 * r, 0.36 * r)], stroke);
        }
        for p in points {
            painter.circle_filled(p, width / 2.0, Color32::WHITE);
        }
    }
    response.widget_info(|| WidgetInfo::labeled(Role::Image, true, if ok { "check mark" } else { "cross" }));
    response
}

/// One digest in monospace, grouped by eight; with `mark_differences`, characters that differ
/// from `other` stand out (only on the computed line: the host's digest is the reference).
fn digest_job(ui: &Ui, digest: &Md5Digest, other: &Md5Digest, mark_differences: bool) -> LayoutJob {
    let font = FontId::monospace(15.0);
    let normal = ui.visuals().strong_text_color();
    let (mine, theirs) = (grouped_hex(&hex(digest)), grouped_hex(&hex(other)));
    let mut job = LayoutJob::default();
    for (a, b) in mine.chars().zip(theirs.chars()) {
        let format = if a == b || !mark_differences {
            TextFormat::simple(font.clone(), normal)
        } else {
            TextFormat { background: BAD_FILL, ..TextFormat::simple(font.clone(), Color32::WHITE) }
        };
        job.append(&a.to_string(), 0.0, format);
    }
    job
}

/// The whole verdict: mark and headline, `detail` under it, both digests aligned with their
/// fingerprints, and a button that copies `copy_text` (and says so).
pub fn verdict_ui(ui: &mut Ui, id_salt: u64, verdict: &Verdict, detail: &str, copy_text: &str) {
    let host = if matches!(verdict, Verdict::Identical(_)) { "Host lists" } else { "Host sent" };
    verdict_ui_labelled(ui, id_salt, verdict, detail, copy_text, (host, "Computed here"));
}

/// [`verdict_ui`] with other names for the two digests (`expected`, `actual`): an upload's are
/// what was sent and what the host computed.
pub fn verdict_ui_labelled(
    ui: &mut Ui,
    id_salt: u64,
    verdict: &Verdict,
    detail: &str,
    copy_text: &str,
    names: (&str, &str),
) {
    let ok = verdict.is_ok();
    ui.horizontal(|ui| {
        mark_ui(ui, ok, 44.0);
        ui.vertical(|ui| {
            let color = if ok { good_text(ui) } else { bad_text(ui) };
            ui.label(egui::RichText::new(verdict.headline()).size(22.0).strong().color(color));
            if !detail.is_empty() {
                ui.label(detail);
            }
        });
    });
    let (expected, actual) = verdict.digests();
    egui::Grid::new(("verdict", id_salt)).num_columns(3).spacing([12.0, 6.0]).show(ui, |ui| {
        ui.label(names.0);
        ui.label(digest_job(ui, &expected, &actual, false));
        fingerprint_ui(ui, &expected, 24.0);
        ui.end_row();
        ui.label(names.1);
        ui.label(digest_job(ui, &actual, &expected, true));
        fingerprint_ui(ui, &actual, 24.0);
        ui.end_row();
    });
    let (label, hover) = if ok {
        ("Copy MD5", "Copy the MD5 (32 hex digits) to the clipboard")
    } else {
        ("Copy both digests", "Copy what the host sent and what was computed here")
    };
    super::copy_button::copy_button(ui, id_salt, label, hover, copy_text);
}

#[cfg(test)]
mod tests {
    use egui_kittest::Harness;
    use egui_kittest::kittest::Queryable;

    use super::*;

    const EMPTY_MD5: Md5Digest =
        [0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8, 0x42, 0x7e];

    #[test]
    fn the_empty_files_digest_has_known_colours() {
        // Worked by hand: d4^1d = c9, c^9 = 5 (purple); 8c^d9 = 55, 5^5 = 0 (red); …
        assert_eq!(fingerprint(&EMPTY_MD5), [5, 0, 7, 13, 15, 8, 5, 15]);
        assert_eq!(fingerprint_names(&EMPTY_MD5), "purple, red, magenta, maroon, olive, lime, purple, olive");
        let harness = Harness::new_ui(|ui| {
            fingerprint_ui(ui, &EMPTY_MD5, 20.0);
        });
        harness.get_by_label("fingerprint: purple, red, magenta, maroon, olive, lime, purple, olive");
    }

    #[test]
    fn digests_differing_in_every_swatch_pair_share_no_swatch() {
        let mut other = EMPTY_MD5;
        for pair in 0..SWATCHES {
            other[2 * pair] ^= 0x01;
        }
        let (a, b) = (fingerprint(&EMPTY_MD5), fingerprint(&other));
        assert!(a.iter().zip(&b).all(|(x, y)| x != y), "{a:?} {b:?}");
    }

    #[test]
    fn every_single_bit_flip_changes_the_fingerprint() {
        for bit in 0..128 {
            let mut d = EMPTY_MD5;
            d[bit / 8] ^= 1 << (bit % 8);
            let (a, b) = (fingerprint(&EMPTY_MD5), fingerprint(&d));
            assert_eq!(a.iter().zip(&b).filter(|(x, y)| x != y).count(), 1, "bit {bit}");
        }
    }

    #[test]
    fn palette_colours_are_distinct() {
        for (i, a) in PALETTE.iter().enumerate() {
            for b in &PALETTE[i + 1..] {
                assert_ne!(a.0, b.0);
                assert_ne!(a.1, b.1);
            }
        }
    }

    #[test]
    fn verified_shows_headline_and_both_digests() {
        let v = Verdict::Verified(EMPTY_MD5);
        let harness = Harness::new_ui(|ui| verdict_ui(ui, 1, &v, "saved", "x"));
        harness.get_by_label("MD5 verified");
        assert_eq!(harness.query_all_by_label("d41d8cd9 8f00b204 e9800998 ecf8427e").count(), 2);
        assert!(harness.query_by_label_contains("MD5 mismatch").is_none());
    }

    #[test]
    fn copy_md5_copies_the_digest_alone_and_says_copied() {
        let v = Verdict::Verified(EMPTY_MD5);
        let mut harness = Harness::new_ui(|ui| verdict_ui(ui, 1, &v, "saved", &hex(&EMPTY_MD5)));
        harness.get_by_label("Copy MD5").click();
        harness.step();
        let copied: Vec<_> = harness
            .output()
            .platform_output
            .commands
            .iter()
            .filter_map(|c| match c {
                egui::OutputCommand::CopyText(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(copied, ["d41d8cd98f00b204e9800998ecf8427e"]);
        harness.run_steps(2);
        harness.get_by_label("Copied");
    }

    #[test]
    fn mismatch_says_the_file_was_not_saved() {
        let mut actual = EMPTY_MD5;
        actual[15] ^= 0xff;
        let v = Verdict::Mismatch { expected: EMPTY_MD5, actual };
        let harness = Harness::new_ui(|ui| verdict_ui(ui, 1, &v, "", "x"));
        harness.get_by_label("MD5 mismatch: file not saved");
        harness.get_by_label("d41d8cd9 8f00b204 e9800998 ecf84281");
        assert_eq!(harness.query_all_by_label_contains("fingerprint:").count(), 2);
    }
}
