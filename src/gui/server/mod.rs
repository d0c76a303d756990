//! The Server tab: host a folder, tell the other person what to type, watch clients download,
//! and keep the MD5 and fingerprint of every finished transfer.
//!
//! This file is the tab's model (the running server and what it reported); [`view`] draws the
//! form and the hosting card, [`transfers`] the clients and the finished transfers.

mod transfers;
mod view;

pub(crate) use view::server_ui;

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::announcing::Announcing;
use super::format::{self, RateMeter};
use super::{State, expand_path};
use crate::protocol::Md5Digest;
use crate::protocol::message::Secret;
use crate::protocol::path::Escaped;
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
