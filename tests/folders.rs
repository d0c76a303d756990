//! Whole folders and many files in one job (`ferry get -r`, `Connection::download_tree`):
//! every file verified through the single-file path, pipelined over one connection, empty
//! folders kept, files already there skipped, a partial one resumed, hostile names refused,
//! the walk bounded.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::thread;
use std::time::Duration;

use ferry::client::jobs::{EventKind, Jobs};
use ferry::client::{
    CancelToken, ClientError, ConnectOptions, Connection, FileResult, PartialRecord, TreeLimits, TreeRequest, part_path,
};
use ferry::protocol::frame;
use ferry::server::ServerEvent;
use serde_json::{Value, json};
use support::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A nested tree under `root/album`: small and larger files, a non-ASCII name, a name with
/// spaces, an empty folder and a folder holding only an empty folder. Returns each file's
/// path relative to `root` and its bytes.
fn album(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut put = |rel: &str, bytes: Vec<u8>| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &bytes).unwrap();
        files.insert(rel.to_string(), bytes);
    };
    for i in 0..40u64 {
        put(&format!("album/small/{i:03}.txt"), random_bytes(100 + i as usize * 37, i));
    }
    put("album/Größe ünïcödé.bin", random_bytes(70_000, 100));
    put("album/deep/er/still deeper/big.bin", random_bytes(3 * 1024 * 1024 + 3, 101));
    put("album/empty-file", Vec::new());
    std::fs::create_dir_all(root.join("album/nothing here")).unwrap();
    std::fs::create_dir_all(root.join("album/only/an empty one")).unwrap();
    files
}

/// The md5sum lines for `files`, sorted by path bytes.
fn manifest(files: &BTreeMap<String, Vec<u8>>) -> String {
    files.iter().map(|(rel, bytes)| format!("{}  {rel}\n", md5_hex(bytes))).collect()
}

/// Every path under `dir` (relative, `/`-separated) that is not a folder.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/");
            if e.file_type().unwrap().is_dir() {
                walk(base, &e.path(), out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn get_r_downloads_a_nested_tree_with_empty_folders_and_prints_the_manifest() {
    let server = TestServer::start();
    let files = album(server.root());
    let here = tempfile::tempdir().unwrap();
    let out = ferry(&["get", "-r", &server.addr_string(), "album", "-o", "copy", "--manifest"], here.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let expected = manifest(&files);
    assert_eq!(text(&out.stdout), expected);
    let copy = here.path().join("copy");
    assert_eq!(std::fs::read_to_string(copy.join("MD5SUMS")).unwrap(), expected);
    for (rel, bytes) in &files {
        assert_eq!(&std::fs::read(copy.join(rel)).unwrap(), bytes, "{rel}");
    }
    assert!(copy.join("album/nothing here").is_dir());
    assert!(copy.join("album/only/an empty one").is_dir());
    let mut on_disk = files_under(&copy);
    on_disk.retain(|p| p != "MD5SUMS");
    assert_eq!(on_disk, files.keys().cloned().collect::<Vec<_>>(), "no partial files or records left");
    let err = text(&out.stderr);
    let fingerprint = md5_hex(expected.as_bytes());
    assert!(err.contains(&format!("{} files, all MD5 verified", files.len())), "{err}");
    assert!(err.contains(&fingerprint), "the folder fingerprint is MD5 of the manifest: {err}");
    // The host heard the client's verdict for every file.
    let confirmed = collect_until(&server.events, Duration::from_secs(10), {
        let mut n = 0;
        move |e| {
            if matches!(e, ServerEvent::TransferConfirmed { ok: true, .. }) {
                n += 1;
            }
            n == files.len()
        }
    });
    assert!(!confirmed.iter().any(|e| matches!(e, ServerEvent::TransferConfirmed { ok: false, .. })));
}

#[test]
fn get_r_of_several_paths_and_the_whole_folder() {
    let server = TestServer::start();
    let files = album(server.root());
    server.put("top.txt", b"at the top".to_vec());
    let here = tempfile::tempdir().unwrap();
    let addr = server.addr_string();
    let out = ferry(&["get", "-r", &addr, "top.txt", "album/deep"], here.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let big = &files["album/deep/er/still deeper/big.bin"];
    assert_eq!(
        text(&out.stdout),
        format!("{}  deep/er/still deeper/big.bin\n{}  top.txt\n", md5_hex(big), md5_hex(b"at the top"))
    );
    // "" is the hosted folder itself, saved under its name.
    let out = ferry(&["get", "-r", &addr, "", "-o", "all"], here.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let name = server.root().file_name().unwrap().to_str().unwrap().to_string();
    let lines = text(&out.stdout);
    assert_eq!(lines.lines().count(), files.len() + 1, "{lines}");
    assert!(lines.contains(&format!("{}  {name}/top.txt\n", md5_hex(b"at the top"))), "{lines}");
    // Several paths without -r: refused before connecting.
    let out = ferry(&["get", &addr, "top.txt", "album/empty-file"], here.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("-r"), "{}", text(&out.stderr));
}

#[test]
fn a_byte_flipping_relay_gives_exit_2_and_nothing_unverified_under_final_names() {
    let share = tempfile::tempdir().unwrap();
    let big = random_bytes(2 * 1024 * 1024, 7);
    std::fs::create_dir_all(share.path().join("set/a")).unwrap();
    std::fs::write(share.path().join("set/a/big.bin"), &big).unwrap();
    std::fs::write(share.path().join("set/a/zz small.txt"), b"small and fine").unwrap();
    // Plain on both sides: inside TLS a flipped byte never reaches the MD5 (tests/tls.rs).
    let serve = ServeProcess::start(share.path(), &["--plain"]);
    // Past the listings, inside big.bin's bytes (the first file fetched).
    let relay = Relay::start(serve.addr.parse().unwrap(), Tamper::FlipByteAt(1_000_000));
    let here = tempfile::tempdir().unwrap();
    let out = ferry(&["get", "-r", "--plain", &relay.addr.to_string(), "set"], here.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("MISMATCH") && err.contains("set/a/big.bin"), "{err}");
    assert!(err.contains(&md5_hex(&big)), "the host's digest is shown: {err}");
    // Only the verified file is in the manifest and on disk.
    assert_eq!(text(&out.stdout), format!("{}  set/a/zz small.txt\n", md5_hex(b"small and fine")));
    assert_eq!(files_under(here.path()), ["set/a/zz small.txt"]);
}

#[test]
fn a_second_run_skips_verified_files_and_resumes_a_partial_one() {
    let server = TestServer::start();
    let files = album(server.root());
    let here = tempfile::tempdir().unwrap();
    let addr = server.addr_string();
    let out = ferry(&["get", "-r", &addr, "album"], here.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // One file gone, and the big one replaced by ferry's own partial download of its first half.
    let big_rel = "album/deep/er/still deeper/big.bin";
    let big = &files[big_rel];
    let big_local = here.path().join(big_rel);
    std::fs::remove_file(&big_local).unwrap();
    PartialRecord::new(addr.clone(), "x", big_rel).save(&big_local).unwrap();
    std::fs::write(part_path(&big_local), &big[..big.len() / 2]).unwrap();
    std::fs::remove_file(here.path().join("album/small/007.txt")).unwrap();
    let _ = server.events.try_iter().count();

    let out = ferry(&["get", "-r", &addr, "album"], here.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), manifest(&files));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("({} already there, 1 resumed)", files.len() - 2)), "{err}");
    assert_eq!(&std::fs::read(&big_local).unwrap(), big);
    assert!(!part_path(&big_local).exists());
    // The host sent the big file from its middle, and nothing of the files already there
    // (skipped without a request when the listing carries their MD5, else asked for from
    // their end, so only their trailer comes).
    let events: Vec<ServerEvent> = collect_until(&server.events, Duration::from_secs(10), {
        let mut fetched = 0;
        move |e| {
            if let ServerEvent::TransferConfirmed { path, ok: true, .. } = e
                && (path == big_rel || path == "album/small/007.txt")
            {
                fetched += 1;
            }
            fetched == 2
        }
    });
    let started: Vec<(String, u64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::TransferStarted { path, size, offset, .. } => Some((path.clone(), *size, *offset)),
            _ => None,
        })
        .collect();
    for (path, size, offset) in &started {
        match path.as_str() {
            p if p == big_rel => assert_eq!(*offset, *size / 2, "{started:?}"),
            "album/small/007.txt" => assert_eq!(*offset, 0),
            _ => assert_eq!(offset, size, "checked in place, no bytes sent: {path}"),
        }
    }
}

#[test]
fn an_existing_different_file_is_left_alone_and_reported() {
    let server = TestServer::start();
    server.put("d/a.txt", b"the host's".to_vec());
    server.put("d/b.txt", b"bbbb".to_vec());
    let here = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(here.path().join("d")).unwrap();
    std::fs::write(here.path().join("d/a.txt"), b"mine, same size").unwrap();
    std::fs::write(here.path().join("d/b.txt"), b"mine").unwrap();
    let out = ferry(&["get", "-r", &server.addr_string(), "d"], here.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("d/a.txt") && err.contains("d/b.txt") && err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(here.path().join("d/a.txt")).unwrap(), b"mine, same size");
    assert_eq!(std::fs::read(here.path().join("d/b.txt")).unwrap(), b"mine");
    let out = ferry(&["get", "-r", "--force", &server.addr_string(), "d"], here.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(here.path().join("d/a.txt")).unwrap(), b"the host's");
    assert_eq!(std::fs::read(here.path().join("d/b.txt")).unwrap(), b"bbbb");
}

/// A fake plain (version 1) host whose listings are `tree` (path -> entries) and whose files
/// are `files` (path -> bytes); it answers requests in order, pipelined or not.
fn fake_host(name: &'static str, tree: BTreeMap<String, Value>, files: BTreeMap<String, Vec<u8>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let send = |s: &mut std::net::TcpStream, v: Value| {
                let mut out = Vec::new();
                frame::write_control(&mut out, &v).unwrap();
                s.write_all(&out).is_ok()
            };
            if frame::read_frame(&mut s, frame::MAX_REQUEST_LEN).is_err()
                || !send(&mut s, json!({"ok":true,"version":1,"server":"fake","name":name}))
            {
                continue;
            }
            while let Ok(req) = frame::read_frame(&mut s, frame::MAX_REQUEST_LEN) {
                let req: Value = serde_json::from_slice(&req).unwrap();
                let path = req["path"].as_str().unwrap_or("").to_string();
                let ok = match req["op"].as_str() {
                    Some("list") => match tree.get(&path) {
                        Some(entries) => send(&mut s, json!({"ok":true,"path":path,"entries":entries})),
                        None => send(&mut s, json!({"ok":false,"error":"not_found","message":"no"})),
                    },
                    Some("get") => match files.get(&path) {
                        Some(bytes) => {
                            let mut out = Vec::new();
                            frame::write_control(&mut out, &json!({"ok":true,"size":bytes.len(),"offset":0})).unwrap();
                            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
                            out.extend_from_slice(bytes);
                            out.extend_from_slice(&md5::Md5::digest(bytes));
                            s.write_all(&out).is_ok()
                        }
                        None => send(&mut s, json!({"ok":false,"error":"not_found","message":"no"})),
                    },
                    _ => send(&mut s, json!({"ok":true})),
                };
                if !ok {
                    break;
                }
            }
        }
    });
    addr
}

use md5::Digest;

#[test]
fn hostile_names_from_a_fake_host_are_refused_and_nothing_lands_outside() {
    let file = |name: &str| json!({"name":name,"kind":"file","size":4});
    let dir = |name: &str| json!({"name":name,"kind":"dir"});
    let mut tree = BTreeMap::new();
    tree.insert(String::new(), json!([dir("d"), file("top.txt")]));
    tree.insert(
        "d".to_string(),
        json!([
            dir(".."),
            dir("x/../../y"),
            file("../escape.txt"),
            file("a\\b.txt"),
            file(""),
            file("ctl\u{1b}[2J.txt"),
            file("ok.txt"),
            file("ok.txt"),
            file("/etc/passwd")
        ]),
    );
    tree.insert("d/..".to_string(), json!([file("up.txt")]));
    let mut files = BTreeMap::new();
    files.insert("d/ok.txt".to_string(), b"fine".to_vec());
    files.insert("top.txt".to_string(), b"top!".to_vec());
    for bad in ["d/../escape.txt", "d/..", "d/a\\b.txt", "d//etc/passwd"] {
        files.insert(bad.to_string(), b"evil".to_vec());
    }
    let addr = fake_host("../../etc", tree, files).to_string();
    let outer = tempfile::tempdir().unwrap();
    let here = outer.path().join("here");
    std::fs::create_dir(&here).unwrap();
    let out = ferry(&["get", "-r", "--plain", &addr, "d"], &here);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}  d/ok.txt\n", md5_hex(b"fine")));
    let err = text(&out.stderr);
    assert!(err.contains("cannot be a file name"), "{err}");
    assert!(err.contains("listed this name twice"), "{err}");
    assert!(!err.contains('\u{1b}'), "control characters from the host are escaped: {err:?}");
    assert_eq!(files_under(outer.path()), ["here/d/ok.txt"]);
    // The hosted folder's own name is held to the same rules.
    let out = ferry(&["get", "-r", "--plain", &addr, ""], &here);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot be a file name"), "{}", text(&out.stderr));
    assert_eq!(files_under(outer.path()), ["here/d/ok.txt"]);
}

#[test]
fn the_walk_is_bounded_in_entries_and_depth() {
    let server = TestServer::start();
    for i in 0..30 {
        server.put(&format!("many/{i}.txt"), vec![b'x'; 3]);
    }
    let mut deep = String::from("deep");
    for i in 0..10 {
        deep.push_str(&format!("/{i}"));
    }
    server.put(&format!("{deep}/leaf.txt"), b"leaf".to_vec());
    let out = tempfile::tempdir().unwrap();
    let mut conn = Connection::connect(&server.addr_string(), &ConnectOptions::default()).unwrap();
    let limits = TreeLimits { max_entries: 20, ..TreeLimits::default() };
    let req = TreeRequest { paths: vec!["many".into()], dest: out.path().into(), overwrite: false, limits, only: None };
    let err = conn.download_tree(&req, &CancelToken::new(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, ClientError::TreeTooLarge(_)), "{err:?}");
    assert!(err.to_string().contains("more than 20"), "{err}");
    assert!(files_under(out.path()).is_empty(), "nothing fetched before the walk is done");

    let mut conn = Connection::connect(&server.addr_string(), &ConnectOptions::default()).unwrap();
    let limits = TreeLimits { max_depth: 5, ..TreeLimits::default() };
    let req = TreeRequest { paths: vec!["deep".into()], dest: out.path().into(), overwrite: false, limits, only: None };
    let err = conn.download_tree(&req, &CancelToken::new(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("more than 5 levels"), "{err}");

    // Within the limits, the same connection-level call fetches it all (10 levels, 1 file).
    let mut conn = Connection::connect(&server.addr_string(), &ConnectOptions::default()).unwrap();
    let limits = TreeLimits { max_depth: 10, in_flight: 1, ..TreeLimits::default() };
    let req = TreeRequest { paths: vec!["deep".into()], dest: out.path().into(), overwrite: false, limits, only: None };
    let summary = conn.download_tree(&req, &CancelToken::new(), &mut |_| {}).unwrap();
    assert!(summary.all_verified(), "{summary:?}");
    assert_eq!(summary.manifest.text(), format!("{}  {deep}/leaf.txt\n", md5_hex(b"leaf")));
    assert_eq!(summary.folders, 11);
}

#[test]
fn a_folder_job_reports_progress_and_each_file_then_one_terminal_event() {
    let server = TestServer::start();
    let files = album(server.root());
    let out = tempfile::tempdir().unwrap();
    let (jobs, events) = Jobs::new(None);
    let req = TreeRequest {
        paths: vec!["album".into()],
        dest: out.path().into(),
        overwrite: false,
        limits: TreeLimits::default(),
        only: None,
    };
    let job = jobs.download_tree(&server.addr_string(), &ConnectOptions::default(), req);
    let seen = collect_until(&events, Duration::from_secs(30), |e| e.kind.is_terminal());
    job.join();
    assert!(events.recv_timeout(Duration::from_millis(200)).is_err(), "nothing after the terminal event");
    let planned = seen.iter().find_map(|e| match e.kind {
        EventKind::TreePlanned { files, bytes, .. } => Some((files, bytes)),
        _ => None,
    });
    let total: usize = files.values().map(Vec::len).sum();
    assert_eq!(planned, Some((files.len() as u64, total as u64)));
    let verified = seen
        .iter()
        .flat_map(|e| match &e.kind {
            EventKind::TreeFiles(files) => files.iter().collect(),
            _ => Vec::new(),
        })
        .filter(|r| matches!(r.result, FileResult::Verified { .. }))
        .count();
    assert_eq!(verified, files.len());
    let last_progress = seen.iter().rev().find_map(|e| match e.kind {
        EventKind::TreeProgress { files_done, files_total, done, total, .. } => {
            Some((files_done, files_total, done, total))
        }
        _ => None,
    });
    assert_eq!(last_progress, Some((files.len() as u64, files.len() as u64, total as u64, total as u64)));
    match &seen.last().unwrap().kind {
        EventKind::TreeFinished(s) => {
            assert!(s.all_verified());
            assert_eq!(s.manifest.text(), manifest(&files));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn cancelling_a_folder_job_ends_it_with_one_cancelled_event_and_keeps_the_partial_file() {
    let share = tempfile::tempdir().unwrap();
    std::fs::create_dir(share.path().join("f")).unwrap();
    std::fs::write(share.path().join("f/big.bin"), random_bytes(4 * 1024 * 1024, 3)).unwrap();
    let serve = ServeProcess::start(share.path(), &["--plain"]);
    let relay = Relay::start(serve.addr.parse().unwrap(), Tamper::StallAfter(1024 * 1024));
    let out = tempfile::tempdir().unwrap();
    let (jobs, events) = Jobs::new(None);
    let req = TreeRequest {
        paths: vec!["f".into()],
        dest: out.path().into(),
        overwrite: false,
        limits: TreeLimits::default(),
        only: None,
    };
    let opts = ConnectOptions { plain: true, ..Default::default() };
    let job = jobs.download_tree(&relay.addr.to_string(), &opts, req);
    // Wait until bytes of the file are on disk, then cancel while the host is stalled.
    let part = part_path(&out.path().join("f/big.bin"));
    let on_disk = || std::fs::metadata(&part).map_or(0, |m| m.len());
    assert!(wait_until(Duration::from_secs(10), || on_disk() > 0), "no bytes arrived");
    job.cancel();
    let seen = collect_until(&events, Duration::from_secs(10), |e| e.kind.is_terminal());
    assert!(matches!(seen.last().unwrap().kind, EventKind::Cancelled { .. }), "{seen:?}");
    job.join();
    assert!(events.recv_timeout(Duration::from_millis(200)).is_err());
    assert!(on_disk() > 0, "kept for a resume");
    assert!(!out.path().join("f/big.bin").exists());
    relay.release();
}

#[test]
fn many_files_with_long_names_fill_the_request_bound_and_all_arrive() {
    // 224-byte names (the longest that leave room for ferry's partial-file suffixes): 256 gets
    // and their verdicts are far more than the bytes the client lets itself send ahead, so the
    // bound, not the count, paces the pipeline.
    let server = TestServer::start();
    let mut files = BTreeMap::new();
    for i in 0..600u64 {
        let name = format!("{i:04}{}", "n".repeat(220));
        let rel = format!("long/{name}");
        let bytes = server.put(&rel, random_bytes(i as usize % 300, i));
        files.insert(rel, bytes);
    }
    let out = tempfile::tempdir().unwrap();
    // The host's events are read as they come (a front that keeps up hears every verdict).
    let (events, expected) = (server.events.clone(), files.len());
    let counter = thread::spawn(move || {
        let mut confirmed = 0;
        while confirmed < expected {
            match events.recv_timeout(Duration::from_secs(20)) {
                Ok(ServerEvent::TransferConfirmed { ok: true, .. }) => confirmed += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        confirmed
    });
    let mut conn = Connection::connect(&server.addr_string(), &ConnectOptions::default()).unwrap();
    let req = TreeRequest {
        paths: vec!["long".into()],
        dest: out.path().into(),
        overwrite: false,
        limits: TreeLimits::default(),
        only: None,
    };
    let summary = conn.download_tree(&req, &CancelToken::new(), &mut |_| {}).unwrap();
    assert!(summary.all_verified(), "{} problems, the first: {:?}", summary.problems.len(), summary.problems.first());
    assert_eq!(summary.manifest.text(), manifest(&files));
    drop(conn);
    assert_eq!(counter.join().unwrap(), files.len(), "the host heard every verdict");
}

#[test]
fn a_host_with_a_pin_serves_a_folder_once_the_pin_exchange_is_done() {
    // The first listings go out behind hello only when no PIN exchange comes between.
    for plain in [false, true] {
        let server = TestServer::start_with(|c| {
            c.pin = Some("314159".into());
            c.plain = plain;
        });
        let files = album(server.root());
        let here = tempfile::tempdir().unwrap();
        let addr = server.addr_string();
        let mut args = vec!["get", "-r", &addr, "album", "--pin", "314159"];
        if plain {
            args.push("--plain");
        }
        let out = ferry(&args, here.path());
        assert_eq!(out.status.code(), Some(0), "plain={plain}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), manifest(&files));
        args[5] = "000000";
        let out = ferry(&args, tempfile::tempdir().unwrap().path());
        assert_eq!(out.status.code(), Some(1), "plain={plain}: {}", text(&out.stderr));
        assert!(text(&out.stderr).to_lowercase().contains("pin"), "{}", text(&out.stderr));
    }
}

#[test]
fn a_retry_of_the_problems_alone_looks_at_nothing_else_and_completes_the_manifest() {
    let server = TestServer::start();
    let files = album(server.root());
    let out = tempfile::tempdir().unwrap();
    let here = |rel: &str| out.path().join(rel);
    // Two things of the person's own where files of the album go: a file and a folder.
    std::fs::create_dir_all(here("album/small")).unwrap();
    std::fs::write(here("album/small/007.txt"), b"mine").unwrap();
    std::fs::create_dir_all(here("album/deep/er/still deeper/big.bin")).unwrap();
    let req = |only: Option<BTreeSet<String>>| TreeRequest {
        paths: vec!["album".into()],
        dest: out.path().into(),
        overwrite: false,
        limits: TreeLimits::default(),
        only,
    };
    let mut conn = Connection::connect(&server.addr_string(), &ConnectOptions::default()).unwrap();
    let first = conn.download_tree(&req(None), &CancelToken::new(), &mut |_| {}).unwrap();
    let problems: BTreeSet<String> = first.problems.iter().map(|p| p.rel.clone()).collect();
    assert_eq!(problems.iter().collect::<Vec<_>>(), ["album/deep/er/still deeper/big.bin", "album/small/007.txt"]);
    assert_eq!(first.manifest.len(), files.len() - 2);

    // The person moves their things away, and changes a file that was verified (same size):
    // the retry must neither check it nor report it, and touch nothing outside its paths.
    std::fs::remove_file(here("album/small/007.txt")).unwrap();
    std::fs::remove_dir(here("album/deep/er/still deeper/big.bin")).unwrap();
    let changed = here("album/small/003.txt");
    let mut mine = std::fs::read(&changed).unwrap();
    mine[0] ^= 0xff;
    std::fs::write(&changed, &mine).unwrap();
    std::fs::remove_dir(here("album/nothing here")).unwrap();

    let mut planned = None;
    let retry = conn
        .download_tree(&req(Some(problems.clone())), &CancelToken::new(), &mut |u| {
            if let ferry::client::TreeUpdate::Planned { files, .. } = u {
                planned = Some(files);
            }
        })
        .unwrap();
    assert_eq!(planned, Some(2), "only the two problems are planned");
    assert!(retry.problems.is_empty(), "{:?}", retry.problems);
    assert_eq!(retry.manifest.len(), 2);
    assert_eq!(std::fs::read(here("album/small/007.txt")).unwrap(), files["album/small/007.txt"]);
    assert_eq!(std::fs::read(&changed).unwrap(), mine, "a file outside the retry is left as it is");
    assert!(!here("album/nothing here").exists(), "folders off the way are not walked");
    let merged = retry.after_retry(&first.manifest, &problems);
    assert_eq!(merged.manifest.text(), manifest(&files), "the manifest of the whole folder");

    // A folder as the retry's path: everything in it.
    std::fs::remove_dir_all(here("album/small")).unwrap();
    let only = BTreeSet::from(["album/small".to_string()]);
    let again = conn.download_tree(&req(Some(only)), &CancelToken::new(), &mut |_| {}).unwrap();
    assert_eq!(again.manifest.len(), 40);
    assert!(again.problems.is_empty());
}
