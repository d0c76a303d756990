//! Where a host listens and how it stops: the default address reaches both IPv4 and IPv6
//! clients, and stopping never depends on the network (the listening address may be gone).
//!
//! Linux only: the test removes the address inside a network namespace of its own.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ferry::client::{ConnectOptions, Connection};
use ferry::server::{DEFAULT_BIND, Server, ServerConfig, ServerEvent};

#[test]
fn the_default_host_is_reached_over_ipv4_and_ipv6() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"hi").unwrap();
    // The default address, on a free port.
    let mut bind: SocketAddr = DEFAULT_BIND.parse().expect("the default is an address");
    bind.set_port(0);
    let (server, events) = Server::spawn(ServerConfig::new(dir.path(), bind.to_string()), None);
    let port = loop {
        match events.recv_timeout(Duration::from_secs(10)).expect("a start event") {
            ServerEvent::Listening { addr, .. } => break addr.port(),
            ServerEvent::StartFailed { error } => panic!("cannot host on the default address: {error}"),
            _ => {}
        }
    };
    for client in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let mut conn = Connection::connect(&client, &ConnectOptions::default())
            .unwrap_or_else(|e| panic!("{client} cannot reach a host on {DEFAULT_BIND}: {e}"));
        let listing = conn.list("").unwrap();
        assert_eq!(listing.entries.len(), 1, "{client}");
        // The host names an IPv4 client as IPv4, not as ::ffff:127.0.0.1.
        let peer = loop {
            if let ServerEvent::ClientConnected { peer, .. } =
                events.recv_timeout(Duration::from_secs(10)).expect("a connect event")
            {
                break peer;
            }
        };
        assert_eq!(peer.is_ipv4(), client.starts_with("127."), "{client} was seen as {peer}");
    }
    server.stop_and_join();
}

/// Runs `args` through `ip`, inside the network namespace of process `pid`.
fn ip_in(pid: u32, args: &[&str]) {
    let status = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("ip")
        .args(args)
        .status()
        .expect("run nsenter");
    assert!(status.success(), "ip {args:?} in the test's namespace failed");
}

fn can_make_network_namespaces() -> bool {
    Command::new("unshare").args(["--net", "true"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Kills the child if the test fails before it has been waited for.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn stop_returns_when_the_listening_address_has_vanished() {
    if !can_make_network_namespaces() {
        eprintln!("skipped: this user cannot create network namespaces (needs root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A host in a network namespace of its own, listening on that namespace's loopback.
    let script = r#"ip link set lo up && exec "$0" serve --bind 127.0.0.1:0 "$1""#;
    let child = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", script, env!("CARGO_BIN_EXE_ferry")])
        .arg(dir.path())
        .env("FERRY_NO_DISCOVERY", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ferry serve in a network namespace");
    let mut child = Reap(child);
    let pid = child.0.id();
    let (tx, lines) = mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let hosting = lines.recv_timeout(Duration::from_secs(20)).expect("ferry serve says where it hosts");
    assert!(hosting.contains("hosting"), "unexpected first line: {hosting}");

    // The address goes away (as when a laptop leaves a network), then the host is asked to stop.
    ip_in(pid, &["addr", "del", "127.0.0.1/8", "dev", "lo"]);
    ip_in(pid, &["link", "set", "lo", "down"]);
    let asked = Instant::now();
    let status = Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    assert!(status.success());

    // Its output ends when it exits.
    let deadline = asked + Duration::from_secs(5);
    let mut rest = Vec::new();
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => rest.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("ferry serve did not stop within 5 s of Ctrl-C without its address; said {rest:?}")
            }
        }
    }
    let exited = child.0.wait().unwrap();
    assert!(exited.success(), "ferry serve exited with {exited}");
    assert!(asked.elapsed() < Duration::from_secs(2), "stopping took {:?}", asked.elapsed());
    assert!(rest.iter().any(|l| l.ends_with("stopped")), "no 'stopped' line in {rest:?}");
}
