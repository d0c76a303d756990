//! The work folder, the random source files, and checks on the copies.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use crate::args::Options;
use crate::{KIB, MIB, Result};

/// Bytes free for new files in `dir`'s file system (for tmpfs, also bounded by free memory).
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let c = CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Whether `dir` is on tmpfs (memory), where writes and fsyncs cost no disk I/O.
pub fn is_tmpfs(dir: &Path) -> bool {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let Ok(c) = CString::new(dir.as_os_str().as_encoded_bytes()) else { return false };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == TMPFS_MAGIC }
}

pub fn mem_available() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 =
        text.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024)
}

/// The work folder: `--dir`, else /dev/shm (tmpfs) if it has room, else the temp folder.
pub fn work_dir(opts: &Options) -> Result<(tempfile::TempDir, String)> {
    // The source, one destination at a time (each is deleted before the next run), the small
    // files three times over (source, ferry's copy, curl's copy), and some slack.
    let need = 2 * opts.size + 3 * opts.files as u64 * (opts.file_size + 4 * KIB) + 64 * MIB;
    let make = |base: &Path| {
        tempfile::Builder::new()
            .prefix("ferry-bench-")
            .tempdir_in(base)
            .map_err(|e| format!("cannot make a work folder in {}: {e}", base.display()))
    };
    if let Some(d) = &opts.dir {
        let dir = make(d)?;
        let room = free_bytes(d).map_or("unknown".into(), |b| format!("{:.1} GB free", b as f64 / 1e9));
        let fs = if is_tmpfs(d) { "tmpfs" } else { "disk, not tmpfs" };
        return Ok((dir, format!("{fs}, given with --dir ({room}, {:.1} GB needed)", need as f64 / 1e9)));
    }
    let shm = Path::new("/dev/shm");
    let shm_free = free_bytes(shm).map(|f| f.min(mem_available().unwrap_or(f)));
    match shm_free {
        Some(free) if free >= need + 512 * MIB => {
            Ok((make(shm)?, format!("tmpfs ({:.1} GB needed, {:.1} GB free)", need as f64 / 1e9, free as f64 / 1e9)))
        }
        other => {
            let why = match other {
                Some(free) => {
                    format!("/dev/shm has {:.1} GB free, {:.1} GB needed", free as f64 / 1e9, need as f64 / 1e9)
                }
                None => "there is no /dev/shm".into(),
            };
            let tmp = std::env::temp_dir();
            if let Some(free) = free_bytes(&tmp)
                && free < need
            {
                return Err(format!(
                    "not enough room: {why}, and {} has {:.1} GB free; use a smaller --size or --dir",
                    tmp.display(),
                    free as f64 / 1e9
                ));
            }
            Ok((make(&tmp)?, format!("on disk, not tmpfs ({why}); destinations are fsynced, so expect lower figures")))
        }
    }
}

/// wyrand: fast, good enough that nothing along the way could compress or dedupe the bytes.
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Rng {
        let mut seed = [0u8; 8];
        if getrandom::fill(&mut seed).is_err() {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            seed = (t.as_nanos() as u64 ^ std::process::id() as u64).to_le_bytes();
        }
        Rng(u64::from_le_bytes(seed))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

pub fn write_random_file(path: &Path, size: u64, rng: &mut Rng) -> Result<()> {
    let mut f = File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut buf = vec![0u8; (8 * MIB).min(size) as usize];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        left -= n as u64;
    }
    Ok(())
}

/// Reads the file once so it is in the page cache before anything is timed.
pub fn warm_cache(path: &Path) -> Result<()> {
    let mut f = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut buf = vec![0u8; 8 * MIB as usize];
    while f.read(&mut buf).map_err(|e| format!("cannot read {}: {e}", path.display()))? > 0 {}
    Ok(())
}

pub fn remove_file_if_any(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("cannot remove {}: {e}", path.display())),
        _ => Ok(()),
    }
}

pub fn fresh_dir(path: &Path) -> Result<()> {
    if path.exists() {
        fs::remove_dir_all(path).map_err(|e| format!("cannot empty {}: {e}", path.display()))?;
    }
    fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Checks that `dir` holds exactly a byte-for-byte copy of every source file.
pub fn check_copies(what: &str, names: &[String], src: &Path, dir: &Path) -> Result<()> {
    let count = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?.count();
    if count != names.len() {
        return Err(format!("{what}: {} holds {count} files, expected {}", dir.display(), names.len()));
    }
    for n in names {
        let a = fs::read(src.join(n)).map_err(|e| format!("cannot read source {n}: {e}"))?;
        let b = fs::read(dir.join(n)).map_err(|e| format!("{what}: cannot read the copy of {n}: {e}"))?;
        if a != b {
            return Err(format!("{what}: the copy of {n} differs from the source"));
        }
    }
    Ok(())
}
