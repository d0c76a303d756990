//! The Client tab: connect to a host, browse its folder, download with progress, and see the
//! checksum verdict of every download.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use crossbeam_channel::Receiver;
use egui::text::{LayoutJob, TextWrapping};
use egui::{Align, Color32, FontId, Layout, RichText, Role, Sense, Stroke, TextFormat, Ui, WidgetInfo, vec2};

use super::verdict::{self, Verdict, verdict_ui};
use super::{Command, State, expand_path, format};
use crate::client::jobs::{BrowseHandle, ClientEvent, EventKind, JobHandle, JobId, Jobs};
use crate::client::{ClientError, ConnectOptions, DownloadRequest, md5sum_line, part_path};
use crate::protocol::hex;
use crate::protocol::message::{Entry, EntryKind, HelloReply, sort_entries};
use crate::protocol::path::{Escaped, check_local_name, join, parent};
use crate::sink::Notify;

/// A folder listing as shown: sorted folders first, with the filter applied.
struct Listing {
    path: String,
    entries: Vec<Entry>,
    /// Lower-cased names, for the filter.
    lower: Vec<String>,
    /// Indices of the entries that pass the filter.
    view: Vec<usize>,
    /// The filter `view` was computed for.
    view_filter: String,
}

impl Listing {
    fn new(path: String, mut entries: Vec<Entry>) -> Self {
        sort_entries(&mut entries);
        let lower = entries.iter().map(|e| e.name.to_lowercase()).collect();
        let view = (0..entries.len()).collect();
        Listing { path, entries, lower, view, view_filter: String::new() }
    }

    fn apply_filter(&mut self, filter: &str) {
        let filter = filter.trim().to_lowercase();
        if filter == self.view_filter {
            return;
        }
        self.view = (0..self.entries.len()).filter(|&i| self.lower[i].contains(&filter)).collect();
        self.view_filter = filter;
    }
}

/// One connection to a host, for browsing.
struct Session {
    handle: BrowseHandle,
    addr: String,
    opts: ConnectOptions,
    server: Option<(HelloReply, SocketAddr)>,
    listing: Option<Listing>,
    /// A listing asked for and not answered yet.
    loading: Option<String>,
    list_error: Option<String>,
}

/// Where a download stands.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    Connecting,
    Running,
    Done {
        verdict: Verdict,
        size: u64,
        resumed_from: u64,
    },
    Failed {
        message: String,
    },
    Cancelled {
        kept_part: bool,
    },
    /// The destination exists; waiting for the person to say whether to replace it.
    Exists,
    /// The person chose to keep the existing file.
    Kept,
}

pub(crate) struct Download {
    pub row: u64,
    job: Option<JobHandle>,
    job_id: JobId,
    addr: String,
    opts: ConnectOptions,
    pub remote: String,
    pub dest: PathBuf,
    overwrite: bool,
    pub phase: Phase,
    done: u64,
    total: u64,
    bytes_per_sec: f64,
}

impl Download {
    pub fn is_running(&self) -> bool {
        matches!(self.phase, Phase::Connecting | Phase::Running)
    }

    fn name(&self) -> String {
        let name = self.dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Escaped(&name).to_string()
    }
}

/// The Client tab's runtime state.
pub(crate) struct ClientTab {
    jobs: Jobs,
    events: Receiver<ClientEvent>,
    session: Option<Session>,
    pub(crate) error: Option<String>,
    pub(crate) pin: String,
    filter: String,
    /// The selected entry's name in the current listing.
    selected: Option<String>,
    /// The save-as field: where the selected file goes.
    pub(crate) save_as: String,
    pub(crate) downloads: Vec<Download>,
    next_row: u64,
    /// A download waiting for "replace the existing file?".
    confirm: Option<u64>,
}

impl ClientTab {
    pub fn new(notify: Notify) -> Self {
        let (jobs, events) = Jobs::new(Some(notify));
        ClientTab {
            jobs,
            events,
            session: None,
            error: None,
            pin: String::new(),
            filter: String::new(),
            selected: None,
            save_as: String::new(),
            downloads: Vec::new(),
            next_row: 1,
            confirm: None,
        }
    }

    pub fn running_count(&self) -> usize {
        self.downloads.iter().filter(|d| d.is_running()).count()
    }

    /// The folder shown, once a listing has arrived.
    pub fn current_path(&self) -> Option<&str> {
        self.session.as_ref()?.listing.as_ref().map(|l| l.path.as_str())
    }

    fn options(&self) -> ConnectOptions {
        let pin = self.pin.trim();
        ConnectOptions { pin: (!pin.is_empty()).then(|| pin.to_string()), ..Default::default() }
    }

    pub fn connect(&mut self, state: &mut State) {
        let addr = state.server_addr.trim().to_string();
        self.session = None;
        self.error = None;
        self.selected = None;
        self.filter.clear();
        if addr.is_empty() {
            self.error = Some("Type the address the host shows (for example 192.168.1.20:7878).".into());
            return;
        }
        let opts = self.options();
        let handle = self.jobs.browse(&addr, &opts);
        handle.list("");
        self.session = Some(Session {
            handle,
            addr,
            opts,
            server: None,
            listing: None,
            loading: Some(String::new()),
            list_error: None,
        });
    }

    pub fn disconnect(&mut self) {
        self.session = None; // dropping the handle closes the connection
        self.selected = None;
    }

    /// Selects `name` in the current listing, filling the save-as field as a click would.
    pub fn select(&mut self, name: &str, download_dir: &str) {
        self.selected = Some(name.to_string());
        if let Ok(name) = check_local_name(name) {
            self.save_as = expand_path(download_dir).join(name).display().to_string();
        }
    }

    pub fn list(&mut self, path: &str) {
        if let Some(s) = &mut self.session {
            s.handle.list(path);
            s.loading = Some(path.to_string());
            s.list_error = None;
        }
    }

    /// Starts (or restarts, resuming its `.part`) a download of `remote` from the connected host.
    pub fn download(&mut self, remote: String, dest: PathBuf) {
        let Some(s) = &self.session else {
            self.error = Some("Connect to a host first.".into());
            return;
        };
        let (addr, opts) = (s.addr.clone(), s.opts.clone());
        let row = self.next_row;
        self.next_row += 1;
        let mut d = Download {
            row,
            job: None,
            job_id: 0,
            addr,
            opts,
            remote,
            dest,
            overwrite: false,
            phase: Phase::Connecting,
            done: 0,
            total: 0,
            bytes_per_sec: 0.0,
        };
        self.start_job(&mut d);
        self.downloads.insert(0, d);
    }

    fn start_job(&self, d: &mut Download) {
        let req = DownloadRequest { path: d.remote.clone(), dest: d.dest.clone(), overwrite: d.overwrite };
        let job = self.jobs.download(&d.addr, &d.opts, req);
        d.job_id = job.id;
        d.job = Some(job);
        d.phase = Phase::Connecting;
        d.bytes_per_sec = 0.0;
    }

    fn row_mut(&mut self, row: u64) -> Option<&mut Download> {
        self.downloads.iter_mut().find(|d| d.row == row)
    }

    /// Starts a finished, failed or cancelled download again; a kept `.part` is resumed.
    pub fn restart(&mut self, row: u64, overwrite: bool) {
        let Some(idx) = self.downloads.iter().position(|d| d.row == row) else { return };
        let mut d = self.downloads.remove(idx);
        if !d.is_running() {
            d.overwrite |= overwrite;
            self.start_job(&mut d);
        }
        self.downloads.insert(idx, d);
    }

    pub fn cancel(&mut self, row: u64) {
        if let Some(job) = self.row_mut(row).and_then(|d| d.job.as_ref()) {
            job.cancel();
        }
    }

    pub fn keep_existing(&mut self, row: u64) {
        if let Some(d) = self.row_mut(row) {
            d.phase = Phase::Kept;
        }
        self.confirm = None;
    }

    pub fn replace_existing(&mut self, row: u64) {
        self.confirm = None;
        self.restart(row, true);
    }

    pub fn dismiss(&mut self, row: u64) {
        self.downloads.retain(|d| d.row != row || d.is_running());
    }

    pub fn clear_finished(&mut self) {
        self.downloads.retain(|d| d.is_running() || matches!(d.phase, Phase::Exists));
    }

    /// Cancels every download (when the window closes); their `.part` files stay for a resume.
    /// Not joined: a job still connecting could hold the window open for the connect timeout,
    /// and a `.part` cut short anywhere is still resumed safely (the MD5 covers it all).
    pub fn shutdown(&mut self) {
        self.session = None;
        for d in &self.downloads {
            if let Some(job) = &d.job {
                job.cancel();
            }
        }
    }

    /// Handles queued events until `deadline`; true if some are left for the next frame.
    pub fn drain(&mut self, state: &mut State, deadline: Instant) -> bool {
        loop {
            if Instant::now() >= deadline {
                return !self.events.is_empty();
            }
            match self.events.try_recv() {
                Ok(event) => self.handle(state, event),
                Err(_) => return false,
            }
        }
    }

    fn handle(&mut self, state: &mut State, event: ClientEvent) {
        let ClientEvent { job, kind } = event;
        if let Some(s) = &mut self.session
            && s.handle.id == job
        {
            match kind {
                EventKind::Connected { server, peer } => {
                    state.remember_server(&s.addr);
                    s.server = Some((server, peer));
                }
                EventKind::Listing(reply) => {
                    let same_folder = s.listing.as_ref().is_some_and(|l| l.path == reply.path);
                    let mut listing = Listing::new(reply.path, reply.entries);
                    if same_folder {
                        listing.apply_filter(&self.filter);
                    } else {
                        self.filter.clear();
                        self.selected = None;
                    }
                    s.listing = Some(listing);
                    s.loading = None;
                    s.list_error = None;
                }
                EventKind::ListFailed { path, error } => {
                    s.loading = None;
                    let shown =
                        if path.is_empty() { "the hosted folder".to_string() } else { Escaped(&path).to_string() };
                    s.list_error = Some(format!("Cannot open {shown}: {}", describe(&error)));
                }
                EventKind::Failed(error) => {
                    self.error = Some(match (&error, s.server.is_some()) {
                        (ClientError::Connect { addr, source }, _) => {
                            format!("Cannot connect to {}: {source}", Escaped(addr))
                        }
                        (_, false) => format!("Cannot connect to {}: {}", Escaped(&s.addr), describe(&error)),
                        (_, true) => format!("The connection to {} was lost: {}", Escaped(&s.addr), describe(&error)),
                    });
                    self.session = None;
                }
                EventKind::Closed => self.session = None,
                _ => {}
            }
            return;
        }
        let Some(idx) = self.downloads.iter().position(|d| d.job_id == job && d.job.is_some()) else { return };
        let d = &mut self.downloads[idx];
        if kind.is_terminal() {
            d.job = None; // the job's thread ends by itself
        }
        match kind {
            EventKind::Connected { .. } => d.phase = Phase::Running,
            EventKind::Progress { done, total, bytes_per_sec } => {
                d.phase = Phase::Running;
                d.done = done;
                d.total = total;
                d.bytes_per_sec = bytes_per_sec;
            }
            EventKind::Verified { md5, dest, size, resumed_from } => {
                d.dest = dest;
                d.done = size;
                d.total = size;
                d.phase = Phase::Done { verdict: Verdict::Verified(md5), size, resumed_from };
            }
            EventKind::Mismatch { expected, actual, size } => {
                d.phase = Phase::Done { verdict: Verdict::Mismatch { expected, actual }, size, resumed_from: 0 };
            }
            EventKind::Failed(ClientError::Exists(_)) => {
                d.phase = Phase::Exists;
                if self.confirm.is_none() {
                    self.confirm = Some(d.row);
                }
            }
            EventKind::Failed(error) => d.phase = Phase::Failed { message: describe(&error) },
            EventKind::Cancelled { part } => d.phase = Phase::Cancelled { kept_part: part.is_some() },
            EventKind::Listing(_) | EventKind::ListFailed { .. } | EventKind::Closed => {}
        }
        if self.confirm.is_none()
            && let Some(next) = self.downloads.iter().find(|d| matches!(d.phase, Phase::Exists))
        {
            self.confirm = Some(next.row);
        }
    }
}

/// An engine error in the window's words (the engine's own text mentions command-line flags).
fn describe(error: &ClientError) -> String {
    match error {
        ClientError::Exists(p) => format!("{} already exists", p.display()),
        ClientError::Refused(e) if e.error == crate::protocol::message::ErrorCode::Unauthorized => {
            format!("the host asks for a PIN: {}", Escaped(&e.message))
        }
        other => Escaped(&other.to_string()).to_string(),
    }
}

/// Draws the Client tab; what the person asks for goes to `out`.
pub(crate) fn client_ui(
    ui: &mut Ui,
    state: &mut State,
    tab: &mut ClientTab,
    dialog_open: bool,
    out: &mut Vec<Command>,
) {
    egui::Panel::top("connect_bar").show(ui, |ui| connect_ui(ui, state, tab, out));
    // Room for at least one whole verdict once there are downloads.
    let transfers_height =
        if tab.downloads.is_empty() { 64.0 } else { (ui.available_height() * 0.5).clamp(230.0, 460.0) };
    egui::Panel::bottom("transfers").exact_size(transfers_height).show(ui, |ui| transfers_ui(ui, tab, out));
    egui::CentralPanel::default().show(ui, |ui| browser_ui(ui, state, tab, dialog_open, out));
    overwrite_modal(ui, tab, out);
}

fn connect_ui(ui: &mut Ui, state: &mut State, tab: &mut ClientTab, out: &mut Vec<Command>) {
    ui.add_space(4.0);
    ui.heading("Download from a host");
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        let label = ui.label("Server address");
        let field = ui
            .add(
                egui::TextEdit::singleline(&mut state.server_addr)
                    .hint_text("192.168.1.20:7878")
                    .desired_width(240.0)
                    .font(egui::TextStyle::Monospace),
            )
            .labelled_by(label.id);
        let entered = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        let pin_label = ui.label("PIN");
        ui.add(egui::TextEdit::singleline(&mut tab.pin).hint_text("if asked").desired_width(70.0).password(true))
            .labelled_by(pin_label.id);
        let connecting = tab.session.as_ref().is_some_and(|s| s.server.is_none());
        if ui.add_enabled(!connecting, egui::Button::new("Connect")).clicked() || entered {
            out.push(Command::Connect);
        }
        if tab.session.is_some() && ui.button("Disconnect").clicked() {
            out.push(Command::Disconnect);
        }
    });
    if !state.recent_servers.is_empty() {
        ui.horizontal_wrapped(|ui| {
            ui.weak("Recent:");
            for addr in state.recent_servers.clone() {
                let b = ui.add(egui::Button::new(RichText::new(&addr).monospace()).small());
                if b.on_hover_text("Connect to this host").clicked() {
                    state.server_addr = addr;
                    out.push(Command::Connect);
                }
            }
        });
    }
    match &tab.session {
        Some(Session { server: None, addr, .. }) => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("Connecting to {addr}…"));
            });
        }
        Some(Session { server: Some((hello, peer)), .. }) => {
            ui.horizontal(|ui| {
                let (dot, _) = ui.allocate_exact_size(vec2(12.0, 12.0), Sense::hover());
                ui.painter().circle_filled(dot.center(), 5.0, verdict::good_text(ui));
                ui.label(format!("Connected to \"{}\" at {peer} ({})", Escaped(&hello.name), Escaped(&hello.server)));
            });
        }
        None => {}
    }
    if let Some(error) = tab.error.clone() {
        super::error_banner(ui, &error, || tab.error = None);
    }
    ui.add_space(4.0);
}

fn browser_ui(ui: &mut Ui, state: &mut State, tab: &mut ClientTab, dialog_open: bool, out: &mut Vec<Command>) {
    let Some(session) = &mut tab.session else {
        ui.add_space(20.0);
        ui.vertical_centered(|ui| {
            ui.weak("Connect to a host to see its files.");
            ui.weak("The host's ferry window shows the address to type, on its Server tab.");
        });
        return;
    };
    let Some(listing) = &mut session.listing else {
        if let Some(e) = &session.list_error {
            ui.colored_label(verdict::bad_text(ui), e);
        }
        return;
    };
    // Breadcrumbs, filter, refresh.
    ui.horizontal(|ui| {
        let root_name = session.server.as_ref().map(|(h, _)| h.name.as_str()).filter(|n| !n.is_empty()).unwrap_or("/");
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
        if session.loading.is_some() {
            ui.spinner();
        }
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            if ui.button("Refresh").on_hover_text("List this folder again").clicked() {
                out.push(Command::List(listing.path.clone()));
            }
            if ui.add_enabled(!listing.path.is_empty(), egui::Button::new("Up")).clicked() {
                out.push(Command::List(parent(&listing.path).to_string()));
            }
            let filter = ui.add(egui::TextEdit::singleline(&mut tab.filter).hint_text("Filter").desired_width(180.0));
            filter.widget_info(|| WidgetInfo::labeled(Role::TextInput, true, "Filter"));
        });
    });
    if let Some(e) = &session.list_error {
        ui.colored_label(verdict::bad_text(ui), e);
    }
    listing.apply_filter(&tab.filter);

    // The selected file and where it goes.
    let selected_file = tab
        .selected
        .as_ref()
        .and_then(|name| listing.entries.iter().find(|e| &e.name == name && e.kind == EntryKind::File))
        .cloned();
    let bar_height = if selected_file.is_some() { 44.0 } else { 24.0 };

    // Column header and rows.
    let row_height = ui.text_style_height(&egui::TextStyle::Body) + 8.0;
    let size_w = 100.0;
    let date_w = 140.0;
    let header = ui.allocate_exact_size(vec2(ui.available_width(), row_height), Sense::hover()).0;
    let name_w = (header.width() - size_w - date_w - 36.0).max(80.0);
    let weak = ui.visuals().weak_text_color();
    let font = FontId::proportional(13.0);
    ui.painter().text(header.left_center() + vec2(30.0, 0.0), egui::Align2::LEFT_CENTER, "Name", font.clone(), weak);
    let size_x = header.left() + 30.0 + name_w + size_w;
    ui.painter().text(egui::pos2(size_x, header.center().y), egui::Align2::RIGHT_CENTER, "Size", font.clone(), weak);
    ui.painter().text(egui::pos2(size_x + 20.0, header.center().y), egui::Align2::LEFT_CENTER, "Modified", font, weak);
    ui.separator();

    let mut clicked: Option<(usize, bool)> = None;
    let scroll_height = (ui.available_height() - bar_height).max(60.0);
    ui.scope(|ui| {
        ui.spacing_mut().item_spacing.y = 0.0;
        egui::ScrollArea::vertical()
            .id_salt(("listing", &listing.path))
            .auto_shrink(false)
            .max_height(scroll_height)
            .show_rows(ui, row_height, listing.view.len(), |ui, rows| {
                for i in rows {
                    let idx = listing.view[i];
                    let entry = &listing.entries[idx];
                    let selected = tab.selected.as_deref() == Some(entry.name.as_str());
                    let r = entry_row_ui(ui, entry, selected, row_height, name_w, size_w);
                    if r.double_clicked() {
                        clicked = Some((idx, true));
                    } else if r.clicked() {
                        clicked = Some((idx, false));
                    }
                }
            });
    });
    if listing.entries.is_empty() {
        ui.weak("This folder is empty.");
    } else if listing.view.is_empty() {
        ui.weak(format!("Nothing here matches \"{}\".", tab.filter.trim()));
    }

    if let Some((idx, double)) = clicked {
        let entry = &listing.entries[idx];
        let remote = join(&listing.path, &entry.name);
        match entry.kind {
            EntryKind::Dir if double => out.push(Command::List(remote)),
            _ => {
                if tab.selected.as_deref() != Some(entry.name.as_str()) {
                    tab.selected = Some(entry.name.clone());
                    if entry.kind == EntryKind::File {
                        tab.save_as = match check_local_name(&entry.name) {
                            Ok(name) => expand_path(&state.download_dir).join(name).display().to_string(),
                            Err(_) => String::new(),
                        };
                    }
                }
                if double && entry.kind == EntryKind::File {
                    out.push(Command::Download { remote, typed: tab.save_as.clone() });
                }
            }
        }
    }

    // Save-as bar.
    ui.add_space(4.0);
    match selected_file {
        Some(entry) => {
            ui.horizontal(|ui| {
                let label = ui.label("Save as");
                let field = egui::TextEdit::singleline(&mut tab.save_as)
                    .hint_text("where to save the file")
                    .desired_width((ui.available_width() - 130.0).max(160.0));
                ui.add(field).labelled_by(label.id);
                let button = egui::Button::new(RichText::new("Download").strong()).min_size(vec2(110.0, 26.0));
                let enabled = !dialog_open && !tab.save_as.trim().is_empty();
                if ui.add_enabled(enabled, button).on_hover_text("Choose where to save, then download").clicked() {
                    out.push(Command::Download {
                        remote: join(&listing.path, &entry.name),
                        typed: tab.save_as.clone(),
                    });
                }
            });
            if check_local_name(&entry.name).is_err() {
                ui.colored_label(verdict::bad_text(ui), "This name cannot be used on this machine: type another one.");
            }
        }
        None => {
            ui.weak("Select a file to download it (double-click downloads at once; double-click a folder to open it).");
        }
    }
}

/// One listing row, painted directly so that 10,000 rows cost only the visible ones.
fn entry_row_ui(ui: &mut Ui, entry: &Entry, selected: bool, height: f32, name_w: f32, size_w: f32) -> egui::Response {
    let (rect, response) = ui.allocate_exact_size(vec2(ui.available_width(), height), Sense::click());
    if ui.is_rect_visible(rect) {
        let visuals = ui.visuals();
        let text_color = if selected { visuals.selection.stroke.color } else { visuals.text_color() };
        let painter = ui.painter();
        if selected {
            painter.rect_filled(rect, 3.0, visuals.selection.bg_fill);
        } else if response.hovered() {
            painter.rect_filled(rect, 3.0, visuals.widgets.hovered.weak_bg_fill);
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
        let size_x = rect.left() + 30.0 + name_w + size_w;
        let small = FontId::proportional(13.0);
        let size_text = match (entry.kind, entry.size) {
            (EntryKind::Dir, _) => "folder".to_string(),
            (_, Some(s)) => format::size(s),
            _ => String::new(),
        };
        painter.text(
            egui::pos2(size_x, rect.center().y),
            egui::Align2::RIGHT_CENTER,
            size_text,
            small.clone(),
            text_color,
        );
        painter.text(
            egui::pos2(size_x + 20.0, rect.center().y),
            egui::Align2::LEFT_CENTER,
            format::modified(entry.modified),
            small,
            text_color,
        );
    }
    let label = entry.name.clone();
    response.widget_info(|| WidgetInfo::selected(Role::ListItem, true, selected, &label));
    response
}

fn transfers_ui(ui: &mut Ui, tab: &ClientTab, out: &mut Vec<Command>) {
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        ui.label(RichText::new("Downloads").strong());
        let finished = tab.downloads.iter().filter(|d| !d.is_running()).count();
        if finished > 0 {
            ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                if ui.small_button("Clear finished").clicked() {
                    out.push(Command::ClearFinished);
                }
            });
        }
    });
    if tab.downloads.is_empty() {
        ui.weak("Downloads appear here with their progress and their MD5 verdict.");
        return;
    }
    egui::ScrollArea::vertical().id_salt("downloads").auto_shrink(false).show(ui, |ui| {
        for d in &tab.downloads {
            // The frame takes the verdict's colour, so it reads at a glance.
            let mut frame = egui::Frame::group(ui.style()).inner_margin(10.0);
            if let Phase::Done { verdict: v, .. } = &d.phase {
                let color = if v.is_ok() { verdict::good_text(ui) } else { verdict::bad_text(ui) };
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

fn download_ui(ui: &mut Ui, d: &Download, out: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        ui.label(RichText::new(d.name()).strong().size(15.0));
        ui.weak(format!("from {} · {}", d.addr, Escaped(&d.remote)));
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| match &d.phase {
            Phase::Connecting | Phase::Running => {
                if ui.button("Cancel").clicked() {
                    out.push(Command::Cancel(d.row));
                }
            }
            Phase::Exists => {}
            phase => {
                if ui.small_button("Remove").on_hover_text("Remove from this list").clicked() {
                    out.push(Command::Dismiss(d.row));
                }
                let again = match phase {
                    Phase::Cancelled { kept_part: true } => Some(("Resume", "Continue from where it stopped")),
                    Phase::Failed { .. } if d.done > 0 => {
                        Some(("Resume", "Try again; what already arrived is kept and checked"))
                    }
                    Phase::Cancelled { .. } | Phase::Failed { .. } => Some(("Retry", "Try again")),
                    Phase::Done { verdict: Verdict::Mismatch { .. }, .. } => Some(("Download again", "Try again")),
                    Phase::Kept => Some(("Download again", "Ask again whether to replace the existing file")),
                    _ => None,
                };
                if let Some((label, hint)) = again
                    && ui.button(label).on_hover_text(hint).clicked()
                {
                    out.push(Command::Restart(d.row));
                }
            }
        });
    });
    match &d.phase {
        Phase::Connecting => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Connecting…");
            });
        }
        Phase::Running => {
            let frac = if d.total == 0 { 0.0 } else { d.done as f32 / d.total as f32 };
            ui.add(egui::ProgressBar::new(frac).show_percentage().desired_height(20.0));
            let mut line = format!("{} of {}", format::size(d.done), format::size(d.total));
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
        Phase::Done { verdict, size, resumed_from } => {
            let (detail, copy) = match verdict {
                Verdict::Verified(md5) => {
                    let mut detail = format!("Saved to {} ({})", d.dest.display(), format::size(*size));
                    if *resumed_from > 0 {
                        detail += &format!(", resumed after {}", format::size(*resumed_from));
                    }
                    (detail, md5sum_line(md5, &d.dest.display().to_string()))
                }
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
            ui.colored_label(verdict::bad_text(ui), format!("Failed: {message}"));
            if d.done > 0 {
                ui.weak(format!(
                    "{} of {} arrived; Resume continues from there.",
                    format::size(d.done),
                    format::size(d.total)
                ));
            }
        }
        Phase::Cancelled { kept_part } => {
            if *kept_part {
                ui.label(format!(
                    "Cancelled. The part already downloaded is kept in {}; Resume continues from there.",
                    part_path(&d.dest).display()
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
    }
}

fn overwrite_modal(ui: &mut Ui, tab: &ClientTab, out: &mut Vec<Command>) {
    let Some(row) = tab.confirm else { return };
    let Some(d) = tab.downloads.iter().find(|d| d.row == row) else { return };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: EntryKind) -> Entry {
        Entry { name: name.into(), kind, size: Some(1), modified: None }
    }

    #[test]
    fn listing_puts_folders_first_and_filters_case_insensitively() {
        let mut l = Listing::new(
            String::new(),
            vec![entry("b.txt", EntryKind::File), entry("Zeta", EntryKind::Dir), entry("a.TXT", EntryKind::File)],
        );
        let names = |l: &Listing| l.view.iter().map(|&i| l.entries[i].name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&l), ["Zeta", "a.TXT", "b.txt"]);
        l.apply_filter(" txt ");
        assert_eq!(names(&l), ["a.TXT", "b.txt"]);
        l.apply_filter("");
        assert_eq!(names(&l).len(), 3);
    }
}
