//! The host side of ferry: serves one folder to many clients at once.
//!
//! [`Server::spawn`] returns at once; binding, accepting and serving happen on named worker
//! threads that report [`ServerEvent`]s on a crossbeam channel. [`Server::stop`] closes the
//! listener and every connection; the last event is always [`ServerEvent::Stopped`].
//!
//! ```no_run
//! use ferry::server::{Server, ServerConfig, ServerEvent};
//!
//! let (server, events) = Server::spawn(ServerConfig::new("/srv/share", "127.0.0.1:0"), None);
//! for event in events.iter() {
//!     if let ServerEvent::Listening { addr, .. } = event {
//!         println!("hosting at {addr}");
//!         break;
//!     }
//! }
//! server.stop();
//! ```

mod confine;
mod conn;
pub mod index;
mod pin_exchange;
mod pin_limit;
mod reply;
mod send;
mod stop_aware;
mod upload;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::Receiver;

pub use confine::{ResolveError, Root};
pub use index::worker::IndexProgress;

use crate::protocol::Md5Digest;
use crate::protocol::message::Secret;
use crate::protocol::names::Os;
use crate::sink::{DEFAULT_QUEUE, Delivery, Notify, Policy, Sink};
use crate::transport::{Fingerprint, HostTls, Identity};

/// The default address: every interface, IPv6 and IPv4 alike (one dual-stack socket; IPv4
/// only where the system has no IPv6), port 7878.
pub const DEFAULT_BIND: &str = "[::]:7878";
/// The default cap on simultaneous clients.
pub const DEFAULT_MAX_CLIENTS: usize = 64;
/// The default cap on simultaneous connections from one address, so one machine cannot take
/// every slot.
pub const DEFAULT_MAX_PER_ADDRESS: usize = 8;
/// The default time a new connection has to complete `hello`.
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// The default idle timeout: a connection silent (or stalled) this long is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long the accept loop waits for a client before it looks at the stop flag again.
const ACCEPT_POLL: Duration = Duration::from_millis(100);

/// What to host and how.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The hosted folder.
    pub root: PathBuf,
    /// Where to listen, `host:port` (port 0 picks a free one; the real one is reported).
    pub bind: String,
    /// Past this many connections, a new client is answered `busy`.
    pub max_clients: usize,
    /// Past this many connections from one address, another from it is answered `busy` at once.
    pub max_per_address: usize,
    /// A connection must complete `hello` within this long (however slowly its bytes trickle
    /// in), or it is closed.
    pub hello_timeout: Duration,
    /// A connection that sends nothing (or reads nothing) for this long is closed.
    pub idle_timeout: Duration,
    /// When set, clients must prove they know this PIN (by SPAKE2 inside TLS; in `hello`
    /// on a plain host).
    pub pin: Option<Secret>,
    /// Speak plain version 1 instead of TLS (`--plain`: for debugging with a packet capture).
    pub plain: bool,
    /// The key the host presents; `None` loads (or makes, on first hosting) the one kept in
    /// the configuration folder ([`crate::transport::config_dir`]).
    pub identity: Option<Arc<Identity>>,
    /// Take uploads (`put`); off by default, when every `put` is answered `read_only`.
    pub allow_upload: bool,
    /// Where uploads may go: a folder inside the hosted one, as a protocol path (`"inbox"`);
    /// `None` (or `""`) for anywhere in the hosted folder. A `put` outside it is `forbidden`.
    pub upload_folder: Option<String>,
    /// The name rules an uploaded file's path must follow: this system's by default;
    /// `Os::Windows` keeps every uploaded name valid on Windows too.
    pub upload_names: Os,
    /// The folder that keeps the digest index ([`index`]): `None` for ferry's cache folder
    /// ([`index::cache_dir`], `index/` in it). Without any, digests are kept for this run only.
    pub index_dir: Option<PathBuf>,
    /// What the host hashes ahead of downloads ([`IndexMode::Whole`] by default).
    pub index: IndexMode,
}

/// What a host hashes in the background, ahead of any download, into its digest index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndexMode {
    /// The whole hosted folder once hosting starts, and the folders clients list: first
    /// downloads are warm.
    #[default]
    Whole,
    /// Only the folders clients list.
    Listed,
    /// Nothing ahead, and nothing kept on disk: a file's digest is learned when it is first
    /// sent (that download is cold) and remembered for this run only.
    Off,
}

impl ServerConfig {
    pub fn new(root: impl Into<PathBuf>, bind: impl Into<String>) -> Self {
        ServerConfig {
            root: root.into(),
            bind: bind.into(),
            max_clients: DEFAULT_MAX_CLIENTS,
            max_per_address: DEFAULT_MAX_PER_ADDRESS,
            hello_timeout: DEFAULT_HELLO_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            pin: None,
            plain: false,
            identity: None,
            allow_upload: false,
            upload_folder: None,
            upload_names: Os::current(),
            index_dir: None,
            index: IndexMode::Whole,
        }
    }
}

/// A random 6-digit PIN from the operating system's random source.
pub fn random_pin() -> String {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    format!("{:06}", u32::from_le_bytes(bytes) % 1_000_000)
}

/// Identifies one client connection for the lifetime of a server.
pub type ClientId = u64;
/// Identifies one transfer for the lifetime of a server.
pub type TransferId = u64;

/// What the server reports.
#[derive(Debug, Clone)]
pub enum ServerEvent {
    /// The listener is open at `addr` (the real port when 0 was asked for). `identity` is the
    /// host's fingerprint (`None` on a plain host), for people to compare with the client's.
    Listening {
        addr: SocketAddr,
        root: PathBuf,
        identity: Option<Fingerprint>,
    },
    /// Hosting could not start (folder missing, port in use…); `Stopped` follows.
    StartFailed {
        error: String,
    },
    ClientConnected {
        client: ClientId,
        peer: SocketAddr,
        /// The client's instance id from `hello`: connections with the same one come from one
        /// running client (one person).
        instance: Option<String>,
    },
    /// A connection was turned away at `hello` (busy, wrong version, wrong PIN).
    ClientRejected {
        peer: SocketAddr,
        reason: String,
    },
    ClientDisconnected {
        client: ClientId,
        peer: SocketAddr,
        reason: Option<String>,
    },
    TransferStarted {
        client: ClientId,
        transfer: TransferId,
        peer: SocketAddr,
        path: String,
        size: u64,
        offset: u64,
        /// The file's digest was already known (digest index): it is sent without hashing.
        warm: bool,
    },
    /// `done` counts bytes of the whole file (the resumed offset included); at most ~20 a second.
    TransferProgress {
        transfer: TransferId,
        done: u64,
        total: u64,
    },
    TransferFinished {
        transfer: TransferId,
        md5: Md5Digest,
        sent: u64,
        elapsed: Duration,
    },
    TransferFailed {
        transfer: TransferId,
        error: String,
    },
    /// A client began uploading `path` (`size` bytes; `offset` of them were already in the
    /// host's partial file from an interrupted upload). Progress follows as
    /// [`ServerEvent::TransferProgress`]; the end as [`ServerEvent::UploadFinished`] or
    /// [`ServerEvent::TransferFailed`].
    UploadStarted {
        client: ClientId,
        transfer: TransferId,
        peer: SocketAddr,
        path: String,
        size: u64,
        offset: u64,
    },
    /// An upload's data section arrived whole. `expected` is the client's trailer, `actual`
    /// what the host computed over the whole file: when they are equal the file was saved
    /// under its name; otherwise nothing was kept (the client was told `checksum_mismatch`).
    UploadFinished {
        transfer: TransferId,
        expected: Md5Digest,
        actual: Md5Digest,
        received: u64,
        elapsed: Duration,
    },
    /// How the background hashing of the hosted folder's files into the digest index is going
    /// (at most a few a second, and once more whenever nothing is left to do).
    Indexing(IndexProgress),
    /// The digest index could not be used or kept (damaged, unwritable); hosting goes on, and
    /// the index is rebuilt (or kept in memory only).
    IndexProblem {
        error: String,
    },
    /// The client said how a transfer of `path` ended on its side (the protocol's `verdict`):
    /// `ok` means its MD5 matched and the file was saved. Until this arrives, a finished
    /// transfer was sent but not confirmed.
    TransferConfirmed {
        client: ClientId,
        path: String,
        md5: String,
        ok: bool,
    },
    /// A request was refused (bad path, not found…); the connection stays open.
    RequestRefused {
        client: ClientId,
        peer: SocketAddr,
        request: String,
        error: String,
    },
    /// `count` events (refusals, turned-away clients, new connections or transfers, with what
    /// followed them) were not reported one by one: the front was not keeping up (see
    /// [`crate::sink`]).
    EventsDropped {
        count: u64,
    },
    /// The last event: the listener and every connection are closed and their threads joined.
    Stopped,
}

impl ServerEvent {
    /// What may be dropped when the front falls behind: progress (superseded), refusals and
    /// starts (counted; the end of a start that was dropped is not sent either); never the end
    /// of something reported, nor `Stopped`.
    fn delivery(&self) -> Delivery {
        match self {
            ServerEvent::TransferProgress { .. } => Delivery::Coalesce,
            ServerEvent::Indexing(p) if !p.idle() => Delivery::Coalesce,
            ServerEvent::RequestRefused { .. }
            // Sent whenever a client likes: a flood of them must not grow the queue.
            | ServerEvent::TransferConfirmed { .. }
            | ServerEvent::ClientRejected { .. }
            | ServerEvent::ClientConnected { .. }
            | ServerEvent::TransferStarted { .. }
            | ServerEvent::UploadStarted { .. } => Delivery::Droppable,
            _ => Delivery::Essential,
        }
    }
}

/// State shared by the accept thread and every connection.
pub(crate) struct Shared {
    config: ServerConfig,
    stopping: AtomicBool,
    slots: Mutex<Slots>,
    next_client: AtomicU64,
    next_transfer: AtomicU64,
    rejecting: AtomicUsize,
    /// The digest index and its worker; set once hosting starts.
    index: std::sync::OnceLock<Arc<index::worker::Indexer>>,
    pins: pin_limit::PinLimits,
    /// Set once hosting starts, unless the host is plain.
    tls: std::sync::OnceLock<HostTls>,
    sink: Sink<ServerEvent>,
    /// The paths being uploaded right now (each by one connection at a time).
    uploads: upload::Claims,
}

impl Shared {
    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The digest index's worker (present once hosting has started).
    fn indexer(&self) -> Option<&index::worker::Indexer> {
        self.index.get().map(|i| &**i)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The connections being served, and how many come from each address.
#[derive(Default)]
struct Slots {
    conns: HashMap<ClientId, TcpStream>,
    per_address: HashMap<IpAddr, usize>,
}

/// Why a connection was not given a slot.
enum NoSlot {
    Full,
    AddressFull,
}

/// One connection's place in [`Slots`]; dropping it (when the connection's thread ends, even
/// by a panic, or if the thread cannot start) gives the place back.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    client: ClientId,
    ip: IpAddr,
}

impl Slot {
    fn take(shared: &Arc<Shared>, client: ClientId, ip: IpAddr, stream: &TcpStream) -> Result<Slot, NoSlot> {
        let config = &shared.config;
        let mut slots = shared.slots();
        let from_ip = slots.per_address.get(&ip).copied().unwrap_or(0);
        if from_ip >= config.max_per_address.max(1) {
            return Err(NoSlot::AddressFull);
        }
        if slots.conns.len() >= config.max_clients {
            return Err(NoSlot::Full);
        }
        // A second handle, so stop() can shut the connection down from another thread.
        let Ok(registered) = stream.try_clone() else { return Err(NoSlot::Full) };
        slots.conns.insert(client, registered);
        *slots.per_address.entry(ip).or_insert(0) += 1;
        Ok(Slot { shared: shared.clone(), client, ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut slots = self.shared.slots();
        slots.conns.remove(&self.client);
        if let Some(n) = slots.per_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                slots.per_address.remove(&self.ip);
            }
        }
    }
}

/// A running server. Dropping it stops the server and waits for its threads.
#[must_use = "dropping the Server stops it at once"]
pub struct Server {
    shared: Arc<Shared>,
    local_addr: Arc<Mutex<Option<SocketAddr>>>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts hosting on a background thread; returns at once. Watch the receiver for
    /// [`ServerEvent::Listening`] or [`ServerEvent::StartFailed`]. `notify` is called after every
    /// event (a GUI passes its repaint request).
    pub fn spawn(config: ServerConfig, notify: Option<Notify>) -> (Server, Receiver<ServerEvent>) {
        let policy = Policy {
            limit: DEFAULT_QUEUE,
            delivery: ServerEvent::delivery,
            dropped: |count| Some(ServerEvent::EventsDropped { count }),
        };
        let (sink, events) = Sink::with_policy(policy, notify);
        let shared = Arc::new(Shared {
            config,
            stopping: AtomicBool::new(false),
            slots: Mutex::new(Slots::default()),
            next_client: AtomicU64::new(1),
            next_transfer: AtomicU64::new(1),
            rejecting: AtomicUsize::new(0),
            index: std::sync::OnceLock::new(),
            pins: Default::default(),
            tls: std::sync::OnceLock::new(),
            sink,
            uploads: Default::default(),
        });
        let local_addr = Arc::new(Mutex::new(None));
        let accept = {
            let shared = shared.clone();
            let local_addr = local_addr.clone();
            thread::Builder::new()
                .name("ferry-accept".into())
                .spawn(move || accept_main(shared, local_addr))
                .expect("spawn accept thread")
        };
        (Server { shared, local_addr, accept: Some(accept) }, events)
    }

    /// The address the listener is bound to, once it is.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.local_addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the server to stop without waiting: the listener and all connections are closed,
    /// and [`ServerEvent::Stopped`] is sent once every thread has finished.
    pub fn stop(&self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        for stream in self.shared.slots().conns.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if let Some(indexer) = self.shared.indexer() {
            indexer.stop();
        }
        // The accept thread polls with a timeout and sees the flag on its own: stopping never
        // depends on the network (the bound address may be gone).
    }

    /// Stops the server and waits until every thread has finished (what dropping it does).
    pub fn stop_and_join(self) {
        drop(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Listens on the first address `spec` names that works. The IPv6 wildcard `[::]` is
/// dual-stack (IPv4 clients reach it too); where the system has no IPv6 it falls back to the
/// IPv4 wildcard on the same port. Any other address is used exactly as given.
fn bind(spec: &str) -> io::Result<TcpListener> {
    let addrs: Vec<SocketAddr> = spec
        .to_socket_addrs()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot understand the address {spec:?}: {e}")))?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, format!("{spec:?} names no address"));
    for addr in addrs {
        let bound = match addr {
            SocketAddr::V6(v6) if v6.ip().is_unspecified() => bind_dual_stack(addr).or_else(|e| {
                if matches!(e.kind(), io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied) {
                    Err(e)
                } else {
                    TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, addr.port()))
                }
            }),
            _ => TcpListener::bind(addr),
        };
        match bound {
            Ok(l) => return Ok(l),
            Err(e) => {
                let hint = match e.kind() {
                    io::ErrorKind::AddrInUse => " (the port is in use: stop the other program or pick another port)",
                    io::ErrorKind::PermissionDenied => " (ports below 1024 need special rights)",
                    io::ErrorKind::AddrNotAvailable => " (this machine has no such address)",
                    _ => "",
                };
                last = io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}{hint}"));
            }
        }
    }
    Err(last)
}

/// One IPv6 socket with `IPV6_V6ONLY` off: IPv4 clients arrive as `::ffff:a.b.c.d`.
fn bind_dual_stack(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    // As std does: a restarted host can listen again at once on the port it just left.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

fn accept_main(shared: Arc<Shared>, local_addr: Arc<Mutex<Option<SocketAddr>>>) {
    let sink = shared.sink.clone();
    let started = Root::new(&shared.config.root)
        .map_err(|e| format!("cannot host {}: {e}", shared.config.root.display()))
        .and_then(|root| bind(&shared.config.bind).map(|l| (root, l)).map_err(|e| e.to_string()))
        .and_then(|(root, l)| l.local_addr().map(|a| (root, l, a)).map_err(|e| e.to_string()));
    let (root, listener, addr) = match started {
        Ok(x) => x,
        Err(error) => {
            sink.send(ServerEvent::StartFailed { error });
            sink.send(ServerEvent::Stopped);
            return;
        }
    };
    if !shared.config.plain {
        match host_tls(&shared.config) {
            Ok(tls) => {
                let _ = shared.tls.set(tls);
            }
            Err(error) => {
                sink.send(ServerEvent::StartFailed { error });
                sink.send(ServerEvent::Stopped);
                return;
            }
        }
    }
    *local_addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
    if let Err(e) = listener.set_nonblocking(true) {
        sink.send(ServerEvent::StartFailed { error: format!("cannot listen on {addr}: {e}") });
        sink.send(ServerEvent::Stopped);
        return;
    }
    let root = Arc::new(root);
    // Loaded before the host is announced as listening: a restarted host is warm at once.
    let (indexer, index_problem) = open_index(&shared.config, root.path());
    let _ = shared.index.set(indexer.clone());
    if shared.is_stopping() {
        indexer.stop(); // stop() ran before the index was there to be told
    }
    let identity = shared.tls.get().map(HostTls::fingerprint);
    sink.send(ServerEvent::Listening { addr, root: root.path().to_path_buf(), identity });
    if let Some(error) = index_problem {
        sink.send(ServerEvent::IndexProblem { error });
    }
    let index_worker = {
        let (root, sink, whole) = (root.clone(), sink.clone(), shared.config.index == IndexMode::Whole);
        thread::Builder::new()
            .name("ferry-index".into())
            .spawn(move || index::worker::run(&indexer, &root, &sink, whole))
            .ok()
    };

    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.is_stopping() {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_for_client(&listener);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                // Out of file descriptors or similar: back off instead of spinning.
                thread::sleep(ACCEPT_POLL / 2);
                continue;
            }
        };
        // Accepted sockets inherit non-blocking mode on some systems (Windows).
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        workers.retain(|w| !w.is_finished());
        // An IPv4 client of a dual-stack listener is named as IPv4 (not `::ffff:a.b.c.d`).
        let Ok(peer) = stream.peer_addr().map(|p| SocketAddr::new(p.ip().to_canonical(), p.port())) else {
            continue;
        };
        let client = shared.next_client.fetch_add(1, Ordering::Relaxed);
        let slot = match Slot::take(&shared, client, peer.ip(), &stream) {
            Ok(slot) => slot,
            Err(NoSlot::AddressFull) => {
                let max = shared.config.max_per_address;
                let msg = format!("too many connections from your address ({max}); try again later");
                conn::turn_away(&shared, stream, peer, msg);
                continue;
            }
            Err(NoSlot::Full) => {
                let max = shared.config.max_clients;
                let msg = format!("the server is busy ({max} clients connected); try again later");
                conn::turn_away(&shared, stream, peer, msg);
                continue;
            }
        };
        if shared.is_stopping() {
            // stop() may have shut down the others before this one was registered.
            let _ = stream.shutdown(Shutdown::Both);
        }
        let root2 = root.clone();
        // The slot moves into the thread; if the thread cannot start, dropping it frees it.
        let spawned = thread::Builder::new()
            .name(format!("ferry-conn-{client}"))
            .spawn(move || conn::serve_connection(slot, &root2, stream, peer));
        if let Ok(w) = spawned {
            workers.push(w);
        }
    }
    drop(listener);
    for w in workers {
        let _ = w.join();
    }
    if let Some(w) = index_worker {
        let _ = w.join();
    }
    // Rejection threads are short-lived (bounded by a timeout); wait for them too.
    while shared.rejecting.load(Ordering::SeqCst) > 0 {
        thread::sleep(Duration::from_millis(10));
    }
    sink.send(ServerEvent::Stopped);
}

/// The digest index of the hosted folder `root`, loaded from the configured folder (or the
/// cache folder), or kept in memory when there is none, and why a stored one was not used.
fn open_index(config: &ServerConfig, root: &std::path::Path) -> (Arc<index::worker::Indexer>, Option<String>) {
    let dir = match config.index {
        IndexMode::Off => None,
        _ => config.index_dir.clone().or_else(|| index::cache_dir().map(|d| d.join("index"))),
    };
    let (index, problem) = match dir {
        Some(dir) => index::DigestIndex::open(index::index_path(&dir, root)),
        None => (index::DigestIndex::memory(), None),
    };
    (Arc::new(index::worker::Indexer::new(index)), problem)
}

/// The TLS settings for the configured identity, or the one kept in the configuration folder.
fn host_tls(config: &ServerConfig) -> Result<HostTls, String> {
    let loaded;
    let identity = match &config.identity {
        Some(identity) => identity,
        None => {
            loaded = Identity::load_default().map_err(|e| format!("cannot load the host's identity: {e}"))?;
            &loaded
        }
    };
    HostTls::new(identity).map_err(|e| format!("cannot set up TLS: {e}"))
}

/// Waits until a client is waiting to be accepted, or at most [`ACCEPT_POLL`], so the accept
/// loop sees a stop request in time without being woken through the network.
fn wait_for_client(listener: &TcpListener) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let timeout = Timespec::try_from(ACCEPT_POLL).expect("a small duration");
    let mut fds = [PollFd::new(listener, PollFlags::IN)];
    if poll(&mut fds, Some(&timeout)).is_err() {
        thread::sleep(ACCEPT_POLL / 2);
    }
}

#[cfg(test)]
mod tests;
