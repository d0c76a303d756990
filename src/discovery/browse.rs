//! The client side: browse for ferry hosts, check each answers on its TCP port, probe the
//! hosts reached before, and say why when nothing is found.
//!
//! ```no_run
//! use ferry::discovery::{BrowseEvent, BrowseOptions, Browser};
//!
//! let (browser, events) = Browser::start(BrowseOptions::default(), None).expect("discovery on");
//! for event in events.iter() {
//!     match event {
//!         BrowseEvent::Found(host) | BrowseEvent::Updated(host) => println!("{} at {}", host.name, host.address()),
//!         BrowseEvent::Lost { name, .. } => println!("{name} left"),
//!         BrowseEvent::NothingFound(why) => println!("{}", why.lines().join("\n")),
//!         BrowseEvent::Stopped { .. } => break,
//!     }
//! }
//! # drop(browser);
//! ```
//!
//! Every host that is announced gets one TCP connect to its port (no `hello`, so a host that
//! asks for a PIN does not count it as a failed attempt); a host that refuses it is shown as
//! "seen but not reachable". Remembered hosts get a connect and a `hello` (without a PIN): that
//! tells a ferry host from anything else and gives its folder's name.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, SocketAddrV6, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use mdns_sd::{DaemonEvent, IfKind, ResolvedService, ScopedIp, ServiceDaemon, ServiceEvent};

use super::announce::unescape_instance;
use super::diagnose::{self, Diagnosis};
use super::{DiscoveryError, SERVICE_TYPE, Txt, disabled};
use crate::client::{ClientError, ConnectOptions, Connection, resolve_addr};
use crate::protocol::message::ErrorCode;
use crate::sink::{Notify, Sink};

/// The DNS-SD meta-query: every responder answers it with the service types it has, so any
/// answer shows that multicast reaches this machine at all.
const META_TYPE: &str = "_services._dns-sd._udp.local.";

/// How to browse.
#[derive(Debug, Clone)]
pub struct BrowseOptions {
    /// Hosts the person reached before (`HOST`, `HOST:PORT`), probed with a connect and a
    /// `hello`, so a host on another subnet, where multicast does not reach, shows up too.
    pub remembered: Vec<String>,
    /// With no reachable host by then, a [`BrowseEvent::NothingFound`] diagnosis is sent.
    pub diagnose_after: Duration,
    /// How long one reachability check (connect, and `hello` for remembered hosts) may take.
    pub probe_timeout: Duration,
}

impl Default for BrowseOptions {
    fn default() -> Self {
        BrowseOptions {
            remembered: Vec::new(),
            diagnose_after: Duration::from_secs(3),
            probe_timeout: Duration::from_secs(2),
        }
    }
}

/// How ferry learned of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// It announced itself over mDNS.
    Announced,
    /// The person reached it before, and it answered a probe.
    Remembered,
}

/// Whether the host answers on its TCP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// The check is under way.
    Checking,
    Reachable,
    /// Seen (announced) but its port does not answer: why, for people.
    Unreachable(String),
}

/// One host, as the browser knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Identifies this entry among the events (the mDNS full name, or `remembered:ADDR`).
    pub key: String,
    /// The name people see ("photos on alice-laptop"; for a remembered host, its address).
    pub name: String,
    /// The hosted folder's name.
    pub folder: String,
    /// Where to connect, best first: the one that answered, IPv4, then IPv6.
    pub addrs: Vec<SocketAddr>,
    /// The host asks for a PIN.
    pub pin: bool,
    /// The host speaks version 2 (encrypted).
    pub tls: bool,
    /// The protocol version it announced.
    pub version: u32,
    /// Its identity fingerprint, once hosts have one.
    pub id: Option<String>,
    pub source: Source,
    pub reach: Reach,
}

impl Host {
    /// The port ferry listens on there.
    pub fn port(&self) -> u16 {
        self.addrs.first().map_or(0, SocketAddr::port)
    }

    /// The address to connect to, as [`crate::client::Connection::connect`] takes it.
    pub fn address(&self) -> String {
        self.addrs.first().map(SocketAddr::to_string).unwrap_or_default()
    }

    fn from_resolved(rs: &ResolvedService) -> Host {
        let txt = Txt::from_lookup(|k| rs.get_property_val_str(k).map(str::to_string));
        let mut addrs: Vec<SocketAddr> =
            rs.get_addresses().iter().filter(|ip| !ip.is_loopback()).map(|ip| socket_addr(ip, rs.get_port())).collect();
        sort_addrs(&mut addrs);
        Host {
            key: rs.get_fullname().to_string(),
            name: unescape_instance(rs.get_fullname()),
            folder: txt.folder,
            addrs,
            pin: txt.pin,
            tls: txt.tls,
            version: txt.version,
            id: txt.id,
            source: Source::Announced,
            reach: Reach::Checking,
        }
    }
}

fn socket_addr(ip: &ScopedIp, port: u16) -> SocketAddr {
    match ip {
        ScopedIp::V6(v6) if (v6.addr().segments()[0] & 0xffc0) == 0xfe80 => {
            SocketAddr::V6(SocketAddrV6::new(*v6.addr(), port, 0, v6.scope_id().index))
        }
        other => SocketAddr::new(other.to_ip_addr(), port),
    }
}

/// IPv4 first, then global IPv6, then link-local IPv6 (usable only with its scope).
fn sort_addrs(addrs: &mut Vec<SocketAddr>) {
    addrs.sort_by_key(|a| match a.ip() {
        IpAddr::V4(v4) => (0, IpAddr::V4(v4)),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => (2, IpAddr::V6(v6)),
        ip => (1, ip),
    });
    addrs.dedup();
}

/// What the browser reports.
#[derive(Debug, Clone)]
pub enum BrowseEvent {
    /// A new host: announced (its reachability is being checked), or a remembered one that
    /// answered.
    Found(Host),
    /// A known host changed: its reachability was checked, its addresses or TXT changed.
    Updated(Host),
    /// A host withdrew its announcement, or it expired.
    Lost { key: String, name: String },
    /// No reachable host after [`BrowseOptions::diagnose_after`]: what was tried, what to
    /// check. Sent at most once; hosts found later still arrive as `Found`.
    NothingFound(Diagnosis),
    /// The last event: browsing has stopped (`error` when mDNS itself failed).
    Stopped { error: Option<String> },
}

enum Msg {
    Ferry(ServiceEvent),
    FerryClosed,
    Meta(ServiceEvent),
    Daemon(DaemonEvent),
    Probed { key: String, generation: u64, result: Result<SocketAddr, String> },
    Remembered { typed: String, result: Result<Probed, String> },
    Stop,
}

/// A running browser. Dropping it stops browsing and waits for its thread.
#[must_use = "dropping the Browser stops browsing at once"]
pub struct Browser {
    control: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl Browser {
    /// Starts browsing; returns at once. Fails when discovery is turned off
    /// ([`super::DISABLE_ENV`]) or when mDNS cannot start.
    pub fn start(
        opts: BrowseOptions,
        notify: Option<Notify>,
    ) -> Result<(Browser, Receiver<BrowseEvent>), DiscoveryError> {
        if disabled() {
            return Err(DiscoveryError::Disabled);
        }
        let daemon = ServiceDaemon::new()?;
        let (control, inbox) = crossbeam_channel::unbounded();
        let started = (|| {
            daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])?;
            let monitor = daemon.monitor()?;
            let ferry = daemon.browse(SERVICE_TYPE)?;
            let meta = daemon.browse(META_TYPE)?;
            Ok::<_, mdns_sd::Error>((monitor, ferry, meta))
        })();
        let (monitor, ferry, meta) = match started {
            Ok(x) => x,
            Err(e) => {
                let _ = daemon.shutdown();
                return Err(e.into());
            }
        };
        // mdns-sd hands out one channel per subscription; one small thread each merges them
        // into this browser's inbox. They end when the mDNS thread does.
        let tx = control.clone();
        forward("ferry-mdns-hosts", ferry, move |e| tx.send(Msg::Ferry(e)).is_ok(), {
            let tx = control.clone();
            move || {
                let _ = tx.send(Msg::FerryClosed);
            }
        });
        let tx = control.clone();
        forward("ferry-mdns-meta", meta, move |e| tx.send(Msg::Meta(e)).is_ok(), || {});
        let tx = control.clone();
        forward("ferry-mdns-monitor", monitor, move |e| tx.send(Msg::Daemon(e)).is_ok(), || {});

        let (sink, events) = Sink::new(notify);
        let probes = control.clone();
        let thread = thread::Builder::new()
            .name("ferry-browse".into())
            .spawn(move || {
                let mut state = State::new(opts, daemon, sink.clone(), probes);
                let error = state.run(&inbox);
                state.daemon_shutdown();
                sink.send(BrowseEvent::Stopped { error });
            })
            .map_err(|e| DiscoveryError::Mdns(format!("cannot start a thread: {e}")))?;
        Ok((Browser { control, thread: Some(thread) }, events))
    }

    /// Asks the browser to stop without waiting; [`BrowseEvent::Stopped`] follows.
    pub fn stop(&self) {
        let _ = self.control.send(Msg::Stop);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn forward<T: Send + 'static>(
    name: &str,
    rx: mdns_sd::Receiver<T>,
    mut each: impl FnMut(T) -> bool + Send + 'static,
    end: impl FnOnce() + Send + 'static,
) {
    let _ = thread::Builder::new().name(name.into()).spawn(move || {
        while let Ok(item) = rx.recv() {
            if !each(item) {
                return;
            }
        }
        end();
    });
}

struct State {
    opts: BrowseOptions,
    daemon: ServiceDaemon,
    sink: Sink<BrowseEvent>,
    probes: Sender<Msg>,
    started: Instant,
    hosts: HashMap<String, Host>,
    /// Per host, the number of the latest reachability check (older answers are stale).
    generation: HashMap<String, u64>,
    /// Remembered addresses still being probed.
    remembered_pending: usize,
    /// Remembered addresses that did not answer, and why.
    remembered_failed: Vec<(String, String)>,
    answered: bool,
    other_types: HashSet<String>,
    problems: Vec<String>,
    diagnosed: bool,
    meta_stopped: bool,
}

impl State {
    fn new(opts: BrowseOptions, daemon: ServiceDaemon, sink: Sink<BrowseEvent>, probes: Sender<Msg>) -> State {
        let mut s = State {
            opts,
            daemon,
            sink,
            probes,
            started: Instant::now(),
            hosts: HashMap::new(),
            generation: HashMap::new(),
            remembered_pending: 0,
            remembered_failed: Vec::new(),
            answered: false,
            other_types: HashSet::new(),
            problems: Vec::new(),
            diagnosed: false,
            meta_stopped: false,
        };
        for typed in s.opts.remembered.clone() {
            s.probe_remembered(typed);
        }
        s
    }

    /// Returns the error that ended browsing, if any.
    fn run(&mut self, inbox: &Receiver<Msg>) -> Option<String> {
        loop {
            let msg = match self.next_deadline() {
                Some(at) => match inbox.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        self.on_deadline();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return None,
                },
                None => match inbox.recv() {
                    Ok(m) => m,
                    Err(_) => return None,
                },
            };
            match msg {
                Msg::Stop => return None,
                Msg::FerryClosed => return Some("the mDNS worker stopped".into()),
                Msg::Ferry(e) => self.on_ferry(e),
                Msg::Meta(e) => self.on_meta(e),
                Msg::Daemon(DaemonEvent::Error(e)) => self.problems.push(e.to_string()),
                Msg::Daemon(_) => {}
                Msg::Probed { key, generation, result } => self.on_probed(key, generation, result),
                Msg::Remembered { typed, result } => self.on_remembered(typed, result),
            }
        }
    }

    fn daemon_shutdown(&self) {
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(Duration::from_secs(2));
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.diagnosed {
            return None;
        }
        let first = self.started + self.opts.diagnose_after;
        // Wait for checks under way (each is bounded by the probe timeout) before judging.
        if Instant::now() >= first && self.checking() {
            return Some((first + self.opts.probe_timeout * 2).max(Instant::now() + Duration::from_millis(50)));
        }
        Some(first)
    }

    fn checking(&self) -> bool {
        self.remembered_pending > 0 || self.hosts.values().any(|h| h.reach == Reach::Checking)
    }

    fn on_deadline(&mut self) {
        let first = self.started + self.opts.diagnose_after;
        let now = Instant::now();
        if now < first || (self.checking() && now < first + self.opts.probe_timeout * 2) {
            return;
        }
        self.diagnosed = true;
        if !self.meta_stopped {
            // Only the diagnosis needs it: stop asking, so the browser stays quiet from now on.
            let _ = self.daemon.stop_browse(META_TYPE);
            self.meta_stopped = true;
        }
        if self.hosts.values().any(|h| h.reach == Reach::Reachable) {
            return;
        }
        let queries = self
            .daemon
            .get_metrics()
            .ok()
            .and_then(|rx| rx.recv_timeout(Duration::from_secs(1)).ok())
            .and_then(|m| m.get("browse").copied())
            .unwrap_or(0);
        let mut unreachable: Vec<(String, SocketAddr, String)> = self
            .hosts
            .values()
            .filter_map(|h| match (&h.reach, h.addrs.first()) {
                (Reach::Unreachable(why), Some(addr)) => Some((h.name.clone(), *addr, why.clone())),
                _ => None,
            })
            .collect();
        unreachable.sort();
        let diagnosis = Diagnosis {
            waited: now.duration_since(self.started),
            interfaces: diagnose::check_interfaces(),
            skipped: diagnose::skipped_interfaces(),
            queries: queries.max(0) as u64,
            answered: self.answered,
            other_services: self.other_types.len(),
            problems: self.problems.clone(),
            unreachable,
            remembered: self.remembered_failed.clone(),
        };
        self.sink.send(BrowseEvent::NothingFound(diagnosis));
    }

    fn on_ferry(&mut self, event: ServiceEvent) {
        match event {
            ServiceEvent::ServiceFound(..) => self.answered = true,
            ServiceEvent::ServiceResolved(rs) => {
                self.answered = true;
                let mut host = Host::from_resolved(&rs);
                if host.addrs.is_empty() {
                    return;
                }
                match self.hosts.get(&host.key) {
                    Some(old) if same_announcement(old, &host) => {}
                    Some(old) => {
                        // Keep what the last check learned while the addresses are the same.
                        if old.addrs.iter().collect::<HashSet<_>>() == host.addrs.iter().collect() {
                            host.reach = old.reach.clone();
                            host.addrs = old.addrs.clone();
                        } else {
                            self.probe(&host);
                        }
                        self.hosts.insert(host.key.clone(), host.clone());
                        self.sink.send(BrowseEvent::Updated(host));
                    }
                    None => {
                        self.forget_remembered_at(&host.addrs);
                        self.probe(&host);
                        self.hosts.insert(host.key.clone(), host.clone());
                        self.sink.send(BrowseEvent::Found(host));
                    }
                }
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                if let Some(h) = self.hosts.remove(&fullname) {
                    self.generation.remove(&fullname);
                    self.sink.send(BrowseEvent::Lost { key: h.key, name: h.name });
                }
            }
            _ => {}
        }
    }

    fn on_meta(&mut self, event: ServiceEvent) {
        if let ServiceEvent::ServiceFound(_, ty) = event {
            self.answered = true;
            if !ty.eq_ignore_ascii_case(SERVICE_TYPE) {
                self.other_types.insert(ty);
            }
        }
    }

    /// A remembered host that turns out to be announced too is shown once, as announced.
    fn forget_remembered_at(&mut self, addrs: &[SocketAddr]) {
        let keys: Vec<String> = self
            .hosts
            .values()
            .filter(|h| h.source == Source::Remembered && h.addrs.iter().any(|a| addrs.contains(a)))
            .map(|h| h.key.clone())
            .collect();
        for key in keys {
            if let Some(h) = self.hosts.remove(&key) {
                self.sink.send(BrowseEvent::Lost { key: h.key, name: h.name });
            }
        }
    }

    fn probe(&mut self, host: &Host) {
        let generation = {
            let g = self.generation.entry(host.key.clone()).or_insert(0);
            *g += 1;
            *g
        };
        let (key, addrs, timeout, tx) =
            (host.key.clone(), host.addrs.clone(), self.opts.probe_timeout, self.probes.clone());
        // Detached: bounded by the timeout, and it only sends to this browser's inbox.
        let _ = thread::Builder::new().name("ferry-probe".into()).spawn(move || {
            let result = connect_any(&addrs, timeout);
            let _ = tx.send(Msg::Probed { key, generation, result });
        });
    }

    fn on_probed(&mut self, key: String, generation: u64, result: Result<SocketAddr, String>) {
        if self.generation.get(&key) != Some(&generation) {
            return;
        }
        let Some(host) = self.hosts.get_mut(&key) else { return };
        match result {
            Ok(addr) => {
                host.reach = Reach::Reachable;
                // The address that answered goes first: it is the one to connect to.
                host.addrs.retain(|a| *a != addr);
                host.addrs.insert(0, addr);
            }
            Err(why) => host.reach = Reach::Unreachable(why),
        }
        let host = host.clone();
        self.sink.send(BrowseEvent::Updated(host));
    }

    fn probe_remembered(&mut self, typed: String) {
        self.remembered_pending += 1;
        let (timeout, tx) = (self.opts.probe_timeout, self.probes.clone());
        let _ = thread::Builder::new().name("ferry-probe".into()).spawn(move || {
            let result = hello(&typed, timeout);
            let _ = tx.send(Msg::Remembered { typed, result });
        });
    }

    fn on_remembered(&mut self, typed: String, result: Result<Probed, String>) {
        self.remembered_pending = self.remembered_pending.saturating_sub(1);
        let Probed { addr, folder, pin, tls } = match result {
            Ok(x) => x,
            Err(why) => {
                self.remembered_failed.push((typed, why));
                return;
            }
        };
        let announced = self.hosts.values().any(|h| h.source == Source::Announced && h.addrs.contains(&addr));
        let key = format!("remembered:{typed}");
        if announced || self.hosts.contains_key(&key) {
            return;
        }
        let host = Host {
            key: key.clone(),
            name: typed,
            folder,
            addrs: vec![addr],
            pin,
            tls: tls.is_some(),
            version: if tls.is_some() { crate::protocol::VERSION } else { crate::protocol::PLAIN_VERSION },
            id: tls.flatten(),
            source: Source::Remembered,
            reach: Reach::Reachable,
        };
        self.hosts.insert(key, host.clone());
        self.sink.send(BrowseEvent::Found(host));
    }
}

fn same_announcement(a: &Host, b: &Host) -> bool {
    let addrs = |h: &Host| h.addrs.iter().copied().collect::<HashSet<_>>();
    a.name == b.name
        && a.folder == b.folder
        && a.pin == b.pin
        && a.tls == b.tls
        && a.version == b.version
        && a.id == b.id
        && addrs(a) == addrs(b)
}

/// A TCP connect to each address in turn; the first that answers, or why none did.
fn connect_any(addrs: &[SocketAddr], timeout: Duration) -> Result<SocketAddr, String> {
    let mut why = String::from("it announced no address");
    for addr in addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(_) => return Ok(*addr),
            Err(e) => why = unreachable_reason(*addr, &e),
        }
    }
    Err(why)
}

fn unreachable_reason(addr: SocketAddr, e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => format!("{addr} refused the connection (ferry's TCP port is closed or blocked)"),
        TimedOut | WouldBlock => format!("{addr} did not answer (a firewall may drop ferry's TCP port)"),
        _ => format!("{addr}: {e}"),
    }
}

/// What a probe of a remembered host learned.
struct Probed {
    /// The address that answered.
    addr: SocketAddr,
    /// The folder's name (empty when the host wants a PIN first).
    folder: String,
    pin: bool,
    /// `Some` when the host spoke version 2, with its identity (hex) when the handshake showed it.
    tls: Option<Option<String>>,
}

/// Connect and `hello` without a PIN, encrypted first and, if the host is not, plain (a host
/// started with `--plain`): what answered, and how.
fn hello(typed: &str, timeout: Duration) -> Result<Probed, String> {
    let opts = ConnectOptions { pin: None, connect_timeout: timeout, io_timeout: timeout, ..Default::default() };
    let asked_pin = |typed: &str, tls| {
        let addr = resolve_addr(typed).ok().and_then(|a| a.first().copied()).ok_or("no address")?;
        Ok(Probed { addr, folder: String::new(), pin: true, tls })
    };
    match Connection::connect(typed, &opts) {
        Ok(conn) => Ok(Probed {
            addr: conn.peer(),
            folder: conn.server().name.clone(),
            pin: false,
            tls: Some(conn.identity().map(|id| id.fingerprint.hex())),
        }),
        Err(ClientError::Refused(e)) if e.error == ErrorCode::Unauthorized => asked_pin(typed, Some(None)),
        Err(ClientError::Handshake { .. }) => {
            let plain = ConnectOptions { plain: true, ..opts };
            match Connection::connect(typed, &plain) {
                Ok(conn) => Ok(Probed { addr: conn.peer(), folder: conn.server().name.clone(), pin: false, tls: None }),
                Err(ClientError::Refused(e)) if e.error == ErrorCode::Unauthorized => asked_pin(typed, None),
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

/// What a name, typed where an address goes, turned out to be.
#[derive(Debug, Clone)]
pub enum Lookup {
    Found(Host),
    /// Several reachable hosts host a folder of that name.
    Ambiguous(Vec<Host>),
    NotFound,
}

/// Browses for up to `timeout` for a reachable host called `name`: its announced name
/// ("photos on alice-laptop", any case), or its folder's name when one host only has it.
/// Returns as soon as a host's announced name matches.
pub fn lookup(name: &str, timeout: Duration) -> Result<Lookup, DiscoveryError> {
    let opts = BrowseOptions { diagnose_after: timeout, ..Default::default() };
    let (browser, events) = Browser::start(opts, None)?;
    let deadline = Instant::now() + timeout;
    let mut hosts: HashMap<String, Host> = HashMap::new();
    let wanted = name.trim();
    while let Ok(event) = events.recv_deadline(deadline) {
        match event {
            BrowseEvent::Found(h) | BrowseEvent::Updated(h) => {
                if h.reach == Reach::Reachable && h.name.eq_ignore_ascii_case(wanted) {
                    return Ok(Lookup::Found(h));
                }
                hosts.insert(h.key.clone(), h);
            }
            BrowseEvent::Lost { key, .. } => {
                hosts.remove(&key);
            }
            BrowseEvent::NothingFound(_) => {}
            BrowseEvent::Stopped { .. } => break,
        }
    }
    drop(browser);
    let mut by_folder: Vec<Host> =
        hosts.into_values().filter(|h| h.reach == Reach::Reachable && h.folder == wanted).collect();
    by_folder.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(match by_folder.len() {
        0 => Lookup::NotFound,
        1 => Lookup::Found(by_folder.remove(0)),
        _ => Lookup::Ambiguous(by_folder),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_sort_ipv4_first_then_global_then_link_local_ipv6() {
        let mut v: Vec<SocketAddr> = ["[fe80::1%2]:7", "[2001:db8::1]:7", "10.0.0.2:7", "10.0.0.2:7"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        sort_addrs(&mut v);
        let text: Vec<String> = v.iter().map(|a| a.to_string()).collect();
        assert_eq!(text, ["10.0.0.2:7", "[2001:db8::1]:7", "[fe80::1%2]:7"]);
    }

    #[test]
    fn a_closed_port_is_reported_as_refused() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let why = connect_any(&[addr], Duration::from_secs(2)).unwrap_err();
        assert!(why.contains("refused"), "{why}");
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = l.local_addr().unwrap();
        assert_eq!(connect_any(&[addr, open], Duration::from_secs(2)), Ok(open));
    }
}
