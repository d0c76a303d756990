//! The host's event queue is bounded: a client sending refused requests in a loop, while the
//! front reads nothing, cannot grow the host's memory; what was dropped is counted; and the
//! events that end things (a disconnection, `Stopped`) are never dropped, even when the front
//! stops the host without having read anything.

mod support;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use ferry::protocol::frame;
use ferry::server::ServerEvent;
use serde_json::json;
use support::*;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

const REQUESTS: usize = 100_000;

/// Sends (in the clear, to a `--plain` host: the queue is the subject, not TLS) `REQUESTS` copies of `request` on one connection (from another thread) and reads as
/// many replies, each starting with `reply_starts`; returns the connection's two halves.
fn flood(
    addr: std::net::SocketAddr,
    request: serde_json::Value,
    reply_starts: &'static [u8],
) -> (TcpStream, BufReader<TcpStream>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut out = Vec::new();
    frame::write_control(&mut out, &json!({"op":"hello","version":1,"client":"flood"})).unwrap();
    stream.write_all(&out).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    frame::read_frame(&mut reader, frame::MAX_RESPONSE_LEN).unwrap();
    let writer = thread::spawn(move || {
        let mut one = Vec::new();
        frame::write_control(&mut one, &request).unwrap();
        let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
        for _ in 0..REQUESTS / 1000 {
            stream.write_all(&batch).unwrap();
        }
        stream
    });
    for n in 0..REQUESTS {
        let reply = frame::read_frame(&mut reader, frame::MAX_RESPONSE_LEN)
            .unwrap_or_else(|e| panic!("reply {n} of {REQUESTS}: {e}"));
        assert!(reply.starts_with(reply_starts), "{}", String::from_utf8_lossy(&reply));
    }
    (writer.join().unwrap(), reader)
}

#[test]
fn a_flood_of_unsolicited_verdicts_keeps_the_queue_bounded() {
    let srv = TestServer::start_plain();
    let before = rss_kib();
    let verdict = json!({"op":"verdict","path":"a.bin","md5":"d41d8cd98f00b204e9800998ecf8427e","ok":true});
    let _conn = flood(srv.addr, verdict, br#"{"ok":true"#);
    let grown = rss_kib().saturating_sub(before);
    assert!(srv.events.len() <= 2048, "{} events queued for a front that reads nothing", srv.events.len());
    assert!(grown < 8 * 1024, "the host grew by {grown} KiB over {REQUESTS} verdicts");
}

#[test]
fn a_flood_of_refused_requests_keeps_memory_bounded_and_ends_are_never_dropped() {
    let mut srv = TestServer::start_plain();
    let before = rss_kib();
    let (stream, reader) = flood(srv.addr, json!({"op":"list","path":"../outside"}), br#"{"ok":false"#);
    let grown = rss_kib().saturating_sub(before);
    let queued = srv.events.len();
    // Nothing was read from the events: the queue stayed short and memory with it.
    assert!(queued <= 2048, "{queued} events queued for a front that reads nothing");
    assert!(grown < 8 * 1024, "the host grew by {grown} KiB over {REQUESTS} refused requests");

    // The client leaves and the host is stopped, still without reading: stopping does not wait
    // for the front, and both ends are in the queue afterwards.
    drop(stream);
    drop(reader);
    let server = srv.server.take().unwrap();
    let (done, stopped) = std::sync::mpsc::channel();
    thread::spawn(move || {
        server.stop_and_join();
        let _ = done.send(());
    });
    stopped.recv_timeout(Duration::from_secs(10)).expect("stop_and_join returned while nobody read the events");
    let mut refused = 0u64;
    let mut dropped = 0u64;
    let mut disconnected = 0;
    loop {
        match srv.events.recv_timeout(Duration::from_secs(10)).expect("events up to Stopped") {
            ServerEvent::RequestRefused { .. } => refused += 1,
            ServerEvent::EventsDropped { count } => dropped += count,
            ServerEvent::ClientDisconnected { .. } => disconnected += 1,
            ServerEvent::Stopped => break,
            _ => {}
        }
    }
    assert_eq!(disconnected, 1);
    assert_eq!(refused + dropped, REQUESTS as u64, "{refused} refusals reported, {dropped} counted as dropped");
}
