//! The connection to a host, as a small state machine.
//!
//! ```text
//!   connect ──► attempt ──Connected──► current ──Failed / Closed──► (none, with a notice)
//!                  │                       ▲
//!                  └──Failed──► error; the current connection, if any, is kept
//! ```
//!
//! A new attempt does not drop a working connection: the old one is kept (and browsed) until
//! the new one has answered `hello`, so a typo in the address costs nothing.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::format;
use crate::client::jobs::{BrowseHandle, EventKind, Jobs};
use crate::client::{ClientError, ConnectOptions, HostIdentity};
use crate::protocol::message::{ErrorCode, HelloReply, ListReply};
use crate::protocol::path::Escaped;
use crate::transport::Fingerprint;

/// How long a browsing connection waits for a host that accepted but does not answer.
pub(crate) const BROWSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One browsing connection.
pub(crate) struct Session {
    handle: BrowseHandle,
    pub addr: String,
    pub opts: ConnectOptions,
    /// What the host said in `hello`, and where it is; `None` until it answered.
    pub server: Option<(HelloReply, SocketAddr)>,
    /// Who answered (`None` until then, and on a plain connection).
    pub identity: Option<HostIdentity>,
    /// A listing asked for and not answered yet.
    pub loading: Option<String>,
    pub list_error: Option<String>,
}

/// What a session event means for the rest of the Client view.
pub(crate) enum Update {
    /// Nothing the rest of the view needs to know.
    None,
    /// `addr` answered: it becomes the connection browsed (remember it; forget the old folder).
    Connected { addr: String },
    /// A folder listing arrived on the connection browsed.
    Listing(ListReply),
}

/// The Client view's connections: the one browsed and a new attempt.
#[derive(Default)]
pub(crate) struct Sessions {
    /// The connection browsed; it answered `hello`.
    pub current: Option<Session>,
    /// A connection being made; it replaces `current` once the host answers.
    pub attempt: Option<Session>,
    /// Why the last attempt or connection ended, in the window's words.
    pub error: Option<String>,
    /// The last attempt met a known host with a different identity: (host, known, seen).
    pub changed: Option<(String, Fingerprint, Fingerprint)>,
}

impl Sessions {
    /// Starts connecting to `addr`; what is browsed now stays until the host answers.
    pub fn connect(&mut self, jobs: &Jobs, addr: &str, pin: &str) {
        self.connect_accepting(jobs, addr, pin, false);
    }

    /// Connects, accepting a changed identity when `accept_new_identity` (the person compared
    /// the colours with the host's screen).
    pub fn connect_accepting(&mut self, jobs: &Jobs, addr: &str, pin: &str, accept_new_identity: bool) {
        self.error = None;
        self.changed = None;
        let addr = addr.trim().to_string();
        if addr.is_empty() {
            self.error = Some("Type the address the host shows (for example 192.168.1.20:7878).".into());
            return;
        }
        let pin = pin.trim();
        let opts = ConnectOptions {
            pin: (!pin.is_empty()).then(|| pin.into()),
            connect_timeout: BROWSE_TIMEOUT,
            io_timeout: BROWSE_TIMEOUT,
            accept_new_identity,
            ..ConnectOptions::remembering()
        };
        let handle = jobs.browse(&addr, &opts);
        handle.list("");
        self.attempt = Some(Session {
            handle,
            addr,
            opts,
            server: None,
            identity: None,
            loading: Some(String::new()),
            list_error: None,
        });
    }

    /// Closes both connections (dropping a handle closes its connection).
    pub fn disconnect(&mut self) {
        self.current = None;
        self.attempt = None;
    }

    /// The connection a person waits on: an attempt in progress.
    pub fn connecting(&self) -> Option<&str> {
        self.attempt.as_ref().map(|s| s.addr.as_str())
    }

    /// Asks the browsed host for a listing of `path`.
    pub fn list(&mut self, path: &str) {
        if let Some(s) = &mut self.current {
            s.handle.list(path);
            s.loading = Some(path.to_string());
            s.list_error = None;
        }
    }

    /// Whether `job` is one of the sessions' jobs.
    pub fn owns(&self, job: u64) -> bool {
        [&self.current, &self.attempt].into_iter().flatten().any(|s| s.handle.id == job)
    }

    /// Handles an event of one of the sessions' jobs.
    pub fn handle(&mut self, job: u64, kind: EventKind) -> Update {
        if self.attempt.as_ref().is_some_and(|s| s.handle.id == job) {
            return self.attempt_event(kind);
        }
        let Some(s) = self.current.as_mut().filter(|s| s.handle.id == job) else { return Update::None };
        match kind {
            EventKind::Listing(reply) => {
                s.loading = None;
                s.list_error = None;
                return Update::Listing(reply);
            }
            EventKind::ListFailed { path, error } => {
                s.loading = None;
                let shown = if path.is_empty() { "the hosted folder".to_string() } else { Escaped(&path).to_string() };
                s.list_error = Some(format!("Cannot open {shown}: {}", describe(&error)));
            }
            EventKind::Failed(error) => {
                self.error = Some(lost(&s.addr, &error));
                self.current = None;
            }
            EventKind::Closed => self.current = None,
            _ => {}
        }
        Update::None
    }

    fn attempt_event(&mut self, kind: EventKind) -> Update {
        let Some(s) = &mut self.attempt else { return Update::None };
        match kind {
            EventKind::Connected { server, peer, identity } => {
                s.server = Some((server, peer));
                s.identity = identity;
                // Once accepted and remembered, later connections need not accept again.
                s.opts.accept_new_identity = false;
                let addr = s.addr.clone();
                self.current = self.attempt.take(); // the old connection closes as it is dropped
                self.error = None;
                Update::Connected { addr }
            }
            EventKind::Failed(ClientError::IdentityChanged { host, known, seen }) => {
                self.changed = Some((host, known, seen));
                self.attempt = None;
                Update::None
            }
            EventKind::Failed(error) => {
                self.error = Some(match &error {
                    ClientError::Connect { addr, source } => {
                        format!("Cannot connect to {}: {}", Escaped(addr), format::io_words(source))
                    }
                    ClientError::TimedOut(_) => format!(
                        "{} accepted the connection but did not answer within {}: is ferry hosting there?",
                        Escaped(&s.addr),
                        format::duration(BROWSE_TIMEOUT)
                    ),
                    _ => format!("Cannot connect to {}: {}", Escaped(&s.addr), describe(&error)),
                });
                self.attempt = None;
                Update::None
            }
            EventKind::Closed => {
                self.attempt = None;
                Update::None
            }
            // A listing can arrive only once connected; nothing else comes before that.
            _ => Update::None,
        }
    }
}

/// Why a working connection ended.
fn lost(addr: &str, error: &ClientError) -> String {
    match error {
        ClientError::Lost(_) | ClientError::Connect { .. } => {
            format!("The host at {} stopped hosting (or the network between you is down).", Escaped(addr))
        }
        _ => format!("The connection to {} was lost: {}", Escaped(addr), describe(error)),
    }
}

/// An engine error in the window's words (the engine's own text mentions command-line flags).
pub(crate) fn describe(error: &ClientError) -> String {
    match error {
        ClientError::Exists(p) => format!("{} already exists", p.display()),
        ClientError::Refused(e) if e.error == ErrorCode::Unauthorized => {
            if e.message.to_lowercase().contains("wrong") {
                "wrong PIN: check it with the host".into()
            } else {
                "the host asks for a PIN: type it in the PIN field".into()
            }
        }
        ClientError::Local { path, source, .. } => {
            // The path may be the partial file, an internal name: speak of its folder.
            let folder = path.parent().unwrap_or(path).display();
            match source.kind() {
                std::io::ErrorKind::StorageFull => format!("the disk holding {folder} is full"),
                std::io::ErrorKind::NotFound => format!("the folder {folder} does not exist"),
                _ => format!("cannot save in {folder}: {}", format::io_words(source)),
            }
        }
        ClientError::NoSpace { path, need, available } => format!(
            "not enough room in {}: {} needed, {} free",
            path.parent().unwrap_or(path).display(),
            format::size(*need),
            format::size(*available)
        ),
        ClientError::Connect { source, .. } => format::io_words(source),
        ClientError::WrongPin => "wrong PIN (or someone between you and the host): check it with the host".into(),
        ClientError::TlsRequired | ClientError::Handshake { .. } => {
            "the host does not speak ferry's encrypted protocol (a plain `--plain` host, or not ferry)".into()
        }
        other => format::without_os_error(&Escaped(&other.to_string()).to_string()),
    }
}
