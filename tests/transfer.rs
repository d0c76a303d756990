//! End-to-end downloads over real sockets on 127.0.0.1, real files in temp folders, real threads.

mod support;

use std::fs;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ferry::client::jobs::{EventKind, Jobs};
use ferry::client::{
    CancelToken, ClientError, ConnectOptions, Connection, DownloadRequest, Outcome, PartialRecord, part_path,
};
use ferry::protocol::hex;
use ferry::server::ServerEvent;
use support::*;

fn download(addr: &str, path: &str, dest: &std::path::Path) -> Result<Outcome, ClientError> {
    download_with(addr, path, dest, &ConnectOptions::default())
}

fn download_with(
    addr: &str,
    path: &str,
    dest: &std::path::Path,
    opts: &ConnectOptions,
) -> Result<Outcome, ClientError> {
    let mut conn = Connection::connect(addr, opts)?;
    let req = DownloadRequest { path: path.into(), dest: dest.to_path_buf(), overwrite: false };
    conn.download(&req, &CancelToken::new(), &mut |_| {})
}

fn assert_verified(outcome: Outcome, dest: &std::path::Path, original: &[u8]) {
    match outcome {
        Outcome::Verified { md5, dest: d, size, .. } => {
            assert_eq!(d, dest);
            assert_eq!(size, original.len() as u64);
            assert_eq!(hex(&md5), md5_hex(original), "reported digest");
            assert_eq!(md5_file(dest), md5_hex(original), "digest of the file on disk");
            assert_eq!(fs::read(dest).unwrap(), original);
            assert!(!part_path(dest).exists(), ".part left behind");
        }
        other => panic!("expected a verified download, got {other:?}"),
    }
}

#[test]
fn round_trip_empty_one_byte_and_multi_mib_files() {
    let srv = TestServer::start();
    let cases = [
        ("empty.bin", Vec::new()),
        ("one.bin", vec![0x5a]),
        ("random.bin", random_bytes(7 * 1024 * 1024 + 13, 1)),
        ("exactly-one-chunk.bin", random_bytes(256 * 1024, 2)),
    ];
    let out = tempfile::tempdir().unwrap();
    for (name, bytes) in cases {
        srv.put(name, bytes.clone());
        let dest = dest_in(&out, name);
        assert_verified(download(&srv.addr_string(), name, &dest).unwrap(), &dest, &bytes);
    }
}

#[test]
fn names_with_spaces_non_ascii_and_nested_folders() {
    let srv = TestServer::start();
    let out = tempfile::tempdir().unwrap();
    let files = ["with space.txt", "ünïcødé 日本語.txt", "a/b/c/deep file.bin", "emoji 🚢/ferry ⛴.dat"];
    for (i, rel) in files.iter().enumerate() {
        let bytes = srv.put(rel, random_bytes(1000 + i * 777, i as u64));
        let dest = dest_in(&out, &format!("{i}-{}", rel.rsplit('/').next().unwrap()));
        assert_verified(download(&srv.addr_string(), rel, &dest).unwrap(), &dest, &bytes);
    }
    // Listing a nested folder shows the entry with its size.
    let mut conn = Connection::connect(&srv.addr_string(), &ConnectOptions::default()).unwrap();
    let listing = conn.list("a/b/c").unwrap();
    assert_eq!(listing.entries.len(), 1);
    assert_eq!(listing.entries[0].name, "deep file.bin");
    assert_eq!(listing.entries[0].size, Some(1000 + 2 * 777));
}

#[test]
fn one_connection_serves_many_requests_in_turn() {
    let srv = TestServer::start();
    let out = tempfile::tempdir().unwrap();
    let mut conn = Connection::connect(&srv.addr_string(), &ConnectOptions::default()).unwrap();
    for i in 0..50 {
        let name = format!("f{i}.bin");
        let bytes = srv.put(&name, random_bytes(4096, i));
        assert_eq!(conn.list("").unwrap().entries.len(), i as usize + 1);
        let dest = dest_in(&out, &name);
        let req = DownloadRequest { path: name, dest: dest.clone(), overwrite: false };
        assert_verified(conn.download(&req, &CancelToken::new(), &mut |_| {}).unwrap(), &dest, &bytes);
    }
}

#[test]
fn existing_destination_is_never_overwritten_unless_asked() {
    let srv = TestServer::start();
    let bytes = srv.put("a.bin", random_bytes(5000, 3));
    let out = tempfile::tempdir().unwrap();
    let dest = dest_in(&out, "a.bin");
    fs::write(&dest, b"precious").unwrap();
    let err = download(&srv.addr_string(), "a.bin", &dest).unwrap_err();
    assert!(matches!(err, ClientError::Exists(_)), "{err:?}");
    assert_eq!(fs::read(&dest).unwrap(), b"precious");

    let mut conn = Connection::connect(&srv.addr_string(), &ConnectOptions::default()).unwrap();
    let req = DownloadRequest { path: "a.bin".into(), dest: dest.clone(), overwrite: true };
    assert_verified(conn.download(&req, &CancelToken::new(), &mut |_| {}).unwrap(), &dest, &bytes);
}

#[test]
fn resume_from_an_existing_part_file() {
    let srv = TestServer::start();
    let bytes = srv.put("r.bin", random_bytes(3 * 1024 * 1024, 4));
    let out = tempfile::tempdir().unwrap();
    let dest = dest_in(&out, "r.bin");
    fs::write(part_path(&dest), &bytes[..1_000_000]).unwrap();
    PartialRecord::new(srv.addr_string(), "shared", "r.bin").save(&dest).unwrap();
    match download(&srv.addr_string(), "r.bin", &dest).unwrap() {
        Outcome::Verified { resumed_from, .. } => assert_eq!(resumed_from, 1_000_000),
        other => panic!("{other:?}"),
    }
    assert_eq!(md5_file(&dest), md5_hex(&bytes));
    let mut srv = srv;
    let events = srv.stop();
    assert!(
        events.iter().any(|e| matches!(e, ServerEvent::TransferStarted { offset: 1_000_000, .. })),
        "the server was asked for the remaining bytes only"
    );
}

#[test]
fn resume_on_wrong_bytes_restarts_from_zero_and_verifies() {
    let srv = TestServer::start();
    let bytes = srv.put("w.bin", random_bytes(600_000, 5));
    let out = tempfile::tempdir().unwrap();
    let dest = dest_in(&out, "w.bin");
    // A partial file of ferry's whose bytes are not the file's: the resumed checksum fails, then a fresh start wins.
    fs::write(part_path(&dest), vec![0u8; 100_000]).unwrap();
    PartialRecord::new(srv.addr_string(), "shared", "w.bin").save(&dest).unwrap();
    match download(&srv.addr_string(), "w.bin", &dest).unwrap() {
        Outcome::Verified { resumed_from, .. } => assert_eq!(resumed_from, 0),
        other => panic!("{other:?}"),
    }
    assert_eq!(md5_file(&dest), md5_hex(&bytes));
}

#[test]
fn part_longer_than_the_remote_file_restarts_from_zero() {
    let srv = TestServer::start();
    let bytes = srv.put("s.bin", random_bytes(1000, 6));
    let out = tempfile::tempdir().unwrap();
    let dest = dest_in(&out, "s.bin");
    fs::write(part_path(&dest), vec![1u8; 5000]).unwrap();
    PartialRecord::new(srv.addr_string(), "shared", "s.bin").save(&dest).unwrap();
    assert_verified(download(&srv.addr_string(), "s.bin", &dest).unwrap(), &dest, &bytes);
}

#[test]
fn corrupted_byte_in_flight_is_a_mismatch_and_no_final_file() {
    // Plain on both sides: inside TLS a flipped byte never reaches the MD5 (tests/tls.rs).
    let srv = TestServer::start_plain();
    let bytes = srv.put("c.bin", random_bytes(1024 * 1024, 7));
    // Well past the hello reply, the get reply and the data prefix: inside the file's bytes.
    let relay = Relay::start(srv.addr, Tamper::FlipByteAt(200_000));
    let out = tempfile::tempdir().unwrap();
    let dest = dest_in(&out, "c.bin");
    let plain = ConnectOptions { plain: true, ..Default::default() };
    match download_with(&relay.addr.to_string(), "c.bin", &dest, &plain).unwrap() {
        Outcome::Mismatch { expected, actual, size } => {
            assert_eq!(hex(&expected), md5_hex(&bytes), "the host's digest is the true one");
            assert_ne!(expected, actual);
            assert_eq!(size, bytes.len() as u64);
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert!(!dest.exists(), "a damaged file must never appear under the final name");
    assert!(!part_path(&dest).exists(), "the damaged partial file is removed");
}

#[test]
fn server_stopped_mid_download_then_resumed_to_a_verified_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = random_bytes(4 * 1024 * 1024, 8);
    fs::write(dir.path().join("big.bin"), &bytes).unwrap();
    // A short idle timeout: on Windows, shutting a socket down does not wake a send blocked on
    // it (the relay below stops reading), so the stop waits for the send timeout (README,
    // "Windows, tested under Wine").
    let mut first = TestServer::start_at(dir.path(), |c| c.idle_timeout = Duration::from_secs(3));
    // The relay passes 1 MiB, then holds the rest: the download is stuck mid-way.
    let relay = Relay::start(first.addr, Tamper::StallAfter(1024 * 1024));
    let out = tempfile::tempdir().unwrap();
    let dest = dest_in(&out, "big.bin");
    let (jobs, events) = Jobs::new(None);
    let job = jobs.download(
        &relay.addr.to_string(),
        &ConnectOptions::default(),
        DownloadRequest { path: "big.bin".into(), dest: dest.clone(), overwrite: false },
    );
    wait_for(&events, Duration::from_secs(20), |e| matches!(e.kind, EventKind::Progress { done, .. } if done > 0));
    let passed = || relay.forwarded.load(std::sync::atomic::Ordering::SeqCst) >= 1024 * 1024;
    assert!(wait_until(Duration::from_secs(20), passed), "the relay passed its first MiB");
    first.stop(); // closes every connection and joins its threads
    relay.release();
    let end = wait_for(&events, Duration::from_secs(20), |e| e.kind.is_terminal());
    assert!(matches!(end.kind, EventKind::Failed(ClientError::Incomplete(_) | ClientError::Lost(_))), "{end:?}");
    job.join();
    assert!(!dest.exists());
    let kept = fs::metadata(part_path(&dest)).unwrap().len();
    assert!(kept > 0 && kept < bytes.len() as u64, "kept {kept} bytes");

    // A new server over the same folder; the same download resumes and verifies.
    let second = TestServer::start_at(dir.path(), |_| {});
    match download(&second.addr_string(), "big.bin", &dest).unwrap() {
        Outcome::Verified { resumed_from, md5, .. } => {
            assert_eq!(resumed_from, kept);
            assert_eq!(hex(&md5), md5_hex(&bytes));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(md5_file(&dest), md5_hex(&bytes));
}

#[test]
// On Windows a socket shutdown does not wake the blocked read (rust-lang/rust#121594): there the
// read's slices (client/cancel.rs `Watched`) are what notice the cancel within the 5 s.
fn cancel_keeps_the_part_for_a_later_resume() {
    let srv = TestServer::start();
    let bytes = srv.put("slow.bin", random_bytes(2 * 1024 * 1024, 9));
    let relay = Relay::start(srv.addr, Tamper::StallAfter(700_000));
    let out = tempfile::tempdir().unwrap();
    let dest = dest_in(&out, "slow.bin");
    let (jobs, events) = Jobs::new(None);
    let job = jobs.download(
        &relay.addr.to_string(),
        &ConnectOptions::default(),
        DownloadRequest { path: "slow.bin".into(), dest: dest.clone(), overwrite: false },
    );
    wait_for(&events, Duration::from_secs(20), |e| matches!(e.kind, EventKind::Progress { done, .. } if done > 0));
    job.cancel(); // from this thread, while the worker is blocked reading a stalled socket
    let end = wait_for(&events, Duration::from_secs(5), |e| e.kind.is_terminal());
    match end.kind {
        EventKind::Cancelled { part: Some(p) } => assert_eq!(p, part_path(&dest)),
        other => panic!("expected Cancelled with a part, got {other:?}"),
    }
    job.join();
    assert!(!dest.exists());
    let kept = fs::metadata(part_path(&dest)).unwrap().len();
    assert!(kept > 0);
    match download(&srv.addr_string(), "slow.bin", &dest).unwrap() {
        Outcome::Verified { resumed_from, .. } => assert_eq!(resumed_from, kept),
        other => panic!("{other:?}"),
    }
    assert_eq!(md5_file(&dest), md5_hex(&bytes));
}

#[test]
fn thirty_two_clients_at_once_all_verified() {
    // All 32 clients come from this one machine: lift the per-address cap to match.
    let srv = Arc::new(TestServer::start_with(|c| c.max_per_address = 32));
    let files: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| {
            let name = format!("shared-{i}.bin");
            let bytes = srv.put(&name, random_bytes(300_000 + i * 10_000, 100 + i as u64));
            (name, bytes)
        })
        .collect();
    let files = Arc::new(files);
    let out = Arc::new(tempfile::tempdir().unwrap());
    let barrier = Arc::new(std::sync::Barrier::new(32));
    let handles: Vec<_> = (0..32)
        .map(|c| {
            let (srv, files, out, barrier) = (srv.clone(), files.clone(), out.clone(), barrier.clone());
            thread::spawn(move || {
                let mut conn = Connection::connect(&srv.addr_string(), &ConnectOptions::default()).unwrap();
                barrier.wait(); // all 32 connected at the same time
                for k in 0..3 {
                    let (name, bytes) = &files[(c + k) % files.len()];
                    let dest = out.path().join(format!("c{c}-{k}-{name}"));
                    let req = DownloadRequest { path: name.clone(), dest: dest.clone(), overwrite: false };
                    match conn.download(&req, &CancelToken::new(), &mut |_| {}).unwrap() {
                        Outcome::Verified { md5, .. } => assert_eq!(hex(&md5), md5_hex(bytes)),
                        other => panic!("client {c}: {other:?}"),
                    }
                    assert_eq!(md5_file(&dest), md5_hex(bytes));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 96);
}

#[test]
fn job_events_end_with_exactly_one_terminal_event() {
    let srv = TestServer::start();
    let bytes = srv.put("e.bin", random_bytes(1_500_000, 10));
    let out = tempfile::tempdir().unwrap();
    let dest = dest_in(&out, "e.bin");
    let (jobs, events) = Jobs::new(None);
    let job = jobs.download(
        &srv.addr_string(),
        &ConnectOptions::default(),
        DownloadRequest { path: "e.bin".into(), dest: dest.clone(), overwrite: false },
    );
    job.join();
    let all: Vec<_> = events.try_iter().collect();
    assert!(matches!(all.first().map(|e| &e.kind), Some(EventKind::Connected { .. })), "{all:?}");
    assert_eq!(all.iter().filter(|e| e.kind.is_terminal()).count(), 1);
    match &all.last().unwrap().kind {
        EventKind::Verified { md5, .. } => assert_eq!(hex(md5), md5_hex(&bytes)),
        other => panic!("{other:?}"),
    }
    let last_progress = all.iter().rev().find_map(|e| match e.kind {
        EventKind::Progress { done, total, .. } => Some((done, total)),
        _ => None,
    });
    assert_eq!(last_progress, Some((bytes.len() as u64, bytes.len() as u64)));
}

#[test]
fn unreachable_address_fails_with_a_clear_error() {
    // Bind then drop: the port is (almost certainly) closed now.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = Connection::connect(&format!("127.0.0.1:{port}"), &ConnectOptions::default()).err().unwrap();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("refused"), "{err}");
}

#[test]
fn server_reports_transfer_events_with_the_md5() {
    let mut srv = TestServer::start();
    let bytes = srv.put("ev.bin", random_bytes(100_000, 11));
    let out = tempfile::tempdir().unwrap();
    download(&srv.addr_string(), "ev.bin", &dest_in(&out, "ev.bin")).unwrap();
    // The connection's last event comes after the client has hung up.
    let mut events =
        collect_until(&srv.events, Duration::from_secs(10), |e| matches!(e, ServerEvent::ClientDisconnected { .. }));
    events.extend(srv.stop());
    let started = events.iter().find_map(|e| match e {
        ServerEvent::TransferStarted { transfer, path, size, offset, .. } => {
            Some((*transfer, path.clone(), *size, *offset))
        }
        _ => None,
    });
    let (transfer, path, size, offset) = started.expect("TransferStarted");
    assert_eq!((path.as_str(), size, offset), ("ev.bin", 100_000, 0));
    let finished = events.iter().find_map(|e| match e {
        ServerEvent::TransferFinished { transfer: t, md5, sent, .. } if *t == transfer => Some((*md5, *sent)),
        _ => None,
    });
    let (md5, sent) = finished.expect("TransferFinished");
    assert_eq!(hex(&md5), md5_hex(&bytes));
    assert_eq!(sent, 100_000);
    assert!(events.iter().any(|e| matches!(e, ServerEvent::ClientConnected { .. })));
    assert!(events.iter().any(|e| matches!(e, ServerEvent::ClientDisconnected { .. })));
    assert!(matches!(events.last(), Some(ServerEvent::Stopped)));
}

#[test]
fn warm_second_download_is_verified_too() {
    // The second transfer of an unchanged file uses the remembered digest (zero-copy path);
    // the client still hashes everything itself.
    let srv = TestServer::start();
    let bytes = srv.put("warm.bin", random_bytes(3 * 1024 * 1024, 12));
    let out = tempfile::tempdir().unwrap();
    for i in 0..3 {
        let dest = dest_in(&out, &format!("warm-{i}.bin"));
        assert_verified(download(&srv.addr_string(), "warm.bin", &dest).unwrap(), &dest, &bytes);
    }
    // Resumed warm transfer.
    let dest = dest_in(&out, "warm-resumed.bin");
    fs::write(part_path(&dest), &bytes[..1_234_567]).unwrap();
    PartialRecord::new(srv.addr_string(), "shared", "warm.bin").save(&dest).unwrap();
    assert_verified(download(&srv.addr_string(), "warm.bin", &dest).unwrap(), &dest, &bytes);
}

#[test]
fn modified_file_is_not_served_from_a_stale_digest() {
    let srv = TestServer::start();
    srv.put("m.bin", random_bytes(2 * 1024 * 1024, 13));
    let out = tempfile::tempdir().unwrap();
    download(&srv.addr_string(), "m.bin", &dest_in(&out, "m1.bin")).unwrap();
    // The host sees a change by the file's times, which the file system keeps at a coarse
    // clock tick: rewrite until the modification time has moved on.
    let first_version = fs::metadata(srv.root().join("m.bin")).unwrap().modified().unwrap();
    let changed = random_bytes(2 * 1024 * 1024, 14);
    let rewritten = wait_until(Duration::from_secs(5), || {
        srv.put("m.bin", changed.clone());
        fs::metadata(srv.root().join("m.bin")).unwrap().modified().unwrap() != first_version
    });
    assert!(rewritten, "the rewritten file has a new modification time");
    let dest = dest_in(&out, "m2.bin");
    assert_verified(download(&srv.addr_string(), "m.bin", &dest).unwrap(), &dest, &changed);
}
