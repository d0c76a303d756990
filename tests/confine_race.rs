//! The confinement race of issue 8 (item 4), over a real socket: while a thread swaps the
//! folder `dir` inside the hosted folder with a symbolic link to an outside folder (holding a
//! file of the same name), a client keeps asking for `dir/marker` and listing `dir`. The
//! outside file's content, and the outside folder's listing, never come back.
#![cfg(unix)]

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ferry::protocol::frame;
use serde_json::{Value, json};
use support::*;

const OUTSIDE: &[u8] = b"OUTSIDE-MARKER-MUST-NEVER-BE-SERVED";
const INSIDE: &[u8] = b"inside";

fn call(s: &mut TcpStream, v: &Value) -> Value {
    let mut wire = Vec::new();
    frame::write_control(&mut wire, v).unwrap();
    std::io::Write::write_all(s, &wire).unwrap();
    let payload = frame::read_frame(s, frame::MAX_RESPONSE_LEN).unwrap();
    assert!(!payload.windows(OUTSIDE.len()).any(|w| w == OUTSIDE), "outside bytes in a reply");
    serde_json::from_slice(&payload).unwrap()
}

/// Swaps the two names in one step where the system can (so `dir` always exists and every
/// request meets one or the other), else in two renames.
fn swap(a: &Path, b: &Path) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        if renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).is_ok() {
            return;
        }
    }
    let tmp = a.with_extension("swap");
    std::fs::rename(a, &tmp).unwrap();
    std::fs::rename(b, a).unwrap();
    std::fs::rename(&tmp, b).unwrap();
}

#[test]
fn swapping_a_folder_for_an_outside_link_never_serves_the_outside_file() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("marker"), OUTSIDE).unwrap();
    std::fs::write(outside.path().join("only-outside.txt"), OUTSIDE).unwrap();

    // Raw frames in the clear: a plain host (the same resolution runs inside TLS).
    let srv = TestServer::start_plain();
    let root = srv.root().to_path_buf();
    srv.put("dir/marker", INSIDE.to_vec());
    symlink(outside.path(), root.join("evil")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let (dir, evil) = (root.join("dir"), root.join("evil"));
        thread::Builder::new()
            .name("swapper".into())
            .spawn(move || {
                let mut swaps = 0u64;
                while !stop.load(Ordering::Relaxed) && swaps < 2_000_000 {
                    swap(&dir, &evil);
                    swaps += 1;
                }
                swaps
            })
            .unwrap()
    };

    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(call(&mut s, &json!({"op":"hello","version":1,"client":"race"}))["ok"], true);
    let deadline = Instant::now() + Duration::from_secs(8);
    let (mut served, mut refused, mut listed, mut requests) = (0u32, 0u32, 0u32, 0u32);
    while requests < 20_000 && Instant::now() < deadline {
        requests += 1;
        let v = call(&mut s, &json!({"op":"get","path":"dir/marker","offset":0}));
        if v["ok"] == true {
            let n = frame::read_header(&mut s).unwrap();
            let mut bytes = vec![0u8; n as usize + 16];
            s.read_exact(&mut bytes).unwrap();
            assert_eq!(
                &bytes[..n as usize],
                INSIDE,
                "request {requests} served the outside file through the swapped folder"
            );
            served += 1;
        } else {
            assert_eq!(v["error"], "forbidden", "request {requests}: {v}");
            refused += 1;
        }
        let v = call(&mut s, &json!({"op":"list","path":"dir"}));
        if v["ok"] == true {
            let names: Vec<&str> =
                v["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
            assert_eq!(names, ["marker"], "request {requests} listed the outside folder");
            listed += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    // The race really ran: many swaps, and requests met both the folder and the link.
    assert!(swaps >= 1000, "only {swaps} swaps");
    assert!(served > 0 && refused > 0 && listed > 0, "{served} served, {refused} refused, {listed} listed");
    eprintln!("{requests} requests, {swaps} swaps: {served} served, {refused} refused, {listed} listed");
}
