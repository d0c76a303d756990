#![cfg(feature = "gui")]
//! Uploads in the window (issue 13), driven through its accessibility tree against real hosts
//! on 127.0.0.1: the Server tab's "Allow uploads" switch (off by default) and the received
//! files in its finished list with their verdict; the Client tab's Upload button (typed path,
//! no native dialog) and files and folders dropped on the browser, each an upload card with
//! its verdict; a folder dropped on the Server tab is hosted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use egui_kittest::kittest::Queryable;
use ferry::client::{CancelToken, ClientError, ConnectOptions, Connection, UploadOutcome, UploadRequest};
use ferry::gui::format::grouped_hex;
use ferry::protocol::hex;
use ferry::protocol::message::ErrorCode;
use ferry::server::{Server, ServerConfig, ServerEvent};
use md5::{Digest, Md5};

#[path = "support/kittest.rs"]
mod kittest;
mod support;
use kittest::{App, app, click, double_click, has, step_until, type_into};

const WAIT: Duration = Duration::from_secs(60);

/// A file dropped on the window, as the windowing system hands it over.
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn drop_on_window(h: &mut App, paths: &[&Path]) {
    for p in paths {
        h.input_mut().dropped_files.push(Arc::new(Dropped(p.to_path_buf())));
    }
    h.run_steps(2);
}

/// A host in this process that takes uploads.
fn uploads_host(root: &Path) -> (Server, String) {
    let mut config = ServerConfig::new(root, "127.0.0.1:0");
    config.allow_upload = true;
    let (server, events) = Server::spawn(config, None);
    loop {
        match events.recv_timeout(WAIT).expect("the host to start") {
            ServerEvent::Listening { addr, .. } => return (server, addr.to_string()),
            ServerEvent::StartFailed { error } => panic!("{error}"),
            _ => {}
        }
    }
}

fn host_from_server_tab(h: &mut App, folder: &Path) -> String {
    type_into(h, "Folder to host", &folder.display().to_string());
    type_into(h, "Listen on", "127.0.0.1");
    type_into(h, "port", "0");
    click(h, "Start hosting");
    step_until(h, "the server to listen", WAIT, |h| h.state().hosting_addr().is_some());
    h.run_steps(2);
    h.state().hosting_addr().unwrap().to_string()
}

fn upload(addr: &str, local: &Path, path: &str) -> Result<UploadOutcome, ClientError> {
    let mut conn = Connection::connect(addr, &ConnectOptions::default())?;
    let req = UploadRequest { local: local.to_path_buf(), path: path.into(), mkdirs: false };
    conn.upload(&req, &CancelToken::new(), &mut |_| {})
}

#[test]
fn uploads_are_off_until_allowed_and_received_files_show_their_verdict() {
    let (share, src, downloads) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let data = support::random_bytes(400_000, 5);
    let local = src.path().join("photo.jpg");
    std::fs::write(&local, &data).unwrap();

    let mut h = app(downloads.path());
    assert!(has(&h, "Nothing can be changed or uploaded"), "read-only is said before hosting");
    let addr = host_from_server_tab(&mut h, share.path());
    match upload(&addr, &local, "photo.jpg") {
        Err(ClientError::Server(e)) => assert_eq!(e.error, ErrorCode::ReadOnly),
        other => panic!("uploaded to a host that did not allow it: {other:?}"),
    }
    assert!(!share.path().join("photo.jpg").exists());

    click(&mut h, "Stop hosting");
    step_until(&mut h, "hosting to stop", WAIT, |h| h.state().hosting_addr().is_none() && has(h, "Start hosting"));
    click(&mut h, "Allow uploads");
    let addr = host_from_server_tab(&mut h, share.path());
    assert!(has(&h, "Uploads are allowed"), "the Server tab says so while hosting");
    let outcome = upload(&addr, &local, "photo.jpg").unwrap();
    assert!(matches!(outcome, UploadOutcome::Verified { .. }), "{outcome:?}");
    assert_eq!(std::fs::read(share.path().join("photo.jpg")).unwrap(), data);

    let shown = grouped_hex(&support::md5_hex(&data));
    step_until(&mut h, "the received file in the finished list", WAIT, |h| has(h, "received, MD5 verified"));
    assert!(h.query_by_label(&shown).is_some(), "the MD5 computed on arrival is shown");
    // The switch is not remembered unless asked.
    assert!(!h.state().settings().allow_upload);

    // Uploads into one folder only.
    click(&mut h, "Stop hosting");
    step_until(&mut h, "hosting to stop", WAIT, |h| h.state().hosting_addr().is_none() && has(h, "Start hosting"));
    type_into(&mut h, "into", "inbox");
    let addr = host_from_server_tab(&mut h, share.path());
    assert!(has(&h, "clients can add files to \"inbox\""));
    match upload(&addr, &local, "elsewhere.jpg") {
        Err(ClientError::Server(e)) => assert_eq!(e.error, ErrorCode::Forbidden),
        other => panic!("uploaded outside the upload folder: {other:?}"),
    }
    let mut conn = Connection::connect(&addr, &ConnectOptions::default()).unwrap();
    let req = UploadRequest { local: local.clone(), path: "inbox/photo.jpg".into(), mkdirs: true };
    let outcome = conn.upload(&req, &CancelToken::new(), &mut |_| {}).unwrap();
    assert!(matches!(outcome, UploadOutcome::Verified { .. }), "{outcome:?}");
    assert_eq!(std::fs::read(share.path().join("inbox/photo.jpg")).unwrap(), data);
}

#[test]
fn files_and_folders_dropped_on_the_browser_upload_into_the_folder_shown() {
    let (share, src, downloads) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::create_dir(share.path().join("inbox")).unwrap();
    std::fs::write(share.path().join("inbox/marker.txt"), b"m").unwrap();
    let (_server, addr) = uploads_host(share.path());
    let one = src.path().join("one.bin");
    let one_data = support::random_bytes(1_500_000, 8);
    std::fs::write(&one, &one_data).unwrap();
    let album = src.path().join("album");
    std::fs::create_dir_all(album.join("deeper")).unwrap();
    std::fs::write(album.join("a.txt"), b"a").unwrap();
    std::fs::write(album.join("deeper/b.txt"), b"bb").unwrap();

    let mut h = app(downloads.path());
    click(&mut h, "Client");
    type_into(&mut h, "Server address", &addr);
    click(&mut h, "Connect");
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("inbox").is_some());
    double_click(&mut h, "inbox");
    step_until(&mut h, "the listing of inbox", WAIT, |h| h.query_by_label("marker.txt").is_some());

    drop_on_window(&mut h, &[&one, &album]);
    // A file is under its name on the host only once the host verified it.
    let shown = grouped_hex(&support::md5_hex(&one_data));
    let inbox = share.path().join("inbox");
    step_until(&mut h, "three verified uploads", WAIT, |h| {
        h.query_all_by_label(&shown).count() == 2 && inbox.join("album/deeper/b.txt").exists()
    });
    assert_eq!(std::fs::read(inbox.join("one.bin")).unwrap(), one_data);
    assert_eq!(std::fs::read(inbox.join("album/a.txt")).unwrap(), b"a");
    assert_eq!(std::fs::read(inbox.join("album/deeper/b.txt")).unwrap(), b"bb");
    step_until(&mut h, "three verdicts", WAIT, |h| h.query_all_by_label("MD5 verified").count() >= 3);
    // The folder shown is listed again: the uploads appear in it.
    step_until(&mut h, "the new files in the listing", WAIT, |h| h.query_all_by_label("one.bin").count() == 2);
}

#[test]
fn the_upload_button_takes_a_typed_path_where_no_dialog_can_be_shown() {
    let (share, src, downloads) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(share.path().join("already.txt"), b"there").unwrap();
    let (_server, addr) = uploads_host(share.path());
    let local = src.path().join("notes.txt");
    std::fs::write(&local, b"typed path upload").unwrap();
    let clash = src.path().join("already.txt");
    std::fs::write(&clash, b"mine").unwrap();

    let mut h = app(downloads.path());
    click(&mut h, "Client");
    type_into(&mut h, "Server address", &addr);
    click(&mut h, "Connect");
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("already.txt").is_some());
    click(&mut h, "Upload…");
    step_until(&mut h, "the prompt", WAIT, |h| h.query_by_label("File to upload").is_some());
    type_into(&mut h, "File to upload", &local.display().to_string());
    click(&mut h, "Upload");
    step_until(&mut h, "the verdict", WAIT, |h| has(h, "MD5 verified"));
    assert_eq!(std::fs::read(share.path().join("notes.txt")).unwrap(), b"typed path upload");

    // A name the host already has is refused, and its file kept.
    click(&mut h, "Upload…");
    step_until(&mut h, "the prompt", WAIT, |h| h.query_by_label("File to upload").is_some());
    type_into(&mut h, "File to upload", &clash.display().to_string());
    click(&mut h, "Upload");
    step_until(&mut h, "the refusal", WAIT, |h| has(h, "already exists"));
    assert_eq!(std::fs::read(share.path().join("already.txt")).unwrap(), b"there");
}

#[test]
fn a_folder_dropped_on_the_server_tab_is_hosted() {
    let (share, downloads) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut h = app(downloads.path());
    type_into(&mut h, "Listen on", "127.0.0.1");
    type_into(&mut h, "port", "0");
    drop_on_window(&mut h, &[share.path()]);
    step_until(&mut h, "hosting to start", WAIT, |h| h.state().hosting_addr().is_some());
    assert_eq!(h.state().settings().host_folder, share.path().display().to_string());
}

#[test]
fn an_upload_can_be_cancelled_and_the_host_keeps_what_arrived() {
    let (share, src, downloads) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(share.path().join("marker.txt"), b"m").unwrap();
    let mut config = ServerConfig::new(share.path(), "127.0.0.1:0");
    config.allow_upload = true;
    let (_server, events) = Server::spawn(config, None);
    let addr = match support::wait_for(&events, WAIT, |e| matches!(e, ServerEvent::Listening { .. })) {
        ServerEvent::Listening { addr, .. } => addr.to_string(),
        _ => unreachable!(),
    };
    // The host gets the first 512 KiB of the upload, then nothing until released.
    let relay = support::Relay::start(addr.parse().unwrap(), support::Tamper::StallUpstreamAfter(512 * 1024));
    let local = src.path().join("slow.bin");
    std::fs::write(&local, support::random_bytes(3 * 1024 * 1024, 31)).unwrap();

    let mut h = app(downloads.path());
    click(&mut h, "Client");
    type_into(&mut h, "Server address", &relay.addr.to_string());
    click(&mut h, "Connect");
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("marker.txt").is_some());
    drop_on_window(&mut h, &[&local]);
    let part = share.path().join("slow.bin.ferry-upload");
    step_until(&mut h, "the upload to stall part-way", WAIT, |h| {
        h.query_by_label("Cancel").is_some() && std::fs::metadata(&part).is_ok_and(|m| m.len() > 0)
    });
    click(&mut h, "Cancel");
    step_until(&mut h, "the cancelled card", WAIT, |h| has(h, "The host keeps what already arrived"));
    assert!(h.query_by_label("Resume").is_some(), "Resume is offered");
    relay.release();
    // The host saw the connection end and kept its partial file; nothing is under the name.
    let failed = support::wait_for(&events, WAIT, |e| matches!(e, ServerEvent::TransferFailed { .. }));
    assert!(matches!(&failed, ServerEvent::TransferFailed { error, .. } if error.contains("kept")), "{failed:?}");
    assert!(part.exists() && share.path().join("slow.bin.ferry-upload.json").exists());
    assert!(!share.path().join("slow.bin").exists());
}

/// The "done when": a file dropped on one window reaches the other's hosted folder, and
/// both screens show the same verified fingerprint (here one window is both: it hosts on its
/// Server tab and uploads to itself from its Client tab).
#[test]
fn both_screens_show_the_same_verified_fingerprint() {
    let (share, src, downloads) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(share.path().join("marker.txt"), b"m").unwrap();
    let data = support::random_bytes(700_000, 41);
    let local = src.path().join("gift.bin");
    std::fs::write(&local, &data).unwrap();
    let md5: [u8; 16] = Md5::digest(&data).into();
    let fingerprint = format!("fingerprint: {}", ferry::gui::verdict::fingerprint_names(&md5));

    let mut h = app(downloads.path());
    click(&mut h, "Allow uploads");
    let addr = host_from_server_tab(&mut h, share.path());
    click(&mut h, "Client");
    type_into(&mut h, "Server address", &addr);
    click(&mut h, "Connect");
    step_until(&mut h, "the listing", WAIT, |h| h.query_by_label("marker.txt").is_some());
    drop_on_window(&mut h, &[&local]);
    step_until(&mut h, "the upload's verdict", WAIT, |h| h.query_all_by_label(&fingerprint).count() == 2);
    assert!(has(&h, "MD5 verified"));
    assert_eq!(std::fs::read(share.path().join("gift.bin")).unwrap(), data);

    click(&mut h, "Server");
    step_until(&mut h, "the received file on the Server tab", WAIT, |h| has(h, "received, MD5 verified"));
    assert_eq!(h.query_all_by_label(&fingerprint).count(), 1, "the same colours on the host's side");
    assert!(h.query_by_label(&grouped_hex(&hex(&md5))).is_some());
}
