//! Property tests of the pure protocol code: any input either decodes or yields an error, never
//! a panic, a hang, or an allocation sized by an untrusted length.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Cursor, Read};

use ferry::protocol::data::{self, Md5};
use ferry::protocol::frame::{self, FrameError};
use ferry::protocol::message::{self, GetReply, ListReply};
use ferry::protocol::path;
use md5::Digest;
use proptest::prelude::*;

/// Records the largest single allocation made by the current thread, so a test can prove that
/// a hostile length prefix never turns into a hostile allocation.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|m| m.set(m.get().max(layout.size())));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|m| m.set(m.get().max(new_size)));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

fn largest_allocation_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|m| m.set(0));
    let out = f();
    (out, LARGEST.with(|m| m.get()))
}

/// Hands out the underlying bytes in the given chunk sizes (cycled), like a fragmenting network.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    i: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes[self.i % self.sizes.len()].max(1);
        self.i += 1;
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_decode_as_frames_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..200), max in 0u64..100) {
        let mut r = Cursor::new(&bytes);
        for _ in 0..bytes.len() + 1 {
            match frame::read_frame(&mut r, max) {
                Ok(p) => prop_assert!(p.len() as u64 <= max),
                Err(_) => break,
            }
        }
    }

    #[test]
    fn hostile_prefixes_never_allocate_their_length(len in 65_537u64.., tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut wire = frame::encode_header(len).to_vec();
        wire.extend_from_slice(&tail);
        let (res, largest) = largest_allocation_during(|| frame::read_frame(&mut Cursor::new(&wire), frame::MAX_REQUEST_LEN));
        let too_large = matches!(res, Err(FrameError::TooLarge { size, max: frame::MAX_REQUEST_LEN }) if size == len);
        prop_assert!(too_large);
        prop_assert!(largest < 4096, "allocated {} bytes", largest);
    }

    #[test]
    fn frames_survive_any_fragmentation(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..6),
                                         sizes in proptest::collection::vec(1usize..50, 1..8)) {
        let mut wire = Vec::new();
        for p in &payloads {
            frame::write_frame(&mut wire, p).unwrap();
        }
        let mut r = Chunked { data: &wire, sizes, i: 0 };
        for p in &payloads {
            prop_assert_eq!(&frame::read_frame(&mut r, 1000).unwrap(), p);
        }
        prop_assert!(matches!(frame::read_frame(&mut r, 1000), Err(FrameError::Closed)));
    }

    #[test]
    fn any_bytes_parse_as_a_request_or_a_contract_error(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Err(e) = message::parse_request(&bytes) {
            prop_assert!(matches!(e.error, message::ErrorCode::BadRequest | message::ErrorCode::Unsupported));
        }
        let _ = message::parse_reply::<ListReply>(&bytes);
        let _ = message::parse_reply::<GetReply>(&bytes);
    }

    #[test]
    fn json_objects_with_any_op_get_the_right_code(op in "[a-z_]{0,12}", path in ".{0,40}", offset in any::<u64>()) {
        let v = serde_json::json!({"op": op, "path": path, "offset": offset, "version": 1, "client": "p"});
        let res = message::parse_request(v.to_string().as_bytes());
        if message::KNOWN_OPS.contains(&op.as_str()) {
            // put lacks "size": bad_request; the others parse.
            prop_assert_eq!(res.is_ok(), op != "put");
        } else {
            prop_assert_eq!(res.unwrap_err().error, message::ErrorCode::Unsupported);
        }
    }

    #[test]
    fn data_sections_round_trip_with_resume_and_fragmentation(
        file in proptest::collection::vec(any::<u8>(), 0..5000),
        cut in any::<proptest::sample::Index>(),
        sizes in proptest::collection::vec(1usize..700, 1..6),
        buf_len in 1usize..1000,
    ) {
        let offset = if file.is_empty() { 0 } else { cut.index(file.len() + 1) };
        let mut wire = Vec::new();
        let sent = data::write_section(&mut wire, &mut &file[offset..], (file.len() - offset) as u64,
            Md5::new_with_prefix(&file[..offset]), &mut vec![0; buf_len]).unwrap();
        prop_assert_eq!(sent, <[u8; 16]>::from(Md5::digest(&file)));
        let mut out = file[..offset].to_vec();
        let prefix = Md5::new_with_prefix(&out);
        let v = data::read_section(&mut Chunked { data: &wire, sizes, i: 0 }, &mut out,
            (file.len() - offset) as u64, prefix, &mut vec![0; buf_len], &mut |_| true).unwrap();
        prop_assert!(v.matches());
        prop_assert_eq!(out, file);
    }

    #[test]
    fn truncated_data_sections_are_errors_never_verdicts(file in proptest::collection::vec(any::<u8>(), 1..2000), cut in any::<proptest::sample::Index>()) {
        let mut wire = Vec::new();
        data::write_section(&mut wire, &mut &file[..], file.len() as u64, Md5::new(), &mut [0; 128]).unwrap();
        let keep = cut.index(wire.len());
        wire.truncate(keep);
        let res = data::read_section(&mut Cursor::new(&wire), &mut Vec::new(), file.len() as u64, Md5::new(), &mut [0; 128], &mut |_| true);
        prop_assert!(res.is_err());
    }

    #[test]
    fn accepted_paths_have_only_plain_components(p in "[a-z./\\\\\u{0}-\u{1f}é]{0,30}") {
        if let Ok(parts) = path::split_request_path(&p) {
            for c in parts {
                prop_assert!(!c.is_empty() && c != "." && c != "..");
                prop_assert!(!c.contains(['/', '\\', '\0']));
            }
            prop_assert!(!p.starts_with('/'));
        }
    }

    #[test]
    fn accepted_local_names_are_single_harmless_components(name in ".{0,40}") {
        if let Ok(n) = path::check_local_name(&name) {
            prop_assert!(!n.is_empty() && n != "." && n != "..");
            prop_assert!(!n.contains(['/', '\\']));
            prop_assert!(!n.chars().any(char::is_control));
            prop_assert_eq!(std::path::Path::new(n).components().count(), 1);
        }
    }

    #[test]
    fn escaped_text_has_no_control_characters(s in ".{0,60}") {
        let shown = path::Escaped(&s).to_string();
        prop_assert!(!shown.chars().any(char::is_control));
    }
}
