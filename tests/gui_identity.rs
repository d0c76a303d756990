#![cfg(feature = "gui")]
//! The host's identity in the window: the Server tab and the Client tab show the same colours
//! and groups, and a known host whose identity changed is refused with a red warning until the
//! person accepts the new identity. Bytes changed on the way are caught by TLS, and the card
//! says so in words.
//!
//! The window keeps its known hosts where ferry does: under cargo, `FERRY_CONFIG_DIR` points
//! into target/ (.cargo/config.toml), never at the person's own configuration folder.

use std::sync::Arc;
use std::time::Duration;

use egui_kittest::kittest::Queryable;
use ferry::server::{Server, ServerConfig, ServerEvent};
use ferry::transport::{Identity, KnownHosts, host_key};

#[path = "support/kittest.rs"]
mod kittest;
mod support;
use kittest::{app, click, has, step_until, type_into};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn both_tabs_show_the_same_identity_and_a_changed_one_waits_for_the_person() {
    let config = ferry::transport::config_dir().expect("a configuration folder");
    assert!(
        std::env::var_os("FERRY_CONFIG_DIR").is_some(),
        "run under cargo, which points FERRY_CONFIG_DIR at {}",
        config.display()
    );
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("a.txt"), b"a").unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let mut h = app(downloads.path());

    // Hosting from the Server tab shows the host's own identity (the key in the config folder).
    type_into(&mut h, "Folder to host", &share.path().display().to_string());
    type_into(&mut h, "Listen on", "127.0.0.1");
    type_into(&mut h, "port", "0");
    click(&mut h, "Start hosting");
    step_until(&mut h, "the server to listen", WAIT, |h| h.state().hosting_addr().is_some());
    h.run_steps(2);
    let own = Identity::load_default().unwrap().fingerprint();
    let shown = format!("identity: {}", own.groups());
    assert!(has(&h, &shown), "the Server tab shows {shown}");
    let addr = h.state().hosting_addr().unwrap();

    // The Client tab, connected to it, shows the same groups.
    click(&mut h, "Client");
    type_into(&mut h, "Server address", &addr.to_string());
    click(&mut h, "Connect");
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("a.txt").is_some());
    assert!(has(&h, &shown), "the Client tab shows {shown}");

    // Another host, with another key, where this client remembers a different identity.
    let other = Arc::new(Identity::generate().unwrap());
    let mut cfg = ServerConfig::new(share.path(), "127.0.0.1:0");
    cfg.identity = Some(other.clone());
    let (_server, events): (Server, _) = Server::spawn(cfg, None);
    let other_addr = loop {
        match events.recv_timeout(WAIT).unwrap() {
            ServerEvent::Listening { addr, .. } => break addr,
            ServerEvent::StartFailed { error } => panic!("{error}"),
            _ => {}
        }
    };
    let known = KnownHosts::new(KnownHosts::default_path().unwrap());
    let key = host_key(&other_addr.to_string(), ferry::client::DEFAULT_PORT);
    known.remember(&key, own).unwrap();
    // The known-hosts file is shared by every window test (target/ferry-config), whose hosts all
    // show `own`: when this test ends, however it ends, the port it used is remembered with
    // `own` again, or a later test's host on the same port would meet a "changed identity".
    struct Restore(KnownHosts, String, ferry::transport::Fingerprint);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = self.0.remember(&self.1, self.2);
        }
    }
    let _restore = Restore(KnownHosts::new(KnownHosts::default_path().unwrap()), key.clone(), own);

    type_into(&mut h, "Server address", &other_addr.to_string());
    click(&mut h, "Connect");
    step_until(&mut h, "the changed-identity warning", WAIT, |h| has(h, "has CHANGED"));
    assert!(has(&h, &format!("identity: {}", other.fingerprint().groups())), "the new identity is shown");
    assert_eq!(known.lookup(&key).unwrap(), Some(own), "not accepted by itself");
    click(&mut h, "They match: accept the new identity");
    step_until(&mut h, "the accepted host", WAIT, |h| has(h, "You accepted this host's new identity"));
    assert!(!has(&h, "has CHANGED"));
    assert_eq!(known.lookup(&key).unwrap(), Some(other.fingerprint()), "remembered once accepted");
}

#[test]
fn bytes_changed_on_the_way_end_the_download_with_words_for_it_and_resume() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("big.bin"), support::random_bytes(2 * 1024 * 1024, 45)).unwrap();
    let (_server, events): (Server, _) = Server::spawn(ServerConfig::new(share.path(), "127.0.0.1:0"), None);
    let addr = loop {
        match events.recv_timeout(WAIT).unwrap() {
            ServerEvent::Listening { addr, .. } => break addr,
            ServerEvent::StartFailed { error } => panic!("{error}"),
            _ => {}
        }
    };
    // Well inside the file's bytes: the handshake, the listing and the get pass untouched.
    let relay = support::Relay::start(addr, support::Tamper::FlipByteAt(900_000));
    let mut h = app(downloads.path());
    click(&mut h, "Client");
    type_into(&mut h, "Server address", &relay.addr.to_string());
    click(&mut h, "Connect");
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("big.bin").is_some());
    click(&mut h, "big.bin");
    click(&mut h, "Download");
    step_until(&mut h, "the failed card", WAIT, |h| has(h, "the data was changed on the way"));
    assert!(h.query_by_label("Resume").is_some(), "what arrived intact is kept: Resume is offered");
    assert!(!downloads.path().join("big.bin").exists(), "nothing under the final name");
}
