//! The server, driven over raw sockets byte by byte: what a hostile or sloppy client sees.
//! These speak the frames in the clear, so they run against a plain (version 1, `--plain`)
//! host; inside TLS the frames are the same (tests/tls.rs drives version 2 itself).

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use ferry::protocol::frame;
use ferry::server::ServerEvent;
use serde_json::{Value, json};
use support::*;

fn error_code(v: &Value) -> &str {
    assert_eq!(v["ok"], false, "expected an error reply, got {v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "errors carry a message: {v}");
    v["error"].as_str().unwrap()
}

#[test]
fn hello_reply_names_version_server_and_folder() {
    let srv = TestServer::start_plain();
    let mut r = Raw::connect(srv.addr);
    let v = r.call(&json!({"op":"hello","version":1,"client":"x"}));
    assert_eq!(v["ok"], true);
    assert_eq!(v["version"], 1);
    assert!(v["server"].as_str().unwrap().starts_with("ferry/"));
    assert_eq!(v["name"].as_str().unwrap(), srv.root().file_name().unwrap().to_str().unwrap());
}

#[test]
fn wrong_version_is_refused_and_closed() {
    let srv = TestServer::start_plain();
    let mut r = Raw::connect(srv.addr);
    let v = r.call(&json!({"op":"hello","version":2,"client":"future"}));
    assert_eq!(error_code(&v), "unsupported_version");
    assert!(r.closed());
}

#[test]
fn first_request_must_be_hello() {
    let srv = TestServer::start_plain();
    let mut r = Raw::connect(srv.addr);
    let v = r.call(&json!({"op":"list","path":""}));
    assert_eq!(error_code(&v), "bad_request");
    assert!(r.closed());
}

#[test]
fn sticky_requests_in_one_write_are_answered_in_order() {
    let srv = TestServer::start_plain();
    let bytes = srv.put("s.bin", random_bytes(5000, 1));
    let mut r = Raw::connect(srv.addr);
    // hello, list and get glued into a single write: the "sticky packets" case.
    let mut wire = Vec::new();
    frame::write_control(&mut wire, &json!({"op":"hello","version":1,"client":"sticky"})).unwrap();
    frame::write_control(&mut wire, &json!({"op":"list","path":""})).unwrap();
    frame::write_control(&mut wire, &json!({"op":"get","path":"s.bin","offset":0})).unwrap();
    frame::write_control(&mut wire, &json!({"op":"list","path":""})).unwrap();
    r.send_bytes(&wire);
    assert_eq!(r.reply()["ok"], true);
    assert_eq!(r.reply()["entries"][0]["name"], "s.bin");
    let get = r.reply();
    assert_eq!((get["ok"].clone(), get["size"].clone(), get["offset"].clone()), (json!(true), json!(5000), json!(0)));
    let (data, trailer) = r.data();
    assert_eq!(data, bytes);
    assert_eq!(ferry::protocol::hex(&trailer), md5_hex(&bytes));
    assert_eq!(r.reply()["entries"][0]["size"], 5000);
}

#[test]
fn requests_dribbled_one_byte_at_a_time_are_understood() {
    let srv = TestServer::start_plain();
    srv.put("d.txt", b"dribble".to_vec());
    let mut r = Raw::connect(srv.addr);
    r.s.set_nodelay(true).unwrap();
    let mut wire = Vec::new();
    frame::write_control(&mut wire, &json!({"op":"hello","version":1,"client":"slow"})).unwrap();
    frame::write_control(&mut wire, &json!({"op":"list","path":""})).unwrap();
    for b in wire {
        r.send_bytes(&[b]);
    }
    assert_eq!(r.reply()["ok"], true);
    assert_eq!(r.reply()["entries"][0]["name"], "d.txt");
}

#[test]
fn bad_json_and_unknown_ops_are_answered_and_the_connection_stays_usable() {
    let srv = TestServer::start_plain();
    srv.put("a.txt", b"a".to_vec());
    let mut r = Raw::hello(srv.addr);
    assert_eq!(error_code(&r.call_raw(b"this is not json")), "bad_request");
    assert_eq!(error_code(&r.call_raw(b"[\"list\"]")), "bad_request");
    assert_eq!(error_code(&r.call_raw(&[0xff, 0xfe, 0x00])), "bad_request");
    assert_eq!(error_code(&r.call(&json!({"path":""}))), "bad_request");
    assert_eq!(error_code(&r.call(&json!({"op":"get"}))), "bad_request");
    assert_eq!(error_code(&r.call(&json!({"op":"get","path":"a.txt","offset":"zero"}))), "bad_request");
    assert_eq!(error_code(&r.call(&json!({"op":"delete","path":"a.txt"}))), "unsupported");
    assert_eq!(error_code(&r.call(&json!({"op":"hello","version":1,"client":"again"}))), "bad_request");
    assert_eq!(error_code(&r.call(&json!({"op":"put","path":"b.bin","size":3}))), "read_only");
    assert_eq!(error_code(&r.call(&json!({"op":"get","path":"a.txt","offset":2}))), "bad_request");
    // Still usable after all of that.
    let v = r.call(&json!({"op":"list","path":""}));
    assert_eq!(v["ok"], true);
    assert_eq!(v["entries"][0]["name"], "a.txt");
}

#[test]
fn huge_length_prefix_is_refused_with_too_large_and_closed() {
    let srv = TestServer::start_plain();
    let mut r = Raw::hello(srv.addr);
    r.send_bytes(&[0xff; 8]); // 18 EB announced; nothing follows
    assert_eq!(error_code(&r.reply()), "too_large");
    assert!(r.closed());

    // Just over the contract's 64 KiB request limit, also before the hello.
    let mut r = Raw::connect(srv.addr);
    r.send_bytes(&frame::encode_header(65_537));
    assert_eq!(error_code(&r.reply()), "too_large");
    assert!(r.closed());
}

#[test]
fn request_of_exactly_64_kib_is_accepted() {
    let srv = TestServer::start_plain();
    let mut r = Raw::hello(srv.addr);
    let mut payload = br#"{"op":"list","path":"","pad":""#.to_vec();
    let tail = br#""}"#;
    payload.resize(65_536 - tail.len(), b'x');
    payload.extend_from_slice(tail);
    assert_eq!(payload.len(), 65_536);
    assert_eq!(r.call_raw(&payload)["ok"], true);
}

#[test]
fn every_hostile_path_form_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), b"top secret").unwrap();
    let srv = TestServer::start_plain();
    srv.put("sub/ok.txt", b"fine".to_vec());
    // Links need a Unix host (on Windows: admin rights or developer mode; Wine 8 cannot
    // follow the links it makes); the path forms below are checked everywhere.
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        symlink(outside.path().join("secret.txt"), srv.root().join("abs_link")).unwrap();
        symlink("../../../../../../../../../../etc/passwd", srv.root().join("rel_link")).unwrap();
        symlink(outside.path(), srv.root().join("dir_link")).unwrap();
        symlink("..", srv.root().join("sub/parent")).unwrap();
        symlink("../..", srv.root().join("sub/grandparent")).unwrap();
        symlink("chain2", srv.root().join("chain1")).unwrap();
        symlink("dir_link/secret.txt", srv.root().join("chain2")).unwrap();
        symlink("loop_b", srv.root().join("loop_a")).unwrap();
        symlink("loop_a", srv.root().join("loop_b")).unwrap();
    }

    let mut r = Raw::hello(srv.addr);
    let bad_path = [
        "/etc/passwd",
        "/",
        "..",
        ".",
        "../secret.txt",
        "sub/../../x",
        "sub/./ok.txt",
        "sub//ok.txt",
        "sub/",
        "..\\..\\etc\\passwd",
        "sub\\ok.txt",
        "sub/ok.txt\0.png",
    ];
    for p in bad_path {
        for op in ["get", "list"] {
            let v = r.call(&json!({"op": op, "path": p, "offset": 0}));
            assert_eq!(error_code(&v), "bad_path", "{op} {p:?}");
        }
    }
    #[cfg(unix)]
    {
        let forbidden =
            ["abs_link", "rel_link", "dir_link", "dir_link/secret.txt", "sub/grandparent", "chain1", "loop_a"];
        for p in forbidden {
            let v = r.call(&json!({"op":"get","path":p,"offset":0}));
            assert_eq!(error_code(&v), "forbidden", "get {p:?}");
        }
        for p in ["dir_link", "sub/grandparent"] {
            let v = r.call(&json!({"op":"list","path":p}));
            assert_eq!(error_code(&v), "forbidden", "list {p:?}");
        }
        // A link that stays inside works; escaping ones are not even listed.
        let v = r.call(&json!({"op":"list","path":"sub/parent"}));
        assert_eq!(v["ok"], true, "{v}");
        let names: Vec<&str> = v["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["sub"]);
        let v = r.call(&json!({"op":"list","path":"sub"}));
        let names: Vec<&str> = v["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["parent", "ok.txt"]);
        // The connection is still usable and nothing of the secret ever came back.
        let v = r.call(&json!({"op":"get","path":"sub/parent/sub/ok.txt","offset":0}));
        assert_eq!(v["size"], 4);
        assert_eq!(r.data().0, b"fine");
    }
}

#[test]
fn not_found_is_directory_and_not_a_directory() {
    let srv = TestServer::start_plain();
    srv.put("dir/f.txt", b"x".to_vec());
    let mut r = Raw::hello(srv.addr);
    assert_eq!(error_code(&r.call(&json!({"op":"get","path":"missing","offset":0}))), "not_found");
    assert_eq!(error_code(&r.call(&json!({"op":"list","path":"missing"}))), "not_found");
    assert_eq!(error_code(&r.call(&json!({"op":"get","path":"dir","offset":0}))), "is_directory");
    assert_eq!(error_code(&r.call(&json!({"op":"list","path":"dir/f.txt"}))), "not_a_directory");
    assert_eq!(error_code(&r.call(&json!({"op":"get","path":"dir/f.txt/x","offset":0}))), "not_a_directory");
}

#[test]
fn listing_lists_folders_first_with_sizes_and_times() {
    let srv = TestServer::start_plain();
    srv.put("b.txt", vec![0; 10]);
    srv.put("a.txt", vec![0; 20]);
    srv.put("zdir/x", vec![]);
    srv.put("adir/x", vec![]);
    let mut r = Raw::hello(srv.addr);
    let v = r.call(&json!({"op":"list","path":""}));
    assert_eq!(v["path"], "");
    let e = v["entries"].as_array().unwrap();
    let names: Vec<&str> = e.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["adir", "zdir", "a.txt", "b.txt"]);
    assert_eq!(e[0]["kind"], "dir");
    assert_eq!(e[2]["kind"], "file");
    assert_eq!(e[2]["size"], 20);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((e[2]["modified"].as_i64().unwrap() - now).abs() < 600);
}

#[test]
fn past_the_client_cap_a_new_client_is_told_busy() {
    let srv = TestServer::start_with(|c| {
        c.plain = true;
        c.max_clients = 2;
    });
    let _a = Raw::hello(srv.addr);
    let _b = Raw::hello(srv.addr);
    let mut c = Raw::connect(srv.addr);
    let v = c.call(&json!({"op":"hello","version":1,"client":"third"}));
    assert_eq!(error_code(&v), "busy");
    assert!(c.closed());
    // When one leaves, there is room again: the server frees the slot before it reports the
    // disconnection.
    drop(_a);
    wait_for(&srv.events, Duration::from_secs(10), |e| matches!(e, ServerEvent::ClientDisconnected { .. }));
    let mut d = Raw::connect(srv.addr);
    let v = d.call(&json!({"op":"hello","version":1,"client":"fourth"}));
    assert_eq!(v["ok"], true, "no room after a client left: {v}");
}

#[test]
fn idle_connections_time_out() {
    let srv = TestServer::start_with(|c| {
        c.plain = true;
        c.idle_timeout = Duration::from_millis(300);
    });
    let mut r = Raw::hello(srv.addr);
    let t = Instant::now();
    assert!(r.closed(), "the idle connection was closed");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn stop_closes_the_listener_and_every_connection() {
    let mut srv = TestServer::start_plain();
    let mut a = Raw::hello(srv.addr);
    let mut b = Raw::hello(srv.addr);
    let addr = srv.addr;
    // Promptly, though both clients sit idle in a read (on Windows shutting a socket down does
    // not wake such a read; the server must notice the stop on its own).
    let t = Instant::now();
    let events = srv.stop();
    assert!(t.elapsed() < Duration::from_secs(5), "stopping took {:?}", t.elapsed());
    assert!(matches!(events.last(), Some(ferry::server::ServerEvent::Stopped)));
    assert!(a.closed());
    assert!(b.closed());
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
}

#[test]
fn port_in_use_is_reported_not_panicked() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_server, events) =
        ferry::server::Server::spawn(ferry::server::ServerConfig::new(dir.path(), addr.to_string()), None);
    match events.recv_timeout(Duration::from_secs(5)).unwrap() {
        ferry::server::ServerEvent::StartFailed { error } => assert!(error.contains("in use"), "{error}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(events.recv_timeout(Duration::from_secs(5)).unwrap(), ferry::server::ServerEvent::Stopped));
}

#[test]
fn missing_folder_is_reported_not_panicked() {
    let (_server, events) =
        ferry::server::Server::spawn(ferry::server::ServerConfig::new("/no/such/folder/ferry", "127.0.0.1:0"), None);
    match events.recv_timeout(Duration::from_secs(5)).unwrap() {
        ferry::server::ServerEvent::StartFailed { error } => {
            assert!(error.contains("/no/such/folder/ferry"), "{error}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn plain_pin_is_required_when_set() {
    let srv = TestServer::start_with(|c| {
        c.plain = true;
        c.pin = Some("4711".into());
    });
    let mut r = Raw::connect(srv.addr);
    assert_eq!(error_code(&r.call(&json!({"op":"hello","version":1,"client":"x"}))), "unauthorized");
    let mut r = Raw::connect(srv.addr);
    assert_eq!(error_code(&r.call(&json!({"op":"hello","version":1,"client":"x","pin":"0000"}))), "unauthorized");
    let mut r = Raw::connect(srv.addr);
    assert_eq!(r.call(&json!({"op":"hello","version":1,"client":"x","pin":"4711"}))["ok"], true);
}

#[test]
fn a_server_stopped_before_it_listens_still_stops() {
    // stop() right after spawn() can run before the accept thread has bound and published its
    // address; the accept thread must then notice the stop instead of waiting in accept().
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..200 {
            let dir = tempfile::tempdir().unwrap();
            let mut config = ferry::server::ServerConfig::new(dir.path(), "127.0.0.1:0");
            config.identity = Some(test_identity());
            let (server, _events) = ferry::server::Server::spawn(config, None);
            server.stop_and_join();
        }
        done_tx.send(()).unwrap();
    });
    done_rx.recv_timeout(Duration::from_secs(60)).expect("a stopped server hung in accept()");
}
