//! The Client tab: connect to a host, browse its folder, download with progress, and see the
//! checksum verdict of every download.
//!
//! One file per part: [`session`] (the connection state machine), [`listing`] (the folder
//! model: order, filter, selection), [`browser`] (the hand-painted file list and the Save-as
//! row), [`connect`] (the address bar), [`transfers`] and [`transfer_rows`] (the downloads and
//! their cards), [`nearby`] (hosts found on the local network, under the address bar).

mod browser;
mod connect;
mod listing;
mod nearby;
mod session;
mod transfer_rows;
mod transfers;

use std::path::PathBuf;
use std::time::Instant;

use crossbeam_channel::Receiver;
use egui::Ui;

use self::listing::{Listing, Sort};
use self::session::{Sessions, Update};
use self::transfers::Transfers;
use super::{Command, State, expand_path};
use crate::client::jobs::{ClientEvent, Jobs};
use crate::protocol::message::Secret;
use crate::protocol::path::check_local_name;
use crate::sink::Notify;

/// The Client tab's runtime state.
pub(crate) struct ClientTab {
    jobs: Jobs,
    events: Receiver<ClientEvent>,
    sessions: Sessions,
    /// The PIN field (never saved, never in `Debug` output).
    pub(crate) pin: Secret,
    /// The folder shown, once a listing has arrived.
    listing: Option<Listing>,
    filter: String,
    sort: Sort,
    /// The save-as field: where the selected file goes.
    pub(crate) save_as: String,
    transfers: Transfers,
    browser: browser::ViewState,
    /// Height of the Downloads area, as the person dragged it.
    downloads_height: Option<f32>,
    nearby: nearby::Nearby,
    /// The typed-path prompt for an upload (where no file dialog can be shown), while open.
    pub(crate) upload_prompt: Option<String>,
    /// Uploads being planned (dropped folders walked) on a worker thread: the host and the
    /// connection's options they go to, and what the walk found.
    plans: Receiver<Planned>,
    plans_tx: crossbeam_channel::Sender<Planned>,
    notify: Notify,
}

/// Files to upload, found on a worker thread.
struct Planned {
    addr: String,
    opts: crate::client::ConnectOptions,
    plan: Result<crate::client::UploadPlan, String>,
}

impl ClientTab {
    pub fn new(notify: Notify) -> Self {
        let nearby = nearby::Nearby::new(notify.clone());
        let (jobs, events) = Jobs::new(Some(notify.clone()));
        let (plans_tx, plans) = crossbeam_channel::unbounded();
        ClientTab {
            jobs,
            events,
            sessions: Sessions::default(),
            pin: Secret(String::new()),
            listing: None,
            filter: String::new(),
            sort: Sort::default(),
            save_as: String::new(),
            transfers: Transfers::default(),
            browser: browser::ViewState::default(),
            downloads_height: None,
            nearby,
            upload_prompt: None,
            plans,
            plans_tx,
            notify,
        }
    }

    /// Downloads and uploads running.
    pub fn running_counts(&self) -> (usize, usize) {
        let uploads = self.transfers.rows.iter().filter(|d| d.upload && d.is_running()).count();
        (self.transfers.running_count() - uploads, uploads)
    }

    /// The folder shown, once a listing has arrived.
    pub fn current_path(&self) -> Option<&str> {
        self.listing.as_ref().map(|l| l.path.as_str())
    }

    pub fn connect(&mut self, state: &State) {
        self.sessions.connect(&self.jobs, &state.server_addr, &self.pin.0);
    }

    /// Connects again, accepting the changed identity the window warned about.
    pub fn accept_new_identity(&mut self, state: &State) {
        self.sessions.connect_accepting(&self.jobs, &state.server_addr, &self.pin.0, true);
    }

    pub fn disconnect(&mut self) {
        self.sessions.disconnect();
        self.listing = None;
    }

    /// Selects `name` in the current listing, filling the save-as field as a click would.
    pub fn select(&mut self, name: &str, download_dir: &str) {
        if let Some(l) = &mut self.listing {
            l.selected = Some(name.to_string());
        }
        if let Ok(name) = check_local_name(name) {
            self.save_as = expand_path(download_dir).join(name).display().to_string();
        }
    }

    pub fn list(&mut self, path: &str) {
        self.sessions.list(path);
    }

    /// Starts a download of `remote` from the connected host.
    pub fn download(&mut self, remote: String, dest: PathBuf) {
        let Some(s) = &self.sessions.current else {
            self.sessions.error = Some("Connect to a host first.".into());
            return;
        };
        self.transfers.start(&self.jobs, &s.addr, &s.opts, remote, dest);
    }

    /// Uploads local files and folders (with everything in them) into the folder shown. The
    /// folders are walked on a worker thread; each file then gets its own upload card.
    pub fn upload_paths(&mut self, paths: Vec<PathBuf>) {
        self.upload_prompt = None;
        let (Some(s), Some(folder)) = (&self.sessions.current, self.current_path()) else {
            self.sessions.error = Some("Connect to a host and open a folder first.".into());
            return;
        };
        let (addr, opts, folder) = (s.addr.clone(), s.opts.clone(), folder.to_string());
        let (tx, notify) = (self.plans_tx.clone(), self.notify.clone());
        let _ = std::thread::Builder::new().name("ferry-plan-uploads".into()).spawn(move || {
            let plan = crate::client::plan_uploads(&paths, &folder, true);
            let _ = tx.send(Planned { addr, opts, plan });
            notify();
        });
    }

    /// Downloads the folders and files `remotes` into the folder `into`, in one job, every
    /// file verified.
    pub fn download_folder(&mut self, remotes: Vec<String>, into: PathBuf) {
        let Some(s) = &self.sessions.current else {
            self.sessions.error = Some("Connect to a host first.".into());
            return;
        };
        self.transfers.start_folder(&self.jobs, &s.addr, &s.opts, remotes, into);
    }

    /// Starts a download again (resuming what arrived), with the browsed connection's PIN
    /// when it is to the same host.
    pub fn restart(&mut self, row: u64) {
        let creds = self.sessions.current.as_ref().map(|s| (s.addr.as_str(), &s.opts));
        self.transfers.restart(&self.jobs, row, false, creds);
    }

    pub fn replace_existing(&mut self, row: u64) {
        let creds = self.sessions.current.as_ref().map(|s| (s.addr.as_str(), &s.opts));
        self.transfers.replace_existing(&self.jobs, row, creds);
    }

    pub fn cancel(&mut self, row: u64) {
        self.transfers.cancel(row);
    }

    pub fn keep_existing(&mut self, row: u64) {
        self.transfers.keep_existing(row);
    }

    pub fn dismiss(&mut self, row: u64) {
        self.transfers.dismiss(row);
    }

    /// Answers "delete the partial download too?".
    pub fn delete_part(&mut self, delete: bool) {
        if delete {
            self.transfers.delete_offered_part();
        } else {
            self.transfers.offer_delete = None;
        }
    }

    pub fn clear_finished(&mut self) {
        self.transfers.clear_finished();
    }

    /// Turns the Nearby list's browsing on or off.
    pub fn set_discovery(&mut self, on: bool) {
        self.nearby.set_enabled(on);
    }

    /// Closes the connection and cancels every download (when the window closes).
    pub fn shutdown(&mut self) {
        self.nearby.stop();
        self.sessions.disconnect();
        self.transfers.shutdown();
    }

    /// Handles queued events until `deadline`; true if some are left for the next frame.
    pub fn drain(&mut self, state: &mut State, deadline: Instant) -> bool {
        if state.tab == super::Tab::Client {
            self.nearby.ensure_started(&state.recent_servers);
        }
        let nearby_left = self.nearby.drain(deadline);
        while let Ok(Planned { addr, opts, plan }) = self.plans.try_recv() {
            match plan {
                Ok(plan) => {
                    for (local, remote) in plan.files {
                        self.transfers.start_upload(&self.jobs, &addr, &opts, local, remote);
                    }
                }
                Err(e) => self.sessions.error = Some(format!("Cannot upload: {e}")),
            }
        }
        loop {
            if Instant::now() >= deadline {
                return nearby_left || !self.events.is_empty();
            }
            match self.events.try_recv() {
                Ok(event) => self.handle(state, event),
                Err(_) => return nearby_left,
            }
        }
    }

    fn handle(&mut self, state: &mut State, ClientEvent { job, kind }: ClientEvent) {
        if self.transfers.owns(job) {
            // A file that arrived in the folder shown appears in it.
            let uploaded = match &kind {
                crate::client::jobs::EventKind::Uploaded { path, .. } => Some(crate::protocol::path::parent(path)),
                _ => None,
            };
            if let Some(folder) = uploaded
                && self.current_path() == Some(folder)
            {
                self.sessions.list(folder);
            }
            self.transfers.handle(job, kind);
            return;
        }
        if !self.sessions.owns(job) {
            return;
        }
        let had_session = self.sessions.current.is_some();
        match self.sessions.handle(job, kind) {
            Update::Connected { addr } => {
                state.remember_server(&addr);
                self.listing = None;
            }
            Update::Listing(reply) => {
                let same_folder = self.listing.as_ref().is_some_and(|l| l.path == reply.path);
                let mut listing = Listing::new(reply);
                if same_folder {
                    listing.selected = self.listing.take().and_then(|l| l.selected);
                } else {
                    self.filter.clear();
                    self.browser = browser::ViewState::default();
                }
                self.listing = Some(listing);
            }
            Update::None => {}
        }
        if had_session && self.sessions.current.is_none() {
            self.listing = None;
        }
    }
}

/// Draws the Client tab; what the person asks for goes to `out`. Top to bottom, as the
/// keyboard's Tab goes: the address bar, the folder, the downloads.
pub(crate) fn client_ui(
    ui: &mut Ui,
    state: &mut State,
    tab: &mut ClientTab,
    dialog_open: bool,
    out: &mut Vec<Command>,
) {
    connect::connect_ui(ui, state, tab, out);
    nearby::nearby_ui(ui, state, &tab.nearby, out);
    ui.separator();
    let downloads_height = split_ui(ui, tab);
    let browser_height = (ui.available_height() - downloads_height).max(0.0);
    let width = ui.available_width();
    ui.allocate_ui(egui::vec2(width, browser_height), |ui| {
        ui.set_min_size(egui::vec2(width, browser_height));
        browser::browser_ui(ui, state, tab, dialog_open, out);
    });
    splitter_ui(ui, tab);
    ui.allocate_ui(egui::vec2(width, ui.available_height()), |ui| {
        transfer_rows::transfers_ui(ui, &tab.transfers, out);
    });
    transfer_rows::overwrite_modal(ui, &tab.transfers, out);
    transfer_rows::delete_part_modal(ui, &tab.transfers, out);
    upload_prompt_ui(ui, tab, out);
}

/// Where no file dialog can be shown, Upload asks for the file's path.
fn upload_prompt_ui(ui: &mut Ui, tab: &mut ClientTab, out: &mut Vec<Command>) {
    let Some(typed) = &mut tab.upload_prompt else { return };
    let mut close = false;
    egui::Modal::new(egui::Id::unique("upload_prompt")).show(ui.ctx(), |ui| {
        ui.set_max_width(520.0);
        ui.heading("Upload a file");
        ui.add_space(6.0);
        let folder =
            tab.listing.as_ref().map(|l| l.path.as_str()).filter(|p| !p.is_empty()).unwrap_or("the hosted folder");
        ui.label(format!("Into {}. A folder is sent with everything in it.", crate::protocol::path::Escaped(folder)));
        let label = ui.label("File to upload");
        let field = ui
            .add(egui::TextEdit::singleline(typed).hint_text("/path/to/file").desired_width(480.0))
            .labelled_by(label.id);
        let entered = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        ui.add_space(10.0);
        ui.horizontal(|ui| {
            let ready = !typed.trim().is_empty();
            if ui.add_enabled(ready, egui::Button::new("Upload")).clicked() || (entered && ready) {
                out.push(Command::UploadPaths(vec![expand_path(typed.trim())]));
            }
            close = ui.button("Cancel").clicked() || ui.input(|i| i.key_pressed(egui::Key::Escape));
        });
    });
    if close {
        tab.upload_prompt = None;
    }
}

/// The Downloads area's height: as dragged, else half the room once there are downloads (room
/// for one whole verdict), always leaving the browser its own minimum.
fn split_ui(ui: &Ui, tab: &ClientTab) -> f32 {
    let room = ui.available_height();
    let wanted = match (tab.downloads_height, tab.transfers.rows.is_empty()) {
        (Some(h), _) => h,
        (None, true) => 70.0,
        (None, false) => (room * 0.5).clamp(200.0, 460.0),
    };
    wanted.clamp(60.0, (room - browser::MIN_HEIGHT).max(60.0))
}

/// A bar between the browser and the Downloads that can be dragged.
fn splitter_ui(ui: &mut Ui, tab: &mut ClientTab) {
    let (rect, response) = ui.allocate_exact_size(egui::vec2(ui.available_width(), 8.0), egui::Sense::DRAG);
    let response = response.on_hover_cursor(egui::CursorIcon::ResizeVertical);
    let stroke = if response.hovered() || response.dragged() {
        ui.visuals().widgets.hovered.fg_stroke
    } else {
        ui.visuals().widgets.noninteractive.bg_stroke
    };
    ui.painter().hline(rect.x_range(), rect.center().y, stroke);
    if response.dragged() {
        let now = tab.downloads_height.unwrap_or(ui.available_height());
        tab.downloads_height = Some((now - response.drag_delta().y).max(60.0));
    }
}
