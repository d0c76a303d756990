//! The window's Nearby list against a real announcement: `ferry serve` announces in one network
//! namespace; this test binary runs itself again inside the other namespace, where the window
//! (an egui_kittest harness, no display needed) browses. Nothing reaches the real network.
#![cfg(feature = "gui")]

#[path = "support/kittest.rs"]
mod kittest;
#[path = "support/netns.rs"]
mod netns;

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use ferry::gui::{FerryApp, State, Tab};
use kittest::{App, step_until};
use netns::{NetPair, serve_announced};

fn instance() -> String {
    ferry::discovery::instance_name("photos", &ferry::discovery::machine_name())
}

/// Runs [`nearby_window_in_namespace`] inside the browsing namespace with `mode`; returns its
/// output once it exits (and fails the test if it failed).
fn window_in(pair: &NetPair, mode: &str, signal: &Path) -> std::process::Child {
    let me = std::env::current_exe().unwrap();
    let mut cmd = pair.command(
        &pair.peer,
        me.to_str().unwrap(),
        &["--exact", "nearby_window_in_namespace", "--ignored", "--nocapture", "--test-threads", "1"],
    );
    cmd.env("FERRY_TEST_NETNS", &pair.peer).env("FERRY_TEST_MODE", mode).env("FERRY_TEST_SIGNAL", signal);
    cmd.spawn().unwrap()
}

fn wait_file(path: &Path, child: &mut std::process::Child, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the window exited ({status}) before {}", path.display());
        }
        assert!(Instant::now() < deadline, "no {} within {timeout:?}", path.display());
        thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut std::process::Child, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the window in the namespace failed: {status} (its output is above)");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the window in the namespace did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_nearby_list_shows_an_announced_host_connects_on_click_and_drops_it_when_it_stops() {
    let Some(pair) = NetPair::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("photos");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("cat.txt"), b"meow\n").unwrap();
    let mut serve = serve_announced(&pair, &root, 7910, &[]);

    let signal = dir.path().join("listed");
    let mut window = window_in(&pair, "found", &signal);
    // The window found the host, connected with one click and shows its folder: stop hosting.
    wait_file(&signal, &mut window, Duration::from_secs(60));
    assert_eq!(serve.interrupt(), 0);
    wait_exit(&mut window, Duration::from_secs(30));
}

#[test]
fn the_nearby_list_explains_why_nothing_is_found() {
    let Some(pair) = NetPair::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut window = window_in(&pair, "nothing", &dir.path().join("unused"));
    wait_exit(&mut window, Duration::from_secs(60));
}

/// The window half of the tests above, run by them inside the browsing namespace.
#[test]
#[ignore = "a helper: the tests in this file run it inside a network namespace"]
fn nearby_window_in_namespace() {
    let Ok(ns) = std::env::var("FERRY_TEST_NETNS") else {
        panic!("only runs inside a test's own network namespace (FERRY_TEST_NETNS unset)")
    };
    let here = Command::new("ip").args(["netns", "identify"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&here.stdout).trim(),
        ns,
        "not inside the namespace {ns}: refusing to browse the real network"
    );
    let downloads = tempfile::tempdir().unwrap();
    let state = State { tab: Tab::Client, download_dir: downloads.path().display().to_string(), ..State::default() };
    let mut h: App = Harness::builder()
        .with_size([1100.0, 900.0])
        .with_step_dt(1.0 / 60.0)
        .build_eframe(move |cc| FerryApp::new(state, &cc.egui_ctx).with_native_dialogs(false).with_discovery(true));

    match std::env::var("FERRY_TEST_MODE").as_deref() {
        Ok("found") => {
            let button = format!("Connect to {}", instance());
            step_until(&mut h, "the announced host, reachable, in the Nearby list", Duration::from_secs(20), |h| {
                h.query_by_label(&button).is_some_and(|n| !n.accesskit_node().is_disabled())
            });
            h.get_by_label(&button).click();
            step_until(&mut h, "the host's folder after one click", Duration::from_secs(20), |h| {
                h.query_by_label("cat.txt").is_some()
            });
            assert_eq!(h.state().settings().server_addr, format!("{}:7910", netns::HOST_IP));
            std::fs::write(std::env::var("FERRY_TEST_SIGNAL").unwrap(), b"listed").unwrap();
            step_until(&mut h, "the host gone from the Nearby list once it stopped", Duration::from_secs(15), |h| {
                h.query_by_label(&button).is_none()
            });
        }
        Ok("nothing") => {
            step_until(&mut h, "the diagnosis", Duration::from_secs(20), |h| {
                h.query_by_label_contains("No ferry host found in").is_some()
            });
            for needle in ["(multicast sent)", "nothing answered", "AP isolation", "UDP 5353", "type the address"] {
                assert!(h.query_by_label_contains(needle).is_some(), "the diagnosis lacks {needle:?}");
            }
        }
        other => panic!("unknown FERRY_TEST_MODE {other:?}"),
    }
}
