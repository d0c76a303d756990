//! The two themes, adjusted so that text and field edges meet WCAG AA contrast: 4.5:1 for
//! text, 3:1 for the edges of fields and buttons (egui's light theme draws text fields as
//! borderless white boxes on an off-white page).

use egui::{Color32, Stroke, Visuals};

use super::verdict;

/// Sets both themes on `ctx`.
pub fn install(ctx: &egui::Context) {
    ctx.set_visuals_of(egui::Theme::Light, light());
    ctx.set_visuals_of(egui::Theme::Dark, dark());
}

pub fn light() -> Visuals {
    let mut v = Visuals::light();
    v.widgets.noninteractive.fg_stroke.color = Color32::from_gray(40);
    v.weak_text_color = Some(Color32::from_gray(100));
    let edge = Stroke::new(1.0, Color32::from_gray(118));
    v.widgets.inactive.bg_stroke = edge;
    v.widgets.inactive.fg_stroke.color = Color32::from_gray(25);
    v.widgets.noninteractive.bg_stroke.color = Color32::from_gray(160);
    v.selection.bg_fill = Color32::from_rgb(188, 218, 255);
    v.selection.stroke = Stroke::new(1.5, Color32::from_rgb(0, 60, 110));
    v
}

pub fn dark() -> Visuals {
    let mut v = Visuals::dark();
    v.widgets.noninteractive.fg_stroke.color = Color32::from_gray(185);
    v.weak_text_color = Some(Color32::from_gray(140));
    v.widgets.inactive.bg_stroke = Stroke::new(1.0, Color32::from_gray(115));
    v
}

/// WCAG relative luminance of an opaque colour.
fn luminance(c: Color32) -> f64 {
    let channel = |x: u8| {
        let x = f64::from(x) / 255.0;
        if x <= 0.039_28 { x / 12.92 } else { ((x + 0.055) / 1.055).powf(2.4) }
    };
    0.2126 * channel(c.r()) + 0.7152 * channel(c.g()) + 0.0722 * channel(c.b())
}

/// WCAG contrast ratio between two opaque colours (1 to 21).
pub fn contrast(a: Color32, b: Color32) -> f64 {
    let (x, y) = (luminance(a), luminance(b));
    (x.max(y) + 0.05) / (x.min(y) + 0.05)
}

/// The pairs that must read: (what, foreground, background, minimum ratio).
pub fn checked_pairs(v: &Visuals) -> Vec<(&'static str, Color32, Color32, f64)> {
    let page = v.panel_fill;
    let field = v.text_edit_bg_color();
    let button = v.widgets.inactive.weak_bg_fill;
    vec![
        ("text on the page", v.text_color(), page, 4.5),
        ("weak text on the page", v.weak_text_color(), page, 4.5),
        ("hint text in a field", v.weak_text_color(), field, 4.5),
        ("text in a field", v.widgets.inactive.text_color(), field, 4.5),
        ("button text", v.widgets.inactive.text_color(), button, 4.5),
        ("selected row text", v.selection.stroke.color, v.selection.bg_fill, 4.5),
        ("success text", verdict::good_color(v), page, 4.5),
        ("failure text", verdict::bad_color(v), page, 4.5),
        ("field edge against the page", v.widgets.inactive.bg_stroke.color, page, 3.0),
        ("field edge against the field", v.widgets.inactive.bg_stroke.color, field, 3.0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contrast_matches_known_values() {
        assert!((contrast(Color32::BLACK, Color32::WHITE) - 21.0).abs() < 1e-9);
        assert!((contrast(Color32::WHITE, Color32::WHITE) - 1.0).abs() < 1e-9);
        // #767676 on white is the classic "just passes AA" grey.
        assert!((contrast(Color32::from_gray(0x76), Color32::WHITE) - 4.54).abs() < 0.01);
    }

    #[test]
    fn both_themes_meet_wcag_aa() {
        for (name, v) in [("light", light()), ("dark", dark())] {
            for (what, fg, bg, min) in checked_pairs(&v) {
                let ratio = contrast(fg, bg);
                assert!(ratio >= min, "{name}: {what} is {ratio:.2}:1, under {min}:1 ({fg:?} on {bg:?})");
            }
        }
    }

    #[test]
    fn egui_light_theme_alone_fails_the_field_edge_check() {
        // What this module fixes: egui's own light theme draws fields without an edge.
        let v = Visuals::light();
        let edge = v.widgets.inactive.bg_stroke;
        assert!(edge.width == 0.0 || contrast(edge.color, v.panel_fill) < 3.0);
    }
}
