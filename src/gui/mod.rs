//! The desktop window: a Server tab to host a folder and a Client tab to browse a host and
//! download from it, each download ending in a visual MD5 verdict.
//!
//! The UI thread never blocks on the network or the disk: connecting, listing, downloading,
//! hosting, stopping, file dialogs and even listing the network interfaces happen on worker
//! threads, which report events on channels that [`FerryApp`] drains each frame (for a few
//! milliseconds at most). What the person asks for while drawing is collected as [`Command`]s
//! and applied after the pass. Workers wake the window through the engine's `notify` callback,
//! which asks for a repaint at most every ~33 ms. The disk is touched on this thread only to read
//! the user's folder settings once before the first frame, to check that a download's folder
//! exists before starting it, to create that folder when the person asks, and to tell a folder
//! dropped on the Server tab from a file (dropped files and folders to upload are looked at
//! on a worker thread). Closing the window waits for the
//! server's threads, which end without waiting on the network.
//!
//! Settings (hosted folder, bind address and port, recent servers, download folder) persist
//! between runs through eframe's storage.

mod announcing;
mod client;
mod copy_button;
mod demo;
mod dialogs;
pub use crate::format;
pub mod identity;
mod server;
pub mod theme;
pub mod verdict;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::{RichText, Ui};
use serde::{Deserialize, Serialize};

use self::client::ClientTab;
use self::dialogs::{Answer, Dialogs, Purpose};
use self::server::ServerTab;
use crate::client::DEFAULT_PORT;
use crate::sink::Notify;

/// The window's icon, drawn for ferry (`assets/ferry.svg`, rendered to 256×256).
pub const ICON_PNG: &[u8] = include_bytes!("../../assets/ferry.png");

/// Most recent servers remembered.
const RECENT_SERVERS: usize = 8;
/// Longest the UI thread spends handling engine events in one frame.
const DRAIN_BUDGET: Duration = Duration::from_millis(4);
/// Shortest time between repaints asked for by the workers (~30 a second).
const REPAINT_EVERY: Duration = Duration::from_millis(33);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Tab {
    #[default]
    Server,
    Client,
}

/// What is saved between runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub tab: Tab,
    /// The folder to host, as typed or picked.
    pub host_folder: String,
    /// The address to listen on, without the port (`::`: every interface, IPv6 and IPv4).
    pub bind_host: String,
    pub port: u16,
    /// Whether hosting asks clients for a PIN (the PIN itself is never saved).
    pub require_pin: bool,
    /// The address in the Client tab's field.
    pub server_addr: String,
    /// Servers connected to, most recent first.
    pub recent_servers: Vec<String>,
    /// Where downloads are saved by default.
    pub download_dir: String,
    /// Whether hosting takes uploads: saved only while `remember_uploads` is on (otherwise
    /// every run starts with uploads off).
    pub allow_upload: bool,
    /// Keep the "Allow uploads" choice between runs.
    pub remember_uploads: bool,
    /// Where uploads may go: a folder inside the hosted one (`inbox`, `from/bob`); empty for
    /// anywhere in it.
    pub upload_folder: String,
}

impl Default for State {
    fn default() -> Self {
        State {
            tab: Tab::Server,
            host_folder: String::new(),
            bind_host: "::".into(),
            port: DEFAULT_PORT,
            require_pin: false,
            server_addr: String::new(),
            recent_servers: Vec::new(),
            download_dir: String::new(),
            allow_upload: false,
            remember_uploads: false,
            upload_folder: String::new(),
        }
    }
}

impl State {
    /// Puts `addr` first in the recent servers.
    pub fn remember_server(&mut self, addr: &str) {
        let addr = addr.trim();
        self.recent_servers.retain(|a| a != addr);
        self.recent_servers.insert(0, addr.to_string());
        self.recent_servers.truncate(RECENT_SERVERS);
    }

    /// Removes `addr` from the recent servers.
    pub fn forget_server(&mut self, addr: &str) {
        self.recent_servers.retain(|a| a != addr);
    }
}

/// What the person asked for during a frame; applied after drawing.
#[derive(Debug, Clone)]
pub(crate) enum Command {
    PickHostFolder,
    StartHosting,
    StopHosting {
        /// The person already said yes to stopping running transfers.
        confirmed: bool,
    },
    Connect,
    /// Connect again, accepting the changed identity the window warned about.
    AcceptNewIdentity,
    Disconnect,
    List(String),
    /// Download `remote`; `typed` is the save-as field (the dialog starts from it).
    Download {
        remote: String,
        typed: String,
    },
    /// Download the folder `remote` (recursively) into the folder typed in the save-as field.
    DownloadFolder {
        remote: String,
        typed: String,
    },
    /// Download several files and folders in one job into the folder typed.
    DownloadMany {
        remotes: Vec<String>,
        typed: String,
    },
    Cancel(u64),
    Restart(u64),
    Dismiss(u64),
    ClearFinished,
    ReplaceExisting(u64),
    KeepExisting(u64),
    CreateFolderAndDownload,
    DeletePart,
    KeepPart,
    /// Host this folder (dropped on the Server tab).
    HostDropped(PathBuf),
    /// Choose files to upload into the folder shown (a dialog, or the typed-path prompt).
    Upload,
    /// Upload these local files and folders into the folder shown.
    UploadPaths(Vec<PathBuf>),
}

/// The app: saved [`State`] plus the runtime handles of each tab.
pub struct FerryApp {
    state: State,
    ctx: egui::Context,
    server: ServerTab,
    client: ClientTab,
    dialogs: Dialogs,
    /// A note about dialogs (none available here…), shown until dismissed.
    notice: Option<String>,
    logo: Option<egui::TextureHandle>,
    persist: bool,
    demo: Option<demo::Demo>,
    /// A download waiting for "create its folder?", and why creating it failed.
    missing_folder: Option<(String, PathBuf)>,
    folder_error: Option<String>,
}

impl FerryApp {
    /// An app with `state`, drawing into `ctx`. Native dialogs are on; tests turn them off with
    /// [`FerryApp::with_native_dialogs`]. Nothing is saved unless eframe calls `save`.
    pub fn new(mut state: State, ctx: &egui::Context) -> Self {
        // A remembered folder that has gone since is not offered again (checked once, before
        // the first frame).
        if state.download_dir.trim().is_empty() || !expand_path(&state.download_dir).is_dir() {
            state.download_dir = default_download_dir().display().to_string();
        }
        theme::install(ctx);
        let notify: Notify = {
            let ctx = ctx.clone();
            Arc::new(move || ctx.request_repaint_after(REPAINT_EVERY))
        };
        FerryApp {
            ctx: ctx.clone(),
            server: ServerTab::new(notify.clone(), &state),
            client: ClientTab::new(notify),
            dialogs: Dialogs::new(ctx, true),
            notice: None,
            logo: None,
            persist: true,
            demo: None,
            missing_folder: None,
            folder_error: None,
            state,
        }
    }

    /// Turns native dialogs on or off; off, the typed-path fields are used directly.
    pub fn with_native_dialogs(mut self, native: bool) -> Self {
        self.dialogs.set_native(native);
        self
    }

    /// Turns discovery (announcing while hosting, the Nearby list) on or off; it is on unless
    /// `FERRY_NO_DISCOVERY` is set. Tests outside a network namespace turn it off.
    pub fn with_discovery(mut self, on: bool) -> Self {
        let on = on && !crate::discovery::disabled();
        self.server.announcing.enabled = on;
        self.client.set_discovery(on);
        self
    }

    /// The app as eframe starts it: saved settings restored, `FERRY_DEMO` applied.
    pub fn from_creation(cc: &eframe::CreationContext<'_>) -> Self {
        let state = cc.storage.and_then(|s| eframe::get_value::<State>(s, eframe::APP_KEY)).unwrap_or_default();
        let mut app = FerryApp::new(state, &cc.egui_ctx);
        if let Ok(spec) = std::env::var("FERRY_DEMO") {
            app.start_demo(&spec);
        }
        app
    }

    /// The settings that are saved between runs.
    pub fn settings(&self) -> &State {
        &self.state
    }

    /// Where the Server tab is listening, once it is.
    pub fn hosting_addr(&self) -> Option<SocketAddr> {
        self.server.listening_addr()
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::PickHostFolder => {
                if self.dialogs.native() {
                    let start = Some(expand_path(&self.state.host_folder)).filter(|p| p.is_absolute());
                    self.dialogs.open(Purpose::HostFolder, start, None);
                } else {
                    self.notice =
                        Some("No folder picker is available here: type the folder's path in the field.".into());
                }
            }
            Command::StartHosting => self.server.start(&mut self.state),
            Command::StopHosting { confirmed } => self.server.stop(confirmed),
            Command::Connect => self.client.connect(&self.state),
            Command::AcceptNewIdentity => self.client.accept_new_identity(&self.state),
            Command::Disconnect => self.client.disconnect(),
            Command::List(path) => self.client.list(&path),
            Command::Download { remote, typed } => {
                let dest = self.resolve_dest(&typed);
                if self.dialogs.native() {
                    let dir = dest.parent().map(Path::to_path_buf);
                    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned());
                    self.dialogs.open(Purpose::SaveAs { remote, typed: dest }, dir, name);
                } else {
                    self.start_download(remote, dest);
                }
            }
            Command::DownloadFolder { remote, typed } => {
                let into = self.resolve_dest(&typed);
                self.client.download_folder(vec![remote], into);
            }
            Command::DownloadMany { remotes, typed } => {
                let into = self.resolve_dest(&typed);
                self.client.download_folder(remotes, into);
            }
            Command::Cancel(row) => self.client.cancel(row),
            Command::Restart(row) => self.client.restart(row),
            Command::Dismiss(row) => self.client.dismiss(row),
            Command::ClearFinished => self.client.clear_finished(),
            Command::ReplaceExisting(row) => self.client.replace_existing(row),
            Command::KeepExisting(row) => self.client.keep_existing(row),
            Command::CreateFolderAndDownload => self.create_folder_and_download(),
            Command::DeletePart => self.client.delete_part(true),
            Command::KeepPart => self.client.delete_part(false),
            Command::HostDropped(dir) => {
                if self.server.hosting == server::Hosting::Idle {
                    self.state.host_folder = dir.display().to_string();
                    self.server.start(&mut self.state);
                } else {
                    self.server.error = Some("Stop hosting first to host another folder.".into());
                }
            }
            Command::Upload => {
                if self.dialogs.native() {
                    self.dialogs.open(Purpose::Upload, None, None);
                } else {
                    self.client.upload_prompt = Some(String::new());
                }
            }
            Command::UploadPaths(paths) => self.client.upload_paths(paths),
        }
    }

    /// Starts a download; its folder becomes the default for the next one (and is saved). A
    /// folder that does not exist is not used (nor remembered): the person is asked whether to
    /// create it.
    fn start_download(&mut self, remote: String, dest: PathBuf) {
        let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).map(Path::to_path_buf);
        if let Some(dir) = &dir {
            if !dir.is_dir() {
                self.missing_folder = Some((remote, dest));
                return;
            }
            self.state.download_dir = dir.display().to_string();
        }
        self.client.download(remote, dest);
    }

    /// "The folder does not exist: create it?"
    fn missing_folder_ui(&mut self, ui: &mut Ui, commands: &mut Vec<Command>) {
        let Some((_, dest)) = &self.missing_folder else { return };
        let dir = dest.parent().unwrap_or(Path::new("")).display().to_string();
        let mut cancel = false;
        egui::Modal::new(egui::Id::unique("missing_folder")).show(ui.ctx(), |ui| {
            ui.set_max_width(480.0);
            ui.heading("That folder does not exist");
            ui.add_space(6.0);
            ui.label(format!("{dir} does not exist yet."));
            if let Some(error) = &self.folder_error {
                ui.colored_label(verdict::bad_text(ui), error);
            }
            ui.add_space(10.0);
            ui.horizontal(|ui| {
                if ui.button("Create the folder and download").clicked() {
                    commands.push(Command::CreateFolderAndDownload);
                }
                cancel = ui.button("Cancel").clicked() || ui.input(|i| i.key_pressed(egui::Key::Escape));
            });
        });
        if cancel {
            self.missing_folder = None;
            self.folder_error = None;
        }
    }

    fn create_folder_and_download(&mut self) {
        let Some((remote, dest)) = self.missing_folder.take() else { return };
        let dir = dest.parent().map(Path::to_path_buf).unwrap_or_default();
        match std::fs::create_dir_all(&dir) {
            Ok(()) => {
                self.folder_error = None;
                self.start_download(remote, dest);
            }
            Err(e) => {
                self.folder_error = Some(format!("Cannot create it: {}.", format::io_words(&e)));
                self.missing_folder = Some((remote, dest));
            }
        }
    }

    /// The save-as field as a path: `~` expanded, a bare name put in the download folder.
    fn resolve_dest(&self, typed: &str) -> PathBuf {
        let p = expand_path(typed.trim());
        if p.is_absolute() { p } else { expand_path(&self.state.download_dir).join(p) }
    }

    fn dialog_answered(&mut self, purpose: Purpose, answer: Answer) {
        match (purpose, answer) {
            (Purpose::HostFolder, Answer::Chosen(dir)) => {
                self.state.host_folder = dir.display().to_string();
                self.server.start(&mut self.state);
            }
            (Purpose::HostFolder, Answer::Unavailable) => {
                self.notice = Some("No folder picker is available here: type the folder's path in the field.".into());
            }
            (Purpose::SaveAs { remote, .. }, Answer::Chosen(dest)) => {
                self.client.save_as = dest.display().to_string();
                self.start_download(remote, dest);
            }
            (Purpose::Upload, Answer::ChosenMany(paths)) => self.client.upload_paths(paths),
            (Purpose::Upload, Answer::Chosen(path)) => self.client.upload_paths(vec![path]),
            // Only an upload's dialog picks several.
            (Purpose::HostFolder | Purpose::SaveAs { .. }, Answer::ChosenMany(_)) => {}
            (Purpose::Upload, Answer::Unavailable) => self.client.upload_prompt = Some(String::new()),
            (Purpose::SaveAs { remote, typed }, Answer::Unavailable) => {
                self.notice =
                    Some("No file dialog is available here: downloads go to the path in the Save as field.".into());
                self.start_download(remote, typed);
            }
            (_, Answer::Dismissed) => {}
        }
    }

    /// A note (no dialogs here…) floats at the bottom until dismissed: it pushes nothing down.
    fn notice_ui(&mut self, ui: &mut Ui) {
        let Some(notice) = self.notice.clone() else { return };
        egui::Area::new(egui::Id::unique("notice"))
            .anchor(egui::Align2::CENTER_BOTTOM, egui::vec2(0.0, -12.0))
            .order(egui::Order::Foreground)
            .show(ui.ctx(), |ui| {
                egui::Frame::popup(ui.style()).inner_margin(10.0).show(ui, |ui| {
                    ui.set_max_width(560.0);
                    ui.horizontal(|ui| {
                        ui.label(notice);
                        if ui.button("OK").clicked() {
                            self.notice = None;
                        }
                    });
                });
            });
    }

    fn top_bar_ui(&mut self, ui: &mut Ui) {
        let logo = self.logo.get_or_insert_with(|| {
            let image = eframe::icon_data::from_png_bytes(ICON_PNG).expect("the embedded icon is a valid PNG");
            let color =
                egui::ColorImage::from_rgba_unmultiplied([image.width as usize, image.height as usize], &image.rgba);
            ui.ctx().load_texture("ferry-logo", color, egui::TextureOptions::LINEAR)
        });
        ui.horizontal(|ui| {
            ui.add(egui::Image::new((logo.id(), egui::vec2(28.0, 28.0))));
            ui.label(RichText::new("ferry").size(22.0).strong());
            ui.add_space(16.0);
            let tabs = [(Tab::Server, "Server"), (Tab::Client, "Client")];
            for (tab, label) in tabs {
                let b = egui::Button::selectable(self.state.tab == tab, RichText::new(label).size(16.0))
                    .min_size(egui::vec2(90.0, 28.0));
                if ui.add(b).clicked() {
                    self.state.tab = tab;
                }
            }
            ui.add_space(8.0);
            let mut status = Vec::new();
            if let Some(addr) = self.server.listening_addr() {
                status.push(format!("hosting at {addr}"));
            }
            let receiving = self.server.receiving_count();
            let sending = self.server.active_count() - receiving;
            if sending > 0 {
                status.push(format!("sending {sending}"));
            }
            if receiving > 0 {
                status.push(format!("receiving {receiving}"));
            }
            let (downloading, uploading) = self.client.running_counts();
            if downloading > 0 {
                status.push(format!("downloading {downloading}"));
            }
            if uploading > 0 {
                status.push(format!("uploading {uploading}"));
            }
            // The theme buttons sit at the right, added left to right so that Tab goes through
            // them in the order they are read.
            use egui::ThemePreference as T;
            let choices = [(T::System, "System"), (T::Light, "Light"), (T::Dark, "Dark")];
            let padding = ui.spacing().button_padding.x * 2.0 + ui.spacing().item_spacing.x;
            let themes_w = ui.fonts_mut(|f| {
                choices
                    .iter()
                    .map(|(_, l)| {
                        f.layout_no_wrap(
                            l.to_string(),
                            egui::TextStyle::Button.resolve(ui.style()),
                            egui::Color32::WHITE,
                        )
                        .size()
                        .x + padding
                    })
                    .sum::<f32>()
            }) + 60.0;
            let status_w = (ui.available_width() - themes_w).max(0.0);
            ui.allocate_ui_with_layout(
                egui::vec2(status_w, ui.spacing().interact_size.y),
                egui::Layout::left_to_right(egui::Align::Center),
                |ui| {
                    ui.set_min_width(status_w);
                    if !status.is_empty() {
                        ui.add(egui::Label::new(RichText::new(status.join(" · ")).weak()).truncate());
                    }
                },
            );
            let mut theme = ui.options(|o| o.theme_preference);
            let before = theme;
            ui.weak("Theme");
            for (value, label) in choices {
                ui.selectable_value(&mut theme, value, label);
            }
            if theme != before {
                ui.ctx().set_theme(theme);
            }
        });
    }
}

impl eframe::App for FerryApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        let deadline = Instant::now() + DRAIN_BUDGET;
        let mut more = self.server.drain(deadline);
        more |= self.client.drain(&mut self.state, deadline);
        if more {
            ctx.request_repaint();
        }
        while let Some((purpose, answer)) = self.dialogs.poll() {
            self.dialog_answered(purpose, answer);
        }
        self.demo_step();
    }

    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        let mut commands = Vec::new();
        egui::Panel::top("top_bar").show(ui, |ui| {
            ui.add_space(4.0);
            self.top_bar_ui(ui);
            ui.add_space(2.0);
        });
        self.notice_ui(ui);
        let dialog_open = self.dialogs.busy();
        egui::CentralPanel::default().show(ui, |ui| match self.state.tab {
            Tab::Server => {
                egui::ScrollArea::vertical().id_salt("server_tab").auto_shrink(false).show(ui, |ui| {
                    server::server_ui(ui, &mut self.state, &mut self.server, dialog_open, &mut commands)
                });
            }
            Tab::Client => client::client_ui(ui, &mut self.state, &mut self.client, dialog_open, &mut commands),
        });
        self.missing_folder_ui(ui, &mut commands);
        for command in commands {
            self.apply(command);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if self.persist {
            eframe::set_value(storage, eframe::APP_KEY, &self.state);
        }
    }

    fn persist_egui_memory(&self) -> bool {
        self.persist
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.client.shutdown();
        self.server.shutdown();
    }
}

/// A red box with an error message and a button to dismiss it.
pub(crate) fn error_banner(ui: &mut Ui, message: &str, dismiss: impl FnOnce()) {
    let color = verdict::bad_text(ui);
    let mut dismissed = false;
    egui::Frame::new()
        .stroke(egui::Stroke::new(1.5, color))
        .corner_radius(4.0)
        .inner_margin(8.0)
        .outer_margin(egui::Margin::symmetric(0, 4))
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                verdict::mark_ui(ui, false, 18.0);
                ui.add(egui::Label::new(RichText::new(message).color(color)).wrap());
                if ui.small_button("Dismiss").clicked() {
                    dismissed = true;
                }
            });
        });
    if dismissed {
        dismiss();
    }
}

/// A typed path with a leading `~` expanded to the home folder (no file system access).
pub fn expand_path(typed: &str) -> PathBuf {
    let typed = typed.trim();
    match (typed.strip_prefix('~'), home_dir()) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => home.join(rest.trim_start_matches('/')),
        _ => PathBuf::from(typed),
    }
}

fn home_dir() -> Option<PathBuf> {
    dirs::home_dir()
}

/// The user's Downloads folder (on Linux the one named in `~/.config/user-dirs.dirs`), else
/// `~/Downloads` if it exists, else the home folder. Read once at start-up, before the first
/// frame.
pub fn default_download_dir() -> PathBuf {
    let home = dirs::home_dir();
    dirs::download_dir()
        .or_else(|| home.as_ref().map(|h| h.join("Downloads")).filter(|d| d.is_dir()))
        .or(home)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Opens the window; returns the process exit code.
pub fn run() -> i32 {
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("ferry")
        .with_app_id("ferry")
        .with_inner_size([1040.0, 760.0])
        .with_min_inner_size([720.0, 520.0]);
    if let Ok(icon) = eframe::icon_data::from_png_bytes(ICON_PNG) {
        viewport = viewport.with_icon(icon);
    }
    let options = eframe::NativeOptions { viewport, renderer: eframe::Renderer::Glow, ..Default::default() };
    match eframe::run_native("ferry", options, Box::new(|cc| Ok(Box::new(FerryApp::from_creation(cc))))) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ferry: cannot open the window: {e}");
            eprintln!("ferry: without a display, use `ferry serve`, `ferry ls` and `ferry get` (see `ferry --help`)");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_servers_are_most_recent_first_without_duplicates() {
        let mut s = State::default();
        for a in ["a", "b", "a", "c"] {
            s.remember_server(a);
        }
        assert_eq!(s.recent_servers, ["c", "a", "b"]);
        for i in 0..20 {
            s.remember_server(&i.to_string());
        }
        assert_eq!(s.recent_servers.len(), RECENT_SERVERS);
    }

    #[test]
    fn saved_state_from_an_older_version_fills_in_defaults() {
        let s: State = serde_json::from_str(r#"{"host_folder":"/srv"}"#).unwrap();
        assert_eq!(s.host_folder, "/srv");
        assert_eq!(s.port, 7878);
        assert_eq!(s.bind_host, "::");
    }

    #[test]
    fn tilde_expands_to_home() {
        if let Some(home) = home_dir() {
            assert_eq!(expand_path("~/x"), home.join("x"));
            assert_eq!(expand_path("~"), home);
        }
        assert_eq!(expand_path("/a/b"), PathBuf::from("/a/b"));
        assert_eq!(expand_path("~user/x"), PathBuf::from("~user/x"));
    }
}
