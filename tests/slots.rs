//! Connection slots and PIN guesses under attack: silent sockets from one machine cannot lock
//! everyone out, and many parallel guessers together get only a few PIN checks a second.
//! Every address used is on the loopback network (all of 127.0.0.0/8 is loopback on Linux).
//! The requests are raw frames in the clear, so the hosts are plain (`--plain`); the slots and
//! the PIN limits are the same for encrypted hosts (tests/tls.rs covers the PIN exchange).

mod support;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ferry::protocol::frame;
use serde_json::{Value, json};
use socket2::{Domain, Socket, Type};
use support::*;

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(IpAddr::V4(from), 0).into()).unwrap();
    socket.connect_timeout(&to.into(), Duration::from_secs(5)).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// Sends one request and reads its reply, as any client does.
fn call(stream: &mut TcpStream, request: &Value) -> Value {
    let mut out = Vec::new();
    frame::write_control(&mut out, request).unwrap();
    stream.write_all(&out).unwrap();
    let reply = frame::read_frame(stream, frame::MAX_RESPONSE_LEN).expect("a reply");
    serde_json::from_slice(&reply).unwrap()
}

fn hello(pin: Option<&str>) -> Value {
    match pin {
        Some(pin) => json!({"op":"hello","version":1,"client":"t","pin":pin}),
        None => json!({"op":"hello","version":1,"client":"t"}),
    }
}

#[test]
fn silent_sockets_from_one_address_do_not_lock_others_out() {
    let srv = TestServer::start_plain();
    std::fs::write(srv.root().join("a.txt"), b"a").unwrap();
    // 70 connections that never say anything, from one address: more than the 64 slots.
    let silent: Vec<TcpStream> = (0..70).map(|_| connect_from(Ipv4Addr::new(127, 0, 0, 1), srv.addr)).collect();

    // Another machine is served at once.
    let started = Instant::now();
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 2), srv.addr);
    let reply = call(&mut other, &hello(None));
    assert_eq!(reply["ok"], true, "hello from another address: {reply}");
    let listing = call(&mut other, &json!({"op":"list","path":""}));
    assert_eq!(listing["entries"][0]["name"], "a.txt", "{listing}");
    assert!(started.elapsed() < Duration::from_secs(2), "listing took {:?}", started.elapsed());

    // The silent address itself got at most 8 slots: one more from it is told busy at once.
    let mut more = connect_from(Ipv4Addr::new(127, 0, 0, 1), srv.addr);
    let t = Instant::now();
    let reply = call(&mut more, &hello(None));
    assert_eq!(reply["error"], "busy", "{reply}");
    assert!(t.elapsed() < Duration::from_secs(1), "busy took {:?}", t.elapsed());

    // And the silent ones are closed once the hello deadline (5 s) has passed: the server
    // reports each of the 8 it admitted as turned away for sending no hello.
    let no_hello = |e: &ferry::server::ServerEvent| matches!(e, ferry::server::ServerEvent::ClientRejected { reason, .. } if reason.starts_with("sent no hello"));
    for _ in 0..8 {
        wait_for(&srv.events, Duration::from_secs(10), no_hello);
    }
    assert!(started.elapsed() >= Duration::from_secs(4), "closed after only {:?}", started.elapsed());
    drop(silent);
}

#[test]
fn a_connection_that_dribbles_its_hello_is_closed_at_the_deadline() {
    let srv = TestServer::start_with(|c| {
        c.plain = true;
        c.hello_timeout = Duration::from_secs(1);
    });
    let mut s = connect_from(Ipv4Addr::new(127, 0, 0, 3), srv.addr);
    let started = Instant::now();
    // One byte of the size prefix every 200 ms: each read is quick, the whole never ends.
    let stop = Arc::new(AtomicBool::new(false));
    let dribbler = {
        let stop = stop.clone();
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) && s.write_all(&[0]).is_ok() {
                thread::sleep(Duration::from_millis(200)); // the dribble itself
            }
        })
    };
    wait_for(
        &srv.events,
        Duration::from_secs(10),
        |e| matches!(e, ferry::server::ServerEvent::ClientRejected { reason, .. } if reason.starts_with("sent no hello")),
    );
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    dribbler.join().unwrap();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "closed after {took:?}");
}

#[test]
fn many_parallel_guessers_get_a_few_pin_checks_a_second_in_all() {
    let srv = TestServer::start_with(|c| {
        c.plain = true;
        c.pin = Some("481516".into());
    });
    let addr = srv.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicUsize::new(0));
    let unchecked = Arc::new(AtomicUsize::new(0));
    // 64 guessers, each from an address of its own, each as fast as the host answers.
    let window = Duration::from_secs(3);
    let started = Instant::now();
    let guessers: Vec<_> = (0..64u8)
        .map(|n| {
            let (stop, checked, unchecked) = (stop.clone(), checked.clone(), unchecked.clone());
            thread::spawn(move || {
                let mut guess = u32::from(n) * 10_000;
                while !stop.load(Ordering::SeqCst) {
                    let mut s = connect_from(Ipv4Addr::new(127, 0, 1, n + 1), addr);
                    let reply = call(&mut s, &hello(Some(&format!("{guess:06}"))));
                    if started.elapsed() < window {
                        // Busy (all 64 slots taken for a moment) is turned away unchecked too.
                        match (reply["error"].as_str().unwrap(), reply["message"].as_str().unwrap()) {
                            ("unauthorized", "wrong PIN") => checked.fetch_add(1, Ordering::SeqCst),
                            ("unauthorized", m) if m.starts_with("too many wrong PINs") => {
                                unchecked.fetch_add(1, Ordering::SeqCst)
                            }
                            ("busy", _) => unchecked.fetch_add(1, Ordering::SeqCst),
                            _ => panic!("unexpected answer {reply}"),
                        };
                    }
                    guess += 1;
                }
            })
        })
        .collect();
    while started.elapsed() < window {
        thread::sleep(Duration::from_millis(50)); // measuring over a fixed window
    }
    stop.store(true, Ordering::SeqCst);
    for g in guessers {
        g.join().unwrap();
    }
    let (checked, unchecked) = (checked.load(Ordering::SeqCst), unchecked.load(Ordering::SeqCst));
    // A burst of 10, then one every 500 ms: at most 16 in 3 s, whatever the parallelism.
    assert!(checked <= 16, "{checked} PINs were checked in {window:?} ({unchecked} turned away unchecked)");
    assert!(checked >= 10, "only {checked} PINs were checked: is the limit too tight?");
    assert!(unchecked > 64, "the guessers were not kept busy: {unchecked}");

    // Once the guessing stops, the right PIN gets in from a fresh address within a second or two.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = connect_from(Ipv4Addr::new(127, 0, 2, 1), addr);
        let reply = call(&mut s, &hello(Some("481516")));
        if reply["ok"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the right PIN was still refused: {reply}");
        thread::sleep(Duration::from_millis(100)); // polling for the budget to refill
    }
}

#[test]
fn pins_in_configurations_never_show_in_debug_output() {
    let mut config = ferry::server::ServerConfig::new("/tmp", "127.0.0.1:0");
    config.pin = Some("739155".into());
    let opts = ferry::client::ConnectOptions { pin: Some("739155".into()), ..Default::default() };
    for shown in [format!("{config:?}"), format!("{opts:?}")] {
        assert!(!shown.contains("739155"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
