//! Shared helpers for the integration tests: a real server on 127.0.0.1 port 0 over a temp
//! folder, deterministic pseudo-random file contents, an independent MD5, and TCP relays that
//! sit between a client and a server to damage or stall the stream.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
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

    /// Hosts a folder the caller owns (so a second server can host it after the first stops).
    pub fn start_at(root: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let mut config = ServerConfig::new(root, "127.0.0.1:0");
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
pub fn wait_for<E: std::fmt::Debug>(rx: &Receiver<E>, timeout: Duration, mut pred: impl FnMut(&E) -> bool) -> E {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) if pred(&e) => return e,
            Ok(_) => {}
            Err(_) => panic!("no matching event within {timeout:?}"),
        }
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
                // client -> server: untouched
                thread::spawn(move || pipe(c2, s2));
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

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
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
