//! The host's digest index: files of a listed folder are hashed in the background and then
//! listed with their MD5; the index outlives the host (a restarted host sends warm at once);
//! a damaged index is rebuilt; a changed file is never listed with its old digest; indexing
//! waits while a file is being sent. Real hosts on 127.0.0.1, real files, real threads.

mod support;

use std::fs;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use ferry::client::{CancelToken, ConnectOptions, Connection, DownloadRequest, Outcome};
use ferry::protocol::message::Entry;
use ferry::server::{IndexProgress, ServerConfig, ServerEvent};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn with_index(dir: &Path) -> impl FnOnce(&mut ServerConfig) {
    let dir = dir.to_path_buf();
    move |c| c.index_dir = Some(dir)
}

fn list(addr: &str, path: &str, opts: &ConnectOptions) -> Vec<Entry> {
    Connection::connect(addr, opts).unwrap().list(path).unwrap().entries
}

fn md5_of<'a>(entries: &'a [Entry], name: &str) -> Option<&'a str> {
    entries.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("{name} listed")).md5.as_deref()
}

/// Waits until the worker says it has nothing left, and returns that report.
fn indexed(srv: &TestServer) -> IndexProgress {
    match wait_for(&srv.events, WAIT, |e| matches!(e, ServerEvent::Indexing(p) if p.idle())) {
        ServerEvent::Indexing(p) => p,
        _ => unreachable!(),
    }
}

#[test]
fn a_listed_folder_is_hashed_in_the_background_and_then_listed_with_md5s() {
    let cache = tempfile::tempdir().unwrap();
    let srv = TestServer::start_with(with_index(cache.path()));
    let a = srv.put("a.bin", random_bytes(3 * 1024 * 1024 + 5, 1));
    let b = srv.put("b.txt", b"hello\n".to_vec());
    let e = srv.put("empty", Vec::new());
    srv.put("sub/deeper.bin", random_bytes(1000, 2));
    let addr = srv.addr_string();
    let opts = ConnectOptions::default();

    let first = list(&addr, "", &opts);
    assert!(first.iter().all(|e| e.md5.is_none()), "nothing is known before the first listing: {first:?}");
    let done = indexed(&srv);
    assert_eq!(done.files_done, 3, "the listed folder's files, not the sub-folder's: {done:?}");
    assert_eq!(done.bytes_done, (a.len() + b.len() + e.len()) as u64);

    let second = list(&addr, "", &opts);
    assert_eq!(md5_of(&second, "a.bin"), Some(md5_hex(&a).as_str()));
    assert_eq!(md5_of(&second, "b.txt"), Some(md5_hex(&b).as_str()));
    assert_eq!(md5_of(&second, "empty"), Some(md5_hex(&e).as_str()));
    assert_eq!(second.iter().find(|e| e.name == "sub").unwrap().md5, None, "folders have none");
    assert_eq!(md5_of(&list(&addr, "sub", &opts), "deeper.bin"), None, "not listed before, not hashed yet");
}

#[test]
fn a_restarted_host_lists_and_sends_an_indexed_file_warm_at_once() {
    let cache = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let big = random_bytes(6 * 1024 * 1024 + 1, 3);
    fs::create_dir(root.path().join("deep")).unwrap();
    fs::write(root.path().join("deep/big.bin"), &big).unwrap();
    let plain = |c: &mut ServerConfig| c.plain = true;
    let opts = ConnectOptions { plain: true, ..Default::default() };

    // First host: the whole folder is indexed once hosting starts, nothing is ever listed.
    let mut first = TestServer::start_at(root.path(), |c| {
        with_index(cache.path())(c);
        plain(c);
        c.index = ferry::server::IndexMode::Whole;
    });
    let done = indexed(&first);
    assert_eq!((done.files_done, done.bytes_done), (1, big.len() as u64), "{done:?}");
    assert_eq!(fs::read_dir(cache.path()).unwrap().count(), 1, "written before it says it is done");
    first.stop();
    let files: Vec<_> = fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 1, "one index file, no temporary left: {files:?}");

    // Second host over the same folder, indexing only what is listed: it knows already.
    let second = TestServer::start_at(root.path(), |c| {
        with_index(cache.path())(c);
        plain(c);
    });
    let addr = second.addr_string();
    assert_eq!(md5_of(&list(&addr, "deep", &opts), "big.bin"), Some(md5_hex(&big).as_str()));
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("big.bin");
    let mut conn = Connection::connect(&addr, &opts).unwrap();
    let req = DownloadRequest { path: "deep/big.bin".into(), dest: dest.clone(), overwrite: false };
    let outcome = conn.download(&req, &CancelToken::new(), &mut |_| {}).unwrap();
    assert!(matches!(outcome, Outcome::Verified { .. }), "{outcome:?}");
    assert_eq!(md5_file(&dest), md5_hex(&big));
    let started = wait_for(&second.events, WAIT, |e| matches!(e, ServerEvent::TransferStarted { .. }));
    assert!(
        matches!(started, ServerEvent::TransferStarted { warm: true, .. }),
        "sent without hashing (sendfile): {started:?}"
    );
}

#[test]
fn a_damaged_index_is_reported_rebuilt_and_never_believed() {
    let cache = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let bytes = random_bytes(100_000, 4);
    fs::write(root.path().join("f.bin"), &bytes).unwrap();
    let opts = ConnectOptions::default();
    let mut first = TestServer::start_at(root.path(), with_index(cache.path()));
    list(&first.addr_string(), "", &opts);
    indexed(&first);
    first.stop();
    let index_file = fs::read_dir(cache.path()).unwrap().next().unwrap().unwrap().path();
    let mut damaged = fs::read(&index_file).unwrap();
    let digest_at = damaged.len() - 24 - 1; // the last byte of the only record's digest
    damaged[digest_at] ^= 0x40;
    fs::write(&index_file, &damaged).unwrap();

    let second = TestServer::start_at(root.path(), with_index(cache.path()));
    let problem = wait_for(&second.events, WAIT, |e| matches!(e, ServerEvent::IndexProblem { .. }));
    assert!(format!("{problem:?}").contains("rebuilding"), "{problem:?}");
    let addr = second.addr_string();
    assert_eq!(md5_of(&list(&addr, "", &opts), "f.bin"), None, "the damaged digest is not believed");
    indexed(&second);
    assert_eq!(md5_of(&list(&addr, "", &opts), "f.bin"), Some(md5_hex(&bytes).as_str()));
}

#[cfg(unix)]
#[test]
fn a_file_changed_after_indexing_is_never_listed_with_its_old_digest() {
    let cache = tempfile::tempdir().unwrap();
    let srv = TestServer::start_with(with_index(cache.path()));
    let old = srv.put("f.bin", random_bytes(50_000, 5));
    let addr = srv.addr_string();
    let opts = ConnectOptions::default();
    list(&addr, "", &opts);
    indexed(&srv);
    assert_eq!(md5_of(&list(&addr, "", &opts), "f.bin"), Some(md5_hex(&old).as_str()));

    // Same size, same modification time set back: the change time still moves.
    let path = srv.root().join("f.bin");
    let before = fs::metadata(&path).unwrap();
    let new = random_bytes(50_000, 6);
    // File times have the kernel's coarse granularity: write until the change time moved.
    assert!(wait_until(WAIT, || {
        fs::write(&path, &new).unwrap();
        let f = fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(before.modified().unwrap()).unwrap();
        use std::os::unix::fs::MetadataExt;
        let after = f.metadata().unwrap();
        (after.ctime(), after.ctime_nsec()) != (before.ctime(), before.ctime_nsec())
    }));
    let listed = list(&addr, "", &opts);
    assert_ne!(md5_of(&listed, "f.bin"), Some(md5_hex(&old).as_str()), "the old digest is gone");
    indexed(&srv);
    assert_eq!(md5_of(&list(&addr, "", &opts), "f.bin"), Some(md5_hex(&new).as_str()));
}

#[test]
fn indexing_waits_while_a_file_is_being_sent() {
    let cache = tempfile::tempdir().unwrap();
    let srv = TestServer::start_with(with_index(cache.path()));
    let big = srv.put("big.bin", random_bytes(32 * 1024 * 1024, 7));
    srv.put("other/x.bin", random_bytes(2 * 1024 * 1024, 8));
    let addr = srv.addr_string();
    let opts = ConnectOptions::default();

    // A download that stops reading after its first bytes, until released.
    let (got_bytes, first_bytes) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("big.bin");
    let downloader = {
        let (addr, opts, dest) = (addr.clone(), opts.clone(), dest.clone());
        thread::spawn(move || {
            let mut conn = Connection::connect(&addr, &opts).unwrap();
            let req = DownloadRequest { path: "big.bin".into(), dest, overwrite: false };
            let mut once = Some((got_bytes, released));
            conn.download(&req, &CancelToken::new(), &mut |p| {
                if p.done > 0
                    && let Some((tx, rx)) = once.take()
                {
                    tx.send(()).unwrap();
                    rx.recv().unwrap();
                }
            })
        })
    };
    first_bytes.recv_timeout(WAIT).expect("the download started");
    assert!(list(&addr, "other", &opts)[0].md5.is_none());
    let seen = collect_until(&srv.events, WAIT, |e| matches!(e, ServerEvent::Indexing(p) if p.paused));
    let hashed: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Indexing(p) => Some(p.bytes_done),
            _ => None,
        })
        .collect();
    assert!(hashed.iter().all(|&b| b == 0), "nothing hashed while the file is sent: {hashed:?}");
    release.send(()).unwrap();
    let outcome = downloader.join().unwrap().unwrap();
    assert!(matches!(outcome, Outcome::Verified { .. }), "{outcome:?}");
    assert_eq!(md5_file(&dest), md5_hex(&big));
    let done = indexed(&srv);
    assert_eq!(done.files_done, 1, "{done:?}");
    assert!(md5_of(&list(&addr, "other", &opts), "x.bin").is_some());
}

#[test]
fn a_destination_that_already_has_the_listed_md5_is_identical_and_nothing_is_sent() {
    let cache = tempfile::tempdir().unwrap();
    let srv = TestServer::start_with(with_index(cache.path()));
    let bytes = srv.put("sub/f.bin", random_bytes(3 * 1024 * 1024, 9));
    let addr = srv.addr_string();
    let opts = ConnectOptions::default();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("f.bin");
    let get = |overwrite: bool| {
        let mut conn = Connection::connect(&addr, &opts).unwrap();
        let req = DownloadRequest { path: "sub/f.bin".into(), dest: dest.clone(), overwrite };
        conn.download(&req, &CancelToken::new(), &mut |_| {})
    };

    // Before the host knows the digest, an existing file is simply not replaced.
    fs::write(&dest, &bytes).unwrap();
    assert!(matches!(get(false), Err(ferry::client::ClientError::Exists(_))));
    list(&addr, "sub", &opts);
    indexed(&srv);

    let outcome = get(false).unwrap();
    match &outcome {
        Outcome::Identical { md5, dest: d, size } => {
            assert_eq!(ferry::protocol::hex(md5), md5_hex(&bytes));
            assert_eq!((d, *size), (&dest, bytes.len() as u64));
        }
        other => panic!("expected identical, got {other:?}"),
    }
    // Same size, other bytes: not identical, and still not replaced.
    let mut other = bytes.clone();
    other[12345] ^= 1;
    fs::write(&dest, &other).unwrap();
    assert!(matches!(get(false), Err(ferry::client::ClientError::Exists(_))));
    assert_eq!(fs::read(&dest).unwrap(), other, "left untouched");
    // Asked to replace: downloaded whatever the digest says.
    fs::write(&dest, &bytes).unwrap();
    assert!(matches!(get(true).unwrap(), Outcome::Verified { .. }));
    let seen = srv.events.try_iter().collect::<Vec<_>>();
    let sent = seen.iter().filter(|e| matches!(e, ServerEvent::TransferStarted { .. })).count();
    assert_eq!(sent, 1, "only the forced download moved bytes: {seen:?}");
}

#[test]
fn with_indexing_off_a_file_is_hashed_when_first_sent_and_nothing_is_kept() {
    let cache = tempfile::tempdir().unwrap();
    let srv = TestServer::start_with(|c| {
        with_index(cache.path())(c);
        c.index = ferry::server::IndexMode::Off;
    });
    let bytes = srv.put("f.bin", random_bytes(2 * 1024 * 1024, 10));
    let addr = srv.addr_string();
    let opts = ConnectOptions::default();
    assert_eq!(md5_of(&list(&addr, "", &opts), "f.bin"), None);
    let out = tempfile::tempdir().unwrap();
    let mut conn = Connection::connect(&addr, &opts).unwrap();
    for (n, warm) in [(1, false), (2, true)] {
        let req = DownloadRequest { path: "f.bin".into(), dest: out.path().join(format!("{n}")), overwrite: false };
        assert!(matches!(conn.download(&req, &CancelToken::new(), &mut |_| {}).unwrap(), Outcome::Verified { .. }));
        let started = wait_for(&srv.events, WAIT, |e| matches!(e, ServerEvent::TransferStarted { .. }));
        assert!(matches!(started, ServerEvent::TransferStarted { warm: w, .. } if w == warm), "{started:?}");
    }
    assert_eq!(md5_of(&list(&addr, "", &opts), "f.bin"), Some(md5_hex(&bytes).as_str()), "learned by sending it");
    let seen: Vec<_> = srv.events.try_iter().collect();
    assert!(!seen.iter().any(|e| matches!(e, ServerEvent::Indexing(_))), "nothing hashed ahead: {seen:?}");
    drop(srv);
    assert_eq!(fs::read_dir(cache.path()).unwrap().count(), 0, "nothing kept on disk");
}
