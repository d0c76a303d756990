//! The indexing worker: one thread per host, at the lowest CPU priority, that hashes the files
//! of every folder a client lists (and, when asked, of the whole hosted folder once hosting
//! starts) into the [`DigestIndex`], so that their first download is already warm.
//!
//! The files of a folder a client lists go ahead of the start-up walk's. It never competes
//! with a transfer: before each 1 MiB it waits until no file is being sent.
//! Its memory is bounded: at most [`MAX_FILES`] files and [`MAX_FOLDERS`] folders wait at once
//! (a bigger folder is taken up again once those are done; files already indexed are then
//! skipped). It reports [`IndexProgress`] at most a few times a second, and once more when it
//! has nothing left to do.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{DigestIndex, FileKey};
use crate::protocol::Md5Digest;
use crate::protocol::data::{self, Digest, Md5};
use crate::protocol::message::EntryKind;
use crate::protocol::path::join;
use crate::server::{Root, ServerEvent};
use crate::sink::Sink;

/// Most files waiting to be hashed at once.
pub const MAX_FILES: usize = 100_000;
/// Most folders waiting to be looked at at once (the start-up walk, then listed folders).
pub const MAX_FOLDERS: usize = 100_000;
/// Most folders listed by clients and not looked at yet; more are left for a later listing.
const MAX_LISTED: usize = 1024;
/// Bytes hashed between two looks at whether a transfer started or the host is stopping.
const CHUNK: usize = 1024 * 1024;
/// Progress at most this often.
const REPORT_EVERY: Duration = Duration::from_millis(250);
/// How often an idle worker looks at whether learned digests are due to be written.
const IDLE_WAKE: Duration = Duration::from_millis(500);

/// How indexing is going, since hosting started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexProgress {
    /// Files hashed and bytes read so far.
    pub files_done: u64,
    pub bytes_done: u64,
    /// Files found that still need hashing, and their bytes.
    pub files_left: u64,
    pub bytes_left: u64,
    /// Folders still to be looked at (their files are not counted above yet).
    pub folders_left: u64,
    /// Digests the index holds.
    pub known: u64,
    /// Waiting because files are being sent.
    pub paused: bool,
}

impl IndexProgress {
    /// Nothing is left to do (for now).
    pub fn idle(&self) -> bool {
        self.files_left == 0 && self.folders_left == 0
    }
}

/// What connections tell the worker, and the index they all share.
pub struct Indexer {
    pub index: DigestIndex,
    work: Mutex<Work>,
    wake: Condvar,
    stopping: AtomicBool,
}

#[derive(Default)]
struct Work {
    listed: VecDeque<String>,
    queued: HashSet<String>,
    /// Files being sent right now.
    transfers: usize,
}

/// Held while a file is being sent; the worker waits until none is.
pub struct Sending<'a>(&'a Indexer);

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        let mut work = self.0.work();
        work.transfers -= 1;
        if work.transfers == 0 {
            self.0.wake.notify_all();
        }
    }
}

impl Indexer {
    pub fn new(index: DigestIndex) -> Indexer {
        Indexer { index, work: Mutex::default(), wake: Condvar::new(), stopping: AtomicBool::new(false) }
    }

    fn work(&self) -> MutexGuard<'_, Work> {
        self.work.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A client listed the folder `path`: hash its files soon.
    pub fn listed(&self, path: &str) {
        let mut work = self.work();
        if work.listed.len() < MAX_LISTED && work.queued.insert(path.to_string()) {
            work.listed.push_back(path.to_string());
            self.wake.notify_all();
        }
    }

    /// A file is being sent until the returned guard is dropped.
    pub fn sending(&self) -> Sending<'_> {
        self.work().transfers += 1;
        Sending(self)
    }

    /// Ends the worker soon (it writes what it learned first).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _work = self.work();
        self.wake.notify_all();
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Waits while files are being sent; false if the host is stopping.
    fn wait_for_quiet(&self, paused: &mut dyn FnMut()) -> bool {
        let mut work = self.work();
        let mut said = false;
        while work.transfers > 0 && !self.is_stopping() {
            if !said {
                said = true;
                drop(work);
                paused();
                work = self.work();
                continue;
            }
            work = self.wake.wait_timeout(work, IDLE_WAKE).unwrap_or_else(|p| p.into_inner()).0;
        }
        !self.is_stopping()
    }
}

/// A file waiting to be hashed.
struct Pending {
    folder: Arc<str>,
    name: String,
    size: u64,
}

/// The worker's own state.
struct Worker<'a> {
    indexer: &'a Indexer,
    root: &'a Root,
    sink: &'a Sink<ServerEvent>,
    files: VecDeque<Pending>,
    /// Folders whose files are in `files`, and how many each has there.
    expanded: HashMap<Arc<str>, usize>,
    walk: VecDeque<String>,
    progress: IndexProgress,
    last_report: Option<Instant>,
    /// The last report said there was nothing left.
    reported_idle: bool,
    buf: Vec<u8>,
}

enum Next {
    Listed(String),
    File(Pending),
    Walk(String),
    Idle,
    Stop,
}

/// The worker's thread: runs until [`Indexer::stop`], then writes what it learned.
pub fn run(indexer: &Indexer, root: &Root, sink: &Sink<ServerEvent>, whole_folder: bool) {
    lower_priority();
    let mut w = Worker {
        indexer,
        root,
        sink,
        files: VecDeque::new(),
        expanded: HashMap::new(),
        walk: VecDeque::new(),
        progress: IndexProgress { known: indexer.index.len(), ..Default::default() },
        last_report: None,
        // Nothing to say until there is work.
        reported_idle: true,
        buf: vec![0; CHUNK],
    };
    if whole_folder {
        w.walk.push_back(String::new());
        w.progress.folders_left = 1;
        w.reported_idle = false;
    }
    loop {
        match w.next() {
            Next::Stop => break,
            Next::Listed(path) => w.expand(&path, false),
            Next::Walk(path) => w.expand(&path, true),
            Next::File(p) => w.hash(p),
            Next::Idle => {
                // Done for now: what was learned is written before it is said (at once, not
                // after the usual pause), so "indexed" means "on disk".
                let finishing = !w.reported_idle;
                if indexer.index.flush_due(finishing) {
                    flush(indexer, sink);
                }
                if finishing {
                    w.report(true);
                }
                let work = indexer.work();
                if work.listed.is_empty() && !indexer.is_stopping() {
                    let _ = indexer.wake.wait_timeout(work, IDLE_WAKE);
                }
            }
        }
    }
    flush(indexer, sink);
}

/// Writes what was learned; a failure is reported (once: the index is memory-only after it).
fn flush(indexer: &Indexer, sink: &Sink<ServerEvent>) {
    if let Err(e) = indexer.index.flush() {
        let at = indexer.index.path().map_or_else(String::new, |p| format!(" {}", p.display()));
        let error = format!("cannot write the digest index{at}: {e}; digests are kept for this run only");
        sink.send(ServerEvent::IndexProblem { error });
    }
}

impl Worker<'_> {
    fn next(&mut self) -> Next {
        if self.indexer.is_stopping() {
            return Next::Stop;
        }
        {
            let mut work = self.indexer.work();
            if let Some(path) = work.listed.pop_front() {
                work.queued.remove(&path);
                return Next::Listed(path);
            }
        }
        if let Some(p) = self.files.pop_front() {
            return Next::File(p);
        }
        match self.walk.pop_front() {
            Some(path) => Next::Walk(path),
            None => Next::Idle,
        }
    }

    /// Looks at one folder: its files that the index does not know wait to be hashed (and, on
    /// the whole-folder walk, its folders wait to be looked at).
    fn expand(&mut self, path: &str, walk: bool) {
        if walk {
            self.progress.folders_left = self.progress.folders_left.saturating_sub(1);
        }
        if self.expanded.contains_key(path) {
            return; // its files are already waiting
        }
        let index = &self.indexer.index;
        let Ok(entries) = self.root.list_with(path, &|key| index.get(key)) else { return };
        let folder: Arc<str> = Arc::from(path);
        let mut added = 0;
        // A folder a client is looking at goes first; the start-up walk queues behind.
        let mut listed = Vec::new();
        for e in entries {
            match e.kind {
                EntryKind::Dir if walk && self.walk.len() < MAX_FOLDERS => {
                    self.walk.push_back(join(path, &e.name));
                    self.progress.folders_left += 1;
                }
                EntryKind::File if e.md5.is_none() => {
                    if self.files.len() + listed.len() >= MAX_FILES {
                        // Taken up again later; what is hashed by then is skipped.
                        if self.walk.len() < MAX_FOLDERS {
                            self.walk.push_back(path.to_string());
                            self.progress.folders_left += 1;
                        }
                        break;
                    }
                    let size = e.size.unwrap_or(0);
                    let pending = Pending { folder: folder.clone(), name: e.name, size };
                    if walk {
                        self.files.push_back(pending);
                    } else {
                        listed.push(pending);
                    }
                    self.progress.files_left += 1;
                    self.progress.bytes_left += size;
                    added += 1;
                }
                _ => {}
            }
        }
        for pending in listed.into_iter().rev() {
            self.files.push_front(pending);
        }
        if added > 0 {
            self.expanded.insert(folder, added);
            self.reported_idle = false;
        }
        self.report(false);
    }

    fn hash(&mut self, p: Pending) {
        let rel = join(&p.folder, &p.name);
        if let Ok(opened) = self.root.open_file(&rel) {
            let key = FileKey::of(&opened.file, &opened.meta);
            if key.known() && self.indexer.index.get(&key).is_none() {
                let mut file = opened.file;
                if let Some(digest) = self.digest(&mut file, key.size())
                    && file.metadata().is_ok_and(|m| FileKey::of(&file, &m) == key)
                {
                    self.indexer.index.insert(&key, digest);
                    self.progress.files_done += 1;
                }
            }
        }
        // Counted as left until it is done, so no report says "nothing left" meanwhile.
        self.progress.files_left -= 1;
        self.progress.bytes_left = self.progress.bytes_left.saturating_sub(p.size);
        if let Some(n) = self.expanded.get_mut(&p.folder) {
            *n -= 1;
            if *n == 0 {
                self.expanded.remove(&p.folder);
            }
        }
        if self.indexer.index.flush_due(false) {
            flush(self.indexer, self.sink);
        }
        self.report(false);
    }

    /// The MD5 of the open file, read a chunk at a time, each chunk only when no transfer is
    /// running. `None` if it could not be read to its end or the host is stopping.
    fn digest(&mut self, file: &mut File, size: u64) -> Option<Md5Digest> {
        let mut hasher = Md5::new();
        let mut done = 0u64;
        loop {
            let indexer = self.indexer;
            let quiet = indexer.wait_for_quiet(&mut || {
                self.progress.paused = true;
                self.report(true);
            });
            if self.progress.paused {
                self.progress.paused = false;
                self.report(true);
            }
            if !quiet {
                return None;
            }
            let n = match file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            };
            hasher.update(&self.buf[..n]);
            done += n as u64;
            self.progress.bytes_done += n as u64;
            self.report(false);
        }
        (done == size).then(|| data::finish(hasher))
    }

    /// Sends progress when due (or `now`). "Nothing left" is said only by the idle loop (with
    /// `now`), once, after what was learned is written.
    fn report(&mut self, now: bool) {
        let idle = self.progress.idle();
        if idle && (!now || self.reported_idle) {
            return;
        }
        if !now && self.last_report.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return;
        }
        self.progress.known = self.indexer.index.len();
        self.last_report = Some(Instant::now());
        self.reported_idle = idle;
        self.sink.send(ServerEvent::Indexing(self.progress));
    }
}

/// The worker's thread runs at the lowest CPU priority (Linux: a thread's own nice value).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn lower_priority() {
    let tid = rustix::thread::gettid();
    let _ = rustix::process::setpriority_process(Some(tid), 19);
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn lower_priority() {}
