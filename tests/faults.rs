//! Faults: a failing disk, a file that changes while it is sent, a host killed mid-transfer,
//! stalled peers. Each must end in a clear error, with nothing wrong saved under a final name.

mod support;

use std::fs;
use std::time::{Duration, Instant};

use ferry::client::jobs::{EventKind, Jobs};
use ferry::client::{CancelToken, ClientError, ConnectOptions, Connection, DownloadRequest, Outcome, part_path};
use ferry::protocol::hex;
use ferry::server::ServerEvent;
use support::*;

// Unix only: the failing disk is a file-size limit (setrlimit) set in the child before exec.
#[cfg(unix)]
#[test]
fn a_write_failing_mid_download_is_a_clear_error_and_no_final_file() {
    use std::os::unix::process::CommandExt;
    let srv = TestServer::start();
    srv.put("big.bin", random_bytes(3 * 1024 * 1024, 31));
    let here = tempfile::tempdir().unwrap();
    // The real binary under a 1 MiB file-size limit: its writes fail past 1 MiB (EFBIG), as
    // they would on a full disk, without touching this machine's disks.
    let out = unsafe {
        ferry_command()
            .args(["get", &srv.addr_string(), "big.bin"])
            .current_dir(here.path())
            .pre_exec(|| {
                let lim = libc::rlimit { rlim_cur: 1024 * 1024, rlim_max: 1024 * 1024 };
                libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            })
            .output()
            .unwrap()
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write") && err.contains("big.bin.ferry-part"), "{err}");
    assert!(!here.path().join("big.bin").exists(), "no file under the final name");
    // Documented behaviour: the partial file is kept (with what was written) for a later resume.
    let kept = fs::metadata(here.path().join("big.bin.ferry-part")).unwrap().len();
    assert!(kept <= 1024 * 1024, "{kept}");
    assert!(err.contains("run the same command to resume"), "{err}");
}

#[test]
fn a_destination_without_room_is_refused_before_downloading() {
    // /dev/shm or / may be large; a size larger than any disk is refused by the space check.
    let srv = TestServer::start();
    let f = fs::File::create(srv.root().join("huge.bin")).unwrap();
    f.set_len(1 << 60).unwrap_or_else(|_| f.set_len(1 << 40).unwrap()); // sparse
    let here = tempfile::tempdir().unwrap();
    let dest = here.path().join("huge.bin");
    let mut conn = Connection::connect(&srv.addr_string(), &ConnectOptions::default()).unwrap();
    let req = DownloadRequest { path: "huge.bin".into(), dest: dest.clone(), overwrite: false };
    let err = conn.download(&req, &CancelToken::new(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, ClientError::NoSpace { .. }), "{err:?}");
    assert!(err.to_string().contains("not enough disk space"), "{err}");
    assert!(!dest.exists());
}

/// Starts a download through a relay that holds the stream after `pass` bytes, and waits
/// until those bytes have arrived at the client.
fn stalled_download(
    target: std::net::SocketAddr,
    name: &str,
    pass: u64,
    out: &tempfile::TempDir,
    opts: &ConnectOptions,
) -> (Relay, Jobs, crossbeam_channel::Receiver<ferry::client::ClientEvent>, std::path::PathBuf) {
    let relay = Relay::start(target, Tamper::StallAfter(pass));
    let dest = out.path().join(name);
    let (jobs, events) = Jobs::new(None);
    jobs.download(
        &relay.addr.to_string(),
        opts,
        DownloadRequest { path: name.into(), dest: dest.clone(), overwrite: false },
    );
    wait_for(&events, Duration::from_secs(20), |e| matches!(e.kind, EventKind::Progress { done, .. } if done > 0));
    let passed = || relay.forwarded.load(std::sync::atomic::Ordering::SeqCst) >= pass;
    assert!(wait_until(Duration::from_secs(20), passed), "the relay passed its first {pass} bytes");
    (relay, jobs, events, dest)
}

#[test]
fn a_hosted_file_that_shrinks_while_sent_gives_an_incomplete_transfer() {
    let srv = TestServer::start();
    srv.put("shrink.bin", random_bytes(8 * 1024 * 1024, 32));
    let out = tempfile::tempdir().unwrap();
    let (relay, _jobs, events, dest) =
        stalled_download(srv.addr, "shrink.bin", 512 * 1024, &out, &ConnectOptions::default());
    fs::OpenOptions::new().write(true).open(srv.root().join("shrink.bin")).unwrap().set_len(1024 * 1024).unwrap();
    // Let the relay pass on nothing more but the end of the server's stream.
    relay.release();
    let end = wait_for(&events, Duration::from_secs(20), |e| e.kind.is_terminal());
    assert!(matches!(end.kind, EventKind::Failed(ClientError::Incomplete(_) | ClientError::Lost(_))), "{end:?}");
    assert!(!dest.exists());

    // Through no relay at all, the server itself notices and closes early.
    let mut srv = srv;
    let events = srv.stop();
    assert!(
        events.iter().any(|e| matches!(e, ServerEvent::TransferFailed { error, .. } if error.contains("shrank"))),
        "{events:?}"
    );
}

#[test]
fn a_hosted_file_that_grows_or_changes_while_sent_is_never_verified() {
    for (mode, seed) in [("grow", 33u64), ("rewrite", 34)] {
        let srv = TestServer::start();
        // Larger than what the socket buffers of both ends can hold in flight (Linux autotunes
        // each up to 6 MiB; Wine's are as large): the host is still sending when it changes.
        let original = srv.put("live.bin", random_bytes(24 * 1024 * 1024, seed));
        let out = tempfile::tempdir().unwrap();
        // Direct connection, paused by a progress callback that changes the file mid-way.
        let dest = out.path().join("live.bin");
        let mut conn = Connection::connect(&srv.addr_string(), &ConnectOptions::default()).unwrap();
        let req = DownloadRequest { path: "live.bin".into(), dest: dest.clone(), overwrite: false };
        let root = srv.root().to_path_buf();
        let mut changed = false;
        let result = conn.download(&req, &CancelToken::new(), &mut |p| {
            if !changed && p.done > 1024 * 1024 {
                changed = true;
                let path = root.join("live.bin");
                match mode {
                    "grow" => {
                        use std::io::Write;
                        fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[9u8; 4096]).unwrap();
                    }
                    _ => {
                        use std::io::{Seek, SeekFrom, Write};
                        let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
                        f.seek(SeekFrom::Start(5 * 1024 * 1024)).unwrap();
                        f.write_all(&[0u8; 1000]).unwrap();
                    }
                }
            }
        });
        assert!(changed, "{mode}: the file was changed mid-transfer");
        match result {
            Err(ClientError::Incomplete(_) | ClientError::Lost(_)) => {}
            Ok(Outcome::Mismatch { .. }) => {}
            other => panic!("{mode}: a file that changed while sent must not verify: {other:?}"),
        }
        assert!(!dest.exists(), "{mode}: nothing saved under the final name");
        let _ = original;
    }
}

#[test]
fn a_host_killed_mid_transfer_and_restarted_resumes_to_a_verified_file() {
    let share = tempfile::tempdir().unwrap();
    let bytes = random_bytes(6 * 1024 * 1024, 35);
    fs::write(share.path().join("k.bin"), &bytes).unwrap();
    let mut first = ServeProcess::start(share.path(), &[]);
    let addr = first.addr.clone();
    let out = tempfile::tempdir().unwrap();
    // A killed host's connections normally end at once (the system closes its sockets). Under
    // Wine a socket whose send was blocked (the relay holds the data) sometimes stays open after
    // the process is gone: then the client sees what a host that lost power looks like, silence,
    // and gives up after its idle timeout. 5 s keeps both ways of dying well inside the wait.
    let opts = ConnectOptions { io_timeout: Duration::from_secs(5), ..Default::default() };
    let (relay, _jobs, events, dest) = stalled_download(addr.parse().unwrap(), "k.bin", 2 * 1024 * 1024, &out, &opts);
    // SIGKILL: no chance to close anything cleanly.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    relay.release();
    let end = wait_for(&events, Duration::from_secs(20), |e| e.kind.is_terminal());
    assert!(matches!(end.kind, EventKind::Failed(_)), "{end:?}");
    assert!(!dest.exists());
    let kept = fs::metadata(part_path(&dest)).unwrap().len();
    assert!(kept > 0);

    let second = ServeProcess::start(share.path(), &[]);
    let addr = second.addr.clone();
    let mut conn = Connection::connect(&addr, &ConnectOptions::default()).unwrap();
    let req = DownloadRequest { path: "k.bin".into(), dest: dest.clone(), overwrite: false };
    match conn.download(&req, &CancelToken::new(), &mut |_| {}).unwrap() {
        Outcome::Verified { md5, resumed_from, .. } => {
            assert_eq!(resumed_from, kept);
            assert_eq!(hex(&md5), md5_hex(&bytes));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(md5_file(&dest), md5_hex(&bytes));
    drop(second); // killed
}

#[test]
fn a_client_that_stops_reading_is_timed_out_and_freed() {
    let srv = TestServer::start_with(|c| c.idle_timeout = Duration::from_millis(500));
    srv.put("big.bin", random_bytes(32 * 1024 * 1024, 36));
    let mut s = ferry::transport::connect(std::net::TcpStream::connect(srv.addr).unwrap()).unwrap();
    let mut wire = Vec::new();
    ferry::protocol::frame::write_control(&mut wire, &serde_json::json!({"op":"hello","version":2,"client":"stall"}))
        .unwrap();
    ferry::protocol::frame::write_control(&mut wire, &serde_json::json!({"op":"get","path":"big.bin","offset":0}))
        .unwrap();
    std::io::Write::write_all(&mut s, &wire).unwrap();
    std::io::Write::flush(&mut s).unwrap();
    // Never read. The server must give up on its own.
    let t = Instant::now();
    let gone = wait_for(&srv.events, Duration::from_secs(20), |e| matches!(e, ServerEvent::ClientDisconnected { .. }));
    match gone {
        ServerEvent::ClientDisconnected { reason: Some(r), .. } => assert!(r.contains("stopped reading"), "{r}"),
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(15));
    drop(s);
}

#[test]
fn a_client_that_says_nothing_is_timed_out_and_freed() {
    let srv = TestServer::start_with(|c| c.idle_timeout = Duration::from_millis(300));
    let mut silent = std::net::TcpStream::connect(srv.addr).unwrap();
    let mut hello = Connection::connect(&srv.addr_string(), &ConnectOptions::default()).unwrap();
    let t = Instant::now();
    let gone = wait_for(&srv.events, Duration::from_secs(10), |e| matches!(e, ServerEvent::ClientDisconnected { .. }));
    match gone {
        ServerEvent::ClientDisconnected { reason: Some(r), .. } => assert!(r.contains("idle"), "{r}"),
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() >= Duration::from_millis(250), "not before the idle timeout");
    // The socket that never said hello was closed too (EOF, not a read timeout).
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(std::io::Read::read(&mut silent, &mut [0u8; 16]).unwrap_or(0), 0);
    // Both the silent socket and the idle greeted connection were closed; a new one works.
    assert!(hello.list("").is_err(), "idle connection was closed");
    let mut fresh = Connection::connect(&srv.addr_string(), &ConnectOptions::default()).unwrap();
    assert!(fresh.list("").is_ok());
}
