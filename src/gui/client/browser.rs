//! The browser view: the folder's path, the filter, sortable column headers, the file rows
//! (painted by hand so that 10,000 rows cost only the visible ones) and the Save-as row.
//!
//! Keyboard: rows take Tab focus and show a focus ring; ↑/↓ move the selection (with Shift:
//! choose the rows on the way); Enter opens a folder or downloads a file (with several chosen:
//! all of them); Enter in the filter goes to the first row, Enter in Save as downloads.

use egui::text::{LayoutJob, TextWrapping};
use egui::{Align, Color32, FontId, Key, Layout, RichText, Role, Sense, Stroke, TextFormat, Ui, WidgetInfo, vec2};

use super::ClientTab;
use super::listing::{Listing, SortKey};
use crate::gui::{Command, State, expand_path, format, verdict};
use crate::protocol::message::{Entry, EntryKind};
use crate::protocol::path::{Escaped, check_local_name, join, parent};

/// The browser never gets less room than this: the path bar, a few rows and the Save-as row.
pub(super) const MIN_HEIGHT: f32 = 190.0;
/// The Save-as row's fixed height (field and button, then one line of hint or warning).
const SAVE_BAR_HEIGHT: f32 = 52.0;
const SIZE_W: f32 = 90.0;
const DATE_W: f32 = 130.0;

/// What the view remembers between frames.
#[derive(Default)]
pub(super) struct ViewState {
    /// The list's scroll offset and visible height last frame.
    offset: f32,
    viewport: f32,
    /// A row had keyboard focus last frame.
    row_focused: bool,
    /// Give the selected row focus (and scroll to it) this frame.
    focus_selected: bool,
}

pub(super) fn browser_ui(ui: &mut Ui, state: &State, tab: &mut ClientTab, dialog_open: bool, out: &mut Vec<Command>) {
    let ClientTab { sessions, listing, filter, sort, save_as, browser: view, .. } = tab;
    let Some(session) = &sessions.current else {
        ui.add_space(20.0);
        ui.vertical_centered(|ui| {
            ui.weak("Connect to a host to see its files.");
            ui.weak("The host's ferry window shows the address to type, on its Server tab.");
        });
        return;
    };
    let Some(listing) = listing else {
        if let Some(e) = &session.list_error {
            ui.colored_label(verdict::bad_text(ui), e);
        } else {
            ui.spinner();
        }
        return;
    };
    let root_name = session.server.as_ref().map(|(h, _)| h.name.as_str()).filter(|n| !n.is_empty()).unwrap_or("/");
    dropped_files_ui(ui, listing, root_name, out);
    path_bar_ui(ui, root_name, listing, filter, session.loading.is_some(), view, out);
    if let Some(e) = &session.list_error {
        ui.colored_label(verdict::bad_text(ui), e);
    }
    listing.update_view(filter, *sort);

    let row_height = ui.text_style_height(&egui::TextStyle::Body) + 8.0;
    let name_w = (ui.available_width() - SIZE_W - DATE_W - 36.0).max(80.0);
    if let Some(key) = header_ui(ui, *sort, row_height, name_w) {
        *sort = sort.clicked(key);
        listing.update_view(filter, *sort);
        view.focus_selected = true;
    }
    ui.separator();

    let chosen_before = listing.chosen.len();
    let keyed = keyboard(ui, listing, view);
    let list_height = (ui.available_height() - SAVE_BAR_HEIGHT).max(row_height * 2.0);
    let activated = rows_ui(ui, listing, view, row_height, name_w, list_height, filter);
    if listing.chosen.len() != chosen_before && listing.chosen_entries().is_some() {
        // Several chosen: they are saved into the download folder, each under its own name.
        *save_as = expand_path(&state.download_dir).display().to_string();
    }
    if let Some((idx, open)) = keyed.or(activated) {
        let several = listing.chosen_entries().is_some() && open;
        if !several {
            listing.clear_chosen();
        }
        let entry = &listing.entries[idx];
        if listing.selected.as_deref() != Some(entry.name.as_str()) || save_as.is_empty() {
            listing.selected = Some(entry.name.clone());
        }
        let entry = &listing.entries[idx];
        match entry.kind {
            _ if several => {}
            EntryKind::File => fill_save_as(save_as, entry, &state.download_dir),
            // A folder is saved into the download folder, under its own name.
            EntryKind::Dir => *save_as = expand_path(&state.download_dir).display().to_string(),
            EntryKind::Other => {}
        }
        if several {
            // Enter with several chosen: download them all.
            out.push(Command::DownloadMany { remotes: chosen_paths(listing), typed: save_as.clone() });
        } else if open {
            let remote = join(&listing.path, &entry.name);
            match entry.kind {
                EntryKind::Dir => out.push(Command::List(remote)),
                EntryKind::File => out.push(Command::Download { remote, typed: save_as.clone() }),
                EntryKind::Other => {}
            }
        }
    }
    save_bar_ui(ui, listing, save_as, dialog_open, out);
}

/// Files and folders dropped on the tab while a folder is shown are uploaded into it; while
/// they hover over the window the tab says where they would go.
fn dropped_files_ui(ui: &mut Ui, listing: &Listing, root_name: &str, out: &mut Vec<Command>) {
    let (hovering, dropped) = ui.input(|i| {
        let dropped: Vec<std::path::PathBuf> = i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect();
        (!i.raw.hovered_files.is_empty(), dropped)
    });
    if hovering {
        let folder = if listing.path.is_empty() { root_name } else { listing.path.as_str() };
        let text = format!("Drop to upload into {}", Escaped(folder));
        ui.label(RichText::new(text).strong().color(ui.visuals().hyperlink_color));
    }
    if !dropped.is_empty() {
        out.push(Command::UploadPaths(dropped));
    }
}

/// Puts `entry` in the download folder in the Save-as field (a name this machine cannot use
/// leaves it empty, for the person to type one).
fn fill_save_as(save_as: &mut String, entry: &Entry, download_dir: &str) {
    *save_as = match check_local_name(&entry.name) {
        Ok(name) => expand_path(download_dir).join(name).display().to_string(),
        Err(_) => String::new(),
    };
}

fn path_bar_ui(
    ui: &mut Ui,
    root_name: &str,
    listing: &Listing,
    filter: &mut String,
    loading: bool,
    view: &mut ViewState,
    out: &mut Vec<Command>,
) {
    ui.horizontal(|ui| {
        if ui.add_enabled(!listing.path.is_empty(), egui::Button::new("Up")).on_hover_text("The folder above").clicked()
        {
            out.push(Command::List(parent(&listing.path).to_string()));
        }
        if ui.button("Refresh").on_hover_text("List this folder again").clicked() {
            out.push(Command::List(listing.path.clone()));
        }
        let upload = ui.button("Upload…").on_hover_text(
            "Send files from this machine into this folder (the host must allow uploads). You can also drop files and folders here.",
        );
        if upload.clicked() {
            out.push(Command::Upload);
        }
        let filter_w = 170.0;
        let crumbs_w = (ui.available_width() - filter_w - 12.0).max(40.0);
        ui.allocate_ui_with_layout(
            vec2(crumbs_w, ui.spacing().interact_size.y),
            Layout::left_to_right(Align::Center),
            |ui| {
                ui.set_clip_rect(ui.max_rect().intersect(ui.clip_rect()));
                if ui.button(Escaped(root_name).to_string()).on_hover_text("The hosted folder").clicked() {
                    out.push(Command::List(String::new()));
                }
                let mut so_far = String::new();
                if !listing.path.is_empty() {
                    for part in listing.path.split('/') {
                        so_far = join(&so_far, part);
                        ui.label("›");
                        if ui.button(Escaped(part).to_string()).clicked() {
                            out.push(Command::List(so_far.clone()));
                        }
                    }
                }
                if loading {
                    ui.spinner();
                }
            },
        );
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            let field = ui.add(egui::TextEdit::singleline(filter).hint_text("Filter").desired_width(filter_w));
            field.widget_info(|| WidgetInfo::labeled(Role::TextInput, true, "Filter"));
            if field.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter)) {
                view.focus_selected = true;
            }
        });
    });
}

/// The column headers; a click sorts by that column (again: the other way round).
fn header_ui(ui: &mut Ui, sort: super::listing::Sort, height: f32, name_w: f32) -> Option<SortKey> {
    let (_, header) = ui.allocate_space(vec2(ui.available_width(), height));
    let mut clicked = None;
    let columns = [
        (
            SortKey::Name,
            "Name",
            egui::Rect::from_min_size(header.min + vec2(26.0, 0.0), vec2(name_w, height)),
            Align::Min,
        ),
        (
            SortKey::Size,
            "Size",
            egui::Rect::from_min_size(header.min + vec2(30.0 + name_w, 0.0), vec2(SIZE_W, height)),
            Align::Max,
        ),
        (
            SortKey::Modified,
            "Modified",
            egui::Rect::from_min_size(header.min + vec2(40.0 + name_w + SIZE_W, 0.0), vec2(DATE_W, height)),
            Align::Min,
        ),
    ];
    for (key, name, rect, align) in columns {
        let sorted = sort.key == key;
        let color = if sorted { ui.visuals().strong_text_color() } else { ui.visuals().weak_text_color() };
        let button = egui::Button::new(RichText::new(name).size(13.0).color(color)).frame(false);
        let layout = if align == Align::Max {
            Layout::right_to_left(Align::Center)
        } else {
            Layout::left_to_right(Align::Center)
        };
        // The arrow is painted: the bundled fonts have no arrow glyphs.
        let r = ui
            .scope_builder(egui::UiBuilder::new().max_rect(rect).layout(layout), |ui| {
                if align == Align::Max && sorted {
                    ui.add_space(12.0);
                }
                ui.add(button)
            })
            .inner;
        if sorted {
            let x = if align == Align::Max { r.rect.left() - 8.0 } else { r.rect.right() + 8.0 };
            let c = egui::pos2(x, r.rect.center().y);
            let (tip, base) = if sort.descending { (4.0, -3.0) } else { (-4.0, 3.0) };
            let points = vec![c + vec2(0.0, tip), c + vec2(-4.0, base), c + vec2(4.0, base)];
            ui.painter().add(egui::Shape::convex_polygon(points, color, Stroke::NONE));
        }
        let label = format!("Sort by {}", name.to_lowercase());
        r.widget_info(|| WidgetInfo::labeled(Role::Button, true, &label));
        let hint = if sorted { "Sorted by this column; click to reverse" } else { "Sort by this column" };
        if r.on_hover_text(hint).clicked() {
            clicked = Some(key);
        }
    }
    clicked
}

/// ↑/↓ and Enter while a row has focus: (entry index, open it).
fn keyboard(ui: &Ui, listing: &mut Listing, view: &mut ViewState) -> Option<(usize, bool)> {
    if !view.row_focused {
        return None;
    }
    let all = ui.input_mut(|i| i.consume_key(egui::Modifiers::COMMAND, Key::A));
    let (down, up, enter, shift) = ui.input(|i| {
        (i.key_pressed(Key::ArrowDown), i.key_pressed(Key::ArrowUp), i.key_pressed(Key::Enter), i.modifiers.shift)
    });
    if all {
        listing.choose_all();
        return None;
    }
    let delta = down as isize - up as isize;
    if delta != 0 {
        view.focus_selected = true;
        if shift {
            // Shift+↑/↓: the range grows or shrinks with the cursor; nothing opens.
            listing.extend_by(delta);
            return None;
        }
        return listing.move_selection(delta).map(|i| (i, false));
    }
    if enter {
        let row = listing.selected_row()?;
        return Some((listing.view()[row], true));
    }
    None
}

/// The rows; returns a clicked (or double-clicked: open) entry.
fn rows_ui(
    ui: &mut Ui,
    listing: &mut Listing,
    view: &mut ViewState,
    row_height: f32,
    name_w: f32,
    height: f32,
    filter: &str,
) -> Option<(usize, bool)> {
    let count = listing.view().len();
    if view.focus_selected && listing.selected_row().is_none() && count > 0 {
        listing.move_selection(1);
    }
    let mut scroll = egui::ScrollArea::vertical()
        .id_salt(("listing", &listing.path))
        .auto_shrink(false)
        .max_height(height)
        .min_scrolled_height(height);
    if view.focus_selected
        && let Some(row) = listing.selected_row()
    {
        // Bring the row into view ourselves: rows out of view are not drawn, so egui cannot.
        let top = row as f32 * row_height;
        let offset = if top < view.offset {
            top
        } else if top + row_height > view.offset + view.viewport {
            top + row_height - view.viewport
        } else {
            view.offset
        };
        scroll = scroll.vertical_scroll_offset(offset.max(0.0));
    }
    if count == 0 {
        // In the list's own place, so it never pushes anything down.
        let hint = if listing.entries.is_empty() {
            "This folder is empty.".to_string()
        } else {
            format!("Nothing here matches \"{}\".", filter.trim())
        };
        scroll.show(ui, |ui| {
            ui.add_space(6.0);
            ui.horizontal(|ui| {
                ui.add_space(30.0);
                ui.add(egui::Label::new(RichText::new(hint).weak()).truncate());
            });
        });
        view.row_focused = false;
        view.focus_selected = false;
        return None;
    }
    let mut activated = None;
    // A ctrl/cmd-click (false) or shift-click (true) on an entry.
    let mut chose: Option<(usize, bool)> = None;
    let mut focused = false;
    let output = ui.scope(|ui| {
        ui.spacing_mut().item_spacing.y = 0.0;
        scroll.show_rows(ui, row_height, count, |ui, rows| {
            // One Tab stop for the whole list: the selected row, or the first one drawn.
            let tab_stop = listing.selected_row().filter(|r| rows.contains(r)).unwrap_or(rows.start);
            for i in rows {
                let idx = listing.view()[i];
                let entry = &listing.entries[idx];
                let selected = listing.is_selected(idx);
                let cursor = listing.selected.as_deref() == Some(entry.name.as_str());
                let r = entry_row_ui(ui, entry, selected, i == tab_stop, row_height, name_w);
                if cursor && view.focus_selected {
                    r.request_focus();
                }
                if r.has_focus() {
                    focused = true;
                    let filter = egui::EventFilter { vertical_arrows: true, ..Default::default() };
                    ui.memory_mut(|m| m.set_focus_lock_filter(r.id, filter));
                }
                let modifiers = ui.input(|i| i.modifiers);
                if r.clicked() {
                    // The keys (arrows, Enter, select all) then act on the list.
                    r.request_focus();
                }
                if r.double_clicked() {
                    activated = Some((idx, true));
                } else if r.clicked() && modifiers.command {
                    chose = Some((idx, false));
                } else if r.clicked() && modifiers.shift {
                    chose = Some((idx, true));
                } else if r.clicked() || (r.gained_focus() && !cursor) {
                    activated = Some((idx, false));
                }
            }
        })
    });
    let output = output.inner;
    view.offset = output.state.clamped_offset().y;
    view.viewport = output.inner_rect.height();
    view.row_focused = focused;
    view.focus_selected = false;
    match chose {
        Some((idx, false)) => listing.toggle(idx),
        Some((idx, true)) => listing.extend_to(idx),
        None => {}
    }
    activated
}

/// One listing row, painted directly.
fn entry_row_ui(
    ui: &mut Ui,
    entry: &Entry,
    selected: bool,
    tab_stop: bool,
    height: f32,
    name_w: f32,
) -> egui::Response {
    let (_, rect) = ui.allocate_space(vec2(ui.available_width(), height));
    let sense = if tab_stop { Sense::click() } else { Sense::CLICK };
    let response = ui.interact(rect, ui.scope_id().with(("row", &entry.name)), sense);
    if ui.is_rect_visible(rect) {
        let visuals = ui.visuals();
        let text_color = if selected { visuals.selection.stroke.color } else { visuals.text_color() };
        let painter = ui.painter();
        if selected {
            painter.rect_filled(rect, 3.0, visuals.selection.bg_fill);
        } else if response.hovered() {
            painter.rect_filled(rect, 3.0, visuals.widgets.hovered.weak_bg_fill);
        }
        if response.has_focus() {
            let ring = Stroke::new(2.0, visuals.strong_text_color());
            painter.rect_stroke(rect.shrink(1.0), 3.0, ring, egui::StrokeKind::Inside);
        }
        let icon = egui::Rect::from_center_size(rect.left_center() + vec2(16.0, 0.0), vec2(16.0, 13.0));
        match entry.kind {
            EntryKind::Dir => {
                let amber = Color32::from_rgb(232, 178, 58);
                painter.rect_filled(egui::Rect::from_min_size(icon.min - vec2(0.0, 2.0), vec2(7.0, 4.0)), 1.0, amber);
                painter.rect_filled(icon, 2.0, amber);
            }
            _ => {
                let page = egui::Rect::from_center_size(icon.center(), vec2(11.0, 14.0));
                painter.rect_stroke(page, 1.0, Stroke::new(1.2, text_color), egui::StrokeKind::Inside);
            }
        }
        let name = Escaped(&entry.name).to_string();
        let mut job = LayoutJob::single_section(name, TextFormat::simple(FontId::proportional(14.0), text_color));
        job.wrap = TextWrapping::truncate_at_width(name_w);
        let galley = painter.layout_job(job);
        let y = rect.center().y - galley.size().y / 2.0;
        painter.galley(egui::pos2(rect.left() + 30.0, y), galley, text_color);
        let size_x = rect.left() + 30.0 + name_w + SIZE_W;
        let small = FontId::proportional(13.0);
        let size_text = match (entry.kind, entry.size) {
            (EntryKind::Dir, _) => "folder".to_string(),
            (_, Some(s)) => format::size(s),
            _ => String::new(),
        };
        let mid = rect.center().y;
        painter.text(egui::pos2(size_x, mid), egui::Align2::RIGHT_CENTER, size_text, small.clone(), text_color);
        let date = format::modified(entry.modified);
        painter.text(egui::pos2(size_x + 10.0, mid), egui::Align2::LEFT_CENTER, date, small, text_color);
    }
    let label = entry.name.clone();
    response.widget_info(|| WidgetInfo::selected(Role::ListItem, true, selected, &label));
    response
}

/// The host paths of the entries chosen together.
fn chosen_paths(listing: &Listing) -> Vec<String> {
    listing.chosen_entries().unwrap_or_default().iter().map(|e| join(&listing.path, &e.name)).collect()
}

/// For several chosen entries: the folder to save them into, and Download N items.
fn many_bar_ui(
    ui: &mut Ui,
    listing: &Listing,
    count: usize,
    into: &mut String,
    dialog_open: bool,
    out: &mut Vec<Command>,
) {
    let bar = SaveIntoBar {
        placeholder: "the folder to save them in",
        button: format!("Download {count} items"),
        hover: "Download them all in one go (folders whole), every file MD5-verified",
        note: "Ctrl-click (Cmd-click on a Mac) adds or removes one, Shift-click a range, Ctrl+A all; a plain click selects one.",
    };
    if bar.ui(ui, into, dialog_open) {
        out.push(Command::DownloadMany { remotes: chosen_paths(listing), typed: into.clone() });
    }
}

/// For a selected folder: the folder to save it into, and Download folder.
fn folder_bar_ui(
    ui: &mut Ui,
    listing: &Listing,
    folder: &Entry,
    into: &mut String,
    dialog_open: bool,
    out: &mut Vec<Command>,
) {
    let bar = SaveIntoBar {
        placeholder: "the folder to save it in",
        button: "Download folder".into(),
        hover: "Download the whole folder, every file MD5-verified",
        note: "A folder downloads with everything in it, empty folders too. Double-click or Enter opens it.",
    };
    if bar.ui(ui, into, dialog_open) {
        out.push(Command::DownloadFolder { remote: join(&listing.path, &folder.name), typed: into.clone() });
    }
}

/// The bar under the list for downloads into a folder: "Save into", the field, the button and
/// a note below them.
struct SaveIntoBar {
    placeholder: &'static str,
    button: String,
    hover: &'static str,
    note: &'static str,
}

impl SaveIntoBar {
    /// Draws the bar; whether the button was clicked.
    fn ui(self, ui: &mut Ui, into: &mut String, dialog_open: bool) -> bool {
        let mut clicked = false;
        let (_, rect) = ui.allocate_space(vec2(ui.available_width(), SAVE_BAR_HEIGHT));
        ui.scope_builder(egui::UiBuilder::new().max_rect(rect).layout(Layout::top_down(Align::Min)), |ui| {
            ui.add_space(4.0);
            ui.horizontal(|ui| {
                let label = ui.label("Save into");
                let field = egui::TextEdit::singleline(into)
                    .hint_text(self.placeholder)
                    .desired_width((ui.available_width() - 150.0).max(120.0));
                ui.add(field).labelled_by(label.id);
                let button = egui::Button::new(RichText::new(self.button).strong()).min_size(vec2(130.0, 24.0));
                let enabled = !dialog_open && !into.trim().is_empty();
                clicked = ui.add_enabled(enabled, button).on_hover_text(self.hover).clicked();
            });
            ui.weak(self.note);
        });
        clicked
    }
}

/// Save as and Download, always in the same place under the list; disabled until a file is
/// selected.
fn save_bar_ui(ui: &mut Ui, listing: &Listing, save_as: &mut String, dialog_open: bool, out: &mut Vec<Command>) {
    if let Some(chosen) = listing.chosen_entries() {
        return many_bar_ui(ui, listing, chosen.len(), save_as, dialog_open, out);
    }
    let folder = listing.selected_folder();
    if let Some(folder) = folder {
        return folder_bar_ui(ui, listing, folder, save_as, dialog_open, out);
    }
    let selected = listing.selected_file();
    let (_, rect) = ui.allocate_space(vec2(ui.available_width(), SAVE_BAR_HEIGHT));
    ui.scope_builder(egui::UiBuilder::new().max_rect(rect).layout(Layout::top_down(Align::Min)), |ui| {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            ui.add_enabled_ui(selected.is_some(), |ui| {
                let label = ui.label("Save as");
                let field = egui::TextEdit::singleline(save_as)
                    .hint_text("where to save the file")
                    .desired_width((ui.available_width() - 120.0).max(120.0));
                let field = ui.add(field).labelled_by(label.id);
                let entered = field.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
                let button = egui::Button::new(RichText::new("Download").strong()).min_size(vec2(100.0, 24.0));
                let enabled = !dialog_open && !save_as.trim().is_empty();
                let clicked = ui.add_enabled(enabled, button).on_hover_text("Choose where to save, then download").clicked();
                if let Some(entry) = selected
                    && (clicked || (entered && enabled))
                {
                    out.push(Command::Download { remote: join(&listing.path, &entry.name), typed: save_as.clone() });
                }
            });
        });
        match selected {
            Some(entry) if check_local_name(&entry.name).is_err() => {
                ui.colored_label(verdict::bad_text(ui), "This name cannot be used on this machine: type another one.");
            }
            Some(entry) if entry.digest().is_some() => {
                expected_md5_ui(ui, entry);
            }
            _ => {
                ui.weak("Select a file, then Download (or double-click it, or press Enter). Double-click or Enter opens a folder.");
            }
        }
    });
}

/// The MD5 the host lists for the selected file (from its digest index), before any byte is
/// downloaded: the digest and its colours, which the verdict will show again.
fn expected_md5_ui(ui: &mut Ui, entry: &crate::protocol::message::Entry) {
    let Some(md5) = entry.digest() else { return };
    ui.horizontal(|ui| {
        ui.label("Expected MD5");
        ui.label(RichText::new(crate::gui::format::grouped_hex(&crate::protocol::hex(&md5))).monospace().strong());
        verdict::fingerprint_ui(ui, &md5, 14.0);
        // Short enough for the window's minimum width; the rest on hover.
        ui.weak("(as the host lists it)")
            .on_hover_text("The download is checked against the MD5 the host sends with the file itself.");
    });
}
