//! ferry's partial files (issue 8, item 5): a file ferry did not create is never resumed,
//! replaced or deleted, and two downloads in one process never write the same partial file.

mod support;

use std::fs;
use std::path::Path;
use std::thread;
use std::time::Duration;

use ferry::client::{
    CancelToken, ClientError, ConnectOptions, Connection, DownloadRequest, Outcome, PartialRecord, part_path,
    record_path,
};
use support::*;

fn get(addr: &str, path: &str, dest: &Path, overwrite: bool) -> Result<Outcome, ClientError> {
    let mut conn = Connection::connect(addr, &ConnectOptions::default())?;
    let req = DownloadRequest { path: path.into(), dest: dest.to_path_buf(), overwrite };
    conn.download(&req, &CancelToken::new(), &mut |_| {})
}

fn assert_verified(outcome: Outcome, dest: &Path, bytes: &[u8]) {
    match outcome {
        Outcome::Verified { resumed_from, .. } => assert_eq!(resumed_from, 0, "nothing was resumed"),
        other => panic!("{other:?}"),
    }
    assert_eq!(md5_file(dest), md5_hex(bytes));
    assert!(!part_path(dest).exists() && !record_path(dest).exists(), "ferry cleaned up after itself");
}

#[test]
fn a_foreign_name_dot_part_is_never_resumed_or_deleted() {
    let srv = TestServer::start();
    let bytes = srv.put("report.pdf", random_bytes(300_000, 1));
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("report.pdf");
    // Someone's own file that happens to be called NAME.part (what ferry used to write).
    let foreign = random_bytes(50_000, 2);
    fs::write(out.path().join("report.pdf.part"), &foreign).unwrap();

    assert_verified(get(&srv.addr_string(), "report.pdf", &dest, false).unwrap(), &dest, &bytes);
    assert_eq!(fs::read(out.path().join("report.pdf.part")).unwrap(), foreign, "left byte for byte");
}

#[test]
fn a_partial_file_ferry_has_no_record_of_is_refused_and_kept() {
    let srv = TestServer::start();
    srv.put("a.bin", random_bytes(100_000, 3));
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("a.bin");
    let foreign = b"not a download at all".to_vec();
    fs::write(part_path(&dest), &foreign).unwrap();

    for overwrite in [false, true] {
        match get(&srv.addr_string(), "a.bin", &dest, overwrite) {
            Err(e @ ClientError::NotOurs(_)) => {
                let msg = e.to_string();
                assert!(msg.contains("a.bin.ferry-part") && msg.contains("did not create it"), "{msg}");
            }
            other => panic!("overwrite {overwrite}: {other:?}"),
        }
        assert_eq!(fs::read(part_path(&dest)).unwrap(), foreign);
        assert!(!dest.exists() && !record_path(&dest).exists());
    }

    // A record that is not one ferry wrote does not make the file ferry's either.
    let not_ours = br#"{"host":"h","folder":"f","path":"a.bin"}"#;
    fs::write(record_path(&dest), not_ours).unwrap();
    assert!(matches!(get(&srv.addr_string(), "a.bin", &dest, true), Err(ClientError::NotOurs(_))));
    assert_eq!(fs::read(part_path(&dest)).unwrap(), foreign);
    assert_eq!(fs::read(record_path(&dest)).unwrap(), not_ours);
}

#[test]
fn ferrys_partial_of_another_file_is_kept_unless_replacing() {
    let srv = TestServer::start();
    let bytes = srv.put("b.bin", random_bytes(200_000, 4));
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("b.bin");
    let earlier = random_bytes(10_000, 5);
    fs::write(part_path(&dest), &earlier).unwrap();
    PartialRecord::new("192.0.2.1:7878", "elsewhere", "old/b.bin").save(&dest).unwrap();

    match get(&srv.addr_string(), "b.bin", &dest, false) {
        Err(e @ ClientError::PartialOfOther { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("old/b.bin") && msg.contains("192.0.2.1:7878"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read(part_path(&dest)).unwrap(), earlier);

    // Asked to replace: ferry's own stale partial file goes, and the download starts afresh.
    assert_verified(get(&srv.addr_string(), "b.bin", &dest, true).unwrap(), &dest, &bytes);
}

#[test]
fn two_downloads_to_one_destination_one_is_refused_the_other_verifies() {
    let srv = TestServer::start();
    let bytes = srv.put("big.bin", random_bytes(2 * 1024 * 1024, 6));
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("big.bin");

    // The first download pauses in its first progress report, with the partial file claimed,
    // until the second has been tried.
    let (started_tx, started) = crossbeam_channel::bounded::<()>(1);
    let (go, go_rx) = crossbeam_channel::bounded::<()>(1);
    let first = {
        let (addr, dest) = (srv.addr_string(), dest.clone());
        thread::spawn(move || {
            let mut conn = Connection::connect(&addr, &ConnectOptions::default()).unwrap();
            let req = DownloadRequest { path: "big.bin".into(), dest, overwrite: false };
            let mut once = true;
            conn.download(&req, &CancelToken::new(), &mut |_| {
                if std::mem::take(&mut once) {
                    started_tx.send(()).unwrap();
                    go_rx.recv_timeout(Duration::from_secs(30)).unwrap();
                }
            })
        })
    };
    started.recv_timeout(Duration::from_secs(30)).expect("the first download started");

    // The same destination spelled differently is still the same partial file.
    let other_spelling = out.path().join(".").join("big.bin");
    match get(&srv.addr_string(), "big.bin", &other_spelling, true) {
        Err(e @ ClientError::InUse(_)) => assert!(e.to_string().contains("already saving"), "{e}"),
        other => panic!("the second download was not refused: {other:?}"),
    }
    go.send(()).unwrap();
    assert_verified(first.join().unwrap().unwrap(), &dest, &bytes);

    // The claim ends with the download: the same destination can be used again.
    fs::remove_file(&dest).unwrap();
    assert_verified(get(&srv.addr_string(), "big.bin", &dest, false).unwrap(), &dest, &bytes);
}

#[test]
fn a_refused_download_releases_its_claim_and_leaves_nothing() {
    let srv = TestServer::start();
    let bytes = srv.put("c.bin", random_bytes(1000, 7));
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("c.bin");
    assert!(matches!(get(&srv.addr_string(), "missing.bin", &dest, false), Err(ClientError::Server(_))));
    assert!(!part_path(&dest).exists() && !record_path(&dest).exists(), "no partial file or record for nothing");
    assert_verified(get(&srv.addr_string(), "c.bin", &dest, false).unwrap(), &dest, &bytes);
}

#[test]
fn an_interrupted_download_keeps_its_record_and_resumes() {
    let srv = TestServer::start();
    let bytes = srv.put("d.bin", random_bytes(3 * 1024 * 1024, 8));
    let relay = Relay::start(srv.addr, Tamper::StallAfter(1024 * 1024));
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("d.bin");
    let cancel = CancelToken::new();
    let (arrived_tx, arrived) = crossbeam_channel::bounded::<()>(1);
    let stalled = {
        let (addr, dest, cancel) = (relay.addr.to_string(), dest.clone(), cancel.clone());
        thread::spawn(move || {
            let mut conn = Connection::connect(&addr, &ConnectOptions::default()).unwrap();
            let req = DownloadRequest { path: "d.bin".into(), dest, overwrite: false };
            conn.download(&req, &cancel, &mut |p| {
                if p.done >= 100_000 {
                    let _ = arrived_tx.try_send(());
                }
            })
        })
    };
    // Cancel once part of the file has arrived (the relay holds back the rest).
    arrived.recv_timeout(Duration::from_secs(30)).expect("part of the file arrived");
    cancel.cancel();
    relay.release();
    assert!(matches!(stalled.join().unwrap(), Err(ClientError::Cancelled)));
    let record = PartialRecord::load(&dest).unwrap().expect("the record stays with the partial file");
    assert_eq!(record.path, "d.bin");
    let kept = fs::metadata(part_path(&dest)).unwrap().len();
    assert!(kept > 0);

    match get(&srv.addr_string(), "d.bin", &dest, false).unwrap() {
        Outcome::Verified { resumed_from, .. } => assert_eq!(resumed_from, kept),
        other => panic!("{other:?}"),
    }
    assert_eq!(md5_file(&dest), md5_hex(&bytes));
    assert!(!part_path(&dest).exists() && !record_path(&dest).exists());
}

/// A host resuming a large file hashes the part the client already has before it sends a
/// byte, and is silent meanwhile: the client allows for that on top of its usual timeout
/// (found when the 4 GiB resume test timed out on a busy machine).
#[test]
fn a_resumed_download_waits_while_the_host_hashes_the_part_it_already_has() {
    use ferry::protocol::frame;
    use std::io::Write;
    use std::net::TcpListener;

    let bytes = random_bytes(41_000_000, 11);
    let offset = 40_000_000u64; // at the expected pace, about 2 s of hashing for the host
    let digest: [u8; 16] = {
        use md5::Digest;
        md5::Md5::digest(&bytes).into()
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let host = {
        let bytes = bytes.clone();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let send = |s: &mut std::net::TcpStream, v: serde_json::Value| {
                let mut out = Vec::new();
                frame::write_control(&mut out, &v).unwrap();
                s.write_all(&out).unwrap();
            };
            frame::read_frame(&mut s, frame::MAX_REQUEST_LEN).unwrap();
            send(&mut s, serde_json::json!({"ok":true,"version":1,"server":"slow","name":"shared"}));
            let get: serde_json::Value =
                serde_json::from_slice(&frame::read_frame(&mut s, frame::MAX_REQUEST_LEN).unwrap()).unwrap();
            assert_eq!(get["offset"], offset, "the client resumes");
            // The host's silence while it hashes, before its reply (ferry's host answers once
            // the prefix is hashed) and before the data (a host that answers first): each
            // longer than the client's 1 s timeout.
            thread::sleep(Duration::from_millis(1800));
            send(&mut s, serde_json::json!({"ok":true,"size":bytes.len(),"offset":offset}));
            thread::sleep(Duration::from_millis(1800));
            s.write_all(&frame::encode_header(bytes.len() as u64 - offset)).unwrap();
            s.write_all(&bytes[offset as usize..]).unwrap();
            s.write_all(&digest).unwrap();
        })
    };

    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("big.bin");
    fs::write(part_path(&dest), &bytes[..offset as usize]).unwrap();
    PartialRecord::new(addr.to_string(), "shared", "big.bin").save(&dest).unwrap();
    // The scripted host above speaks plain version 1 frames.
    let opts = ConnectOptions { io_timeout: Duration::from_secs(1), plain: true, ..ConnectOptions::default() };
    let mut conn = Connection::connect(&addr.to_string(), &opts).unwrap();
    let req = DownloadRequest { path: "big.bin".into(), dest: dest.clone(), overwrite: false };
    match conn.download(&req, &CancelToken::new(), &mut |_| {}).unwrap() {
        Outcome::Verified { resumed_from, .. } => assert_eq!(resumed_from, offset),
        other => panic!("{other:?}"),
    }
    host.join().unwrap();
    assert_eq!(md5_file(&dest), md5_hex(&bytes));
}
