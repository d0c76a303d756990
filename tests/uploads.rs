//! Uploads (`put`, issue 13): refused unless the host allows them; hostile names and paths
//! refused with nothing written outside; verified by the host's own MD5 (a byte flipped on the
//! way is refused and nothing is kept); an interrupted upload resumes and is verified whole; a
//! full disk is answered `no_space` or fails cleanly without leaving a partial file; many
//! clients at once. The real binary where a person would use it, raw frames against a plain
//! host where the test speaks the protocol itself.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use ferry::client::jobs::Jobs;
use ferry::client::{
    CancelToken, ConnectOptions, Connection, DownloadRequest, EventKind, Outcome, UploadOutcome, UploadRequest,
};
use ferry::protocol::names::Os;
use ferry::server::ServerEvent;
use serde_json::{Value, json};
use support::*;

const LONG: Duration = Duration::from_secs(60);
/// How long a raw client waits for a reply.
const RAW_WAIT: Duration = Duration::from_secs(20);

/// A host that takes uploads.
fn uploads_host(plain: bool) -> TestServer {
    TestServer::start_with(|c| {
        c.allow_upload = true;
        c.plain = plain;
    })
}

/// `ferry put ARGS…`, run to its end.
fn ferry_put(args: &[&str]) -> Output {
    let mut child = ferry_command()
        .arg("put")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = Lines::read(child.stdout.take().unwrap());
    let mut err = Lines::read(child.stderr.take().unwrap());
    let status = wait_exit(&mut child, LONG);
    let stdout = out.until_closed(LONG).join("\n");
    let stderr = err.until_closed(LONG).join("\n");
    Output { status, stdout: stdout.into_bytes(), stderr: stderr.into_bytes() }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write_file(dir: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Every file under `dir` (relative paths with `/` on every system, sorted).
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
                let parts: Vec<String> =
                    rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                out.push(parts.join("/"));
            }
        }
    }
    out.sort();
    out
}

fn code(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_else(|| panic!("an error reply, got {v}"))
}

#[test]
fn put_is_refused_read_only_when_the_host_does_not_allow_uploads() {
    let srv = TestServer::start();
    let src = tempfile::tempdir().unwrap();
    let file = write_file(src.path(), "a.bin", b"hello");
    let out = ferry_put(&[&srv.addr_string(), file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("does not take uploads"), "{}", text(&out.stderr));
    assert!(files_under(srv.root()).is_empty());
    // On the wire: read_only, and the connection goes on.
    let plain = TestServer::start_plain();
    let mut r = Raw::hello_waiting(plain.addr, RAW_WAIT);
    assert_eq!(code(&r.call(&json!({"op":"put","path":"b.bin","size":3}))), "read_only");
    assert_eq!(r.call(&json!({"op":"list","path":""}))["ok"], true);
}

#[test]
fn put_uploads_files_and_folders_verified_with_md5sum_lines() {
    let srv = uploads_host(false);
    let src = tempfile::tempdir().unwrap();
    let one = write_file(src.path(), "one.bin", &random_bytes(300_000, 1));
    write_file(src.path(), "album/a.jpg", &random_bytes(70_000, 2));
    write_file(src.path(), "album/deeper/b.txt", b"b");
    write_file(src.path(), "album/empty.txt", b"");
    let album = src.path().join("album");
    let out =
        ferry_put(&[&srv.addr_string(), one.to_str().unwrap(), album.to_str().unwrap(), "-r", "--to", "from/bob"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let root = srv.root();
    assert_eq!(
        files_under(root),
        ["from/bob/album/a.jpg", "from/bob/album/deeper/b.txt", "from/bob/album/empty.txt", "from/bob/one.bin"]
    );
    for (local, remote) in [
        (one.clone(), "from/bob/one.bin"),
        (album.join("a.jpg"), "from/bob/album/a.jpg"),
        (album.join("deeper").join("b.txt"), "from/bob/album/deeper/b.txt"),
        (album.join("empty.txt"), "from/bob/album/empty.txt"),
    ] {
        assert_eq!(std::fs::read(root.join(remote)).unwrap(), std::fs::read(&local).unwrap(), "{remote}");
        let line = format!("{}  {}", md5_file(&local), local.display());
        assert!(text(&out.stdout).lines().any(|l| l == line), "{line:?} in {}", text(&out.stdout));
    }
    // The host reported each file received and verified.
    let mut verified = 0;
    let seen = collect_until(&srv.events, LONG, |e| {
        if let ServerEvent::UploadFinished { expected, actual, .. } = e {
            assert_eq!(expected, actual);
            verified += 1;
        }
        verified == 4
    });
    assert!(seen.iter().any(|e| matches!(e, ServerEvent::UploadStarted { path, .. } if path == "from/bob/one.bin")));

    // An existing file is never replaced: the same upload again is refused, the file kept.
    std::fs::write(root.join("from/bob/one.bin"), b"theirs").unwrap();
    let out = ferry_put(&[&srv.addr_string(), one.to_str().unwrap(), "--to", "from/bob"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already exists"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(root.join("from/bob/one.bin")).unwrap(), b"theirs");

    // A folder without -r is refused before connecting.
    let out = ferry_put(&[&srv.addr_string(), album.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("-r"), "{}", text(&out.stderr));
}

#[test]
fn an_uploaded_file_is_listed_with_its_digest_and_its_first_download_is_warm() {
    let srv = uploads_host(false);
    let local_dir = tempfile::tempdir().unwrap();
    let bytes = random_bytes(3 * 1024 * 1024 + 17, 21);
    let local = write_file(local_dir.path(), "up.bin", &bytes);
    let mut conn = Connection::connect(&srv.addr_string(), &ConnectOptions::default()).unwrap();
    let req = UploadRequest { local, path: "up.bin".into(), mkdirs: false };
    let UploadOutcome::Verified { md5, .. } = conn.upload(&req, &CancelToken::new(), &mut |_| {}).unwrap() else {
        panic!("not verified")
    };
    assert_eq!(ferry::protocol::hex(&md5), md5_hex(&bytes));
    // The first listing is answered from what the index knew before it (and only then queues
    // the folder for hashing): the digest is there because the upload put it there.
    let listed = conn.list("").unwrap();
    let entry = listed.entries.iter().find(|e| e.name == "up.bin").expect("listed");
    assert_eq!(entry.digest(), Some(md5), "{entry:?}");
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("up.bin");
    let get = DownloadRequest { path: "up.bin".into(), dest: dest.clone(), overwrite: false };
    assert!(matches!(conn.download(&get, &CancelToken::new(), &mut |_| {}).unwrap(), Outcome::Verified { .. }));
    let started = wait_for(&srv.events, LONG, |e| matches!(e, ServerEvent::TransferStarted { .. }));
    assert!(matches!(started, ServerEvent::TransferStarted { warm: true, .. }), "{started:?}");
    assert_eq!(md5_file(&dest), md5_hex(&bytes));
}

#[test]
fn cancelling_an_upload_blocked_on_a_stalled_host_ends_it_at_once() {
    let srv = uploads_host(false);
    let src = tempfile::tempdir().unwrap();
    // Far more than the socket buffers hold, so the client's write blocks once the relay stops.
    let file = write_file(src.path(), "big.bin", &random_bytes(24 * 1024 * 1024, 22));
    let relay = Relay::start(srv.addr, Tamper::StallUpstreamAfter(1024 * 1024));
    let (jobs, events) = Jobs::new(None);
    let req = UploadRequest { local: file, path: "big.bin".into(), mkdirs: false };
    let job = jobs.upload(&relay.addr.to_string(), &ConnectOptions::default(), req);
    let part = srv.root().join("big.bin.ferry-upload");
    assert!(wait_until(LONG, || std::fs::metadata(&part).is_ok_and(|m| m.len() > 0)), "no byte arrived");
    job.cancel();
    let end = wait_for(&events, Duration::from_secs(5), |e| e.kind.is_terminal());
    assert!(matches!(end.kind, EventKind::Cancelled { .. }), "{end:?}");
    job.join();
    assert!(!srv.root().join("big.bin").exists());
    relay.release();
}

#[test]
fn hostile_names_and_paths_are_refused_and_nothing_is_written_outside() {
    let outside = tempfile::tempdir().unwrap();
    let srv = TestServer::start_with(|c| {
        c.allow_upload = true;
        c.plain = true;
        c.upload_names = Os::Windows;
    });
    let root = srv.root().to_path_buf();
    std::fs::create_dir(root.join("inbox")).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
        std::os::unix::fs::symlink("inbox", root.join("in")).unwrap();
    }
    let before = files_under(&root);
    let mut r = Raw::hello_waiting(srv.addr, RAW_WAIT);
    let cases = vec![
        ("../escape.bin", "bad_path"),
        ("/etc/escape.bin", "bad_path"),
        ("inbox/../../escape.bin", "bad_path"),
        ("inbox/./x.bin", "bad_path"),
        ("inbox//x.bin", "bad_path"),
        ("a\\..\\x.bin", "bad_path"),
        ("x\u{0}.bin", "bad_path"),
        ("", "is_directory"),
        ("inbox", "exists"),
        // Names the host's rules (Windows, here) refuse.
        ("CON", "bad_path"),
        ("inbox/aux.txt", "bad_path"),
        ("LPT1/x.bin", "bad_path"),
        ("a:b", "bad_path"),
        ("report.", "bad_path"),
        ("what?.txt", "bad_path"),
        ("tab\there", "bad_path"),
        // ferry's own partial-upload names.
        ("x.bin.ferry-upload", "bad_path"),
        ("x.bin.ferry-upload.json", "bad_path"),
        // A missing folder without mkdirs: the contract's "the parent must exist".
        ("missing/x.bin", "not_found"),
    ];
    // Through a link leading outside, or even one that stays inside (links made on Unix only).
    let links: &[(&str, &str)] =
        if cfg!(unix) { &[("out/escape.bin", "forbidden"), ("in/x.bin", "forbidden"), ("out", "exists")] } else { &[] };
    for (path, expected) in cases.into_iter().chain(links.iter().copied()) {
        let reply = r.call(&json!({"op":"put","path":path,"size":5}));
        assert_eq!(reply["error"].as_str(), Some(expected), "put {path:?}: {reply}");
    }
    // The connection is still usable, nothing was created inside or outside.
    assert_eq!(r.call(&json!({"op":"list","path":""}))["ok"], true);
    assert_eq!(files_under(&root), before);
    assert!(files_under(outside.path()).is_empty());
    assert!(!root.join("missing").exists());

    // An upload folder confines puts to it.
    let srv = TestServer::start_with(|c| {
        c.allow_upload = true;
        c.plain = true;
        c.upload_folder = Some("inbox".into());
    });
    let mut r = Raw::hello_waiting(srv.addr, RAW_WAIT);
    assert_eq!(code(&r.call(&json!({"op":"put","path":"x.bin","size":1}))), "forbidden");
    assert_eq!(code(&r.call(&json!({"op":"put","path":"inboxx/x.bin","size":1,"mkdirs":true}))), "forbidden");
    let ok = r.call(&json!({"op":"put","path":"inbox/sub/x.bin","size":0,"mkdirs":true}));
    assert_eq!(ok, json!({"ok":true,"offset":0}));
}

#[test]
fn a_part_ferry_did_not_create_is_never_touched() {
    let srv = uploads_host(true);
    let root = srv.root().to_path_buf();
    std::fs::write(root.join("a.bin.ferry-upload"), b"someone else's").unwrap();
    let mut r = Raw::hello_waiting(srv.addr, RAW_WAIT);
    let reply = r.call(&json!({"op":"put","path":"a.bin","size":5}));
    assert_eq!(code(&reply), "exists", "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("did not create"), "{reply}");
    assert_eq!(std::fs::read(root.join("a.bin.ferry-upload")).unwrap(), b"someone else's");
    assert!(!root.join("a.bin").exists());
}

/// Sends `put` and the first `cut` bytes of `bytes`' data section, then drops the connection.
fn interrupted_put(addr: SocketAddr, path: &str, bytes: &[u8], cut: usize) {
    let mut r = Raw::hello_waiting(addr, RAW_WAIT);
    let reply = r.call(&json!({"op":"put","path":path,"size":bytes.len()}));
    assert_eq!(reply, json!({"ok":true,"offset":0}));
    r.s.write_all(&(bytes.len() as u64).to_be_bytes()).unwrap();
    r.s.write_all(&bytes[..cut]).unwrap();
    r.s.flush().unwrap();
    drop(r);
}

#[test]
fn an_interrupted_upload_resumes_from_the_hosts_part_and_is_verified_whole() {
    let srv = uploads_host(true);
    let src = tempfile::tempdir().unwrap();
    let bytes = random_bytes(3 * 1024 * 1024 + 17, 7);
    let file = write_file(src.path(), "big.bin", &bytes);
    let cut = 1024 * 1024 + 5;
    interrupted_put(srv.addr, "big.bin", &bytes, cut);
    let failed = wait_for(&srv.events, LONG, |e| matches!(e, ServerEvent::TransferFailed { .. }));
    assert!(
        matches!(&failed, ServerEvent::TransferFailed { error, .. } if error.contains("kept for a resume")),
        "{failed:?}"
    );
    let part = srv.root().join("big.bin.ferry-upload");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), cut as u64);
    assert!(srv.root().join("big.bin.ferry-upload.json").exists());
    assert!(!srv.root().join("big.bin").exists());

    let out = ferry_put(&["--plain", &srv.addr_string(), file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("resumed from byte {cut}")), "{}", text(&out.stderr));
    assert_eq!(md5_file(&srv.root().join("big.bin")), md5_hex(&bytes));
    assert_eq!(files_under(srv.root()), ["big.bin"]);
    let started = wait_for(&srv.events, LONG, |e| matches!(e, ServerEvent::UploadStarted { .. }));
    assert!(matches!(started, ServerEvent::UploadStarted { offset, .. } if offset == cut as u64));
}

/// Ctrl-C while `ferry put` sends: it stops and says the host keeps what arrived; the same
/// command then resumes from there and the file verifies.
#[cfg(unix)]
#[test]
fn a_cancelled_put_leaves_the_host_its_part_and_the_same_command_resumes() {
    let srv = uploads_host(false);
    let src = tempfile::tempdir().unwrap();
    let bytes = random_bytes(4 * 1024 * 1024, 21);
    let file = write_file(src.path(), "c.bin", &bytes);
    let relay = Relay::start(srv.addr, Tamper::StallUpstreamAfter(1024 * 1024));
    let mut child = ferry_command()
        .args(["put", &relay.addr.to_string(), file.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _out = Lines::read(child.stdout.take().unwrap());
    let mut err = Lines::read(child.stderr.take().unwrap());
    // The host is receiving (the relay holds the rest back) when the person presses Ctrl-C.
    wait_for(&srv.events, LONG, |e| matches!(e, ServerEvent::UploadStarted { .. }));
    err.wait_for(LONG, |l| l.contains('%'));
    // Bytes have reached the host's partial file (the client's first progress line can come
    // before any has: Ctrl-C then would leave the host nothing to keep).
    let part = srv.root().join("c.bin.ferry-upload");
    let arrived = wait_until(LONG, || std::fs::metadata(&part).is_ok_and(|m| m.len() > 0));
    assert!(arrived, "no byte reached the host's partial file");
    interrupt(&child);
    let status = wait_exit(&mut child, LONG);
    assert_eq!(status.code(), Some(1));
    let stderr = err.until_closed(LONG).join("\n");
    assert!(stderr.contains("cancelled") && stderr.contains("resume"), "{stderr}");
    relay.release();
    let failed = wait_for(&srv.events, LONG, |e| matches!(e, ServerEvent::TransferFailed { .. }));
    assert!(matches!(&failed, ServerEvent::TransferFailed { error, .. } if error.contains("kept")), "{failed:?}");
    let kept = std::fs::metadata(srv.root().join("c.bin.ferry-upload")).unwrap().len();
    assert!(kept > 0 && kept < bytes.len() as u64, "{kept}");

    let out = ferry_put(&[&srv.addr_string(), file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("resumed from byte {kept}")), "{}", text(&out.stderr));
    assert_eq!(md5_file(&srv.root().join("c.bin")), md5_hex(&bytes));
    assert_eq!(files_under(srv.root()), ["c.bin"]);
}

#[test]
fn a_resume_onto_a_damaged_part_is_caught_and_started_over() {
    let srv = uploads_host(true);
    let src = tempfile::tempdir().unwrap();
    let bytes = random_bytes(2 * 1024 * 1024, 9);
    let file = write_file(src.path(), "x.bin", &bytes);
    interrupted_put(srv.addr, "x.bin", &bytes, 600_000);
    wait_for(&srv.events, LONG, |e| matches!(e, ServerEvent::TransferFailed { .. }));
    // The host's partial file is damaged while it waits.
    let part = srv.root().join("x.bin.ferry-upload");
    let mut held = std::fs::read(&part).unwrap();
    held[1000] ^= 0xff;
    std::fs::write(&part, held).unwrap();

    let out = ferry_put(&["--plain", &srv.addr_string(), file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(md5_file(&srv.root().join("x.bin")), md5_hex(&bytes));
    assert_eq!(files_under(srv.root()), ["x.bin"]);
    // The resumed attempt was refused by the host's MD5, then a fresh one verified.
    let mut finished = Vec::new();
    collect_until(&srv.events, LONG, |e| {
        if let ServerEvent::UploadFinished { expected, actual, .. } = e {
            finished.push(expected == actual);
        }
        finished.len() == 2
    });
    assert_eq!(finished, [false, true]);
}

#[test]
fn a_byte_flipped_on_the_way_to_the_host_is_refused_and_nothing_is_kept() {
    let srv = uploads_host(true);
    let src = tempfile::tempdir().unwrap();
    let bytes = random_bytes(1024 * 1024, 11);
    let file = write_file(src.path(), "flip.bin", &bytes);
    let relay = Relay::start(srv.addr, Tamper::FlipUpstreamByteAt(500_000));
    let out = ferry_put(&["--plain", &relay.addr.to_string(), file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("MISMATCH"), "{stderr}");
    assert!(stderr.contains(&md5_hex(&bytes)), "both digests shown: {stderr}");
    assert!(text(&out.stdout).is_empty());
    assert!(files_under(srv.root()).is_empty(), "{:?}", files_under(srv.root()));
    let finished = wait_for(&srv.events, LONG, |e| matches!(e, ServerEvent::UploadFinished { .. }));
    let ServerEvent::UploadFinished { expected, actual, .. } = finished else { unreachable!() };
    assert_ne!(expected, actual);
    assert_eq!(ferry::protocol::hex(&expected), md5_hex(&bytes));
}

#[test]
fn a_byte_flipped_inside_tls_breaks_the_connection_cleanly_and_a_retry_verifies() {
    let srv = uploads_host(false);
    let src = tempfile::tempdir().unwrap();
    let bytes = random_bytes(1024 * 1024, 12);
    let file = write_file(src.path(), "tls.bin", &bytes);
    let relay = Relay::start(srv.addr, Tamper::FlipUpstreamByteAt(500_000));
    let out = ferry_put(&[&relay.addr.to_string(), file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!srv.root().join("tls.bin").exists(), "nothing under the final name");
    wait_for(&srv.events, LONG, |e| matches!(e, ServerEvent::TransferFailed { .. }));
    // Straight to the host, the same upload resumes what arrived intact and verifies.
    let out = ferry_put(&[&srv.addr_string(), file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(md5_file(&srv.root().join("tls.bin")), md5_hex(&bytes));
    assert_eq!(files_under(srv.root()), ["tls.bin"]);
}

/// Unix only: the file is sparse there. On Windows (and under Wine) making a file larger than
/// the free space allocates it, which would fill the disk instead of testing the host.
#[cfg(unix)]
#[test]
fn a_file_larger_than_the_hosts_free_space_is_answered_no_space_before_any_byte() {
    let srv = uploads_host(false);
    let src = tempfile::tempdir().unwrap();
    // Sparse: a huge size on a small disk. No byte of it is ever read.
    let file = src.path().join("huge.bin");
    let free = fs4::available_space(srv.root()).unwrap();
    std::fs::File::create(&file).unwrap().set_len(free + (1 << 30)).unwrap();
    let out = ferry_put(&[&srv.addr_string(), file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no_space"), "{}", text(&out.stderr));
    assert!(files_under(srv.root()).is_empty());
    let refused = wait_for(&srv.events, LONG, |e| matches!(e, ServerEvent::RequestRefused { .. }));
    assert!(matches!(refused, ServerEvent::RequestRefused { error, .. } if error.contains("no_space")));
}

/// `ferry serve DIR --allow-upload --plain` with a file size limit (RLIMIT_FSIZE) of about
/// 1 MiB, and SIGXFSZ ignored so that a write past it fails with EFBIG, as on a full disk.
#[cfg(target_os = "linux")]
fn limited_serve(dir: &Path) -> (std::process::Child, String, Lines) {
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 2048; exec \"$0\" \"$@\"")
        .arg(FERRY)
        .args(["serve", dir.to_str().unwrap(), "--bind", "127.0.0.1:0", "--allow-upload", "--plain"])
        .env("FERRY_NO_DISCOVERY", "1")
        .env("FERRY_CONFIG_DIR", test_config_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = Lines::read(child.stdout.take().unwrap());
    let first = stdout.wait_for(LONG, |l| l.contains(" hosting "));
    let addr = first.split(" at ").nth(1).and_then(|r| r.split(' ').next()).expect(&first).to_string();
    (child, addr, stdout)
}

#[cfg(target_os = "linux")]
#[test]
fn a_disk_that_fills_up_mid_upload_fails_cleanly_and_leaves_no_part() {
    let host = tempfile::tempdir().unwrap();
    let (mut child, addr, mut log) = limited_serve(host.path());
    let src = tempfile::tempdir().unwrap();
    let bytes = random_bytes(8 * 1024 * 1024, 13);
    let file = write_file(src.path(), "big.bin", &bytes);
    let out = ferry_put(&["--plain", &addr, file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let line = log.wait_for(LONG, |l| l.contains("put \"big.bin\" failed"));
    assert!(line.contains("disk is full") && line.contains("removed"), "{line}");
    assert!(files_under(host.path()).is_empty(), "{:?}", files_under(host.path()));
    // The host is still up and takes a file that fits.
    let small = write_file(src.path(), "small.bin", &random_bytes(100_000, 14));
    let out = ferry_put(&["--plain", &addr, small.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(files_under(host.path()), ["small.bin"]);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn sixteen_clients_upload_at_once_and_every_file_verifies() {
    let srv = TestServer::start_with(|c| {
        c.allow_upload = true;
        c.max_per_address = 32;
    });
    let src = tempfile::tempdir().unwrap();
    let files: Vec<(PathBuf, Vec<u8>)> = (0..16)
        .map(|i| {
            let bytes = random_bytes(200_000 + i * 97_531, 100 + i as u64);
            (write_file(src.path(), &format!("f{i}.bin"), &bytes), bytes)
        })
        .collect();
    let addr = srv.addr_string();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
    let threads: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, (local, _))| {
            let (addr, local, barrier) = (addr.clone(), local.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut conn = Connection::connect(&addr, &ConnectOptions::default()).unwrap();
                barrier.wait();
                let req = UploadRequest { local, path: format!("in/f{i}.bin"), mkdirs: true };
                conn.upload(&req, &CancelToken::new(), &mut |_| {}).unwrap()
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let outcome = t.join().unwrap();
        let UploadOutcome::Verified { md5, .. } = outcome else { panic!("file {i}: {outcome:?}") };
        assert_eq!(ferry::protocol::hex(&md5), md5_hex(&files[i].1));
    }
    for (i, (_, bytes)) in files.iter().enumerate() {
        assert_eq!(md5_file(&srv.root().join(format!("in/f{i}.bin"))), md5_hex(bytes), "file {i}");
    }
    assert_eq!(files_under(srv.root()).len(), 16);
}

#[test]
fn stopping_the_host_ends_an_upload_with_one_failure_and_keeps_only_the_part() {
    let mut srv = uploads_host(true);
    let bytes = random_bytes(2 * 1024 * 1024, 15);
    let mut r = Raw::hello_waiting(srv.addr, RAW_WAIT);
    assert_eq!(r.call(&json!({"op":"put","path":"s.bin","size":bytes.len()})), json!({"ok":true,"offset":0}));
    r.s.write_all(&(bytes.len() as u64).to_be_bytes()).unwrap();
    r.s.write_all(&bytes[..700_000]).unwrap();
    r.s.flush().unwrap();
    let started = wait_for(&srv.events, LONG, |e| matches!(e, ServerEvent::UploadStarted { .. }));
    let ServerEvent::UploadStarted { transfer, .. } = started else { unreachable!() };
    // The host has the bytes sent so far before it is stopped.
    let part = srv.root().join("s.bin.ferry-upload");
    assert!(wait_until(LONG, || std::fs::metadata(&part).is_ok_and(|m| m.len() == 700_000)));
    let rest = srv.stop();
    let ends: Vec<_> = rest
        .iter()
        .filter(|e| {
            matches!(e, ServerEvent::TransferFailed { transfer: t, .. } | ServerEvent::UploadFinished { transfer: t, .. } if *t == transfer)
        })
        .collect();
    assert_eq!(ends.len(), 1, "{rest:?}");
    assert!(
        matches!(ends[0], ServerEvent::TransferFailed { error, .. } if error.contains("server stopped")),
        "{ends:?}"
    );
    assert_eq!(files_under(srv.root()), ["s.bin.ferry-upload", "s.bin.ferry-upload.json"]);
}
