//! The receiving side of ferry.
//!
//! Two layers:
//! - [`Connection`]: a blocking connection to a server (`hello`, `list`, `download`), for code
//!   that already runs on its own thread (the command line, tests).
//! - [`jobs`]: the same work on named worker threads that report [`ClientEvent`]s on a
//!   crossbeam channel and can be cancelled from any thread, for fronts that must never block
//!   (the desktop window).
//!
//! Nothing the host sends is trusted: reply frames are size-checked before allocation, and the
//! data prefix must match the announced size. This layer writes only where the caller's
//! [`DownloadRequest`] says; a front that names a local file after a name from the host checks
//! it with [`crate::protocol::path::check_local_name`] first.

mod cancel;
mod download;
mod have;
pub mod jobs;
pub mod partial;
pub mod tree;
mod upload;

use std::collections::VecDeque;
use std::io::{self, BufReader};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

pub use cancel::CancelToken;
use cancel::Watched;
pub use download::{DownloadRequest, Outcome, Progress, Renamed, local_dest};
pub use have::{already_have, local_md5};
pub use jobs::{ClientEvent, EventKind, JobId};
pub use partial::{PartialRecord, part_path, record_path};
pub use tree::{FileReport, FileResult, Manifest, TreeLimits, TreeRequest, TreeSummary, TreeUpdate};
pub use upload::{UploadOutcome, UploadPlan, UploadRequest, plan_uploads};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::protocol::data::DataError;
use crate::protocol::frame::{self, FrameError, MAX_RESPONSE_LEN};
use crate::protocol::message::{
    ConfirmReply, ErrorCode, ErrorReply, HelloReply, ListReply, Request, Secret, parse_reply,
};
use crate::protocol::names::Os;
use crate::protocol::{Md5Digest, PLAIN_VERSION, VERSION, hex};
use crate::transport::{self, Contact, Fingerprint, KnownHosts, Stream, pake};

/// The port used when an address names none.
pub const DEFAULT_PORT: u16 = 7878;
/// The name this client gives in `hello`.
pub const CLIENT_NAME: &str = concat!("ferry/", env!("CARGO_PKG_VERSION"));

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The host's PIN, if it asks for one (its `Debug` is redacted).
    pub pin: Option<Secret>,
    pub connect_timeout: Duration,
    /// A server silent this long (mid-reply or mid-transfer) is given up on.
    pub io_timeout: Duration,
    /// The rules saved file names must follow: this system's by default; `Os::Windows` keeps
    /// every name valid on Windows too (for a drive that Windows will read).
    pub names: Os,
    /// Speak plain version 1 instead of TLS (`--plain`; the host must be plain too).
    pub plain: bool,
    /// Where hosts' identities are remembered ([`KnownHosts::default_path`] for the fronts).
    /// `None` remembers nothing: every connection is a first contact.
    pub known_hosts: Option<PathBuf>,
    /// Go on when a known host shows a different identity, and remember the new one.
    pub accept_new_identity: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            pin: None,
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(60),
            names: Os::current(),
            plain: false,
            known_hosts: None,
            accept_new_identity: false,
        }
    }
}

impl ConnectOptions {
    /// The defaults plus the known-hosts file in the configuration folder: what the command
    /// line and the window use.
    pub fn remembering() -> Self {
        ConnectOptions { known_hosts: KnownHosts::default_path(), ..Default::default() }
    }
}

/// Who answered an encrypted connection, and how that compares with what was known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    /// The name the host is remembered under (`host:port`).
    pub host: String,
    pub fingerprint: Fingerprint,
    pub contact: Contact,
    /// The host proved it knows the PIN in this session (so no one was in between).
    pub pin_verified: bool,
}

/// Everything that can end a client operation other than a verdict.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot understand the address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("the server turned the connection away: {0}")]
    Refused(ErrorReply),
    #[error("cannot set up an encrypted connection with {addr}: {reason}")]
    Handshake { addr: String, reason: String },
    #[error(
        "the host at {host} has a DIFFERENT IDENTITY than before: it was {} and is now {}. \
         Either it made a new key (ferry reinstalled, another machine at that address), or \
         someone is between you and the host. Compare the colours on the host's screen; only \
         if they match, accept the new identity (ferry: --accept-new-identity)",
        .known.groups(), .seen.groups()
    )]
    IdentityChanged { host: String, known: Fingerprint, seen: Fingerprint },
    #[error("wrong PIN, or someone between you and the host (the PIN exchange failed; the PIN itself was not sent)")]
    WrongPin,
    #[error(
        "a PIN was given but this host did not ask for one: it may not be the host you meant \
         (connect without a PIN to go on anyway)"
    )]
    PinNotAsked,
    #[error("the host speaks only encrypted connections (protocol version 2): connect without --plain")]
    TlsRequired,
    #[error("the server refused: {0}")]
    Server(ErrorReply),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("the connection was lost: {0}")]
    Lost(String),
    #[error(
        "the data was changed on the way (the encryption's integrity check caught it: a faulty \
         network device, or someone tampering); nothing unverified was saved"
    )]
    Tampered,
    #[error("the server stopped responding (no data for {0} s)")]
    TimedOut(u64),
    #[error("the transfer is incomplete: {0}")]
    Incomplete(String),
    #[error("{} already exists; not overwriting it (use --force to replace it)", .0.display())]
    Exists(PathBuf),
    #[error(
        "{} exists and ferry did not create it (it has no ferry record beside it); it was left \
         untouched: move it away or choose another destination",
        .0.display()
    )]
    NotOurs(PathBuf),
    #[error(
        "{} holds a partial download of {path:?} from {host}; it was left untouched: use --force \
         (Replace) to discard it, or choose another destination",
        .part.display()
    )]
    PartialOfOther { part: PathBuf, host: String, path: String },
    #[error(
        "cannot save {}: {} is already there, and on {rules} names differing only in case are one file",
        .dest.display(), .twin.display()
    )]
    CaseTwin { dest: PathBuf, twin: PathBuf, rules: Os },
    #[error("another download in this program is already saving to {}", .0.display())]
    InUse(PathBuf),
    #[error("cannot use {path} as the destination: {reason}")]
    BadDestination { path: String, reason: String },
    #[error("not enough disk space for {}: {need} bytes needed, {available} available", .path.display())]
    NoSpace { path: PathBuf, need: u64, available: u64 },
    #[error("{action} {}: {source}", .path.display())]
    Local { action: &'static str, path: PathBuf, source: io::Error },
    #[error("the folder is too large to download in one go: {0}")]
    TreeTooLarge(String),
    #[error("cancelled")]
    Cancelled,
    /// A bug in ferry (a worker thread panicked); the job ended cleanly all the same.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ClientError {
    pub(crate) fn local(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> ClientError {
        let path = path.into();
        move |source| {
            if source.kind() == io::ErrorKind::StorageFull {
                ClientError::Local { action: "the disk is full while writing", path, source }
            } else {
                ClientError::Local { action, path, source }
            }
        }
    }

    fn from_frame(e: FrameError, timeout: Duration) -> ClientError {
        match e {
            FrameError::Closed => ClientError::Lost("the server closed the connection".into()),
            FrameError::Truncated { .. } => ClientError::Lost(e.to_string()),
            FrameError::TooLarge { .. } => ClientError::Protocol(e.to_string()),
            FrameError::Io(io) => Self::from_io(io, timeout),
        }
    }

    fn from_io(e: io::Error, timeout: Duration) -> ClientError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::TimedOut(timeout.as_secs()),
            _ if transport::is_integrity_failure(&e) => ClientError::Tampered,
            _ => ClientError::Lost(e.to_string()),
        }
    }

    pub(crate) fn from_data(e: DataError, timeout: Duration) -> ClientError {
        use crate::protocol::data::CopyError;
        match e {
            DataError::Frame(f) => Self::from_frame(f, timeout),
            DataError::SizeDisagrees { .. } => ClientError::Protocol(e.to_string()),
            DataError::NoTrailer => ClientError::Incomplete(e.to_string()),
            DataError::Copy(CopyError::Incomplete { done, expected }) => ClientError::Incomplete(format!(
                "the server sent {} of {}, then closed the connection",
                crate::format::size(done),
                crate::format::size(expected)
            )),
            DataError::Copy(CopyError::Read { error, .. }) => Self::from_io(error, timeout),
            DataError::Copy(CopyError::Cancelled { .. }) => ClientError::Cancelled,
            DataError::Copy(CopyError::Write { .. }) => unreachable!("write errors are mapped by the caller"),
        }
    }
}

/// Resolves `host`, `host:port`, `1.2.3.4`, `[::1]:7878` or `::1`; the port defaults to 7878.
pub fn resolve_addr(addr: &str) -> Result<Vec<SocketAddr>, ClientError> {
    let addr = addr.trim();
    let bad = |reason: String| ClientError::BadAddress { addr: addr.to_string(), reason };
    if addr.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(vec![sa]);
    }
    if let Ok(ip) = addr.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, DEFAULT_PORT)]);
    }
    let with_port = match addr.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => addr.to_string(),
        Some((_, port)) => return Err(bad(format!("{port:?} is not a port number"))),
        None => format!("{addr}:{DEFAULT_PORT}"),
    };
    let found: Vec<SocketAddr> = with_port.to_socket_addrs().map_err(|e| bad(e.to_string()))?.collect();
    if found.is_empty() {
        return Err(bad("the name has no address".into()));
    }
    Ok(found)
}

/// A connection to a ferry server, past `hello` (and the PIN exchange).
pub struct Connection {
    /// The socket beneath, for cancelling from another thread.
    tcp: TcpStream,
    /// Reads go through the buffer (in slices that notice a cancel); requests are written to
    /// the stream beneath it.
    reader: BufReader<Watched>,
    hello: HelloReply,
    identity: Option<HostIdentity>,
    peer: SocketAddr,
    /// The timeout the connection was opened with; [`Connection::timeout`] is longer while a
    /// host may be busy before it answers (see [`Connection::set_patience`]).
    base_timeout: Duration,
    out: Vec<u8>,
    /// Set while a data section is in flight; a connection left mid-section is unusable.
    poisoned: bool,
    /// The copy buffer, allocated on first use and reused by every download.
    buf: Vec<u8>,
    /// The rules saved file names follow.
    names: Os,
    /// What the host's next frames answer, in the order the requests went out (a pipelining
    /// caller sends several before reading): an acknowledgement of a `verdict` is read and
    /// dropped, a reply goes to whoever reads it.
    awaiting: VecDeque<Awaiting>,
    /// Bytes of the requests in `awaiting`.
    awaiting_bytes: usize,
}

/// One answer the host owes.
#[derive(Debug, Clone, Copy)]
struct Awaiting {
    /// An acknowledgement of a `verdict` (`{"ok":true}`, or `unsupported` from an older host;
    /// either is fine).
    ack: bool,
    /// The request's size on the wire.
    bytes: usize,
}

impl Connection {
    /// Connects and says hello.
    pub fn connect(addr: &str, opts: &ConnectOptions) -> Result<Connection, ClientError> {
        Self::connect_with(addr, opts, None)
    }

    pub(crate) fn connect_with(
        addr: &str,
        opts: &ConnectOptions,
        cancel: Option<&CancelToken>,
    ) -> Result<Connection, ClientError> {
        Self::connect_ahead(addr, opts, cancel, &[])
    }

    /// Connects, says hello, and sends `ahead` right behind it (in the same write when no PIN
    /// exchange comes between, saving a round trip); their replies are to be read with
    /// [`Connection::read_reply`].
    pub(crate) fn connect_ahead(
        addr: &str,
        opts: &ConnectOptions,
        cancel: Option<&CancelToken>,
        ahead: &[Request],
    ) -> Result<Connection, ClientError> {
        let mut last = None;
        let mut stream = None;
        for sa in resolve_addr(addr)? {
            if cancel.is_some_and(CancelToken::is_cancelled) {
                return Err(ClientError::Cancelled);
            }
            match TcpStream::connect_timeout(&sa, opts.connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(stream) = stream else {
            let source = last.unwrap_or_else(|| io::Error::other("no address to try"));
            let source = match source.kind() {
                io::ErrorKind::ConnectionRefused => {
                    io::Error::new(source.kind(), "connection refused (is ferry hosting there, on that port?)")
                }
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                    io::Error::new(io::ErrorKind::TimedOut, "no answer (wrong address, or a firewall in the way?)")
                }
                _ => source,
            };
            return Err(ClientError::Connect { addr: addr.to_string(), source });
        };
        if let Some(c) = cancel {
            c.attach(&stream); // a cancel during the TLS handshake shuts it down (not on Windows)
        }
        let peer = stream.peer_addr().map_err(|e| ClientError::Lost(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        stream.set_read_timeout(Some(opts.io_timeout)).map_err(|e| ClientError::Lost(e.to_string()))?;
        stream.set_write_timeout(Some(opts.io_timeout)).map_err(|e| ClientError::Lost(e.to_string()))?;
        let tcp = stream.try_clone().map_err(|e| ClientError::Lost(e.to_string()))?;
        let (stream, identity) = if opts.plain {
            (Stream::Plain(stream), None)
        } else {
            let stream = transport::connect(stream).map_err(|e| handshake_error(addr, e, opts.io_timeout))?;
            let identity = check_identity(addr, &stream, opts)?;
            (stream, Some(identity))
        };
        let mut watched = Watched::new(stream, opts.io_timeout).map_err(|e| ClientError::Lost(e.to_string()))?;
        if let Some(c) = cancel {
            watched.watch(c);
        }
        let mut conn = Connection {
            tcp,
            reader: BufReader::with_capacity(crate::protocol::data::CHUNK, watched),
            hello: HelloReply::default(),
            identity,
            peer,
            base_timeout: opts.io_timeout,
            out: Vec::new(),
            poisoned: false,
            buf: Vec::new(),
            awaiting: VecDeque::new(),
            awaiting_bytes: 0,
            names: opts.names,
        };
        let result = conn.hello(opts, ahead);
        if result.is_err() && cancel.is_some_and(CancelToken::is_cancelled) {
            return Err(ClientError::Cancelled);
        }
        result?;
        if let (Some(id), Some(path)) = (&conn.identity, &opts.known_hosts)
            && id.contact != Contact::Known
        {
            KnownHosts::new(path)
                .remember(&id.host, id.fingerprint)
                .map_err(ClientError::local("cannot remember the host's identity in", path))?;
        }
        Ok(conn)
    }

    /// Waits `extra` longer than usual for the host's next bytes (zero: back to usual).
    pub(crate) fn set_patience(&mut self, extra: Duration) {
        self.set_timeout(self.base_timeout + extra);
    }

    /// How long reads wait for the host's next byte from now on.
    pub(crate) fn set_timeout(&mut self, idle: Duration) {
        self.reader.get_mut().idle = idle;
    }

    /// How long reads wait for the host's next byte.
    pub(crate) fn timeout(&self) -> Duration {
        self.reader.get_ref().idle
    }

    /// Lets `cancel` end whatever this connection waits for: a cancel shuts the socket down,
    /// and a read notices it within [`crate::transport::sliced::SLICE`] even where the shutdown does not
    /// wake it (Windows).
    pub(crate) fn watch(&mut self, cancel: &CancelToken) {
        self.reader.get_mut().watch(cancel);
    }

    /// `hello`, and on an encrypted connection with a PIN, the PIN exchange.
    fn hello(&mut self, opts: &ConnectOptions, ahead: &[Request]) -> Result<(), ClientError> {
        let exporter = self.reader.get_ref().stream.exporter();
        let instance = Some(instance_id().to_string());
        let (version, pake_state, hello) = match exporter {
            None => {
                let pin = opts.pin.clone();
                (
                    PLAIN_VERSION,
                    None,
                    Request::Hello { version: PLAIN_VERSION, client: CLIENT_NAME.into(), pin, pake: None, instance },
                )
            }
            Some(_) => {
                let (state, msg_a) = opts.pin.as_ref().map(|p| pake::client_start(p.expose())).unzip();
                let pake = msg_a.map(|a| BASE64.encode(a));
                (
                    VERSION,
                    state,
                    Request::Hello { version: VERSION, client: CLIENT_NAME.into(), pin: None, pake, instance },
                )
            }
        };
        // Without a PIN exchange nothing has to happen between hello and the first requests.
        let with_hello = if pake_state.is_none() { ahead } else { &[] };
        self.send_ahead(&[std::slice::from_ref(&hello), with_hello].concat())?;
        self.hello = match self.read_reply::<HelloReply>()? {
            Ok(h) => h,
            Err(e) if e.error == ErrorCode::TlsRequired => return Err(ClientError::TlsRequired),
            Err(e) => return Err(ClientError::Refused(e)),
        };
        if self.hello.version != version {
            return Err(ClientError::Protocol(format!("the server speaks version {}", self.hello.version)));
        }
        let (Some(state), Some(exporter)) = (pake_state, exporter) else { return Ok(()) };
        let ahead_after_pin = ahead;
        let (Some(msg_b), Some(host_confirm)) = (self.hello.pake.take(), self.hello.confirm.take()) else {
            return Err(ClientError::PinNotAsked);
        };
        let decode = |s: &str| {
            BASE64.decode(s.as_bytes()).map_err(|_| ClientError::Protocol("bad base64 in the PIN exchange".into()))
        };
        let mac = match state.finish(&decode(&msg_b)?, &decode(&host_confirm)?, &exporter) {
            Ok(mac) => mac,
            // A malformed answer means the same as a wrong one: not the host with this PIN.
            Err(pake::PakeError::Mismatch | pake::PakeError::Malformed) => return Err(ClientError::WrongPin),
        };
        match self.request::<ConfirmReply>(&Request::Confirm { mac: BASE64.encode(mac) })? {
            Ok(reply) => self.hello.name = reply.name,
            Err(e) => return Err(ClientError::Refused(e)),
        }
        if let Some(id) = &mut self.identity {
            id.pin_verified = true;
        }
        if !ahead_after_pin.is_empty() {
            self.send_ahead(ahead_after_pin)?;
        }
        Ok(())
    }

    /// What the server said in `hello`.
    pub fn server(&self) -> &HelloReply {
        &self.hello
    }

    /// Who answered (`None` on a plain connection).
    pub fn identity(&self) -> Option<&HostIdentity> {
        self.identity.as_ref()
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the host has closed (or reset) the connection, checked between requests without
    /// blocking and without consuming anything.
    pub fn peer_closed(&self) -> bool {
        if !self.reader.buffer().is_empty() || self.tcp.set_nonblocking(true).is_err() {
            return false;
        }
        let closed = match self.tcp.peek(&mut [0u8; 1]) {
            Ok(n) => n == 0,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted,
        };
        let _ = self.tcp.set_nonblocking(false);
        closed
    }

    /// Whether a transfer was abandoned half-way on this connection, so it can carry no more
    /// requests (connect again).
    pub fn is_broken(&self) -> bool {
        self.poisoned
    }

    /// Sends one request and reads its reply frame.
    fn request<T: serde::de::DeserializeOwned>(&mut self, req: &Request) -> Result<Result<T, ErrorReply>, ClientError> {
        self.send_ahead(std::slice::from_ref(req))?;
        self.read_reply()
    }

    /// Sends requests without waiting for their answers (pipelining: the host answers in
    /// order), in one write. Each `verdict`'s acknowledgement is read and dropped on the way to
    /// a later reply; every other request's reply must be read with [`Connection::read_reply`]
    /// (and a `get`'s data section after it). A caller keeps what it has in flight small
    /// ([`Connection::awaiting`]): it does not read while it writes, so the requests must fit
    /// in the socket buffers.
    pub(crate) fn send_ahead(&mut self, reqs: &[Request]) -> Result<(), ClientError> {
        use std::io::Write;
        if self.poisoned {
            return Err(ClientError::Lost("the connection was abandoned mid-transfer; connect again".into()));
        }
        self.out.clear();
        let mut sent = Vec::with_capacity(reqs.len());
        for req in reqs {
            let before = self.out.len();
            frame::write_control(&mut self.out, req).expect("writing to a Vec cannot fail");
            sent.push(Awaiting { ack: matches!(req, Request::Verdict { .. }), bytes: self.out.len() - before });
        }
        let stream = self.reader.get_mut();
        stream
            .write_all(&self.out)
            .and_then(|()| stream.flush())
            .map_err(|e| ClientError::from_io(e, self.timeout()))?;
        self.awaiting_bytes += self.out.len();
        self.awaiting.extend(sent);
        Ok(())
    }

    /// Requests sent whose answers are not read yet, and their bytes on the wire.
    pub(crate) fn awaiting(&self) -> (usize, usize) {
        (self.awaiting.len(), self.awaiting_bytes)
    }

    /// Reads the next reply (after the acknowledgements of `verdict`s sent before its request).
    pub(crate) fn read_reply<T: serde::de::DeserializeOwned>(&mut self) -> Result<Result<T, ErrorReply>, ClientError> {
        loop {
            let Some(next) = self.awaiting.pop_front() else {
                return Err(ClientError::Protocol("no request is waiting for an answer".into()));
            };
            self.awaiting_bytes -= next.bytes;
            let payload = frame::read_frame(&mut self.reader, MAX_RESPONSE_LEN)
                .map_err(|e| ClientError::from_frame(e, self.timeout()))?;
            if !next.ack {
                return parse_reply(&payload).map_err(|e| ClientError::Protocol(e.to_string()));
            }
        }
    }

    /// Reads the acknowledgements of the `verdict`s sent last, so the host has handled them
    /// before the connection closes (none of them is a reply someone waits for).
    pub(crate) fn read_acks(&mut self) -> Result<(), ClientError> {
        while let Some(next) = self.awaiting.front().copied() {
            if !next.ack {
                return Err(ClientError::Protocol("a reply is still awaited".into()));
            }
            self.awaiting.pop_front();
            self.awaiting_bytes -= next.bytes;
            frame::read_frame(&mut self.reader, MAX_RESPONSE_LEN)
                .map_err(|e| ClientError::from_frame(e, self.timeout()))?;
        }
        Ok(())
    }

    /// Tells the host how a transfer ended here (the protocol's `verdict`), without waiting for
    /// its answer: the host can then show the transfer as confirmed. Best effort: a host that
    /// is gone or does not know the op changes nothing here.
    fn send_verdict(&mut self, path: &str, md5: &Md5Digest, ok: bool) {
        let _ = self.send_ahead(&[verdict(path, md5, ok)]);
    }

    /// Lists a folder of the host (`""` is the hosted folder).
    pub fn list(&mut self, path: &str) -> Result<ListReply, ClientError> {
        self.request::<ListReply>(&Request::List { path: path.to_string() })?.map_err(ClientError::Server)
    }

    /// Downloads files and whole folders over this one connection, pipelined; see
    /// [`tree`]. Problems with single files are in the summary; an error ends the whole job.
    pub fn download_tree(
        &mut self,
        req: &TreeRequest,
        cancel: &CancelToken,
        update: &mut dyn FnMut(TreeUpdate),
    ) -> Result<TreeSummary, ClientError> {
        tree::download_tree(self, req, false, cancel, update)
    }

    /// Downloads one file; see [`DownloadRequest`] for what happens on disk.
    pub fn download(
        &mut self,
        req: &DownloadRequest,
        cancel: &CancelToken,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Outcome, ClientError> {
        let outcome = download::download(self, req, cancel, progress)?;
        match &outcome {
            Outcome::Verified { md5, .. } => self.send_verdict(&req.path, md5, true),
            Outcome::Mismatch { actual, .. } => self.send_verdict(&req.path, actual, false),
            // Nothing was sent: nothing to confirm.
            Outcome::Identical { .. } => {}
        }
        Ok(outcome)
    }

    /// Uploads one file to a host that takes uploads; see [`UploadRequest`]. Progress counts
    /// bytes of the whole file the host holds (a resumed upload starts at its offset).
    pub fn upload(
        &mut self,
        req: &UploadRequest,
        cancel: &CancelToken,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<UploadOutcome, ClientError> {
        upload::upload(self, req, cancel, progress)
    }
}

/// The `verdict` request for a file: the MD5 computed here and whether the file was saved.
pub(crate) fn verdict(path: &str, md5: &Md5Digest, ok: bool) -> Request {
    Request::Verdict { path: path.to_string(), md5: hex(md5), ok }
}

/// This running client's instance id (32 hex digits, random, fixed for the process), sent in
/// every `hello` so that a host can tell one client's several connections from several
/// clients.
pub fn instance_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        hex(&bytes)
    })
}

/// A failed handshake, with what it most likely means.
fn handshake_error(addr: &str, e: io::Error, timeout: Duration) -> ClientError {
    let reason = match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            return ClientError::TimedOut(timeout.as_secs());
        }
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::InvalidData => {
            format!("{e} (if the host runs with --plain, it speaks unencrypted version 1 only: use --plain too)")
        }
        _ => e.to_string(),
    };
    ClientError::Handshake { addr: addr.to_string(), reason }
}

/// Compares the host's identity with the remembered one, before anything is sent.
fn check_identity(addr: &str, stream: &Stream, opts: &ConnectOptions) -> Result<HostIdentity, ClientError> {
    let fingerprint =
        stream.peer_fingerprint().ok_or_else(|| ClientError::Protocol("the host showed no certificate".into()))?;
    let host = transport::host_key(addr, DEFAULT_PORT);
    let contact = match &opts.known_hosts {
        Some(path) => KnownHosts::new(path)
            .check(&host, fingerprint)
            .map_err(ClientError::local("cannot read the known hosts in", path))?,
        None => Contact::First,
    };
    if let Contact::Changed { known } = contact
        && !opts.accept_new_identity
    {
        return Err(ClientError::IdentityChanged { host, known, seen: fingerprint });
    }
    Ok(HostIdentity { host, fingerprint, contact, pin_verified: false })
}

/// `md5sum`-style line: digest, two spaces, name.
pub fn md5sum_line(digest: &Md5Digest, name: &str) -> String {
    format!("{}  {name}", hex(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_default_to_port_7878() {
        assert_eq!(resolve_addr("127.0.0.1").unwrap(), vec!["127.0.0.1:7878".parse().unwrap()]);
        assert_eq!(resolve_addr("127.0.0.1:9").unwrap(), vec!["127.0.0.1:9".parse().unwrap()]);
        assert_eq!(resolve_addr("::1").unwrap(), vec!["[::1]:7878".parse().unwrap()]);
        assert_eq!(resolve_addr("[::1]").unwrap(), vec!["[::1]:7878".parse().unwrap()]);
        assert_eq!(resolve_addr("[::1]:80").unwrap(), vec!["[::1]:80".parse().unwrap()]);
        assert!(resolve_addr("localhost").unwrap().iter().all(|a| a.port() == 7878));
        assert!(matches!(resolve_addr(""), Err(ClientError::BadAddress { .. })));
        assert!(matches!(resolve_addr("host:port"), Err(ClientError::BadAddress { .. })));
    }
}
