//! Shared helpers for the integration tests: a real server on 127.0.0.1 port 0 over a temp
//! folder, the real `ferry` binary (always with discovery off), waits with deadlines, output
//! lines of child processes, deterministic pseudo-random file contents, an independent MD5, and
//! TCP relays that sit between a client and a server to damage or stall the stream.
//!
//! Synchronisation: wait for the real event (a channel message, an output line, a counter)
//! with a deadline; never sleep and hope.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use ferry::server::{Server, ServerConfig, ServerEvent};
use md5::Digest;

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// MD5 computed here, independently of ferry's transfer code.
pub fn md5_hex(bytes: &[u8]) -> String {
    md5::Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn md5_file(path: &Path) -> String {
    md5_hex(&std::fs::read(path).unwrap())
}

/// A running server over its own temp folder.
pub struct TestServer {
    root: PathBuf,
    _dir: Option<tempfile::TempDir>,
    pub addr: SocketAddr,
    pub server: Option<Server>,
    pub events: Receiver<ServerEvent>,
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(|_| {})
    }

    pub fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Self::start_at(dir.path(), tweak);
        s._dir = Some(dir);
        s
    }

    /// A host speaking plain version 1 (`--plain`), for the tests of the frames themselves.
    pub fn start_plain() -> TestServer {
        Self::start_with(|c| c.plain = true)
    }

    /// Hosts a folder the caller owns (so a second server can host it after the first stops).
    /// Encrypted, with this test process's identity (see [`test_identity`]).
    pub fn start_at(root: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let mut config = ServerConfig::new(root, "127.0.0.1:0");
        config.identity = Some(test_identity());
        // Hashing whole test folders at start would only load the machine: the tests of the
        // digest index ask for it.
        config.index = ferry::server::IndexMode::Listed;
        tweak(&mut config);
        let (server, events) = Server::spawn(config, None);
        let addr = loop {
            match events.recv_timeout(Duration::from_secs(10)).expect("server start event") {
                ServerEvent::Listening { addr, .. } => break addr,
                ServerEvent::StartFailed { error } => panic!("server failed to start: {error}"),
                _ => {}
            }
        };
        TestServer { root: root.to_path_buf(), _dir: None, addr, server: Some(server), events }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn addr_string(&self) -> String {
        self.addr.to_string()
    }

    /// Writes a file under the hosted folder (creating parent folders) and returns its bytes.
    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Vec<u8> {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &bytes).unwrap();
        bytes
    }

    /// Stops the server and waits for all its threads; returns the events seen after start.
    pub fn stop(&mut self) -> Vec<ServerEvent> {
        if let Some(s) = self.server.take() {
            s.stop_and_join();
        }
        self.events.try_iter().collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop_and_join();
        }
    }
}

/// Waits for the first event matching `pred`, failing the test after `timeout`.
pub fn wait_for<E: std::fmt::Debug>(rx: &Receiver<E>, timeout: Duration, pred: impl FnMut(&E) -> bool) -> E {
    collect_until(rx, timeout, pred).pop().expect("the matching event")
}

/// Every event up to and including the first one matching `pred`, failing the test (with what
/// was seen) if none arrives within `timeout`.
pub fn collect_until<E: std::fmt::Debug>(
    rx: &Receiver<E>,
    timeout: Duration,
    mut pred: impl FnMut(&E) -> bool,
) -> Vec<E> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        match rx.recv_deadline(deadline) {
            Ok(e) => {
                let done = pred(&e);
                seen.push(e);
                if done {
                    return seen;
                }
            }
            Err(RecvTimeoutError::Timeout) => panic!("no matching event within {timeout:?}; saw {seen:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the channel closed without a matching event; saw {seen:?}"),
        }
    }
}

/// Checks `cond` until it holds or `timeout` has passed; true if it held. For state that sends
/// no event (a byte counter, /proc figures); anything that does send one is waited on instead.
#[must_use = "assert on the result: false means the deadline passed"]
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// One identity for the in-process hosts of this test process, never written to disk.
pub fn test_identity() -> std::sync::Arc<ferry::transport::Identity> {
    static ID: std::sync::OnceLock<std::sync::Arc<ferry::transport::Identity>> = std::sync::OnceLock::new();
    ID.get_or_init(|| std::sync::Arc::new(ferry::transport::Identity::generate().unwrap())).clone()
}

/// The configuration folder the real binary uses in these tests (its identity key and known
/// hosts), one per test process under the target's temp folder: never the person's own.
pub fn test_config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("config-{}", std::process::id()))
}

/// The real `ferry` binary of this build.
pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// A command running the real `ferry` binary with mDNS discovery off (tests never announce or
/// browse on the machine's real interfaces) and the test configuration folder.
pub fn ferry_command() -> Command {
    let mut c = Command::new(FERRY);
    c.env("FERRY_NO_DISCOVERY", "1");
    c.env("FERRY_CONFIG_DIR", test_config_dir());
    c
}

/// Runs the real `ferry` with `args` in `cwd` to its end; what it printed and its exit status.
pub fn ferry(args: &[&str], cwd: &Path) -> std::process::Output {
    ferry_command().args(args).current_dir(cwd).stdin(Stdio::null()).output().unwrap()
}

/// The lines a child process writes to one pipe, read on a thread as they come, so a test can
/// wait for a line with a deadline and still get every line once the child has exited.
pub struct Lines {
    rx: Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    pub fn read(pipe: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = crossbeam_channel::unbounded();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { rx, seen: Vec::new() }
    }

    /// Waits for the next line matching `pred` and returns it; fails the test (with every line
    /// seen) if none comes within `timeout` or the pipe closes first.
    pub fn wait_for(&mut self, timeout: Duration, mut pred: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            match self.rx.recv_deadline(deadline) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no matching line within {timeout:?}; lines so far: {:#?}", self.seen)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the output ended without a matching line; lines: {:#?}", self.seen)
                }
            }
        }
    }

    /// Waits for the pipe to close (the child has exited) and returns every line it ever wrote.
    pub fn until_closed(&mut self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.rx.recv_deadline(deadline) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => return self.seen.clone(),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("the output did not end within {timeout:?}; lines so far: {:#?}", self.seen)
                }
            }
        }
    }
}

/// Waits (bounded) for a child to exit; kills it and fails the test if it does not.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let mut status = None;
    let exited = wait_until(timeout, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("ferry (pid {}) did not exit within {timeout:?}", child.id());
    }
    status.unwrap()
}

/// Ctrl-C for a child process (Unix: SIGINT; on Windows Ctrl-C reaches a child only through
/// a shared console).
#[cfg(unix)]
pub fn interrupt(child: &Child) {
    // SAFETY: kill(2) with our own, not yet reaped, child's pid and a valid signal number.
    let r = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(r, 0, "SIGINT to ferry: {}", std::io::Error::last_os_error());
}

/// `ferry serve DIR --bind 127.0.0.1:0 [ARGS]` as a child process, with the address it printed
/// and its output lines. Killed (if still running) when dropped.
pub struct ServeProcess {
    pub child: Child,
    pub addr: String,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl ServeProcess {
    pub fn start(dir: &Path, args: &[&str]) -> ServeProcess {
        let mut child = ferry_command()
            .arg("serve")
            .arg(dir)
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = Lines::read(child.stdout.take().unwrap());
        let stderr = Lines::read(child.stderr.take().unwrap());
        // "HH:MM:SS hosting /path at 127.0.0.1:PORT (read-only); Ctrl-C stops"
        let first = stdout.wait_for(Duration::from_secs(10), |l| l.contains(" hosting "));
        let addr = first.split(" at ").nth(1).and_then(|r| r.split(' ').next()).expect(&first).to_string();
        assert!(addr.starts_with("127.0.0.1:"), "{first}");
        ServeProcess { child, addr, stdout, stderr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ctrl-C, then waits (bounded) for the exit and for the end of its output.
    /// Returns the exit status and every stdout line.
    #[cfg(unix)]
    pub fn interrupt_and_wait(&mut self) -> (ExitStatus, Vec<String>) {
        interrupt(&self.child);
        let status = wait_exit(&mut self.child, Duration::from_secs(10));
        (status, self.stdout.until_closed(Duration::from_secs(10)))
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a relay does to the bytes flowing from the server to the client.
#[derive(Clone)]
pub enum Tamper {
    /// Pass everything through untouched.
    None,
    /// XOR the byte at this offset of the server-to-client stream with 0x01.
    FlipByteAt(u64),
    /// Pass this many bytes, then hold the rest until [`Relay::release`]; after release,
    /// drop everything and close the client's side when the server's side ends.
    StallAfter(u64),
    /// Leave the server-to-client stream alone; XOR the byte at this offset of the
    /// client-to-server stream (an upload's data) with 0x01.
    FlipUpstreamByteAt(u64),
    /// Pass this many bytes of the client-to-server stream (an upload), then hold the rest
    /// until [`Relay::release`]; after release, drop everything and close the server's side.
    StallUpstreamAfter(u64),
}

/// A TCP relay on 127.0.0.1 port 0 that forwards each connection to `target`.
pub struct Relay {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    release: Arc<(Mutex<bool>, Condvar)>,
    /// Bytes forwarded server-to-client so far (all connections).
    pub forwarded: Arc<AtomicU64>,
}

impl Relay {
    pub fn start(target: SocketAddr, tamper: Tamper) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let release = Arc::new((Mutex::new(false), Condvar::new()));
        let forwarded = Arc::new(AtomicU64::new(0));
        let (stop2, release2, fwd2) = (stop.clone(), release.clone(), forwarded.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else { continue };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                // client -> server: untouched, unless an upload is to be damaged
                let upstream = tamper.clone();
                let held = release2.clone();
                thread::spawn(move || pipe(c2, s2, upstream, held));
                let (tamper, release, fwd) = (tamper.clone(), release2.clone(), fwd2.clone());
                thread::spawn(move || pipe_tampered(server, client, tamper, release, fwd));
            }
        });
        Relay { addr, stop, release, forwarded }
    }

    /// Lets a `StallAfter` relay go on (dropping what it held).
    pub fn release(&self) {
        let (m, cv) = &*self.release;
        *m.lock().unwrap() = true;
        cv.notify_all();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.release();
        let _ = TcpStream::connect(self.addr);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, tamper: Tamper, release: Arc<(Mutex<bool>, Condvar)>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0u64;
    loop {
        let limit = match tamper {
            Tamper::StallUpstreamAfter(n) if pos >= n => {
                let (m, cv) = &*release;
                let mut released = m.lock().unwrap();
                while !*released {
                    released = cv.wait(released).unwrap();
                }
                drop(released);
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
            Tamper::StallUpstreamAfter(n) => ((n - pos) as usize).min(buf.len()),
            _ => buf.len(),
        };
        match from.read(&mut buf[..limit]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Tamper::FlipUpstreamByteAt(at) = tamper
                    && at >= pos
                    && at < pos + n as u64
                {
                    buf[(at - pos) as usize] ^= 0x01;
                }
                pos += n as u64;
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn pipe_tampered(
    mut from: TcpStream,
    mut to: TcpStream,
    tamper: Tamper,
    release: Arc<(Mutex<bool>, Condvar)>,
    fwd: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0u64;
    loop {
        let limit = match tamper {
            Tamper::StallAfter(n) if pos >= n => {
                let (m, cv) = &*release;
                let mut released = m.lock().unwrap();
                while !*released {
                    released = cv.wait(released).unwrap();
                }
                drop(released);
                // Drain the server's side, forward nothing, then close the client's side.
                while matches!(from.read(&mut buf), Ok(n) if n > 0) {}
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
            Tamper::StallAfter(n) => ((n - pos) as usize).min(buf.len()),
            _ => buf.len(),
        };
        let n = match from.read(&mut buf[..limit]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Tamper::FlipByteAt(at) = tamper
            && at >= pos
            && at < pos + n as u64
        {
            buf[(at - pos) as usize] ^= 0x01;
        }
        pos += n as u64;
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        fwd.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The path of a fresh download destination in a new temp folder.
pub fn dest_in(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// A raw plain-protocol client (the host must be plain): writes whatever it is told, reads
/// frames back.
pub struct Raw {
    pub s: TcpStream,
}

impl Raw {
    /// Connected; a read waits at most 10 s (then [`Raw::closed`] says so).
    pub fn connect(addr: SocketAddr) -> Raw {
        Raw::connect_waiting(addr, Duration::from_secs(10))
    }

    pub fn connect_waiting(addr: SocketAddr, wait: Duration) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(wait)).unwrap();
        Raw { s }
    }

    /// Connected and past a version 1 `hello`.
    pub fn hello(addr: SocketAddr) -> Raw {
        Raw::hello_waiting(addr, Duration::from_secs(10))
    }

    pub fn hello_waiting(addr: SocketAddr, wait: Duration) -> Raw {
        let mut r = Raw::connect_waiting(addr, wait);
        let reply = r.call(&serde_json::json!({"op":"hello","version":1,"client":"raw-test"}));
        assert_eq!(reply["ok"], true, "{reply}");
        r
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    pub fn send(&mut self, v: &serde_json::Value) {
        let mut buf = Vec::new();
        ferry::protocol::frame::write_control(&mut buf, v).unwrap();
        self.send_bytes(&buf);
    }

    pub fn reply(&mut self) -> serde_json::Value {
        let payload = ferry::protocol::frame::read_frame(&mut self.s, ferry::protocol::frame::MAX_RESPONSE_LEN)
            .expect("a reply frame");
        serde_json::from_slice(&payload).expect("a JSON reply")
    }

    pub fn call(&mut self, v: &serde_json::Value) -> serde_json::Value {
        self.send(v);
        self.reply()
    }

    pub fn call_raw(&mut self, payload: &[u8]) -> serde_json::Value {
        let mut buf = Vec::new();
        ferry::protocol::frame::write_frame(&mut buf, payload).unwrap();
        self.send_bytes(&buf);
        self.reply()
    }

    /// True when the server has closed the connection.
    pub fn closed(&mut self) -> bool {
        matches!(
            ferry::protocol::frame::read_frame(&mut self.s, 1 << 20),
            Err(ferry::protocol::frame::FrameError::Closed | ferry::protocol::frame::FrameError::Io(_))
        )
    }

    /// Reads a data section: prefix, bytes, trailer.
    pub fn data(&mut self) -> (Vec<u8>, [u8; 16]) {
        let n = ferry::protocol::frame::read_header(&mut self.s).unwrap();
        let mut bytes = vec![0u8; n as usize];
        self.s.read_exact(&mut bytes).unwrap();
        let mut trailer = [0u8; 16];
        self.s.read_exact(&mut trailer).unwrap();
        (bytes, trailer)
    }
}
