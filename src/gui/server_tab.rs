//! The Server tab: host a folder, tell the other person what to type, watch clients download,
//! and keep the MD5 and fingerprint of every finished transfer.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use egui::{Align, Layout, RichText, Ui};

use super::announcing::{Announcing, announcing_ui};
use super::format::{self, RateMeter};
use super::verdict::{self, fingerprint_ui};
use super::{Command, State, expand_path};
use crate::protocol::message::Secret;
use crate::protocol::path::Escaped;
use crate::protocol::{Md5Digest, hex};
use crate::server::{ClientId, IndexProgress, Server, ServerConfig, ServerEvent, TransferId};
use crate::sink::Notify;

/// Finished transfers kept in the list.
const KEEP_FINISHED: usize = 200;
/// Lines kept in the activity list.
const KEEP_ACTIVITY: usize = 100;

/// Where hosting stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hosting {
    Idle,
    Starting,
    Listening { addr: SocketAddr, root: PathBuf, identity: Option<crate::transport::Fingerprint> },
    Stopping,
}

struct ActiveTransfer {
    client: ClientId,
    /// An upload from the client (else a download by it).
    received: bool,
    path: String,
    size: u64,
    done: u64,
    bytes_per_sec: f64,
    meter: RateMeter,
}

struct FinishedTransfer {
    when: String,
    client: ClientId,
    peer: SocketAddr,
    /// What the client said after the data (the protocol's `verdict`): `None` until it does,
    /// then whether it verified and saved the file.
    confirmed: Option<bool>,
    path: String,
    size: u64,
    /// An upload from the client (else a download by it).
    received: bool,
    /// The digest sent to the client (for an upload: computed here over what arrived), or why
    /// the transfer failed.
    result: Result<(Md5Digest, Duration), String>,
    /// For an upload: the digest the client sent as the trailer. The file was kept only if it
    /// equals the one computed here.
    client_md5: Option<Md5Digest>,
}

/// The Server tab's runtime state: the running server and what it reported.
pub(crate) struct ServerTab {
    notify: Notify,
    server: Option<Server>,
    events: Option<Receiver<ServerEvent>>,
    pub(crate) hosting: Hosting,
    pub(crate) error: Option<String>,
    pub(crate) port_text: String,
    /// The PIN clients must give when `State::require_pin` is on: fresh each run, never saved,
    /// never in `Debug` output.
    pub(crate) pin: Secret,
    /// The PIN the running server asks for.
    active_pin: Option<Secret>,
    /// The thread stopping the server (and waiting for its threads), so the window does not.
    stopper: Option<std::thread::JoinHandle<()>>,
    /// Stop hosting was asked for while transfers run: waiting for "stop anyway?".
    pub(crate) confirm_stop: bool,
    /// Each connection's address and its client's instance id.
    clients: BTreeMap<ClientId, (SocketAddr, Option<String>)>,
    active: BTreeMap<TransferId, ActiveTransfer>,
    finished: VecDeque<FinishedTransfer>,
    activity: VecDeque<String>,
    lan: Option<Vec<IpAddr>>,
    lan_rx: Option<Receiver<Vec<IpAddr>>>,
    /// The announcement on the local network while hosting.
    pub(crate) announcing: Announcing,
    /// The "Allow uploads" switch: off at every start unless the person asked to remember it.
    pub(crate) allow_upload: bool,
    /// Whether the running server takes uploads, and where.
    hosting_uploads: bool,
    hosting_upload_folder: Option<String>,
    /// How the background hashing into the digest index goes (none reported yet: `None`).
    pub(crate) indexing: Option<IndexProgress>,
    /// Why the digest index could not be used or kept, if so.
    index_problem: Option<String>,
}

impl ServerTab {
    pub fn new(notify: Notify, state: &State) -> Self {
        ServerTab {
            notify,
            server: None,
            events: None,
            hosting: Hosting::Idle,
            error: None,
            port_text: state.port.to_string(),
            pin: Secret(crate::server::random_pin()),
            active_pin: None,
            stopper: None,
            confirm_stop: false,
            clients: BTreeMap::new(),
            active: BTreeMap::new(),
            finished: VecDeque::new(),
            activity: VecDeque::new(),
            lan: None,
            lan_rx: None,
            announcing: Announcing::new(),
            allow_upload: state.remember_uploads && state.allow_upload,
            hosting_uploads: false,
            hosting_upload_folder: None,
            indexing: None,
            index_problem: None,
        }
    }

    /// The address the server listens on, once it does.
    pub fn listening_addr(&self) -> Option<SocketAddr> {
        match &self.hosting {
            Hosting::Listening { addr, .. } => Some(*addr),
            _ => None,
        }
    }

    /// Transfers in progress.
    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    /// Uploads being received, among the transfers in progress.
    pub fn receiving_count(&self) -> usize {
        self.active.values().filter(|t| t.received).count()
    }

    pub fn start(&mut self, state: &mut State) {
        if self.server.is_some() || self.hosting != Hosting::Idle {
            return;
        }
        self.error = None;
        let folder = state.host_folder.trim();
        if folder.is_empty() {
            self.error = Some("Choose a folder to host first (Choose folder…, or type its path).".into());
            return;
        }
        let port: u16 = match self.port_text.trim().parse() {
            Ok(p) => p,
            Err(_) => {
                self.error = Some(format!("\"{}\" is not a port number (0 to 65535).", self.port_text.trim()));
                return;
            }
        };
        state.port = port;
        let host = match state.bind_host.trim() {
            "" => "::",
            h => h,
        };
        let bind = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut config = ServerConfig::new(expand_path(folder), bind);
        if state.require_pin {
            let pin = self.pin.0.trim();
            if pin.is_empty() {
                self.error = Some("Type a PIN, or untick \"Require a PIN\".".into());
                return;
            }
            config.pin = Some(pin.into());
        }
        config.allow_upload = self.allow_upload;
        if self.allow_upload {
            let folder = state.upload_folder.trim().trim_matches('/');
            if !folder.is_empty() {
                if let Err(e) = crate::protocol::path::split_request_path(folder) {
                    self.error =
                        Some(format!("\"{}\" cannot be a folder inside the hosted one: {e}.", Escaped(folder)));
                    return;
                }
                config.upload_folder = Some(folder.to_string());
            }
        }
        self.hosting_uploads = self.allow_upload;
        self.hosting_upload_folder = config.upload_folder.clone();
        state.allow_upload = state.remember_uploads && self.allow_upload;
        self.active_pin = config.pin.clone();
        let (server, events) = Server::spawn(config, Some(self.notify.clone()));
        self.server = Some(server);
        self.events = Some(events);
        self.hosting = Hosting::Starting;
        self.clients.clear();
        self.active.clear();
        self.indexing = None;
        self.index_problem = None;
    }

    /// Stops hosting on a worker thread; `Stopped` arrives when every server thread has ended.
    /// With transfers running, asks first unless `confirmed`.
    pub fn stop(&mut self, confirmed: bool) {
        if !confirmed && !self.active.is_empty() {
            self.confirm_stop = true;
            return;
        }
        self.confirm_stop = false;
        let Some(server) = self.server.take() else { return };
        self.hosting = Hosting::Stopping;
        let notify = self.notify.clone();
        let announcer = self.announcing.take();
        let stopper = std::thread::Builder::new().name("ferry-stop".into()).spawn(move || {
            drop(announcer); // withdrawn first: browsers drop the host at once
            server.stop_and_join();
            notify();
        });
        self.stopper = stopper.ok();
    }

    /// Stops hosting and waits for the server's threads (when the window closes).
    pub fn shutdown(&mut self) {
        drop(self.announcing.take());
        if let Some(server) = self.server.take() {
            server.stop_and_join();
        }
        if let Some(stopper) = self.stopper.take() {
            let _ = stopper.join();
        }
    }

    /// Handles queued server events until `deadline`; true if some are left for the next frame.
    pub fn drain(&mut self, deadline: Instant) -> bool {
        self.announcing.drain();
        if let Some(rx) = &self.lan_rx
            && let Ok(lan) = rx.try_recv()
        {
            self.lan = Some(lan);
            self.lan_rx = None;
        }
        loop {
            let Some(rx) = &self.events else { return false };
            if Instant::now() >= deadline {
                return !rx.is_empty();
            }
            match rx.try_recv() {
                Ok(event) => self.handle(event),
                Err(_) => return false,
            }
        }
    }

    fn note(&mut self, line: String) {
        self.activity.push_front(format!("{}  {line}", format::clock_now()));
        self.activity.truncate(KEEP_ACTIVITY);
    }

    fn handle(&mut self, event: ServerEvent) {
        match event {
            ServerEvent::Listening { addr, root, identity } => {
                self.announcing.start(addr, &root, self.active_pin.is_some(), identity.as_ref(), self.notify.clone());
                self.hosting = Hosting::Listening { addr, root, identity };
                self.lan = None;
                if addr.ip().is_unspecified() {
                    // Listing interfaces talks to the kernel over a socket: not on the UI thread.
                    let (tx, rx) = crossbeam_channel::bounded(1);
                    let notify = self.notify.clone();
                    let _ = std::thread::Builder::new().name("ferry-lan".into()).spawn(move || {
                        let _ = tx.send(crate::net::reachable_addresses(addr));
                        notify();
                    });
                    self.lan_rx = Some(rx);
                }
            }
            ServerEvent::StartFailed { error } => self.error = Some(start_failed_text(&error)),
            ServerEvent::ClientConnected { client, peer, instance } => {
                self.clients.insert(client, (peer, instance));
                self.note(format!("{peer} connected"));
            }
            ServerEvent::ClientRejected { peer, reason } => {
                self.note(format!("turned away {peer}: {}", Escaped(&reason)));
            }
            ServerEvent::ClientDisconnected { client, peer, reason } => {
                self.clients.remove(&client);
                self.active.retain(|_, t| t.client != client);
                match reason {
                    Some(r) => self
                        .note(format!("{peer} disconnected: {}", format::without_os_error(&Escaped(&r).to_string()))),
                    None => self.note(format!("{peer} disconnected")),
                }
            }
            ServerEvent::TransferStarted { client, transfer, path, size, offset, .. } => {
                self.begin(transfer, client, path, size, offset, false);
            }
            ServerEvent::UploadStarted { client, transfer, path, size, offset, .. } => {
                self.begin(transfer, client, path, size, offset, true);
            }
            ServerEvent::UploadFinished { transfer, expected, actual, elapsed, .. } => {
                self.finish(transfer, Ok((actual, elapsed)), Some(expected));
            }
            ServerEvent::TransferProgress { transfer, done, total } => {
                if let Some(t) = self.active.get_mut(&transfer) {
                    t.done = done;
                    t.size = total;
                    t.bytes_per_sec = t.meter.update(Instant::now(), done);
                }
            }
            ServerEvent::TransferFinished { transfer, md5, sent: _, elapsed } => {
                self.finish(transfer, Ok((md5, elapsed)), None);
            }
            ServerEvent::TransferFailed { transfer, error } => {
                let why = failure_text(&error, self.hosting == Hosting::Stopping);
                self.finish(transfer, Err(why), None);
            }
            ServerEvent::TransferConfirmed { client, path, ok, .. } => {
                // The verdict follows its transfer on the same connection: the newest one of
                // that file to that client not confirmed yet.
                if let Some(t) = self
                    .finished
                    .iter_mut()
                    .find(|t| t.client == client && t.path == path && t.confirmed.is_none() && t.result.is_ok())
                {
                    t.confirmed = Some(ok);
                }
            }
            ServerEvent::Indexing(progress) => self.indexing = Some(progress),
            ServerEvent::IndexProblem { error } => {
                self.note(Escaped(&error).to_string());
                self.index_problem = Some(error);
            }
            ServerEvent::RequestRefused { peer, request, error, .. } => {
                self.note(format!("{peer}: {} refused: {}", Escaped(&request), Escaped(&error)));
            }
            ServerEvent::EventsDropped { count } => {
                self.note(format!("{count} more refusals, connections and transfers (not listed one by one)"));
            }
            ServerEvent::Stopped => {
                drop(self.announcing.take()); // hosting failed or stopped: nothing to announce
                self.server = None; // its threads have finished: dropping it joins at once
                if let Some(stopper) = self.stopper.take() {
                    let _ = stopper.join(); // it has sent this event: it ends at once
                }
                self.events = None;
                self.hosting = Hosting::Idle;
                self.clients.clear();
                self.active.clear();
                self.lan = None;
            }
        }
    }

    fn begin(&mut self, transfer: TransferId, client: ClientId, path: String, size: u64, offset: u64, received: bool) {
        let mut meter = RateMeter::default();
        meter.update(Instant::now(), offset);
        let t = ActiveTransfer { client, received, path, size, done: offset, bytes_per_sec: 0.0, meter };
        self.active.insert(transfer, t);
    }

    /// Moves a transfer to the finished list; `client_md5` is an upload's trailer.
    fn finish(
        &mut self,
        transfer: TransferId,
        result: Result<(Md5Digest, Duration), String>,
        client_md5: Option<Md5Digest>,
    ) {
        let Some(t) = self.active.remove(&transfer) else { return };
        let peer = self.clients.get(&t.client).map(|c| c.0).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        self.finished.push_front(FinishedTransfer {
            when: format::clock_now(),
            client: t.client,
            peer,
            confirmed: None,
            path: t.path,
            size: t.size,
            received: t.received,
            result,
            client_md5,
        });
        self.finished.truncate(KEEP_FINISHED);
    }
}

/// Why hosting could not start, said once: "cannot host X: X is not a folder" becomes
/// "Cannot host X: it is not a folder"; no OS error numbers.
fn start_failed_text(error: &str) -> String {
    let mut text = format::without_os_error(error);
    if let Some(rest) = text.strip_prefix("cannot host ")
        && let Some((what, why)) = rest.split_once(": ")
        && let Some(tail) = why.strip_prefix(what)
    {
        text = format!("cannot host {what}: it{tail}");
    }
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// Why a transfer ended early, in words about who did what: no OS error text.
fn failure_text(error: &str, stopping_here: bool) -> String {
    if stopping_here {
        "stopped here (hosting was stopped)".into()
    } else if error.starts_with("the client went away") {
        "stopped by the client (cancelled, or its connection dropped)".into()
    } else {
        super::format::without_os_error(error)
    }
}

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
        super::error_banner(ui, &error, || tab.error = None);
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
            super::identity::identity_ui(ui, fp);
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
        super::copy_button::copy_button(ui, addr, "Copy", "Copy this address to the clipboard", &label);
    });
}

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

fn clients_ui(ui: &mut Ui, tab: &ServerTab) {
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

fn finished_ui(ui: &mut Ui, tab: &mut ServerTab) {
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
                                super::copy_button::copy_button(ui, (&t.when, &t.path), "Copy MD5", hover, &hex(md5));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_failure_names_the_folder_once_and_no_os_error() {
        assert_eq!(
            start_failed_text("cannot host /srv/x: /srv/x is not a folder"),
            "Cannot host /srv/x: it is not a folder"
        );
        assert_eq!(
            start_failed_text("cannot host /gone: No such file or directory (os error 2)"),
            "Cannot host /gone: No such file or directory"
        );
        assert_eq!(
            start_failed_text("cannot listen on 1.2.3.4:5: the port is in use"),
            "Cannot listen on 1.2.3.4:5: the port is in use"
        );
    }

    #[test]
    fn received_files_keep_both_digests_and_an_unknown_upload_changes_nothing() {
        let mut tab = ServerTab::new(std::sync::Arc::new(|| {}), &State::default());
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        tab.handle(ServerEvent::ClientConnected { client: 1, peer, instance: None });
        let started = |transfer, path: &str| ServerEvent::UploadStarted {
            client: 1,
            transfer,
            peer,
            path: path.into(),
            size: 3,
            offset: 0,
        };
        let finished = |transfer, expected, actual| ServerEvent::UploadFinished {
            transfer,
            expected,
            actual,
            received: 3,
            elapsed: Duration::from_millis(5),
        };
        let (good, bad) = ([1u8; 16], [2u8; 16]);
        tab.handle(started(1, "a.bin"));
        tab.handle(finished(1, good, good));
        tab.handle(started(2, "b.bin"));
        tab.handle(finished(2, good, bad));
        // The end of an upload whose start was not reported (the front fell behind).
        tab.handle(finished(3, bad, bad));
        let rows: Vec<_> = tab.finished.iter().map(|t| (t.path.as_str(), t.received, t.client_md5)).collect();
        assert_eq!(rows, [("b.bin", true, Some(good)), ("a.bin", true, Some(good))]);
        assert!(matches!(tab.finished[0].result, Ok((d, _)) if d == bad), "the digest computed here");
    }

    #[test]
    fn the_host_says_who_stopped_a_transfer() {
        assert_eq!(
            failure_text("the client went away: Broken pipe (os error 32)", false),
            "stopped by the client (cancelled, or its connection dropped)"
        );
        assert_eq!(
            failure_text("the client went away: Broken pipe (os error 32)", true),
            "stopped here (hosting was stopped)"
        );
        assert_eq!(
            failure_text("cannot read x: Input/output error (os error 5)", false),
            "cannot read x: Input/output error"
        );
    }
}
