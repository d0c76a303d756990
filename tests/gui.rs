#![cfg(feature = "gui")]
//! The desktop window driven through its accessibility tree (egui_kittest), against real
//! servers on 127.0.0.1: hosting from the Server tab, browsing and downloading from the Client
//! tab, the MD5 verdict, a corrupted transfer, and errors shown in the window.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::kittest::{NodeT, Queryable};
use ferry::client::{part_path, record_path};
use ferry::gui::format::grouped_hex;
use ferry::gui::verdict::fingerprint_names;
use ferry::protocol::hex;
use ferry::server::{Server, ServerConfig, ServerEvent};
use md5::{Digest, Md5};

#[path = "support/kittest.rs"]
mod kittest;
use kittest::{App, app, app_sized, click, double_click, has, step_until, type_into};

const WAIT: Duration = Duration::from_secs(60);

/// Deterministic bytes that do not compress or repeat in any way MD5 would care about.
fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn md5_of(bytes: &[u8]) -> [u8; 16] {
    Md5::digest(bytes).into()
}

/// Hosts from the Server tab (127.0.0.1, port 0) and returns the address it listens on.
fn host_from_server_tab(h: &mut App, folder: &Path) -> SocketAddr {
    type_into(h, "Folder to host", &folder.display().to_string());
    type_into(h, "Listen on", "127.0.0.1");
    type_into(h, "port", "0");
    click(h, "Start hosting");
    step_until(h, "the server to listen", WAIT, |h| h.state().hosting_addr().is_some());
    h.run_steps(2);
    let addr = h.state().hosting_addr().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    addr
}

fn connect_from_client_tab(h: &mut App, addr: &str) {
    click(h, "Client");
    type_into(h, "Server address", addr);
    click(h, "Connect");
}

#[test]
fn host_browse_download_and_see_md5_verified() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    std::fs::create_dir(share.path().join("sub")).unwrap();
    std::fs::write(share.path().join("top.txt"), b"at the top").unwrap();
    let data = test_bytes(3 * 1024 * 1024 + 17, 7);
    std::fs::write(share.path().join("sub").join("data.bin"), &data).unwrap();

    let mut h = app(downloads.path());
    let addr = host_from_server_tab(&mut h, share.path());
    assert!(has(&h, "Hosting"), "the Server tab says it is hosting");
    assert!(has(&h, &addr.to_string()), "the Server tab shows the address to type");
    // The host hashes its folder once hosting starts; once it has, listings carry the MD5s.
    step_until(&mut h, "the host's index to be ready", WAIT, |h| has(h, "Fingerprints ready"));

    connect_from_client_tab(&mut h, &addr.to_string());
    step_until(&mut h, "the hosted folder's listing", WAIT, |h| h.query_by_label("sub").is_some());
    assert!(h.query_by_label("top.txt").is_some());
    assert_eq!(h.state().settings().recent_servers, [addr.to_string()], "a server that answered is remembered");

    double_click(&mut h, "sub");
    step_until(&mut h, "the listing of sub", WAIT, |h| h.query_by_label("data.bin").is_some());
    assert!(h.query_by_label("top.txt").is_none());

    click(&mut h, "data.bin");
    let dest = downloads.path().join("data.bin");
    assert_eq!(h.get_by_label("Save as").value().as_deref(), Some(dest.display().to_string().as_str()));
    click(&mut h, "Download");
    step_until(&mut h, "the verdict", WAIT, |h| has(h, "MD5 verified"));

    let expected = md5_of(&data);
    assert_eq!(std::fs::read(&dest).unwrap(), data, "the file on disk is the hosted file");
    assert!(!part_path(&dest).exists());
    let shown = grouped_hex(&hex(&expected));
    assert!(has(&h, "Expected MD5"), "the selected file's listed MD5, under the list");
    assert_eq!(
        h.query_all_by_label(&shown).count(),
        3,
        "the listed digest, and both digests of the verdict, equal to the one computed here"
    );
    let fingerprint = format!("fingerprint: {}", fingerprint_names(&expected));
    assert_eq!(h.query_all_by_label(&fingerprint).count(), 3);
    assert!(!has(&h, "MD5 mismatch"));

    // The host's tab shows the same digest and the same colours beside the finished transfer.
    click(&mut h, "Server");
    step_until(&mut h, "the finished transfer on the Server tab", WAIT, |h| h.query_by_label(&shown).is_some());
    assert_eq!(h.query_all_by_label(&fingerprint).count(), 1);
}

#[test]
fn an_existing_file_is_replaced_only_after_asking() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let data = test_bytes(100_000, 3);
    std::fs::write(share.path().join("report.pdf"), &data).unwrap();
    let dest = downloads.path().join("report.pdf");
    std::fs::write(&dest, b"the user's own file").unwrap();

    let mut h = app(downloads.path());
    let addr = host_from_server_tab(&mut h, share.path());
    connect_from_client_tab(&mut h, &addr.to_string());
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("report.pdf").is_some());
    click(&mut h, "report.pdf");
    click(&mut h, "Download");
    step_until(&mut h, "the question", WAIT, |h| has(h, "Replace the existing file?"));
    assert_eq!(std::fs::read(&dest).unwrap(), b"the user's own file");

    click(&mut h, "Keep the existing file");
    step_until(&mut h, "the question to go", WAIT, |h| !has(h, "Replace the existing file?"));
    assert_eq!(std::fs::read(&dest).unwrap(), b"the user's own file", "kept");

    click(&mut h, "Download again");
    step_until(&mut h, "the question again", WAIT, |h| has(h, "Replace the existing file?"));
    click(&mut h, "Replace");
    step_until(&mut h, "the verdict", WAIT, |h| has(h, "MD5 verified"));
    assert_eq!(std::fs::read(&dest).unwrap(), data, "replaced once the person said so");
}

#[test]
fn a_file_already_here_shows_its_expected_md5_and_is_identical_without_downloading() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let data = test_bytes(2 * 1024 * 1024 + 5, 11);
    std::fs::write(share.path().join("same.bin"), &data).unwrap();
    let dest = downloads.path().join("same.bin");
    std::fs::write(&dest, &data).unwrap();
    let before = std::fs::metadata(&dest).unwrap().modified().unwrap();

    let mut h = app(downloads.path());
    let addr = host_from_server_tab(&mut h, share.path());
    // The host hashes its folder in the background and says so.
    step_until(&mut h, "the host's index to be ready", WAIT, |h| has(h, "Fingerprints ready"));

    connect_from_client_tab(&mut h, &addr.to_string());
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("same.bin").is_some());
    click(&mut h, "same.bin");
    let md5 = md5_of(&data);
    let shown = grouped_hex(&hex(&md5));
    assert!(has(&h, "Expected MD5"), "the listed digest is shown before downloading");
    assert_eq!(h.query_all_by_label(&shown).count(), 1);
    let fingerprint = format!("fingerprint: {}", fingerprint_names(&md5));
    assert_eq!(h.query_all_by_label(&fingerprint).count(), 1, "with its colours");

    click(&mut h, "Download");
    step_until(&mut h, "the verdict", WAIT, |h| has(h, "Identical: already have it (MD5 matches)"));
    assert!(!has(&h, "Replace the existing file?"), "nothing to ask: it is the same file");
    assert!(!has(&h, "MD5 verified"));
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(std::fs::metadata(&dest).unwrap().modified().unwrap(), before, "not written again");
    assert_eq!(h.query_all_by_label(&shown).count(), 3, "expected, listed and computed digests");
}

/// Forwards connections to `upstream`. In what the server sends on each connection, the byte
/// at `flip_at` gets one bit flipped (the listing replies are far shorter, so only file data is
/// hit), and each 16 KiB waits `pause` (to slow a transfer down).
fn relay(upstream: SocketAddr, flip_at: Option<u64>, pause: Duration) -> SocketAddr {
    fn pump(mut from: TcpStream, mut to: TcpStream, flip_at: Option<u64>, pause: Duration) {
        let mut buf = [0u8; 16 * 1024];
        let mut pos = 0u64;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(at) = flip_at
                && (pos..pos + n as u64).contains(&at)
            {
                buf[(at - pos) as usize] ^= 0x01;
            }
            pos += n as u64;
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            if !pause.is_zero() {
                thread::sleep(pause);
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for client in listener.incoming().take(8) {
            let Ok(client) = client else { break };
            let Ok(server) = TcpStream::connect(upstream) else { break };
            let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            thread::spawn(move || pump(c, s, None, Duration::ZERO));
            thread::spawn(move || pump(server, client, flip_at, pause));
        }
    });
    addr
}

/// A host that speaks version 2 like ferry (TLS, its own identity) and serves one file whose
/// bytes are damaged at `flip_at` after leaving the disk, with the true file's digest as the
/// trailer: inside TLS, nothing between the machines can damage bytes unnoticed, so the
/// damage happens at the host.
fn corrupting_host(name: &'static str, data: Vec<u8>, flip_at: usize) -> SocketAddr {
    use ferry::protocol::frame;
    use serde_json::json;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = ferry::transport::HostTls::new(&ferry::transport::Identity::generate().unwrap()).unwrap();
    let data = std::sync::Arc::new(data);
    thread::spawn(move || {
        for tcp in listener.incoming().take(8) {
            let Ok(tcp) = tcp else { break };
            let (tls, data) = (tls.clone(), data.clone());
            thread::spawn(move || {
                tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let Ok(mut s) = tls.accept(tcp) else { return };
                let answer = |s: &mut ferry::transport::Stream, v: serde_json::Value| {
                    let mut out = Vec::new();
                    frame::write_control(&mut out, &v).unwrap();
                    s.write_all(&out).and_then(|()| s.flush())
                };
                while let Ok(req) = frame::read_frame(&mut s, frame::MAX_REQUEST_LEN) {
                    let req: serde_json::Value = serde_json::from_slice(&req).unwrap();
                    let sent = match req["op"].as_str() {
                        Some("hello") => answer(&mut s, json!({"ok":true,"version":2,"server":"bad","name":"share"})),
                        Some("list") => answer(
                            &mut s,
                            json!({"ok":true,"path":"","entries":[{"name":name,"kind":"file","size":data.len()}]}),
                        ),
                        Some("get") => {
                            let mut damaged = data.to_vec();
                            damaged[flip_at] ^= 0x01;
                            let _ = answer(&mut s, json!({"ok":true,"size":data.len(),"offset":0}));
                            let mut section = frame::encode_header(data.len() as u64).to_vec();
                            section.extend_from_slice(&damaged);
                            section.extend_from_slice(&md5_of(&data));
                            s.write_all(&section).and_then(|()| s.flush())
                        }
                        _ => answer(&mut s, json!({"ok":false,"error":"unsupported","message":"no"})),
                    };
                    if sent.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn spawn_server(root: &Path) -> (Server, SocketAddr) {
    let (server, events) = Server::spawn(ServerConfig::new(root, "127.0.0.1:0"), None);
    for event in events.iter() {
        match event {
            ServerEvent::Listening { addr, .. } => return (server, addr),
            ServerEvent::StartFailed { error } => panic!("{error}"),
            _ => {}
        }
    }
    panic!("the server stopped before listening");
}

#[test]
fn a_corrupted_transfer_shows_mismatch_and_saves_nothing() {
    let downloads = tempfile::tempdir().unwrap();
    let data = test_bytes(4 * 1024 * 1024, 11);
    let host = corrupting_host("video.mp4", data.clone(), 2 * 1024 * 1024 + 12_345);

    let mut h = app(downloads.path());
    connect_from_client_tab(&mut h, &host.to_string());
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("video.mp4").is_some());
    click(&mut h, "video.mp4");
    click(&mut h, "Download");
    step_until(&mut h, "the verdict", WAIT, |h| has(h, "MD5 mismatch: file not saved"));

    let dest = downloads.path().join("video.mp4");
    assert!(!dest.exists(), "no final file after a mismatch");
    assert!(!part_path(&dest).exists(), "and no partial file either");
    assert!(!has(&h, "MD5 verified"));
    // What the host sent is the real file's digest; what was computed here differs.
    let real = grouped_hex(&hex(&md5_of(&data)));
    assert_eq!(h.query_all_by_label(&real).count(), 1);
    assert_eq!(h.query_all_by_label_contains("fingerprint:").count(), 2);
    assert!(h.query_by_label("Download again").is_some(), "one click to try again");
}

#[test]
fn a_cancelled_download_resumes_with_one_click() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let data = test_bytes(8 * 1024 * 1024, 5);
    std::fs::write(share.path().join("album.zip"), &data).unwrap();
    let (_server, upstream) = spawn_server(share.path());
    // About 1.6 MiB/s: a few seconds for the file, time enough to cancel it mid-way.
    let slow = relay(upstream, None, Duration::from_millis(10));

    let mut h = app(downloads.path());
    connect_from_client_tab(&mut h, &slow.to_string());
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("album.zip").is_some());
    click(&mut h, "album.zip");
    click(&mut h, "Download");
    step_until(&mut h, "progress", WAIT, |h| has(h, "of 8.00 MiB") && !has(h, "0 B of"));
    click(&mut h, "Cancel");
    step_until(&mut h, "the cancellation", WAIT, |h| has(h, "Cancelled"));
    let dest = downloads.path().join("album.zip");
    let kept = std::fs::metadata(part_path(&dest)).map(|m| m.len()).unwrap_or(0);
    assert!(kept > 0 && kept < data.len() as u64, "the partial download is kept ({kept} bytes)");
    assert!(!dest.exists());

    click(&mut h, "Resume");
    step_until(&mut h, "the verdict", WAIT, |h| has(h, "MD5 verified"));
    assert!(has(&h, "resumed after"), "the verdict says the download was resumed");
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert!(!part_path(&dest).exists());
}

#[test]
fn an_unreachable_address_shows_an_error_in_the_window() {
    let downloads = tempfile::tempdir().unwrap();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut h = app(downloads.path());
    connect_from_client_tab(&mut h, &closed.to_string());
    step_until(&mut h, "the error", WAIT, |h| has(h, "Cannot connect to"));
    assert!(has(&h, "connection refused"), "the reason is shown");
    assert!(h.state().settings().recent_servers.is_empty(), "an address that never answered is not remembered");

    type_into(&mut h, "Server address", "no-such-port:x");
    click(&mut h, "Connect");
    step_until(&mut h, "the address error", WAIT, |h| has(h, "is not a port number"));
}

#[test]
fn hosting_errors_appear_in_the_window() {
    let downloads = tempfile::tempdir().unwrap();
    let share = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();

    let mut h = app(downloads.path());
    type_into(&mut h, "Folder to host", &share.path().join("gone").display().to_string());
    type_into(&mut h, "Listen on", "127.0.0.1");
    type_into(&mut h, "port", "0");
    click(&mut h, "Start hosting");
    step_until(&mut h, "the missing-folder error", WAIT, |h| has(h, "Cannot host"));
    step_until(&mut h, "hosting to stop", WAIT, |h| h.query_by_label("Start hosting").is_some());

    type_into(&mut h, "Folder to host", &share.path().display().to_string());
    type_into(&mut h, "port", &port.to_string());
    click(&mut h, "Start hosting");
    step_until(&mut h, "the port-in-use error", WAIT, |h| has(h, "the port is in use"));
    assert!(h.state().hosting_addr().is_none());
    drop(taken);
}

#[test]
fn ten_thousand_entries_draw_only_the_visible_rows_and_filter() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    for i in 0..10_000 {
        std::fs::File::create(share.path().join(format!("file_{i:05}.txt"))).unwrap();
    }
    let (_server, addr) = spawn_server(share.path());
    let mut h = app(downloads.path());
    connect_from_client_tab(&mut h, &addr.to_string());
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("file_00000.txt").is_some());

    let rows = h.query_all_by_role(Role::ListItem).count();
    assert!((5..100).contains(&rows), "{rows} rows drawn for 10,000 entries");
    let started = Instant::now();
    h.run_steps(10);
    let per_frame = started.elapsed() / 10;
    assert!(per_frame < Duration::from_millis(250), "{per_frame:?} per frame");

    h.get_by_label("Filter").set_text_value_accesskit("09999");
    h.run_steps(3);
    assert_eq!(h.query_all_by_role(Role::ListItem).count(), 1);
    assert!(h.query_by_label("file_09999.txt").is_some());
}

#[test]
fn hosting_with_a_pin_shows_it_and_clients_must_give_it() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("guarded.txt"), b"behind a PIN").unwrap();
    let mut h = app(downloads.path());
    click(&mut h, "Require a PIN");
    type_into(&mut h, "PIN", "424242");
    let addr = host_from_server_tab(&mut h, share.path());
    assert!(has(&h, "424242"), "the PIN is shown so the host can read it out");
    assert!(has(&h, "Only this machine can connect"), "a loopback address says so plainly");

    connect_from_client_tab(&mut h, &addr.to_string());
    step_until(&mut h, "the PIN request", WAIT, |h| has(h, "asks for a PIN"));
    assert!(!has(&h, "guarded.txt"), "nothing is listed without the PIN");
    type_into(&mut h, "PIN", "111111");
    click(&mut h, "Connect");
    step_until(&mut h, "the wrong PIN refusal", WAIT, |h| has(h, "wrong PIN"));
    type_into(&mut h, "PIN", "424242");
    click(&mut h, "Connect");
    step_until(&mut h, "the listing", WAIT, |h| has(h, "guarded.txt"));
}

#[test]
fn an_error_banner_goes_once_the_field_it_is_about_is_filled() {
    let downloads = tempfile::tempdir().unwrap();
    let share = tempfile::tempdir().unwrap();
    let mut h = app(downloads.path());
    click(&mut h, "Start hosting");
    assert!(has(&h, "Choose a folder to host first"));
    type_into(&mut h, "Folder to host", &share.path().display().to_string());
    assert!(!has(&h, "Choose a folder to host first"), "the Server tab's banner is gone once the folder is typed");

    click(&mut h, "Client");
    click(&mut h, "Connect");
    assert!(has(&h, "Type the address the host shows"));
    type_into(&mut h, "Server address", "127.0.0.1:1");
    assert!(!has(&h, "Type the address the host shows"), "the Client tab's banner is gone once the address is typed");
}

/// The names of the listing's rows, top to bottom.
fn row_names(h: &App) -> Vec<String> {
    h.query_all_by_role(Role::ListItem).filter_map(|n| n.accesskit_node().label()).collect()
}

#[test]
fn names_sort_naturally_and_each_column_sorts_both_ways() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    for (name, size) in [("f10", 1), ("f2", 300), ("F1", 20), ("docs", 4000)] {
        std::fs::write(share.path().join(name), vec![0u8; size]).unwrap();
    }
    std::fs::create_dir(share.path().join("Zeta")).unwrap();
    let (_server, addr) = spawn_server(share.path());
    let mut h = app(downloads.path());
    connect_from_client_tab(&mut h, &addr.to_string());
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("f10").is_some());
    assert_eq!(row_names(&h), ["Zeta", "docs", "F1", "f2", "f10"], "folders first, then natural order");
    click(&mut h, "Sort by name");
    assert_eq!(row_names(&h), ["Zeta", "f10", "f2", "F1", "docs"], "reversed");
    click(&mut h, "Sort by size");
    assert_eq!(row_names(&h), ["Zeta", "f10", "F1", "f2", "docs"], "smallest first");
    click(&mut h, "Sort by size");
    assert_eq!(row_names(&h), ["Zeta", "docs", "f2", "F1", "f10"], "largest first");
}

#[test]
fn a_recent_server_can_be_forgotten() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let (_server, addr) = spawn_server(share.path());
    let mut h = app(downloads.path());
    connect_from_client_tab(&mut h, &addr.to_string());
    step_until(&mut h, "the connection", WAIT, |h| !h.state().settings().recent_servers.is_empty());
    h.run_steps(2);
    click(&mut h, &format!("Forget {addr}"));
    assert!(h.state().settings().recent_servers.is_empty());
    assert!(h.query_by_label(&format!("Forget {addr}")).is_none());
}

#[test]
fn stopping_with_a_transfer_running_asks_first_and_the_client_hears_of_it() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("big.bin"), test_bytes(8 * 1024 * 1024, 9)).unwrap();
    let mut h = app(downloads.path());
    let addr = host_from_server_tab(&mut h, share.path());
    // About 1.6 MiB/s: the transfer is still running when Stop anyway is clicked, however
    // slowly the machine draws the frames in between.
    let slow = relay(addr, None, Duration::from_millis(10));
    connect_from_client_tab(&mut h, &slow.to_string());
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("big.bin").is_some());
    click(&mut h, "big.bin");
    click(&mut h, "Download");
    step_until(&mut h, "progress", WAIT, |h| has(h, "of 8.00 MiB") && !has(h, "0 B of"));

    click(&mut h, "Server");
    step_until(&mut h, "the transfer on the Server tab", WAIT, |h| {
        h.state().hosting_addr().is_some() && has(h, "big.bin")
    });
    click(&mut h, "Stop hosting");
    step_until(&mut h, "the question", WAIT, |h| has(h, "Stop hosting?"));
    click(&mut h, "Keep hosting");
    assert!(h.state().hosting_addr().is_some(), "still hosting");
    click(&mut h, "Stop hosting");
    step_until(&mut h, "the question again", WAIT, |h| has(h, "Stop anyway"));
    let started = Instant::now();
    click(&mut h, "Stop anyway");
    assert!(started.elapsed() < Duration::from_millis(500), "stopping does not hold up the window");
    step_until(&mut h, "hosting to stop", WAIT, |h| h.query_by_label("Start hosting").is_some());
    step_until(&mut h, "the transfer's end on the host", WAIT, |h| has(h, "stopped here"));
    assert!(!has(&h, "Broken pipe") && !has(&h, "os error"), "no OS error text");
}

#[test]
fn the_client_notices_within_seconds_that_the_host_stopped() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("a.txt"), b"a").unwrap();
    let mut h = app(downloads.path());
    let addr = host_from_server_tab(&mut h, share.path());
    connect_from_client_tab(&mut h, &addr.to_string());
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("a.txt").is_some());
    assert!(has(&h, "Connected to"));

    click(&mut h, "Server");
    click(&mut h, "Stop hosting");
    step_until(&mut h, "hosting to stop", WAIT, |h| h.query_by_label("Start hosting").is_some());
    click(&mut h, "Client");
    let stopped = Instant::now();
    step_until(&mut h, "the stopped-host notice", Duration::from_secs(10), |h| has(h, "stopped hosting"));
    assert!(stopped.elapsed() < Duration::from_secs(5), "noticed in {:?}", stopped.elapsed());
    assert!(!has(&h, "Connected to"), "no longer shown as connected");
    assert!(h.query_by_label("a.txt").is_none(), "the stale listing is gone");
}

#[test]
fn a_failed_connect_keeps_the_working_connection() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("kept.txt"), b"k").unwrap();
    let (_server, addr) = spawn_server(share.path());
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut h = app(downloads.path());
    connect_from_client_tab(&mut h, &addr.to_string());
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("kept.txt").is_some());
    type_into(&mut h, "Server address", &closed.to_string());
    click(&mut h, "Connect");
    step_until(&mut h, "the error", WAIT, |h| has(h, "Cannot connect to"));
    assert!(h.query_by_label("kept.txt").is_some(), "the folder of the working connection is still there");
    assert!(has(&h, "Connected to"));
}

#[test]
fn a_host_that_accepts_but_never_answers_fails_in_seconds() {
    let downloads = tempfile::tempdir().unwrap();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let mut h = app(downloads.path());
    let started = Instant::now();
    connect_from_client_tab(&mut h, &addr.to_string());
    step_until(&mut h, "the error", Duration::from_secs(30), |h| has(h, "did not answer"));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    drop(silent);
}

#[test]
fn resume_uses_the_pin_typed_since_the_download_started() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let data = test_bytes(8 * 1024 * 1024, 21);
    std::fs::write(share.path().join("album.zip"), &data).unwrap();
    let (server, upstream) = spawn_server(share.path());
    let slow = relay(upstream, None, Duration::from_millis(10));

    let mut h = app(downloads.path());
    connect_from_client_tab(&mut h, &slow.to_string());
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("album.zip").is_some());
    click(&mut h, "album.zip");
    click(&mut h, "Download");
    step_until(&mut h, "progress", WAIT, |h| has(h, "of 8.00 MiB") && !has(h, "0 B of"));
    click(&mut h, "Cancel");
    step_until(&mut h, "the cancellation", WAIT, |h| has(h, "Cancelled"));

    // The host hosts again, now with a PIN; the person types it and connects again.
    drop(server);
    let mut config = ServerConfig::new(share.path(), upstream.to_string());
    config.pin = Some("424242".into());
    let (_server, events) = Server::spawn(config, None);
    let first = events.iter().find(|e| matches!(e, ServerEvent::Listening { .. } | ServerEvent::StartFailed { .. }));
    assert!(matches!(first, Some(ServerEvent::Listening { .. })), "hosting again on the same port: {first:?}");
    type_into(&mut h, "PIN", "424242");
    click(&mut h, "Connect");
    step_until(&mut h, "the listing with the PIN", WAIT, |h| has(h, "Connected to") && !has(h, "Connecting"));

    click(&mut h, "Resume");
    step_until(&mut h, "the verdict", WAIT, |h| has(h, "MD5 verified") || has(h, "Failed"));
    assert!(has(&h, "MD5 verified"), "resumed with the PIN typed since");
    assert_eq!(std::fs::read(downloads.path().join("album.zip")).unwrap(), data);
}

/// Nothing is cut off on the right: every button, field and row lies within `width` (what is
/// below the window's bottom edge sits in a scrolling area).
#[track_caller]
fn nothing_sticks_out(h: &App, width: f64) {
    let roles = [Role::Button, Role::TextInput, Role::CheckBox, Role::ListItem, Role::ProgressIndicator];
    for node in h.root().children_recursive() {
        let n = node.accesskit_node();
        if !roles.contains(&n.role()) {
            continue;
        }
        let Some(b) = n.bounding_box() else { continue };
        let label = n.label().unwrap_or_default();
        assert!(b.x0 >= -0.5 && b.x1 <= width + 0.5, "{:?} {label:?} at {b:?} sticks out of {width} wide", n.role());
    }
}

/// `label` is wholly on screen.
#[track_caller]
fn on_screen(h: &App, label: &str, width: f64, height: f64) {
    let node = h.get_by_label(label);
    let b = node.accesskit_node().bounding_box().expect("a widget on screen has bounds");
    assert!(b.x0 >= 0.0 && b.y0 >= 0.0 && b.x1 <= width && b.y1 <= height, "{label:?} at {b:?} is off screen");
}

#[test]
fn at_the_minimum_size_and_narrower_every_control_stays_reachable() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    for i in 0..30 {
        std::fs::write(share.path().join(format!("file {i:02}.txt")), format!("file {i}")).unwrap();
    }
    let (_server, addr) = spawn_server(share.path());
    for [w, hgt] in [[720.0, 520.0], [640.0, 520.0]] {
        let mut h = app_sized(downloads.path(), [w, hgt]);
        connect_from_client_tab(&mut h, &addr.to_string());
        step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("file 00.txt").is_some());
        for name in ["file 00.txt", "file 01.txt"] {
            click(&mut h, name);
            type_into(&mut h, "Save as", &downloads.path().join(format!("{w}-{name}")).display().to_string());
            click(&mut h, "Download");
            step_until(&mut h, "the verdict", WAIT, |h| !has(h, "Connecting…") && !has(h, "checking"));
        }
        step_until(&mut h, "both verdicts", WAIT, |h| h.query_all_by_label("MD5 verified").count() == 2);
        h.run_steps(3);
        // With two verdict cards listed, the browser still shows rows, Save as and Download.
        assert!(h.query_all_by_role(Role::ListItem).count() >= 3, "{w}: rows visible");
        let (w, hgt) = (f64::from(w), f64::from(hgt));
        for label in ["Server address", "Connect", "Filter", "Save as", "Download", "Clear finished"] {
            on_screen(&h, label, w, hgt);
        }
        nothing_sticks_out(&h, w);
        click(&mut h, "Server");
        on_screen(&h, "Start hosting", w, hgt);
        nothing_sticks_out(&h, w);
    }
}

/// The label of the widget with keyboard focus.
fn focused(h: &App) -> Option<String> {
    h.root().children_recursive().find(|n| n.is_focused()).and_then(|n| n.accesskit_node().label())
}

fn press(h: &mut App, key: egui::Key) {
    h.key_press(key);
    h.run_steps(2);
}

/// Presses Tab until `label` has focus (a bounded number of times); returns how many.
#[track_caller]
fn tab_to(h: &mut App, label: &str) -> usize {
    let mut seen = Vec::new();
    for n in 1..=40 {
        press(h, egui::Key::Tab);
        let now = focused(h);
        if now.as_deref() == Some(label) {
            return n;
        }
        seen.push(now.unwrap_or_default());
    }
    panic!("Tab never reached {label:?}; it went through {seen:?}");
}

#[test]
fn a_download_cancel_and_resume_with_the_keyboard_alone() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let data = test_bytes(8 * 1024 * 1024, 33);
    for name in ["a.txt", "b.txt", "movie.mkv", "notes.txt"] {
        std::fs::write(share.path().join(name), if name == "movie.mkv" { &data[..] } else { b"small" }).unwrap();
    }
    std::fs::create_dir(share.path().join("folder")).unwrap();
    let (_server, upstream) = spawn_server(share.path());
    let slow = relay(upstream, None, Duration::from_millis(10));

    let mut h = app(downloads.path());
    // The theme buttons come in the order they are read.
    let system = tab_to(&mut h, "System");
    assert_eq!(tab_to(&mut h, "Light"), 1);
    assert_eq!(tab_to(&mut h, "Dark"), 1);
    assert!(system > 1);

    tab_to(&mut h, "Client");
    press(&mut h, egui::Key::Enter);
    tab_to(&mut h, "Server address");
    h.get_by_label("Server address").type_text(&slow.to_string());
    press(&mut h, egui::Key::Enter);
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("movie.mkv").is_some());

    // One Tab stop for the list: from the filter, Tab lands on the first row, not beyond it.
    tab_to(&mut h, "folder");
    press(&mut h, egui::Key::ArrowDown);
    assert_eq!(focused(&h).as_deref(), Some("a.txt"), "↓ moves the focus and the selection");
    press(&mut h, egui::Key::ArrowDown);
    press(&mut h, egui::Key::ArrowDown);
    assert_eq!(focused(&h).as_deref(), Some("movie.mkv"));
    let dest = downloads.path().join("movie.mkv");
    assert_eq!(h.get_by_label("Save as").value().as_deref(), Some(dest.display().to_string().as_str()));
    press(&mut h, egui::Key::Enter);
    step_until(&mut h, "progress", WAIT, |h| has(h, "of 8.00 MiB") && !has(h, "0 B of"));

    tab_to(&mut h, "Cancel");
    press(&mut h, egui::Key::Enter);
    step_until(&mut h, "the cancellation", WAIT, |h| has(h, "Cancelled"));
    tab_to(&mut h, "Resume");
    press(&mut h, egui::Key::Enter);
    step_until(&mut h, "the verdict", WAIT, |h| has(h, "MD5 verified"));
    assert_eq!(std::fs::read(&dest).unwrap(), data);

    // Enter on a folder opens it.
    tab_to(&mut h, "Filter");
    tab_to(&mut h, "movie.mkv");
    press(&mut h, egui::Key::ArrowUp);
    press(&mut h, egui::Key::ArrowUp);
    press(&mut h, egui::Key::ArrowUp);
    assert_eq!(focused(&h).as_deref(), Some("folder"));
    press(&mut h, egui::Key::Enter);
    step_until(&mut h, "the folder's listing", WAIT, |h| has(h, "This folder is empty."));
}

#[test]
fn a_download_folder_that_does_not_exist_is_offered_to_be_created_not_remembered() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("doc.txt"), b"document").unwrap();
    let (_server, addr) = spawn_server(share.path());
    let mut h = app(downloads.path());
    connect_from_client_tab(&mut h, &addr.to_string());
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("doc.txt").is_some());
    click(&mut h, "doc.txt");
    let folder = downloads.path().join("new").join("sub");
    type_into(&mut h, "Save as", &folder.join("doc.txt").display().to_string());
    click(&mut h, "Download");
    step_until(&mut h, "the question", WAIT, |h| has(h, "That folder does not exist"));
    assert_eq!(h.state().settings().download_dir, downloads.path().display().to_string(), "not remembered");
    assert!(!has(&h, "os error") && !has(&h, ".part"));
    click(&mut h, "Create the folder and download");
    step_until(&mut h, "the verdict", WAIT, |h| has(h, "MD5 verified"));
    assert_eq!(std::fs::read(folder.join("doc.txt")).unwrap(), b"document");
    assert_eq!(h.state().settings().download_dir, folder.display().to_string(), "remembered once it exists");
}

/// Where `label`'s widget is.
fn rect_of(h: &App, label: &str) -> egui::Rect {
    h.get_by_label(label).rect()
}

#[test]
fn cancel_is_not_replaced_by_remove_and_a_removed_card_offers_to_delete_its_part() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("big.iso"), test_bytes(8 * 1024 * 1024, 41)).unwrap();
    let (_server, upstream) = spawn_server(share.path());
    let slow = relay(upstream, None, Duration::from_millis(10));
    let mut h = app(downloads.path());
    connect_from_client_tab(&mut h, &slow.to_string());
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("big.iso").is_some());
    click(&mut h, "big.iso");
    click(&mut h, "Download");
    step_until(&mut h, "progress", WAIT, |h| has(h, "of 8.00 MiB") && !has(h, "0 B of"));
    let cancel = rect_of(&h, "Cancel");
    click(&mut h, "Cancel");
    step_until(&mut h, "the cancellation", WAIT, |h| has(h, "Cancelled"));
    assert!(!rect_of(&h, "Remove").intersects(cancel), "Remove is not where Cancel was");
    assert!(!has(&h, ".part") && !has(&h, "os error"), "no internal names");

    let part = part_path(&downloads.path().join("big.iso"));
    assert!(part.exists() && record_path(&downloads.path().join("big.iso")).exists());
    click(&mut h, "Remove");
    step_until(&mut h, "the offer", WAIT, |h| has(h, "Delete what was downloaded?"));
    assert!(part.exists());
    click(&mut h, "Delete it");
    let deadline = Instant::now() + WAIT;
    let record = record_path(&downloads.path().join("big.iso"));
    while part.exists() || record.exists() {
        assert!(Instant::now() < deadline, "the partial file was not deleted");
        h.run_steps(1);
        thread::sleep(Duration::from_millis(10));
    }
    assert!(std::fs::read_dir(downloads.path()).unwrap().next().is_none(), "nothing else is left");
}

/// One protocol frame: an 8-byte big-endian length, then the JSON.
fn frame(json: &str) -> Vec<u8> {
    let mut out = (json.len() as u64).to_be_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out
}

#[test]
fn the_host_shows_a_transfer_as_delivered_only_once_the_client_confirms_it() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("once.txt"), b"sent once, confirmed once").unwrap();
    let mut h = app(downloads.path());
    let addr = host_from_server_tab(&mut h, share.path());

    // A client that takes the file and never says what became of it (as one that could not
    // save it would): all the bytes go out, and the host must not call it delivered.
    let mut silent = ferry::transport::connect(TcpStream::connect(addr).unwrap()).unwrap();
    let hello = format!(r#"{{"op":"hello","version":{},"client":"silent"}}"#, ferry::protocol::VERSION);
    silent.write_all(&frame(&hello)).unwrap();
    silent.write_all(&frame(r#"{"op":"get","path":"once.txt"}"#)).unwrap();
    silent.flush().unwrap();
    step_until(&mut h, "the finished transfer", WAIT, |h| has(h, "sent, not confirmed"));
    assert!(!has(&h, "confirmed by") && h.query_by_label("confirmed").is_none());

    // The window's own client confirms its download.
    connect_from_client_tab(&mut h, &addr.to_string());
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("once.txt").is_some());
    click(&mut h, "once.txt");
    click(&mut h, "Download");
    step_until(&mut h, "the verdict", WAIT, |h| has(h, "MD5 verified"));
    click(&mut h, "Server");
    step_until(&mut h, "the confirmation", WAIT, |h| h.query_by_label("confirmed").is_some());
    assert_eq!(
        h.query_all_by_label("sent, not confirmed").count(),
        1,
        "the silent client's transfer stays unconfirmed"
    );
    drop(silent);
}

#[test]
fn one_client_with_several_connections_shows_as_one() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("slow.bin"), test_bytes(8 * 1024 * 1024, 51)).unwrap();
    let mut h = app(downloads.path());
    let addr = host_from_server_tab(&mut h, share.path());
    let slow = relay(addr, None, Duration::from_millis(10));

    // Another client, without an instance id (an older or foreign one): a person of its own.
    let mut other = ferry::transport::connect(TcpStream::connect(addr).unwrap()).unwrap();
    let hello = format!(r#"{{"op":"hello","version":{},"client":"other"}}"#, ferry::protocol::VERSION);
    other.write_all(&frame(&hello)).unwrap();
    other.flush().unwrap();

    connect_from_client_tab(&mut h, &slow.to_string());
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("slow.bin").is_some());
    click(&mut h, "slow.bin");
    click(&mut h, "Download");
    step_until(&mut h, "progress", WAIT, |h| has(h, "of 8.00 MiB") && !has(h, "0 B of"));
    click(&mut h, "Server");
    step_until(&mut h, "the clients", WAIT, |h| has(h, "Connected: 2 clients"));
    assert!(has(&h, "(2 connections)"), "browsing and downloading are one client");
    drop(other);
}
