//! A button that copies text to the clipboard and says "Copied" for a moment, so the person
//! knows it worked.

use egui::{Response, Ui};

/// How long the button reads "Copied" after a click, in seconds.
const FEEDBACK_SECS: f64 = 1.5;

/// A small button labelled `label` that copies `text`; `id_salt` tells apart buttons with the
/// same label.
pub fn copy_button(
    ui: &mut Ui,
    id_salt: impl std::hash::Hash + std::fmt::Debug,
    label: &str,
    hover: &str,
    text: &str,
) -> Response {
    let id = ui.scope_id().with(("copy", id_salt));
    let now = ui.input(|i| i.time);
    let copied_at = ui.data(|d| d.get_temp::<f64>(id));
    let showing = copied_at.is_some_and(|t| now - t < FEEDBACK_SECS);
    // The same width either way, so nothing beside it moves.
    let width = ui.fonts_mut(|f| {
        let font = egui::TextStyle::Button.resolve(ui.style());
        [label, "Copied"]
            .iter()
            .map(|t| f.layout_no_wrap(t.to_string(), font.clone(), egui::Color32::WHITE).size().x)
            .fold(0.0, f32::max)
    }) + ui.spacing().button_padding.x * 2.0;
    let shown = if showing { "Copied" } else { label };
    let response = ui.add(egui::Button::new(shown).small().min_size(egui::vec2(width, 0.0)));
    if showing {
        ui.ctx().request_repaint_after(std::time::Duration::from_secs_f64(FEEDBACK_SECS));
    }
    let response = response.on_hover_text(hover);
    if response.clicked() {
        ui.ctx().copy_text(text.to_string());
        ui.data_mut(|d| d.insert_temp(id, now));
    }
    response
}
