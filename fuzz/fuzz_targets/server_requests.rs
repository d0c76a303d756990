//! Fuzzes the server's request handling: each input is sent over a real TCP connection to one
//! long-lived server hosting a fixture folder (with links out, a link loop and a FIFO), and
//! everything that comes back is checked against the contract:
//! - every reply is a frame within the client's limit, holding a JSON object with a boolean `ok`;
//! - a successful `get` is followed by a data section of exactly `size - offset` bytes whose
//!   trailer is the MD5 of the whole file, which must be a file inside the folder;
//! - nothing from outside the folder ever comes back.
//! A panic in any server thread aborts the process (libFuzzer's panic hook), which counts as a crash.
//!
//! Input format: the first byte picks a mode. Mode 0 sends the rest raw. Otherwise the rest is
//! split on 0xFF into payloads, each sent as a proper frame after an automatic `hello`, so the
//! fuzzer spends its time inside request handling rather than on framing.

#![no_main]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use ferry::protocol::frame;
use ferry::server::{Server, ServerConfig};
use libfuzzer_sys::fuzz_target;
use md5::Digest;

const SECRET: &[u8] = b"FUZZ-SECRET-OUTSIDE";

struct Fixture {
    addr: SocketAddr,
    /// MD5 of each file inside, by size (the sizes are distinct).
    by_size: HashMap<u64, [u8; 16]>,
    _server: Server,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let base: PathBuf = std::env::temp_dir().join(format!("ferry-fuzz-{}", std::process::id()));
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
        let mut by_size = HashMap::new();
        for (rel, len) in [("a.txt", 5usize), ("sub/b.bin", 1000), ("sub/deeper/c.bin", 70_000), ("big.bin", 1_200_000)] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            std::fs::write(root.join(rel), &bytes).unwrap();
            by_size.insert(len as u64, <[u8; 16]>::from(md5::Md5::digest(&bytes)));
        }
        by_size.insert(0, <[u8; 16]>::from(md5::Md5::digest(b"")));
        std::fs::write(root.join("empty"), b"").unwrap();
        let _ = symlink(&outside, root.join("out"));
        let _ = symlink("../outside/secret.txt", root.join("rel_out"));
        let _ = symlink("sub", root.join("in"));
        let _ = symlink("loop", root.join("loop"));
        let fifo = std::ffi::CString::new(root.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) };

        let mut config = ServerConfig::new(&root, "127.0.0.1:0");
        config.idle_timeout = Duration::from_secs(2);
        let (server, events) = Server::spawn(config, None);
        let addr = loop {
            match events.recv().unwrap() {
                ferry::server::ServerEvent::Listening { addr, .. } => break addr,
                ferry::server::ServerEvent::StartFailed { error } => panic!("{error}"),
                _ => {}
            }
        };
        // Drain events forever so the channel never grows.
        std::thread::spawn(move || for _ in events.iter() {});
        Fixture { addr, by_size, _server: server }
    })
}

fn check_replies(mut wire: &[u8], by_size: &HashMap<u64, [u8; 16]>) {
    assert!(!wire.windows(SECRET.len()).any(|w| w == SECRET), "outside data leaked");
    while !wire.is_empty() {
        let payload = match frame::read_frame(&mut wire, frame::MAX_RESPONSE_LEN) {
            Ok(p) => p,
            Err(frame::FrameError::Truncated { .. }) => return, // the server closed mid-frame: only when we did
            Err(e) => panic!("bad reply frame: {e}"),
        };
        let v: serde_json::Value = serde_json::from_slice(&payload).expect("replies are JSON");
        let ok = v["ok"].as_bool().expect("replies carry a boolean ok");
        if !ok {
            assert!(v["error"].is_string() && v["message"].is_string(), "{v}");
            continue;
        }
        if let (Some(size), Some(offset)) = (v["size"].as_u64(), v["offset"].as_u64()) {
            let n = frame::read_header(&mut wire).expect("a data prefix");
            assert_eq!(n, size - offset, "data prefix disagrees with the reply");
            if wire.len() < n as usize + 16 {
                return; // cut short by our own shutdown
            }
            let trailer: [u8; 16] = wire[n as usize..n as usize + 16].try_into().unwrap();
            let want = by_size.get(&size).unwrap_or_else(|| panic!("served a file of unknown size {size}"));
            assert_eq!(&trailer, want, "trailer is not the MD5 of the whole file");
            wire = &wire[n as usize + 16..];
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let Ok(mut s) = TcpStream::connect(fx.addr) else { return };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    match data.split_first() {
        None => {}
        Some((0, rest)) => out.extend_from_slice(rest),
        Some((_, rest)) => {
            frame::write_frame(&mut out, br#"{"op":"hello","version":1,"client":"fuzz"}"#).unwrap();
            for payload in rest.split(|&b| b == 0xFF) {
                frame::write_frame(&mut out, payload).unwrap();
            }
        }
    }
    let _ = s.write_all(&out);
    let _ = s.shutdown(Shutdown::Write);
    let mut replies = Vec::new();
    let _ = s.read_to_end(&mut replies);
    check_replies(&replies, &fx.by_size);
});
