//! Sizes are u64 end to end: a file over 4 GiB, resumed from an offset past 2^32.
//!
//! Both files are sparse (holes read as zeros), so this needs no disk space; it does hash the
//! whole 4 GiB prefix on each side (and once more here, independently), a few seconds each.

mod support;

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::thread;

use ferry::client::{CancelToken, ConnectOptions, Connection, DownloadRequest, Outcome, PartialRecord, part_path};
use ferry::protocol::hex;
use md5::Digest;
use support::*;

const FOUR_GIB: u64 = 4 * 1024 * 1024 * 1024;

#[test]
fn a_file_over_4_gib_resumes_past_the_32_bit_boundary_and_verifies() {
    let srv = TestServer::start();
    let size = FOUR_GIB + 3 * 1024 * 1024 + 7;
    let tail = random_bytes(3 * 1024 * 1024 + 7, 77);
    let hosted = srv.root().join("huge.img");
    let mut f = OpenOptions::new().create(true).truncate(true).write(true).open(&hosted).unwrap();
    f.set_len(FOUR_GIB).unwrap(); // a hole of zeros
    f.seek(SeekFrom::Start(FOUR_GIB)).unwrap();
    f.write_all(&tail).unwrap();
    assert_eq!(f.metadata().unwrap().len(), size);
    drop(f);

    // The independent digest, computed while the transfer runs.
    let expected = {
        let hosted = hosted.clone();
        thread::spawn(move || {
            let mut h = md5::Md5::new();
            let mut f = fs::File::open(hosted).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            h.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>()
        })
    };

    // The client already holds everything up to 1 MiB past the 4 GiB mark.
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("huge.img");
    let resume_at = FOUR_GIB + 1024 * 1024;
    let mut part = OpenOptions::new().create(true).truncate(true).write(true).open(part_path(&dest)).unwrap();
    part.set_len(FOUR_GIB).unwrap();
    part.seek(SeekFrom::Start(FOUR_GIB)).unwrap();
    part.write_all(&tail[..1024 * 1024]).unwrap();
    drop(part);
    PartialRecord::new(srv.addr_string(), "shared", "huge.img").save(&dest).unwrap();

    let mut conn = Connection::connect(&srv.addr_string(), &ConnectOptions::default()).unwrap();
    let req = DownloadRequest { path: "huge.img".into(), dest: dest.clone(), overwrite: false };
    let outcome = conn.download(&req, &CancelToken::new(), &mut |_| {}).unwrap();
    let expected = expected.join().unwrap();
    match outcome {
        Outcome::Verified { md5, size: got, resumed_from, .. } => {
            assert_eq!(got, size);
            assert_eq!(resumed_from, resume_at);
            assert_eq!(hex(&md5), expected);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::metadata(&dest).unwrap().len(), size);
    let mut f = fs::File::open(&dest).unwrap();
    f.seek(SeekFrom::Start(FOUR_GIB)).unwrap();
    let mut got_tail = Vec::new();
    f.read_to_end(&mut got_tail).unwrap();
    assert_eq!(got_tail, tail, "the bytes past 4 GiB arrived intact");
}
