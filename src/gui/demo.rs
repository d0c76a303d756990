//! `FERRY_DEMO`: a hidden mode for `scripts/screenshots.sh` that drives the real window without
//! a mouse; a test aid, not a feature. A `;`-separated list of `key=value`:
//! `host=DIR` and `bind=HOST:PORT` start hosting; `pin=PIN` hosts with that PIN and gives it when
//! connecting; `connect=ADDR` connects; `open=FOLDER` enters a folder; `get=PATH` downloads that
//! file into `dest=DIR` (default: the download folder); `tab=server|client` picks the tab;
//! `theme=light|dark` the theme; `size=WxH` the window's size. Native dialogs are off and
//! nothing is saved.

use std::path::PathBuf;

use super::{Command, FerryApp, Tab, expand_path};
use crate::protocol::message::Secret;
use crate::protocol::path::check_local_name;

/// What is left of the script once the window is up.
pub(super) struct Demo {
    open: Option<String>,
    get: Option<String>,
    dest: Option<PathBuf>,
    opened: bool,
}

impl FerryApp {
    pub(super) fn start_demo(&mut self, spec: &str) {
        self.persist = false;
        self.dialogs.set_native(false);
        let mut demo = Demo { open: None, get: None, dest: None, opened: false };
        let mut commands = Vec::new();
        for (key, value) in spec.split(';').filter_map(|kv| kv.split_once('=')) {
            let value = value.trim().to_string();
            match key.trim() {
                "host" => {
                    self.state.host_folder = value;
                    commands.push(Command::StartHosting);
                }
                "bind" => {
                    if let Some((host, port)) = value.rsplit_once(':') {
                        self.state.bind_host = host.trim_matches(['[', ']']).to_string();
                        self.server.port_text = port.to_string();
                    }
                }
                "connect" => {
                    self.state.server_addr = value;
                    commands.push(Command::Connect);
                }
                "pin" => {
                    // Hosting asks for it, and connecting gives it.
                    self.state.require_pin = true;
                    self.server.pin = Secret(value.clone());
                    self.client.pin = Secret(value);
                }
                "open" => demo.open = Some(value),
                "get" => demo.get = Some(value),
                "dest" => demo.dest = Some(PathBuf::from(value)),
                "tab" => self.state.tab = if value == "client" { Tab::Client } else { Tab::Server },
                "theme" => {
                    let theme = if value == "light" { egui::Theme::Light } else { egui::Theme::Dark };
                    self.ctx.set_theme(theme);
                }
                "size" => {
                    if let Some((w, h)) = value.split_once('x')
                        && let (Ok(w), Ok(h)) = (w.parse::<f32>(), h.parse::<f32>())
                    {
                        self.ctx.send_viewport_cmd(egui::ViewportCommand::InnerSize(egui::vec2(w, h)));
                    }
                }
                _ => {}
            }
        }
        // Hosting first, so a demo that connects to itself finds the server listening.
        commands.sort_by_key(|c| !matches!(c, Command::StartHosting));
        for c in commands {
            self.apply(c);
        }
        self.demo = Some(demo);
    }

    /// Plays the next step of the script once the window has what it needs.
    pub(super) fn demo_step(&mut self) {
        let Some(demo) = &mut self.demo else { return };
        let Some(path) = self.client.current_path().map(str::to_string) else { return };
        if let Some(open) = &demo.open
            && !demo.opened
        {
            demo.opened = true;
            self.client.list(open);
            return;
        }
        if demo.open.as_deref().is_some_and(|o| o != path) {
            return;
        }
        if let Some(get) = demo.get.take() {
            let name = get.rsplit('/').next().and_then(|n| check_local_name(n).ok()).unwrap_or("download");
            let dir = demo.dest.clone().unwrap_or_else(|| expand_path(&self.state.download_dir));
            self.client.select(name, &dir.display().to_string());
            self.client.download(get.clone(), dir.join(name));
        }
    }
}
