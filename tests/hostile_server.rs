//! The client against a fake host that lies: nothing it sends is trusted.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};

use ferry::transport::{HostTls, Stream};
use std::thread;
use std::time::{Duration, Instant};

use ferry::client::{CancelToken, ClientError, ConnectOptions, Connection, DownloadRequest, part_path};
use ferry::protocol::frame;
use md5::Digest;
use serde_json::{Value, json};
use support::*;

/// A fake server: answers each connection's hello properly, then runs `script` on the socket.
/// Connections are served one after the other, for as long as the test runs.
fn fake_server(script: impl Fn(&mut Stream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // It speaks version 2 like a real host: TLS with an identity, then hostile frames.
    let tls = HostTls::new(&test_identity()).unwrap();
    thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            // Bounded, so a test that fails half-way cannot leave this thread stuck.
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let Ok(mut s) = tls.accept(s) else { continue };
            if frame::read_frame(&mut s, frame::MAX_REQUEST_LEN).is_err() {
                continue;
            }
            let mut out = Vec::new();
            frame::write_control(&mut out, &json!({"ok":true,"version":2,"server":"fake","name":"../../etc"})).unwrap();
            if s.write_all(&out).is_ok() {
                script(&mut s);
            }
        }
    });
    addr
}

/// Keeps the connection open until the client hangs up (bounded by the read timeout), so the
/// client meets what it was sent rather than a closed socket.
fn hold_open(s: &mut Stream) {
    let mut sink = [0u8; 4096];
    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
}

fn reply(s: &mut Stream, v: serde_json::Value) {
    let mut out = Vec::new();
    frame::write_control(&mut out, &v).unwrap();
    s.write_all(&out).unwrap();
}

fn get(addr: SocketAddr, dest: &std::path::Path, timeout: Duration) -> ClientError {
    let opts = ConnectOptions { io_timeout: timeout, ..Default::default() };
    let mut conn = Connection::connect(&addr.to_string(), &opts).unwrap();
    let req = DownloadRequest { path: "f.bin".into(), dest: dest.to_path_buf(), overwrite: false };
    conn.download(&req, &CancelToken::new(), &mut |_| {}).expect_err("the download must fail")
}

#[test]
fn huge_reply_prefix_is_refused_without_allocating() {
    let addr = fake_server(|s| {
        let _ = frame::read_frame(s, frame::MAX_REQUEST_LEN);
        s.write_all(&[0xff; 8]).unwrap();
        hold_open(s);
    });
    let mut conn = Connection::connect(&addr.to_string(), &ConnectOptions::default()).unwrap();
    let err = conn.list("").unwrap_err();
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
}

#[test]
fn data_prefix_disagreeing_with_the_announced_size_is_an_error() {
    let addr = fake_server(|s| {
        let _ = frame::read_frame(s, frame::MAX_REQUEST_LEN);
        reply(s, json!({"ok":true,"size":10,"offset":0}));
        s.write_all(&frame::encode_header(11)).unwrap();
        s.write_all(&[0u8; 11 + 16]).unwrap();
        hold_open(s);
    });
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("f.bin");
    let err = get(addr, &dest, Duration::from_secs(10));
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
    assert!(!dest.exists());
}

#[test]
fn reply_offset_other_than_requested_is_an_error() {
    let addr = fake_server(|s| {
        let _ = frame::read_frame(s, frame::MAX_REQUEST_LEN);
        reply(s, json!({"ok":true,"size":10,"offset":5}));
        hold_open(s);
    });
    let out = tempfile::tempdir().unwrap();
    let err = get(addr, &out.path().join("f.bin"), Duration::from_secs(10));
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
}

#[test]
fn host_vanishing_mid_transfer_is_incomplete_and_keeps_the_part() {
    let addr = fake_server(|s| {
        let _ = frame::read_frame(s, frame::MAX_REQUEST_LEN);
        reply(s, json!({"ok":true,"size":1000,"offset":0}));
        s.write_all(&frame::encode_header(1000)).unwrap();
        s.write_all(&[7u8; 400]).unwrap();
        // and vanish
    });
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("f.bin");
    let err = get(addr, &dest, Duration::from_secs(10));
    assert!(matches!(err, ClientError::Incomplete(_)), "{err:?}");
    assert!(!dest.exists());
    assert_eq!(std::fs::read(part_path(&dest)).unwrap(), vec![7u8; 400]);
}

#[test]
fn host_closing_before_the_trailer_is_incomplete() {
    let addr = fake_server(|s| {
        let _ = frame::read_frame(s, frame::MAX_REQUEST_LEN);
        reply(s, json!({"ok":true,"size":3,"offset":0}));
        s.write_all(&frame::encode_header(3)).unwrap();
        s.write_all(b"abc").unwrap();
        s.write_all(&[0u8; 5]).unwrap(); // 5 of the 16 trailer bytes
    });
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("f.bin");
    let err = get(addr, &dest, Duration::from_secs(10));
    assert!(matches!(err, ClientError::Incomplete(_)), "{err:?}");
    assert!(!dest.exists());
}

#[test]
fn silent_host_times_out() {
    let addr = fake_server(|s| {
        let _ = frame::read_frame(s, frame::MAX_REQUEST_LEN);
        reply(s, json!({"ok":true,"size":100,"offset":0}));
        s.write_all(&frame::encode_header(100)).unwrap();
        hold_open(s); // and say nothing more
    });
    let out = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let err = get(addr, &out.path().join("f.bin"), Duration::from_millis(300));
    assert!(matches!(err, ClientError::TimedOut(_)), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
}

/// A host whose listing holds names meant to escape the download folder or to take over the
/// terminal, and which serves every `get` (whatever the path) with the same small file.
fn hostile_listing_host() -> SocketAddr {
    fake_server(|s| {
        while let Ok(payload) = frame::read_frame(s, frame::MAX_REQUEST_LEN) {
            let request: Value = serde_json::from_slice(&payload).unwrap();
            match request["op"].as_str() {
                Some("list") => reply(
                    s,
                    json!({"ok":true,"path":"","entries":[
                        {"name":"../../.bashrc","kind":"file","size":7},
                        {"name":"evil\u{1b}[2J","kind":"file","size":7},
                        {"name":"forged\n       1 B  2026-01-01 00:00  fake.txt","kind":"file","size":7},
                        {"name":"ok.txt","kind":"file","size":7},
                        {"name":"weird","kind":"symlink"}
                    ]}),
                ),
                Some("get") => {
                    reply(s, json!({"ok":true,"size":HOSTILE_FILE.len(),"offset":0}));
                    s.write_all(&frame::encode_header(HOSTILE_FILE.len() as u64)).unwrap();
                    s.write_all(HOSTILE_FILE).unwrap();
                    s.write_all(&md5::Md5::digest(HOSTILE_FILE)).unwrap();
                }
                _ => return,
            }
        }
    })
}

const HOSTILE_FILE: &[u8] = b"owned!\n";

#[test]
fn hostile_names_in_a_listing_are_shown_escaped_and_never_used_as_local_paths() {
    let addr = hostile_listing_host().to_string();
    let top = tempfile::tempdir().unwrap();
    let here = top.path().join("a/b");
    std::fs::create_dir_all(&here).unwrap();

    // `ferry ls`: one line per entry, control characters escaped, nothing reaches the terminal raw.
    let out = ferry(&["ls", &addr], &here);
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!listing.contains('\u{1b}'), "a raw escape reached the terminal: {listing:?}");
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 5, "a name with a newline forged a line: {listing}");
    assert!(lines.iter().any(|l| l.ends_with("evil\\u{1b}[2J")), "{listing}");
    assert!(lines.iter().any(|l| l.ends_with("forged\\n       1 B  2026-01-01 00:00  fake.txt")), "{listing}");
    let weird = lines.iter().find(|l| l.ends_with("weird")).expect(&listing);
    assert!(weird.trim_start().starts_with('-'), "a symlink is neither a file with a size nor a folder: {weird}");

    // `ferry get` of a name that climbs out: saved under its last component, in this folder.
    let out = ferry(&["get", &addr, "../../.bashrc"], &here);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(here.join(".bashrc")).unwrap(), HOSTILE_FILE);
    assert!(!top.path().join(".bashrc").exists(), "the host's name climbed out of the folder");
    assert!(!top.path().join("a/.bashrc").exists(), "the host's name climbed out of the folder");

    // A name with a control character is no local name: refused before anything is written.
    let out = ferry(&["get", &addr, "evil\u{1b}[2J"], &here);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("-o") && !err.contains('\u{1b}'), "{err}");
    let names: Vec<_> = std::fs::read_dir(&here).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, [".bashrc"], "only the one accepted download was written");
}
