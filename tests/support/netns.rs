//! Two network namespaces joined by a veth pair, for tests that need real multicast.
//!
//! Every packet a test sends here stays inside the namespaces it created: host side
//! 10.77.0.1/24, browser side 10.77.0.2/24, addresses that exist only inside them. The
//! namespaces (and with them the veth pair) are deleted when the [`NetPair`] is dropped, even
//! when the test fails.
//!
//! Needs root and `ip` (iproute2); nftables' `nft` for the firewall tests. In CI (`CI=true`)
//! a missing piece fails the test loudly; elsewhere the test is skipped with the reason.

#![allow(dead_code)] // each test file uses a part of it

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
/// The host namespace's address.
pub const HOST_IP: &str = "10.77.0.1";
/// The browsing namespace's address.
pub const PEER_IP: &str = "10.77.0.2";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Fails in CI, skips (returning `None`) elsewhere.
pub fn unavailable<T>(why: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("this test needs {why}; CI must provide it (.ci/run installs the packages, CI runs as root)");
    }
    eprintln!("skipped: this test needs {why}");
    None
}

pub struct NetPair {
    /// The namespace that hosts.
    pub host: String,
    /// The namespace that browses.
    pub peer: String,
    pub host_if: String,
    pub peer_if: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    match Command::new("ip").args(args).stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("the `ip` command (iproute2): {e}")),
    }
}

impl NetPair {
    /// Creates the pair, or says why it cannot (see [`unavailable`]).
    pub fn new() -> Option<NetPair> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}{n}", std::process::id());
        let pair = NetPair {
            host: format!("ferry-h{id}"),
            peer: format!("ferry-p{id}"),
            host_if: format!("fh{id}"),
            peer_if: format!("fp{id}"),
        };
        if let Err(e) = ip(&["netns", "add", &pair.host]) {
            return unavailable(&format!("root and network namespaces ({e})"));
        }
        // From here on, Drop cleans up whatever was made.
        let (h, p, hi, pi) = (&pair.host, &pair.peer, &pair.host_if, &pair.peer_if);
        let (host_net, peer_net) = (format!("{HOST_IP}/24"), format!("{PEER_IP}/24"));
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", p],
            // Created inside the namespaces: the pair never appears on the real network.
            vec!["link", "add", hi, "netns", h, "type", "veth", "peer", "name", pi, "netns", p],
            vec!["-n", h, "addr", "add", &host_net, "dev", hi],
            vec!["-n", p, "addr", "add", &peer_net, "dev", pi],
            vec!["-n", h, "link", "set", "lo", "up"],
            vec!["-n", p, "link", "set", "lo", "up"],
            vec!["-n", h, "link", "set", hi, "up", "multicast", "on"],
            vec!["-n", p, "link", "set", pi, "up", "multicast", "on"],
            vec!["-n", h, "route", "add", "224.0.0.0/4", "dev", hi],
            vec!["-n", p, "route", "add", "224.0.0.0/4", "dev", pi],
        ];
        for step in steps {
            if let Err(e) = ip(&step) {
                panic!("setting up the namespaces: {e}");
            }
        }
        pair.wait_link_up();
        Some(pair)
    }

    fn wait_link_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for (ns, dev) in [(&self.host, &self.host_if), (&self.peer, &self.peer_if)] {
            loop {
                let out = Command::new("ip").args(["-n", ns, "-o", "link", "show", dev]).output().unwrap();
                if String::from_utf8_lossy(&out.stdout).contains("state UP") {
                    break;
                }
                assert!(Instant::now() < deadline, "{dev} in {ns} never came up");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Waits until both ends have a usable IPv6 link-local address (duplicate address
    /// detection takes a second or two after the link comes up).
    pub fn wait_ipv6_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for (ns, dev) in [(&self.host, &self.host_if), (&self.peer, &self.peer_if)] {
            loop {
                let out = Command::new("ip").args(["-n", ns, "-6", "addr", "show", "dev", dev]).output().unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                if text.contains("fe80:") && !text.contains("tentative") {
                    break;
                }
                assert!(Instant::now() < deadline, "no IPv6 link-local address on {dev} in {ns}: {text}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// `program args…` inside namespace `ns`, with discovery on (whatever the test's own
    /// environment says: inside the namespace it reaches only the other namespace).
    pub fn command(&self, ns: &str, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]).args(args).env_remove("FERRY_NO_DISCOVERY").stdin(Stdio::null());
        c
    }

    /// `ferry discover --timeout SECS` in the browsing namespace.
    pub fn discover(&self, secs: u64) -> Output {
        self.command(&self.peer, FERRY, &["discover", "--timeout", &secs.to_string()]).output().unwrap()
    }

    /// Adds an nftables rule in `ns` on `hook` (`input` or `output`); `None` when `nft` is
    /// missing (see [`unavailable`]).
    pub fn firewall(&self, ns: &str, hook: &str, rule: &[&str]) -> Option<()> {
        if Command::new("nft").arg("--version").output().is_err() {
            return unavailable("the `nft` command (apt package nftables)");
        }
        let chain = format!("{{ type filter hook {hook} priority 0; }}");
        let table = format!("t{hook}");
        for args in [
            vec!["add", "table", "inet", &table],
            vec!["add", "chain", "inet", &table, "c", &chain],
            [&["add", "rule", "inet", &table, "c"][..], rule].concat(),
        ] {
            let out = self.command(ns, "nft", &args).output().unwrap();
            assert!(out.status.success(), "nft {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Some(())
    }

    /// Removes the rules [`NetPair::firewall`] added on `hook` in `ns`.
    pub fn open_firewall(&self, ns: &str, hook: &str) {
        let out = self.command(ns, "nft", &["delete", "table", "inet", &format!("t{hook}")]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        // Deleting a namespace ends its veth end, and with it the pair.
        let _ = ip(&["netns", "del", &self.host]);
        let _ = ip(&["netns", "del", &self.peer]);
    }
}

/// A child process whose stdout lines arrive on a channel; killed when dropped.
pub struct Lines {
    pub child: Child,
    pub lines: Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    pub fn spawn(mut cmd: Command) -> Lines {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Lines { child, lines, seen: Vec::new() }
    }

    /// The first line containing `needle`, failing the test after `timeout`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_until(|l| l.contains(needle), &format!("a line with {needle:?}"), timeout)
    }

    /// The first line for which `pred` holds, failing the test after `timeout`.
    pub fn wait_until(&mut self, pred: impl Fn(&str) -> bool, what: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no {what} within {timeout:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// SIGINT (what Ctrl-C sends), then waits for the exit; returns the exit code.
    pub fn interrupt(&mut self) -> i32 {
        let status = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ferry serve DIR --bind 0.0.0.0:PORT [extra…]` in the host namespace, once it has announced.
pub fn serve_announced(pair: &NetPair, dir: &Path, port: u16, extra: &[&str]) -> Lines {
    let bind = format!("0.0.0.0:{port}");
    let mut args = vec!["serve", dir.to_str().unwrap(), "--bind", &bind];
    args.extend_from_slice(extra);
    let mut serve = Lines::spawn(pair.command(&pair.host, FERRY, &args));
    serve.wait_for("announced on the local network", Duration::from_secs(15));
    serve
}
