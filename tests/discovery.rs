//! Discovery over real multicast: the real `ferry serve` in one network namespace, `ferry
//! discover` (or a browser) in another, joined by a veth pair. Nothing here reaches the
//! machine's real network (see support/netns.rs).
//!
//! Linux only: network namespaces and veth pairs.
#![cfg(target_os = "linux")]

#[path = "support/netns.rs"]
mod netns;

use std::process::Command;
use std::time::{Duration, Instant};

use netns::{FERRY, HOST_IP, Lines, NetPair, PEER_IP, serve_announced, unavailable};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A hosted folder named `photos` with one file.
fn photos() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("photos");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("cat.txt"), b"meow\n").unwrap();
    (dir, root)
}

/// The hosts' identity: the key in the configuration folder they share with this test.
fn host_id() -> String {
    ferry::transport::Identity::load_default().unwrap().fingerprint().hex()
}

fn instance() -> String {
    ferry::discovery::instance_name("photos", &ferry::discovery::machine_name())
}

#[test]
fn a_host_is_discovered_with_its_port_and_txt_then_reached_by_name() {
    let Some(pair) = NetPair::new() else { return };
    let (_dir, root) = photos();
    let mut serve = serve_announced(&pair, &root, 7900, &["--pin", "4321"]);

    let out = pair.discover(3);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let fields: Vec<&str> = lines[0].split('\t').collect();
    // The host's identity: the key in the configuration folder it shares with this test.
    let id = host_id();
    assert_eq!(
        fields,
        [instance().as_str(), &format!("{HOST_IP}:7900"), "folder=photos", "pin=yes", "tls=yes", &format!("id={id}")],
        "{stdout}"
    );

    // The name discover printed works where an address goes; so does the folder's name.
    let here = tempfile::tempdir().unwrap();
    let ls = pair.command(&pair.peer, FERRY, &["ls", &instance(), "--pin", "4321"]).output().unwrap();
    assert_eq!(ls.status.code(), Some(0), "{}", text(&ls.stderr));
    assert!(text(&ls.stdout).contains("cat.txt"), "{}", text(&ls.stdout));
    let dest = here.path().join("cat.txt");
    let get = pair
        .command(&pair.peer, FERRY, &["get", "photos", "cat.txt", "-o", dest.to_str().unwrap(), "--pin", "4321"])
        .output()
        .unwrap();
    assert_eq!(get.status.code(), Some(0), "{}", text(&get.stderr));
    assert_eq!(std::fs::read(&dest).unwrap(), b"meow\n");

    // A name nobody announced is an error that says so.
    let ls = pair.command(&pair.peer, FERRY, &["ls", "nobody-here"]).output().unwrap();
    assert_eq!(ls.status.code(), Some(1));
    assert!(text(&ls.stderr).contains("no host called \"nobody-here\""), "{}", text(&ls.stderr));

    assert_eq!(serve.interrupt(), 0);
    // Withdrawn: a fresh browser finds nothing.
    let out = pair.discover(2);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
}

/// Run by the tests below inside the browsing namespace (see [`browser_in`]): browses, with
/// the remembered addresses in `FERRY_TEST_REMEMBERED` (comma-separated), and prints each
/// event as one line: "EVENT found|updated NAME|ADDRESSES|FOLDER|SOURCE|REACH|pin=BOOL|tls=BOOL",
/// "EVENT lost NAME", "EVENT nothing SUMMARY" then "EVENT why LINE" per line.
#[test]
#[ignore = "a helper: tests in this file run it inside a network namespace"]
fn browse_and_print_events() {
    let Ok(ns) = std::env::var("FERRY_TEST_NETNS") else {
        panic!("only runs inside a test's own network namespace (FERRY_TEST_NETNS unset)")
    };
    let here = Command::new("ip").args(["netns", "identify"]).output().unwrap();
    assert_eq!(text(&here.stdout).trim(), ns, "not inside the namespace {ns}: refusing to browse the real network");
    use ferry::discovery::{BrowseEvent, BrowseOptions, Browser, Host};
    let remembered: Vec<String> = std::env::var("FERRY_TEST_REMEMBERED")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let opts = BrowseOptions { remembered, diagnose_after: Duration::from_secs(3), ..Default::default() };
    let (_browser, events) = Browser::start(opts, None).unwrap();
    let line = |h: &Host| {
        let addrs: Vec<String> = h.addrs.iter().map(|a| a.to_string()).collect();
        let tls = if h.tls { format!("true id={}", h.id.as_deref().unwrap_or("-")) } else { "false".into() };
        format!("{}|{}|{}|{:?}|{:?}|pin={}|tls={tls}", h.name, addrs.join(","), h.folder, h.source, h.reach, h.pin)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(event) = events.recv_deadline(deadline) {
        match event {
            BrowseEvent::Found(h) => println!("EVENT found {}", line(&h)),
            BrowseEvent::Updated(h) => println!("EVENT updated {}", line(&h)),
            BrowseEvent::Lost { name, .. } => println!("EVENT lost {name}"),
            BrowseEvent::NothingFound(d) => {
                println!("EVENT nothing {}", d.summary());
                for l in d.lines() {
                    println!("EVENT why {l}");
                }
            }
            BrowseEvent::Stopped { .. } => return,
        }
    }
}

/// [`browse_and_print_events`] in the browsing namespace; its lines, from "EVENT" on.
fn browser_in(pair: &NetPair, remembered: &[&str]) -> Lines {
    let me = std::env::current_exe().unwrap();
    let mut cmd = pair.command(
        &pair.peer,
        me.to_str().unwrap(),
        &["--exact", "browse_and_print_events", "--ignored", "--nocapture", "--test-threads", "1"],
    );
    cmd.env("FERRY_TEST_NETNS", &pair.peer).env("FERRY_TEST_REMEMBERED", remembered.join(","));
    Lines::spawn(cmd)
}

/// libtest may print "test NAME ... " before the first line: the line from "EVENT" on.
fn event(line: String) -> String {
    line[line.find("EVENT").unwrap()..].to_string()
}

#[test]
fn a_running_browser_loses_a_host_that_stops() {
    let Some(pair) = NetPair::new() else { return };
    let (_dir, root) = photos();
    let mut serve = serve_announced(&pair, &root, 7901, &[]);
    let mut browser = browser_in(&pair, &[]);
    let found = event(browser.wait_for("EVENT found", Duration::from_secs(15)));
    assert_eq!(
        found,
        format!(
            "EVENT found {}|{HOST_IP}:7901|photos|Announced|Checking|pin=false|tls=true id={}",
            instance(),
            host_id()
        )
    );
    let checked = event(browser.wait_for("EVENT updated", Duration::from_secs(5)));
    assert_eq!(
        checked,
        format!(
            "EVENT updated {}|{HOST_IP}:7901|photos|Announced|Reachable|pin=false|tls=true id={}",
            instance(),
            host_id()
        )
    );

    assert_eq!(serve.interrupt(), 0);
    let stopped = Instant::now();
    let lost = event(browser.wait_for("EVENT lost", Duration::from_secs(10)));
    assert_eq!(lost, format!("EVENT lost {}", instance()));
    // The goodbye (TTL 0) did it, not the records' expiry (two minutes and more).
    assert!(stopped.elapsed() < Duration::from_secs(5), "lost after {:?}", stopped.elapsed());
}

#[test]
fn nothing_found_says_what_was_tried_and_what_to_check() {
    let Some(pair) = NetPair::new() else { return };
    let out = pair.discover(2);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    for needle in [
        "No ferry host found in 2 s",
        &format!("{} {PEER_IP} (multicast sent)", pair.peer_if),
        "nothing answered",
        "same network",
        "UDP 5353",
        "AP isolation",
        "VPN",
    ] {
        assert!(err.contains(needle), "{needle:?} missing:\n{err}");
    }
}

#[test]
fn multicast_blocked_by_a_firewall_is_diagnosed() {
    let Some(pair) = NetPair::new() else { return };
    let (_dir, root) = photos();
    let _serve = serve_announced(&pair, &root, 7902, &[]);

    // The browsing side drops incoming mDNS: queries go out, no answer comes back.
    let Some(()) = pair.firewall(&pair.peer, "input", &["udp", "dport", "5353", "drop"]) else { return };
    let out = pair.discover(2);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(err.contains("(multicast sent)") && err.contains("nothing answered"), "{err}");
    assert!(err.contains("firewall allows UDP 5353"), "{err}");
    pair.open_firewall(&pair.peer, "input");

    // Its own firewall refuses to let mDNS out: the diagnosis says sending failed, and where.
    pair.firewall(&pair.peer, "output", &["udp", "dport", "5353", "drop"]);
    let out = pair.discover(2);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(err.contains(&format!("{} {PEER_IP} (multicast could not be sent", pair.peer_if)), "{err}");
    assert!(err.contains("this machine's firewall"), "{err}");
    pair.open_firewall(&pair.peer, "output");

    // Open again: found.
    let out = pair.discover(3);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn a_host_whose_port_is_blocked_is_seen_but_not_reachable() {
    let Some(pair) = NetPair::new() else { return };
    let (_dir, root) = photos();
    let _serve = serve_announced(&pair, &root, 7903, &[]);
    let Some(()) = pair.firewall(&pair.host, "input", &["tcp", "dport", "7903", "reject", "with", "tcp", "reset"])
    else {
        return;
    };
    let out = pair.discover(2);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(err.contains(&format!("seen but not reachable: \"{}\" at {HOST_IP}:7903", instance())), "{err}");
    assert!(err.contains("refused"), "{err}");
    assert!(err.contains("TCP port (7903)"), "{err}");
}

#[test]
fn an_independent_mdns_browser_sees_a_ferry_host() {
    let Some(pair) = NetPair::new() else { return };
    // python-zeroconf, from Debian's python3-zeroconf: not ferry's code.
    let python = "/usr/bin/python3";
    let has = Command::new(python).args(["-c", "import zeroconf"]).output();
    if !has.is_ok_and(|o| o.status.success()) {
        unavailable::<()>("python3-zeroconf (apt package python3-zeroconf)");
        return;
    }
    let (_dir, root) = photos();
    let _serve = serve_announced(&pair, &root, 7904, &[]);
    let script = r#"
import sys, time
from zeroconf import Zeroconf, ServiceBrowser
zc = Zeroconf()
found = []
class L:
    def add_service(self, zc, t, name):
        info = zc.get_service_info(t, name, timeout=3000)
        props = {k.decode(): (v or b'').decode() for k, v in info.properties.items()}
        print(name, info.port, ','.join(info.parsed_addresses()), sorted(props.items()), flush=True)
        found.append(name)
    def remove_service(self, *a): pass
    def update_service(self, *a): pass
ServiceBrowser(zc, "_ferry._tcp.local.", L())
deadline = time.time() + 10
while not found and time.time() < deadline:
    time.sleep(0.05)
zc.close()
sys.exit(0 if found else 1)
"#;
    let out = pair.command(&pair.peer, python, &["-c", script]).output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let id = host_id();
    let expected = format!(
        "{}._ferry._tcp.local. 7904 {HOST_IP} [('id', '{id}'), ('name', 'photos'), ('pin', '0'), ('tls', '1'), ('v', '2')]",
        instance()
    );
    assert_eq!(stdout.trim(), expected);
}

#[test]
fn discovery_turned_off_neither_announces_nor_browses() {
    // Outside any namespace: with discovery off, `discover` must not open a socket at all.
    let out = Command::new(FERRY).args(["discover"]).env("FERRY_NO_DISCOVERY", "1").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("discovery is turned off"), "{}", text(&out.stderr));

    let Some(pair) = NetPair::new() else { return };
    let (_dir, root) = photos();
    let mut cmd = pair.command(&pair.host, FERRY, &["serve", root.to_str().unwrap(), "--bind", "0.0.0.0:7905"]);
    cmd.env("FERRY_NO_DISCOVERY", "1");
    let mut serve = Lines::spawn(cmd);
    serve.wait_for("not announced on the local network: discovery is turned off", Duration::from_secs(10));
    let out = pair.discover(2);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("nothing answered"), "{}", text(&out.stderr));
}

#[test]
fn a_remembered_host_that_does_not_announce_shows_up_when_it_answers() {
    let Some(pair) = NetPair::new() else { return };
    let (_dir, root) = photos();
    // Not announced (as if on another subnet, where multicast does not reach), asks a PIN.
    let mut cmd =
        pair.command(&pair.host, FERRY, &["serve", root.to_str().unwrap(), "--bind", "0.0.0.0:7906", "--pin", "1"]);
    cmd.env("FERRY_NO_DISCOVERY", "1");
    let mut serve = Lines::spawn(cmd);
    serve.wait_for("not announced", Duration::from_secs(10));

    let online = format!("{HOST_IP}:7906");
    let offline = format!("{HOST_IP}:7999");
    let mut browser = browser_in(&pair, &[&online, &offline]);
    let found = event(browser.wait_for("EVENT found", Duration::from_secs(10)));
    // Its folder's name comes only after the PIN: the probe sends none.
    assert_eq!(found, format!("EVENT found {online}|{online}||Remembered|Reachable|pin=true|tls=true id=-"));
    // It was found, so no diagnosis: a lost event or nothing else within the diagnosis time.
    let rest: Vec<String> = browser.lines.recv_timeout(Duration::from_secs(5)).into_iter().collect();
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn a_remembered_plain_host_is_probed_in_the_clear_and_shown_as_plain() {
    let Some(pair) = NetPair::new() else { return };
    let (_dir, root) = photos();
    let mut cmd =
        pair.command(&pair.host, FERRY, &["serve", root.to_str().unwrap(), "--bind", "0.0.0.0:7907", "--plain"]);
    cmd.env("FERRY_NO_DISCOVERY", "1");
    let mut serve = Lines::spawn(cmd);
    serve.wait_for("not announced", Duration::from_secs(10));

    let online = format!("{HOST_IP}:7907");
    let mut browser = browser_in(&pair, &[&online]);
    let found = event(browser.wait_for("EVENT found", Duration::from_secs(10)));
    // The encrypted hello fails its handshake; the plain one learns the folder's name.
    assert_eq!(found, format!("EVENT found {online}|{online}|photos|Remembered|Reachable|pin=false|tls=false"));
}

#[test]
fn a_remembered_host_that_is_offline_is_named_in_the_diagnosis() {
    let Some(pair) = NetPair::new() else { return };
    let offline = format!("{HOST_IP}:7998");
    let mut browser = browser_in(&pair, &[&offline]);
    let nothing = event(browser.wait_for("EVENT nothing", Duration::from_secs(15)));
    assert_eq!(nothing, "EVENT nothing No ferry host found in 3 s");
    let why = event(browser.wait_for("remembered host", Duration::from_secs(2)));
    assert!(why.starts_with(&format!("EVENT why tried: remembered host {offline}: cannot connect")), "{why}");
}

#[test]
fn a_dual_stack_host_is_announced_on_both_families_and_reached_over_ipv4() {
    let Some(pair) = NetPair::new() else { return };
    pair.wait_ipv6_ready();
    let (_dir, root) = photos();
    let cmd = pair.command(&pair.host, FERRY, &["serve", root.to_str().unwrap(), "--bind", "[::]:7907"]);
    let mut serve = Lines::spawn(cmd);
    serve.wait_for("announced on the local network", Duration::from_secs(15));

    let mut browser = browser_in(&pair, &[]);
    let v4 = format!("|{HOST_IP}:7907,[fe80:");
    let line = browser.wait_until(
        |l| l.contains(&v4) && l.contains("|Reachable|"),
        "a reachable host with an IPv4 address first, then an IPv6 one",
        Duration::from_secs(15),
    );
    assert!(event(line).starts_with(&format!("EVENT updated {}|", instance())));

    let out = pair.discover(3);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with(&format!("{}\t{HOST_IP}:7907\t", instance())), "{stdout}");
}
