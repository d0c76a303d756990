//! Load: 64 clients listing and downloading in a loop against the real `ferry serve` process,
//! every download verified; afterwards the server's descriptors and threads return to idle.
//!
//! 30 seconds by default; set `FERRY_SOAK_SECS` for a longer run.
//!
//! Linux only: it counts the server's descriptors and threads in /proc and stops it with SIGINT.
#![cfg(target_os = "linux")]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ferry::client::{CancelToken, ConnectOptions, Connection, DownloadRequest, Outcome};
use ferry::protocol::hex;
use support::*;

const CLIENTS: usize = 64;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
}

/// The server's threads serving a connection (named `ferry-conn-N`) that are still alive.
fn connection_threads(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("ferry-conn"))
        .count()
}

#[test]
fn sixty_four_clients_in_a_loop_then_back_to_idle() {
    let secs: u64 = std::env::var("FERRY_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let share = tempfile::tempdir().unwrap();
    let mut files: HashMap<String, String> = HashMap::new();
    for i in 0..24u64 {
        let size = [0usize, 1, 4096, 100_000, 300_000, 1_100_000, 2_500_000][i as usize % 7];
        let rel = format!("{}/f{i}.bin", ["a", "b", "c/d"][i as usize % 3]);
        let bytes = random_bytes(size, 500 + i);
        let p = share.path().join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &bytes).unwrap();
        files.insert(rel, md5_hex(&bytes));
    }
    let files: Arc<Vec<(String, String)>> = Arc::new(files.into_iter().collect());

    // Its log is read as it comes (on a thread), so the server never blocks on a full pipe.
    // All 64 clients come from this one machine: lift the per-address cap to the client cap.
    let mut server = ServeProcess::start(share.path(), &["--max-per-address", "64"]);
    let (pid, addr) = (server.pid(), server.addr.clone());
    // The host indexes its folder first and then holds its index file open: part of idle.
    server.stdout.wait_for(Duration::from_secs(30), |l| l.contains(" indexed "));
    // Idle means after a client has come and gone: anything the server starts lazily has
    // started, and the connection's socket and thread are gone again (the thread reports the
    // disconnection just before it ends, so wait for the thread itself too).
    Connection::connect(&addr, &ConnectOptions::default()).unwrap().list("").unwrap();
    server.stdout.wait_for(Duration::from_secs(10), |l| l.contains("disconnected"));
    assert!(wait_until(Duration::from_secs(10), || connection_threads(pid) == 0), "the first client's thread ended");
    let idle_fds = open_fds(pid);
    let idle_threads = threads(pid);

    let out = Arc::new(tempfile::tempdir().unwrap());
    let verified = Arc::new(AtomicU64::new(0));
    let listed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (addr, files, out, verified, listed) =
                (addr.clone(), files.clone(), out.clone(), verified.clone(), listed.clone());
            thread::spawn(move || {
                let mut conn = Connection::connect(&addr, &ConnectOptions::default())
                    .unwrap_or_else(|e| panic!("client {c} could not connect: {e}"));
                let dest = out.path().join(format!("client-{c}.bin"));
                let mut i = c;
                while Instant::now() < deadline {
                    let folder = ["", "a", "b", "c", "c/d"][i % 5];
                    assert!(conn.list(folder).is_ok(), "client {c} list {folder}");
                    listed.fetch_add(1, Ordering::Relaxed);
                    let (path, want) = &files[i % files.len()];
                    let req = DownloadRequest { path: path.clone(), dest: dest.clone(), overwrite: true };
                    match conn.download(&req, &CancelToken::new(), &mut |_| {}) {
                        Ok(Outcome::Verified { md5, .. }) => assert_eq!(&hex(&md5), want, "client {c} {path}"),
                        other => panic!("client {c} {path}: {other:?}"),
                    }
                    assert_eq!(&md5_file(&dest), want);
                    verified.fetch_add(1, Ordering::Relaxed);
                    i += 7;
                }
            })
        })
        .collect();
    // Wait (bounded) until every client has its own server thread.
    let mut busy_threads = threads(pid);
    let all_served = wait_until(Duration::from_secs(10), || {
        busy_threads = threads(pid);
        busy_threads >= idle_threads + CLIENTS
    });
    for (c, h) in clients.into_iter().enumerate() {
        h.join().unwrap_or_else(|_| panic!("client {c} failed"));
    }
    let n = verified.load(Ordering::Relaxed);
    eprintln!("soak: {secs} s, {CLIENTS} clients, {n} verified downloads, {} listings", listed.load(Ordering::Relaxed));
    assert!(n >= CLIENTS as u64, "every client completed at least one verified download");
    assert!(all_served, "one thread per client while busy ({busy_threads}, idle {idle_threads})");

    // Every client has hung up: the server returns to its idle descriptors and threads.
    let (mut fds, mut ths) = (0, 0);
    let settled = wait_until(Duration::from_secs(10), || {
        (fds, ths) = (open_fds(pid), threads(pid));
        fds <= idle_fds && ths <= idle_threads
    });
    let (status, _) = server.interrupt_and_wait();
    assert!(settled, "{fds} descriptors (idle {idle_fds}) and {ths} threads (idle {idle_threads}) after 10 s");
    assert_eq!(fds, idle_fds, "open descriptors back to idle");
    assert_eq!(ths, idle_threads, "threads back to idle");
    assert!(status.success());
}
