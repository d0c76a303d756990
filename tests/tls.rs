//! Version 2: encrypted, authenticated connections. What someone on the network sees (nothing
//! of the files, the names or the PIN), what a man in the middle gets (a different identity at
//! first contact, a refusal once the host is known, a failed PIN exchange), and what a plain
//! client or host is told.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use ferry::client::{CancelToken, ClientError, ConnectOptions, Connection, DownloadRequest, Outcome};
use ferry::protocol::frame;
use ferry::protocol::message::ErrorCode;
use ferry::server::ServerEvent;
use ferry::transport::{self, Contact, Fingerprint, HostTls, Identity, KnownHosts, Stream};
use serde_json::{Value, json};
use support::*;

/// A TCP relay that records every byte in both directions and forwards to whatever `target`
/// says at the moment a connection arrives.
struct Recorder {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start(target: SocketAddr) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (target2, seen2) = (target.clone(), seen.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let to = *target2.lock().unwrap();
                let Ok(server) = TcpStream::connect(to) else { continue };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (r1, r2) = (seen2.clone(), seen2.clone());
                thread::spawn(move || record(c2, s2, r1));
                thread::spawn(move || record(server, client, r2));
            }
        });
        Recorder { addr, target, seen }
    }

    fn retarget(&self, to: SocketAddr) {
        *self.target.lock().unwrap() = to;
    }

    fn recorded(&self) -> Vec<u8> {
        self.seen.lock().unwrap().clone()
    }
}

fn record(mut from: TcpStream, mut to: TcpStream, seen: Arc<Mutex<Vec<u8>>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn opts(pin: Option<&str>) -> ConnectOptions {
    ConnectOptions { pin: pin.map(Into::into), ..Default::default() }
}

/// Lists the hosted folder and downloads `name`, checking the result.
fn list_and_fetch(addr: &str, options: &ConnectOptions, name: &str, expect: &[u8]) -> Connection {
    let mut conn = Connection::connect(addr, options).unwrap();
    let listing = conn.list("").unwrap();
    assert!(listing.entries.iter().any(|e| e.name == name), "{listing:?}");
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join(name);
    let req = DownloadRequest { path: name.into(), dest: dest.clone(), overwrite: false };
    match conn.download(&req, &CancelToken::new(), &mut |_| {}).unwrap() {
        Outcome::Verified { .. } => assert_eq!(std::fs::read(&dest).unwrap(), expect),
        other => panic!("{other:?}"),
    }
    conn
}

#[test]
fn an_eavesdropper_sees_no_file_byte_no_name_and_no_pin() {
    let pin = "483920";
    let srv = TestServer::start_with(|c| c.pin = Some(pin.into()));
    let name = "quarterly-secret-plans.txt";
    let bytes = srv.put(name, random_bytes(300_000, 41));
    srv.put("folder-of-hidden-things/x", b"x".to_vec());
    let relay = Recorder::start(srv.addr);
    let conn = list_and_fetch(&relay.addr.to_string(), &opts(Some(pin)), name, &bytes);
    assert!(conn.identity().unwrap().pin_verified);
    drop(conn);

    let wire = relay.recorded();
    assert!(wire.len() > bytes.len(), "the whole transfer went through the recorder ({} bytes)", wire.len());
    for at in (0..bytes.len() - 16).step_by(997) {
        assert!(!contains(&wire, &bytes[at..at + 16]), "file bytes at {at} are readable on the wire");
    }
    for secret in [name, "folder-of-hidden-things", "quarterly", pin] {
        assert!(!contains(&wire, secret.as_bytes()), "{secret:?} is readable on the wire");
    }
    assert!(!contains(&wire, b"\"op\""), "no request is readable on the wire");
}

#[test]
fn the_same_recorder_reads_everything_of_a_plain_connection() {
    // The control for the test above: the recorder does see what travels in the clear.
    let srv = TestServer::start_with(|c| {
        c.plain = true;
        c.pin = Some("483920".into());
    });
    let bytes = srv.put("open-book.txt", random_bytes(50_000, 42));
    let relay = Recorder::start(srv.addr);
    let plain = ConnectOptions { plain: true, ..opts(Some("483920")) };
    let conn = list_and_fetch(&relay.addr.to_string(), &plain, "open-book.txt", &bytes);
    assert!(conn.identity().is_none(), "a plain connection has no identity");
    drop(conn);
    let wire = relay.recorded();
    assert!(contains(&wire, &bytes[1000..1016]));
    assert!(contains(&wire, b"open-book.txt"));
    assert!(contains(&wire, b"483920"), "version 1 sends the PIN itself");
}

#[test]
fn the_client_sees_the_hosts_identity_first_then_knows_it() {
    let srv = TestServer::start();
    let listening = test_identity().fingerprint();
    let known = tempfile::tempdir().unwrap();
    let options = ConnectOptions { known_hosts: Some(known.path().join("known_hosts")), ..Default::default() };
    let first = Connection::connect(&srv.addr_string(), &options).unwrap();
    let id = first.identity().unwrap().clone();
    assert_eq!((id.fingerprint, id.contact), (listening, Contact::First));
    assert_eq!(id.host, srv.addr_string());
    assert!(!id.pin_verified);
    let again = Connection::connect(&srv.addr_string(), &options).unwrap();
    assert_eq!(again.identity().unwrap().contact, Contact::Known);
    let text = std::fs::read_to_string(known.path().join("known_hosts")).unwrap();
    assert!(text.contains(&format!("{} {}", srv.addr_string(), listening.hex())), "{text}");
}

/// A man in the middle at the frame level: its own TLS identity towards the client, a TLS
/// client of the real host, forwarding each frame (after `tamper`) in the strict turn-taking
/// of the hello / confirm phase. Counts the frames it managed to pass to the host.
struct Mitm {
    addr: SocketAddr,
    identity: Fingerprint,
    forwarded: Arc<AtomicUsize>,
}

fn mitm(host: SocketAddr, tamper: fn(&mut Value)) -> Mitm {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let id = Identity::generate().unwrap();
    let identity = id.fingerprint();
    let tls = HostTls::new(&id).unwrap();
    let forwarded = Arc::new(AtomicUsize::new(0));
    let counter = forwarded.clone();
    thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { break };
            let (tls, counter) = (tls.clone(), counter.clone());
            thread::spawn(move || {
                tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let Ok(mut client) = tls.accept(tcp) else { return };
                let up = TcpStream::connect(host).unwrap();
                up.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut host_side = transport::connect(up).unwrap();
                let pass = |from: &mut Stream, to: &mut Stream, count: bool| -> bool {
                    let Ok(payload) = frame::read_frame(from, frame::MAX_RESPONSE_LEN) else { return false };
                    let mut v: Value = serde_json::from_slice(&payload).unwrap();
                    tamper(&mut v);
                    let mut out = Vec::new();
                    frame::write_control(&mut out, &v).unwrap();
                    if count {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    to.write_all(&out).and_then(|()| to.flush()).is_ok()
                };
                while pass(&mut client, &mut host_side, true) && pass(&mut host_side, &mut client, false) {}
            });
        }
    });
    Mitm { addr, identity, forwarded }
}

fn no_tamper(_: &mut Value) {}

#[test]
fn a_man_in_the_middle_shows_another_identity_and_is_refused_once_the_host_is_known() {
    let srv = TestServer::start();
    srv.put("a.txt", b"real".to_vec());
    let real = test_identity().fingerprint();
    // The client reaches the host through an address that a man in the middle can take over.
    let path = Recorder::start(srv.addr);
    let known = tempfile::tempdir().unwrap();
    let options = ConnectOptions { known_hosts: Some(known.path().join("known_hosts")), ..Default::default() };

    // First contact through someone in between: it works, but shows the intruder's identity,
    // which differs from the one on the host's screen.
    let intruder = mitm(srv.addr, no_tamper);
    let mut via = Connection::connect(&intruder.addr.to_string(), &options).unwrap();
    assert_eq!(via.identity().unwrap().contact, Contact::First);
    assert_eq!(via.identity().unwrap().fingerprint, intruder.identity);
    assert_ne!(intruder.identity, real);
    assert_eq!(via.list("").unwrap().entries[0].name, "a.txt");

    // The person meets the real host at this address and it is remembered.
    let direct = Connection::connect(&path.addr.to_string(), &options).unwrap();
    assert_eq!(direct.identity().unwrap().fingerprint, real);
    drop(direct);
    // Later, someone sits in between at that same address: refused before anything is sent.
    path.retarget(intruder.addr);
    let before = intruder.forwarded.load(Ordering::SeqCst);
    match Connection::connect(&path.addr.to_string(), &options) {
        Err(ClientError::IdentityChanged { host, known, seen }) => {
            assert_eq!((host, known, seen), (path.addr.to_string(), real, intruder.identity));
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("connected to a changed identity"),
    }
    let err = Connection::connect(&path.addr.to_string(), &options).err().unwrap().to_string();
    assert!(err.contains("DIFFERENT IDENTITY") && err.contains(&real.groups()), "{err}");
    assert!(err.contains(&intruder.identity.groups()), "{err}");
    assert_eq!(intruder.forwarded.load(Ordering::SeqCst), before, "not one request reached the intruder");
    // The file still names the real host; accepting the new identity is the person's choice.
    let kh = KnownHosts::new(known.path().join("known_hosts"));
    assert_eq!(kh.lookup(&path.addr.to_string()).unwrap(), Some(real));
    let accept = ConnectOptions { accept_new_identity: true, ..options.clone() };
    let conn = Connection::connect(&path.addr.to_string(), &accept).unwrap();
    assert_eq!(conn.identity().unwrap().contact, Contact::Changed { known: real });
    assert_eq!(kh.lookup(&path.addr.to_string()).unwrap(), Some(intruder.identity));
}

#[test]
fn the_right_pin_opens_and_proves_the_host() {
    let srv = TestServer::start_with(|c| c.pin = Some("1357".into()));
    srv.put("f", b"f".to_vec());
    let mut conn = Connection::connect(&srv.addr_string(), &opts(Some("1357"))).unwrap();
    assert!(conn.identity().unwrap().pin_verified);
    assert_eq!(conn.server().name, srv.root().file_name().unwrap().to_str().unwrap(), "named after confirm");
    assert_eq!(conn.server().version, 2);
    assert_eq!(conn.list("").unwrap().entries.len(), 1);
}

#[test]
fn a_wrong_pin_fails_with_one_clear_message_and_the_host_never_logs_it() {
    let srv = TestServer::start_with(|c| c.pin = Some("1357".into()));
    let err = Connection::connect(&srv.addr_string(), &opts(Some("2468"))).err().unwrap();
    assert!(matches!(err, ClientError::WrongPin), "{err:?}");
    assert!(err.to_string().contains("wrong PIN, or someone between you and the host"), "{err}");
    let rejected = wait_for(&srv.events, Duration::from_secs(10), |e| matches!(e, ServerEvent::ClientRejected { .. }));
    let ServerEvent::ClientRejected { reason, .. } = rejected else { unreachable!() };
    assert!(reason.contains("wrong PIN"), "{reason}");
    let mut srv = srv;
    let all = format!("{:?}", srv.stop());
    assert!(!all.contains("1357") && !all.contains("2468"), "a PIN in the host's events: {all}");
    // No PIN at all, and a PIN the host did not ask for, are refused too.
    let srv = TestServer::start_with(|c| c.pin = Some("1357".into()));
    match Connection::connect(&srv.addr_string(), &opts(None)) {
        Err(ClientError::Refused(e)) => assert_eq!(e.error, ErrorCode::Unauthorized),
        other => panic!("{:?}", other.err()),
    }
    let open = TestServer::start();
    assert!(matches!(Connection::connect(&open.addr_string(), &opts(Some("1357"))), Err(ClientError::PinNotAsked)));
}

#[test]
fn a_man_in_the_middle_relaying_the_pin_exchange_fails_even_untouched() {
    // The SPAKE2 messages pass unchanged between two TLS sessions, but each side binds its
    // confirmation to its own session: the client sees a wrong host confirmation and stops.
    let srv = TestServer::start_with(|c| c.pin = Some("1357".into()));
    srv.put("f", b"f".to_vec());
    let intruder = mitm(srv.addr, no_tamper);
    let err = Connection::connect(&intruder.addr.to_string(), &opts(Some("1357"))).err().unwrap();
    assert!(matches!(err, ClientError::WrongPin), "{err:?}");
    assert_eq!(intruder.forwarded.load(Ordering::SeqCst), 1, "only hello reached the host, never a confirm");
    wait_for(&srv.events, Duration::from_secs(10), |e| matches!(e, ServerEvent::ClientRejected { .. }));
    // The host itself still opens with the right PIN.
    assert!(Connection::connect(&srv.addr_string(), &opts(Some("1357"))).is_ok());
}

fn flip_pake(v: &mut Value) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(p) = v.get("pake").and_then(Value::as_str) {
        let mut bytes = b64.decode(p).unwrap();
        bytes[9] ^= 0x04;
        v["pake"] = Value::String(b64.encode(bytes));
    }
}

#[test]
fn a_relay_that_tampers_with_the_pake_messages_fails() {
    let srv = TestServer::start_with(|c| c.pin = Some("1357".into()));
    let intruder = mitm(srv.addr, flip_pake);
    let err = Connection::connect(&intruder.addr.to_string(), &opts(Some("1357"))).err().unwrap();
    let failed_as_it_should = match &err {
        ClientError::WrongPin => true,
        // A flipped bit may leave no valid curve point: the host refuses the message.
        ClientError::Refused(e) => e.error == ErrorCode::Unauthorized,
        _ => false,
    };
    assert!(failed_as_it_should, "{err:?}");
}

#[test]
fn a_flipped_byte_inside_tls_breaks_the_connection_not_the_file() {
    let srv = TestServer::start();
    let bytes = srv.put("c.bin", random_bytes(1024 * 1024, 43));
    let relay = Relay::start(srv.addr, Tamper::FlipByteAt(200_000));
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("c.bin");
    let mut conn = Connection::connect(&relay.addr.to_string(), &ConnectOptions::default()).unwrap();
    let req = DownloadRequest { path: "c.bin".into(), dest: dest.clone(), overwrite: false };
    let err = conn.download(&req, &CancelToken::new(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, ClientError::Tampered), "TLS refuses the damaged record: {err:?}");
    assert!(err.to_string().contains("changed on the way"), "said in words: {err}");
    assert!(!dest.exists(), "nothing under the final name");
    // What arrived before the damaged record is intact (TLS checked it) and kept for a resume.
    let kept = std::fs::read(ferry::client::part_path(&dest)).unwrap();
    assert!(kept.len() < bytes.len() && kept[..] == bytes[..kept.len()]);
}

#[test]
fn a_flipped_byte_in_an_encrypted_upload_is_named_on_the_host() {
    let srv = TestServer::start_with(|c| c.allow_upload = true);
    let local_dir = tempfile::tempdir().unwrap();
    let local = local_dir.path().join("u.bin");
    std::fs::write(&local, random_bytes(2 * 1024 * 1024, 44)).unwrap();
    let relay = Relay::start(srv.addr, Tamper::FlipUpstreamByteAt(600_000));
    let mut conn = Connection::connect(&relay.addr.to_string(), &ConnectOptions::default()).unwrap();
    let req = ferry::client::UploadRequest { local, path: "u.bin".into(), mkdirs: false };
    assert!(conn.upload(&req, &CancelToken::new(), &mut |_| {}).is_err(), "the host closed the connection");
    let failed = wait_for(&srv.events, Duration::from_secs(20), |e| matches!(e, ServerEvent::TransferFailed { .. }));
    let ServerEvent::TransferFailed { error, .. } = &failed else { unreachable!() };
    assert!(error.contains("changed on the way"), "{error}");
    assert!(!srv.root().join("u.bin").exists(), "nothing under the final name");
}

#[test]
fn a_plain_frame_to_an_encrypted_host_is_answered_tls_required() {
    let srv = TestServer::start();
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    frame::write_control(&mut s, &json!({"op":"hello","version":1,"client":"old"})).unwrap();
    let reply: Value = serde_json::from_slice(&frame::read_frame(&mut s, frame::MAX_RESPONSE_LEN).unwrap()).unwrap();
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["error"], "tls_required", "{reply}");
    assert!(matches!(frame::read_frame(&mut s, frame::MAX_RESPONSE_LEN), Err(frame::FrameError::Closed)));
    // The engine's plain client says what to do.
    let plain = ConnectOptions { plain: true, ..Default::default() };
    let err = Connection::connect(&srv.addr_string(), &plain).err().unwrap();
    assert!(matches!(err, ClientError::TlsRequired), "{err:?}");
    assert!(err.to_string().contains("without --plain"), "{err}");
}

#[test]
fn an_encrypted_client_at_a_plain_host_is_told_about_plain() {
    let srv = TestServer::start_plain();
    let err = Connection::connect(&srv.addr_string(), &ConnectOptions::default()).err().unwrap();
    assert!(matches!(err, ClientError::Handshake { .. }), "{err:?}");
    assert!(err.to_string().contains("--plain"), "{err}");
}

#[test]
fn inside_tls_hello_must_say_version_2() {
    let srv = TestServer::start();
    let mut s = transport::connect(TcpStream::connect(srv.addr).unwrap()).unwrap();
    let mut call = |v: Value| -> Value {
        frame::write_control(&mut s, &v).unwrap();
        s.flush().unwrap();
        serde_json::from_slice(&frame::read_frame(&mut s, frame::MAX_RESPONSE_LEN).unwrap()).unwrap()
    };
    let v = call(json!({"op":"hello","version":1,"client":"x"}));
    assert_eq!(v["error"], "unsupported_version", "{v}");
    let mut s = transport::connect(TcpStream::connect(srv.addr).unwrap()).unwrap();
    frame::write_control(&mut s, &json!({"op":"hello","version":2,"client":"x"})).unwrap();
    s.flush().unwrap();
    let v: Value = serde_json::from_slice(&frame::read_frame(&mut s, frame::MAX_RESPONSE_LEN).unwrap()).unwrap();
    assert_eq!((v["ok"].clone(), v["version"].clone()), (json!(true), json!(2)), "{v}");
    frame::write_control(&mut s, &json!({"op":"confirm","mac":"AA=="})).unwrap();
    s.flush().unwrap();
    let v: Value = serde_json::from_slice(&frame::read_frame(&mut s, frame::MAX_RESPONSE_LEN).unwrap()).unwrap();
    assert_eq!(v["error"], "bad_request", "confirm outside a PIN exchange: {v}");
}

// ---- The command line ----

fn ferry_in(config: &Path, args: &[&str]) -> Output {
    ferry_command().env("FERRY_CONFIG_DIR", config).args(args).stdin(Stdio::null()).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `ferry serve` with its own configuration folder (its own identity), on `port` (0: any).
fn serve_with_identity(config: &Path, share: &Path, port: u16) -> (ServeProcess, Fingerprint) {
    let mut child = ferry_command()
        .env("FERRY_CONFIG_DIR", config)
        .arg("serve")
        .arg(share)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = Lines::read(child.stdout.take().unwrap());
    let stderr = Lines::read(child.stderr.take().unwrap());
    let first = stdout.wait_for(Duration::from_secs(10), |l| l.contains(" hosting "));
    let addr = first.split(" at ").nth(1).and_then(|r| r.split(' ').next()).unwrap().to_string();
    let line = stdout.wait_for(Duration::from_secs(10), |l| l.contains("identity: "));
    let groups = line.split("identity: ").nth(1).unwrap().trim();
    let fp = Fingerprint::parse_hex(&groups.replace(' ', "")).expect(&line);
    (ServeProcess { child, addr, stdout, stderr }, fp)
}

#[test]
fn cli_prints_a_new_hosts_identity_then_refuses_a_changed_one_until_accepted() {
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("f.txt"), b"hello").unwrap();
    let (host_a, client) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (serve, id_a) = serve_with_identity(host_a.path(), share.path(), 0);
    assert_eq!(Identity::load_or_create(host_a.path()).unwrap().fingerprint(), id_a, "kept in its config folder");

    let first = ferry_in(client.path(), &["ls", &serve.addr]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let err = text(&first.stderr);
    assert!(err.contains("new host") && err.contains(&id_a.groups()), "{err}");
    assert!(text(&first.stdout).contains("f.txt"));
    let again = ferry_in(client.path(), &["ls", &serve.addr]);
    assert!(again.status.success());
    assert!(!text(&again.stderr).contains("new host"), "{}", text(&again.stderr));

    // Another host (another key) on the same address.
    let port: u16 = serve.addr.rsplit(':').next().unwrap().parse().unwrap();
    drop(serve);
    let host_b = tempfile::tempdir().unwrap();
    let (serve, id_b) = serve_with_identity(host_b.path(), share.path(), port);
    assert_ne!(id_a, id_b);
    let here = tempfile::tempdir().unwrap();
    let refused = ferry_command()
        .env("FERRY_CONFIG_DIR", client.path())
        .args(["get", &serve.addr, "f.txt"])
        .current_dir(here.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let err = text(&refused.stderr);
    assert!(err.contains("DIFFERENT IDENTITY") && err.contains("--accept-new-identity"), "{err}");
    assert!(!here.path().join("f.txt").exists());
    let accepted = ferry_in(client.path(), &["ls", "--accept-new-identity", &serve.addr]);
    assert!(accepted.status.success(), "{}", text(&accepted.stderr));
    assert!(text(&accepted.stderr).contains(&id_b.groups()));
    assert!(ferry_in(client.path(), &["ls", &serve.addr]).status.success(), "the new identity is remembered");
}

#[test]
fn cli_plain_on_both_sides_works_and_a_plain_client_is_told_what_to_do() {
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("f.txt"), b"hello").unwrap();
    let config = tempfile::tempdir().unwrap();
    let mut plain = ServeProcess::start(share.path(), &["--plain"]);
    plain.stdout.wait_for(Duration::from_secs(10), |l| l.contains("UNENCRYPTED"));
    let ok = ferry_in(config.path(), &["ls", "--plain", &plain.addr]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("f.txt"));
    let tls_client = ferry_in(config.path(), &["ls", &plain.addr]);
    assert_eq!(tls_client.status.code(), Some(1));
    assert!(text(&tls_client.stderr).contains("--plain"), "{}", text(&tls_client.stderr));

    let encrypted = ServeProcess::start(share.path(), &[]);
    let old = ferry_in(config.path(), &["ls", "--plain", &encrypted.addr]);
    assert_eq!(old.status.code(), Some(1));
    assert!(text(&old.stderr).contains("without --plain"), "{}", text(&old.stderr));
}
