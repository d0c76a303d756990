//! The client against a fake host that lies: nothing it sends is trusted.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use ferry::client::{CancelToken, ClientError, ConnectOptions, Connection, DownloadRequest, part_path};
use ferry::protocol::frame;
use serde_json::json;

/// A one-connection fake server: answers hello properly, then runs `script` on the socket.
fn fake_server(script: impl FnOnce(&mut TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let _hello = frame::read_frame(&mut s, frame::MAX_REQUEST_LEN).unwrap();
        let mut out = Vec::new();
        frame::write_control(&mut out, &json!({"ok":true,"version":1,"server":"fake","name":"../../etc"})).unwrap();
        s.write_all(&out).unwrap();
        script(&mut s);
    });
    addr
}

fn reply(s: &mut TcpStream, v: serde_json::Value) {
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
        thread::sleep(Duration::from_millis(500));
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
        thread::sleep(Duration::from_millis(500));
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
        thread::sleep(Duration::from_millis(500));
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
        thread::sleep(Duration::from_secs(3)); // then silence
    });
    let out = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let err = get(addr, &out.path().join("f.bin"), Duration::from_millis(300));
    assert!(matches!(err, ClientError::TimedOut(_)), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn hostile_names_in_a_listing_are_never_local_paths() {
    let addr = fake_server(|s| {
        let _ = frame::read_frame(s, frame::MAX_REQUEST_LEN);
        reply(
            s,
            json!({"ok":true,"path":"","entries":[
                {"name":"../../.bashrc","kind":"file","size":1},
                {"name":"evil\u{1b}[2J","kind":"file","size":1},
                {"name":"ok.txt","kind":"file","size":1},
                {"name":"weird","kind":"symlink"}
            ]}),
        );
        thread::sleep(Duration::from_millis(500));
    });
    let mut conn = Connection::connect(&addr.to_string(), &ConnectOptions::default()).unwrap();
    let listing = conn.list("").unwrap();
    let usable: Vec<&str> =
        listing.entries.iter().filter_map(|e| ferry::protocol::path::check_local_name(&e.name).ok()).collect();
    assert_eq!(usable, ["ok.txt", "weird"]);
    assert_eq!(listing.entries[3].kind, ferry::protocol::message::EntryKind::Other);
    assert_eq!(ferry::protocol::path::Escaped(&listing.entries[1].name).to_string(), "evil\\u{1b}[2J");
}
