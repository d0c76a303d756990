//! Many files over one connection: whole folders and several files in one job.
//!
//! Two phases on one connection:
//! 1. **Walk.** Each asked-for path is looked up in its parent's listing; each folder is
//!    listed, with several `list` requests in flight at once. The walk is bounded
//!    ([`TreeLimits`]: entries and depth), so a hostile or huge tree ends in a clear error, not
//!    in exhausted memory. Every name from the host passes the same checks as a single file's
//!    name ([`check_file_name`], then this system's name rules, adjusted and reported when
//!    needed); a name that cannot be saved is refused for that entry alone. Local folders are
//!    created as they are found, empty ones too.
//! 2. **Fetch.** `get` requests are **pipelined**: up to [`TreeLimits::in_flight`] are sent
//!    ahead (and never more than [`MAX_IN_FLIGHT_BYTES`] of requests), and the host answers
//!    them in order, so a folder of small files costs no round trip per file. Each data section
//!    goes through exactly the single-file path ([`super::download::Target`]): ferry's partial
//!    file and its record, MD5 while writing, the trailer compared, fsync, then the rename that
//!    never replaces a file ferry did not create. After each file the `verdict` goes back to
//!    the host, in the same write as the next requests.
//!
//! A file already at its destination is never replaced (unless asked): when the listing
//! carries the host's MD5 and the local file has that size and MD5, it is counted as verified
//! without a request; otherwise the host is asked for the file from offset = the local size
//! (the protocol's resume), which makes it send no bytes, only the trailer of its whole file,
//! and the local file is hashed against that. A partial file of ferry's own is resumed.
//!
//! The job's summary carries the [`Manifest`]: `md5sum` lines for every verified file, whose
//! MD5 is the folder's fingerprint.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::download::{Attempt, Start, Step, Target, TargetOptions, sync_folder_of};
use super::{CancelToken, ClientError, Connection, DownloadRequest, Outcome, Progress, Renamed, verdict};
use crate::protocol::data::{self, Digest, Md5};
use crate::protocol::message::{EntryKind, ErrorCode, ErrorReply, GetReply, Request};
use crate::protocol::names;
use crate::protocol::path::{Escaped, check_file_name};
use crate::protocol::{Md5Digest, hex, parse_hex};

/// The most entries (files and folders) one job walks.
pub const MAX_ENTRIES: usize = 100_000;
/// The deepest folder level one job walks (the asked-for folder is level 0).
pub const MAX_DEPTH: usize = 64;
/// `get` requests in flight by default: enough to fill a 20 ms round trip with small files.
pub const IN_FLIGHT: usize = 256;
/// At most this many bytes of requests unanswered at once. The client does not read while it
/// writes, so everything it sends ahead must fit in the socket buffers even while the host is
/// blocked sending to it: the host's receive buffer (128 KiB by default on Linux, of which at
/// least half is window) plus the client's send buffer (16 KiB at least).
pub const MAX_IN_FLIGHT_BYTES: usize = 48 * 1024;
/// Files from this size on have the destination's free space checked before they are written
/// (smaller ones' writes say soon enough when the disk is full).
const SPACE_CHECK_FROM: u64 = 1024 * 1024;
/// When the pipeline starts empty, the first this many requests go out before the rest is
/// prepared (preparing a file touches the disk a few times).
const FIRST_WRITE: usize = 16;
/// `list` requests in flight during the walk.
const LISTS_IN_FLIGHT: usize = 32;

/// How far one job may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLimits {
    pub max_entries: usize,
    pub max_depth: usize,
    /// `get` requests sent ahead of their answers (at least 1).
    pub in_flight: usize,
}

impl Default for TreeLimits {
    fn default() -> Self {
        TreeLimits { max_entries: MAX_ENTRIES, max_depth: MAX_DEPTH, in_flight: IN_FLIGHT }
    }
}

/// What to download and where.
#[derive(Debug, Clone)]
pub struct TreeRequest {
    /// Paths on the host: files or folders (`""` is the hosted folder itself).
    pub paths: Vec<String>,
    /// The local folder each path is saved into, under its own name (created if missing).
    pub dest: PathBuf,
    /// Replace existing files that differ from the host's (otherwise they are left alone and
    /// reported).
    pub overwrite: bool,
    pub limits: TreeLimits,
}

/// How one file of the job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileResult {
    /// Downloaded; its MD5 equals the host's.
    Verified { md5: Md5Digest, size: u64, resumed_from: u64, renamed: Option<Renamed> },
    /// Already at its destination with the host's MD5; nothing was written.
    AlreadyThere { md5: Md5Digest, size: u64 },
    /// The digests differ; nothing was saved under the final name.
    Mismatch { expected: Md5Digest, actual: Md5Digest, size: u64 },
    /// This file (or a folder's listing, or a name from the host) failed, in words; the rest
    /// of the job went on.
    Failed(String),
}

impl FileResult {
    /// Verified now or before.
    pub fn is_verified(&self) -> bool {
        matches!(self, FileResult::Verified { .. } | FileResult::AlreadyThere { .. })
    }
}

/// One file's (or one refused entry's) verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The path on the host (for a refused name: its folder's path and the name, escaped).
    pub path: String,
    /// Where it is saved, relative to the job's destination, `/` between components.
    pub rel: String,
    pub result: FileResult,
}

/// The `md5sum` lines of the verified files: `<md5hex>  <relative/path>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    entries: Vec<(String, Md5Digest)>,
}

impl Manifest {
    pub fn push(&mut self, rel: impl Into<String>, md5: Md5Digest) {
        self.entries.push((rel.into(), md5));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The lines, each ending in `\n`, sorted by path bytes (what `md5sum -c` reads).
    pub fn text(&self) -> String {
        let mut sorted: Vec<&(String, Md5Digest)> = self.entries.iter().collect();
        sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut out = String::new();
        for (rel, md5) in sorted {
            out.push_str(&hex(md5));
            out.push_str("  ");
            out.push_str(rel);
            out.push('\n');
        }
        out
    }

    /// The folder fingerprint: MD5 of [`Manifest::text`].
    pub fn fingerprint(&self) -> Md5Digest {
        data::md5_of(self.text().as_bytes())
    }
}

/// How the whole job ended, when it ran to its end.
#[derive(Debug, Default)]
pub struct TreeSummary {
    /// Verified files (downloaded now or already there).
    pub manifest: Manifest,
    /// Files that did not verify, and entries or folders that were refused.
    pub problems: Vec<FileReport>,
    /// Files downloaded now, found already verified, resumed.
    pub downloaded: usize,
    pub already_there: usize,
    pub resumed: usize,
    /// Folders created or found (the asked-for ones included).
    pub folders: usize,
    /// Bytes of the verified files.
    pub bytes: u64,
}

impl TreeSummary {
    /// Every file verified and nothing refused.
    pub fn all_verified(&self) -> bool {
        self.problems.is_empty()
    }

    /// Some file's digest differed.
    pub fn any_mismatch(&self) -> bool {
        self.problems.iter().any(|p| matches!(p.result, FileResult::Mismatch { .. }))
    }
}

/// What the job reports as it goes.
#[derive(Debug)]
pub enum TreeUpdate {
    /// The walk is done: this many files and bytes to fetch, this many folders.
    Planned { files: u64, bytes: u64, folders: u64 },
    /// Files finished, bytes on disk (of the files planned), and the totals.
    Progress { files_done: u64, files_total: u64, done: u64, total: u64 },
    /// One file's verdict.
    File(FileReport),
}

/// A listing entry as this module reads it: with the host's MD5 when it sends one (a hint
/// for skipping, never a verdict).
#[derive(Debug, Deserialize)]
struct TreeEntry {
    name: String,
    kind: EntryKind,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    md5: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TreeListing {
    entries: Vec<TreeEntry>,
}

/// A file to fetch, as the walk found it.
#[derive(Debug)]
struct Planned {
    path: String,
    rel: String,
    local: PathBuf,
    size: u64,
    md5: Option<Md5Digest>,
    renamed: Option<Renamed>,
}

/// A folder to list.
struct Folder {
    path: String,
    rel: String,
    depth: usize,
}

/// The bytes on the wire of a request, for [`MAX_IN_FLIGHT_BYTES`].
fn wire_len(req: &Request) -> usize {
    8 + serde_json::to_vec(req).map_or(0, |v| v.len())
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() { name.to_string() } else { format!("{parent}/{name}") }
}

/// The first listings a job asks for: the parents of the asked-for paths (each path is looked
/// up in its parent's listing), and, when they fit in one batch with them, the asked-for paths
/// themselves, listed before anyone knows whether they are folders (a folder's listing is then
/// at hand without a round trip of its own; a file's answer, `not_a_directory`, is dropped).
fn first_lists(req: &TreeRequest) -> (Vec<String>, Vec<String>) {
    let (mut parents, mut paths): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for path in &req.paths {
        let path = path.trim_matches('/');
        if path.is_empty() {
            continue;
        }
        let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
        if !parents.iter().any(|p| p == parent) {
            parents.push(parent.to_string());
        }
        if !paths.iter().any(|p| p == path) {
            paths.push(path.to_string());
        }
    }
    if parents.len() + paths.len() > LISTS_IN_FLIGHT {
        paths.clear();
    }
    (parents, paths)
}

/// The job's first batch of requests when it fits in one write, so that it can go out right
/// behind `hello` ([`super::Connection::connect_with`]'s `ahead`), saving a round trip.
pub(super) fn first_batch(req: &TreeRequest) -> Option<Vec<Request>> {
    let (parents, paths) = first_lists(req);
    (!parents.is_empty() && parents.len() <= LISTS_IN_FLIGHT)
        .then(|| parents.iter().chain(&paths).map(|p| Request::List { path: p.clone() }).collect())
}

/// Downloads `req.paths` into `req.dest` over `conn`; see the module doc.
/// `first_sent`: [`first_batch`] went out with `hello` already.
pub(super) fn download_tree(
    conn: &mut Connection,
    req: &TreeRequest,
    first_sent: bool,
    cancel: &CancelToken,
    update: &mut dyn FnMut(TreeUpdate),
) -> Result<TreeSummary, ClientError> {
    conn.watch(cancel);
    let result = run(conn, req, first_sent, cancel, update);
    conn.set_patience(Duration::ZERO);
    match result {
        Err(_) if cancel.is_cancelled() => Err(ClientError::Cancelled),
        other => other,
    }
}

fn run(
    conn: &mut Connection,
    req: &TreeRequest,
    first_sent: bool,
    cancel: &CancelToken,
    update: &mut dyn FnMut(TreeUpdate),
) -> Result<TreeSummary, ClientError> {
    let mut summary = TreeSummary::default();
    if !req.dest.is_dir() {
        fs::create_dir_all(&req.dest).map_err(ClientError::local("cannot create the folder", &req.dest))?;
    }
    let mut walk = Walk {
        conn,
        req,
        cancel,
        summary: &mut summary,
        update,
        files: Vec::new(),
        seen: HashSet::new(),
        entries: 0,
        listed: HashMap::new(),
        first_sent,
    };
    walk.walk()?;
    let files = std::mem::take(&mut walk.files);
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    update(TreeUpdate::Planned { files: files.len() as u64, bytes, folders: summary.folders as u64 });
    let mut fetch = Fetch {
        conn,
        req,
        cancel,
        summary: &mut summary,
        update,
        files_total: files.len() as u64,
        bytes_total: bytes,
        files_done: 0,
        bytes_done: 0,
        verdicts: VecDeque::new(),
        canonical: HashMap::new(),
        touched: HashSet::new(),
    };
    let fetched = fetch.fetch(files);
    // The renames, flushed once per folder rather than once per file.
    for folder in &fetch.touched {
        sync_folder_of(folder);
    }
    fetched?;
    Ok(summary)
}

/// The walk: listings in, planned files and created folders out.
struct Walk<'a> {
    conn: &'a mut Connection,
    req: &'a TreeRequest,
    cancel: &'a CancelToken,
    summary: &'a mut TreeSummary,
    update: &'a mut dyn FnMut(TreeUpdate),
    files: Vec<Planned>,
    /// Local relative paths taken (folded under the name rules), so that two names from the
    /// host can never be saved as one file.
    seen: HashSet<String>,
    entries: usize,
    /// Listings that arrived before their folder was reached (the asked-for paths).
    listed: HashMap<String, Result<Vec<TreeEntry>, ErrorReply>>,
    /// The first batch of listings went out with `hello`.
    first_sent: bool,
}

impl Walk<'_> {
    fn refuse(&mut self, path: String, rel: String, error: ClientError) {
        let report = FileReport { path, rel, result: FileResult::Failed(error.to_string()) };
        (self.update)(TreeUpdate::File(report.clone()));
        self.summary.problems.push(report);
    }

    /// The local name for a host's `name` in the folder `rel`, or why there is none.
    fn local_name(&mut self, rel_parent: &str, name: &str) -> Result<(String, Option<Renamed>), ClientError> {
        let bad =
            |reason: String| ClientError::BadDestination { path: join(rel_parent, &Escaped(name).to_string()), reason };
        check_file_name(name).map_err(|e| bad(format!("the host's name cannot be a file name: {e}")))?;
        let rules = self.conn.names;
        let (saved, renamed) = match names::check(name, rules) {
            Ok(()) => (name.to_string(), None),
            Err(why) => match names::adjust(name, rules) {
                Some(saved) => {
                    let renamed = Renamed { asked: name.to_string(), saved: saved.clone(), why };
                    (saved, Some(renamed))
                }
                None => return Err(bad(why.to_string())),
            },
        };
        let rel = join(rel_parent, &saved);
        if !self.seen.insert(names::fold(&rel, rules)) {
            return Err(bad("the host listed this name twice (or two names that are one file here)".into()));
        }
        Ok((saved, renamed))
    }

    fn count(&mut self, n: usize) -> Result<(), ClientError> {
        self.entries += n;
        if self.entries > self.req.limits.max_entries {
            return Err(ClientError::TreeTooLarge(format!(
                "more than {} files and folders; download a smaller folder",
                self.req.limits.max_entries
            )));
        }
        Ok(())
    }

    /// Creates (or finds) a local folder; `false` with the problem reported if it cannot be.
    fn make_folder(&mut self, path: &str, rel: &str, local: &Path) -> bool {
        match fs::symlink_metadata(local) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                let e = ClientError::BadDestination {
                    path: local.display().to_string(),
                    reason: "something that is not a folder is in the way".into(),
                };
                self.refuse(path.to_string(), rel.to_string(), e);
                return false;
            }
            Err(_) => {
                if let Err(e) = fs::create_dir(local) {
                    let e = ClientError::local("cannot create the folder", local)(e);
                    self.refuse(path.to_string(), rel.to_string(), e);
                    return false;
                }
            }
        }
        self.summary.folders += 1;
        true
    }

    fn walk(&mut self) -> Result<(), ClientError> {
        let mut folders: VecDeque<Folder> = VecDeque::new();
        // The asked-for paths: each found in its parent's listing (listed once per parent).
        let mut parents: HashMap<String, Result<Vec<TreeEntry>, ErrorReply>> = HashMap::new();
        let (wanted, mut speculative) = first_lists(self.req);
        for (i, chunk) in wanted.chunks(LISTS_IN_FLIGHT).enumerate() {
            let mut lists: Vec<Request> = chunk.iter().map(|p| Request::List { path: p.clone() }).collect();
            lists.extend(speculative.iter().map(|p| Request::List { path: p.clone() }));
            // The first batch may have gone out with hello already (see [`first_batch`]).
            if !(i == 0 && self.first_sent) {
                self.conn.send_ahead(&lists)?;
            }
            for parent in chunk {
                let listing = self.conn.read_reply::<TreeListing>()?;
                parents.insert(parent.clone(), listing.map(|l| l.entries));
            }
            for path in speculative.drain(..) {
                let listing = self.conn.read_reply::<TreeListing>()?;
                self.listed.insert(path, listing.map(|l| l.entries));
            }
        }
        for path in &self.req.paths.clone() {
            let path = path.trim_matches('/').to_string();
            if path.is_empty() {
                let name = self.conn.server().name.clone();
                let (saved, _) = match self.local_name("", &name) {
                    Ok(x) => x,
                    Err(e) => {
                        self.refuse(path, Escaped(&name).to_string(), e);
                        continue;
                    }
                };
                self.count(1)?;
                let local = self.req.dest.join(&saved);
                if self.make_folder("", &saved, &local) {
                    folders.push_back(Folder { path, rel: saved, depth: 0 });
                }
                continue;
            }
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
            let (parent, name) = (parent.to_string(), name.to_string());
            let found = match &parents[&parent] {
                Err(e) => Err(ClientError::Server(e.clone())),
                Ok(entries) => {
                    entries.iter().find(|e| e.name == name).map(|e| (e.kind, e.size, e.md5.clone())).ok_or_else(|| {
                        ClientError::Server(ErrorReply::new(ErrorCode::NotFound, "no such file or folder"))
                    })
                }
            };
            let (kind, size, md5) = match found {
                Ok(x) => x,
                Err(e) => {
                    self.refuse(path.clone(), Escaped(&name).to_string(), e);
                    continue;
                }
            };
            self.add(&mut folders, "", &path, &name, kind, size, md5, 0)?;
        }
        self.list_all(folders)
    }

    /// Adds one entry found at `depth` (the folder it is in is at `depth - 1`).
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        folders: &mut VecDeque<Folder>,
        rel_parent: &str,
        path: &str,
        name: &str,
        kind: EntryKind,
        size: Option<u64>,
        md5: Option<String>,
        depth: usize,
    ) -> Result<(), ClientError> {
        let (saved, renamed) = match self.local_name(rel_parent, name) {
            Ok(x) => x,
            Err(e) => {
                self.refuse(path.to_string(), join(rel_parent, &Escaped(name).to_string()), e);
                return Ok(());
            }
        };
        let rel = join(rel_parent, &saved);
        let local = rel.split('/').fold(self.req.dest.clone(), |p, c| p.join(c));
        match kind {
            EntryKind::Dir => {
                if depth > self.req.limits.max_depth {
                    return Err(ClientError::TreeTooLarge(format!(
                        "folders nested more than {} levels deep (at {})",
                        self.req.limits.max_depth,
                        Escaped(path)
                    )));
                }
                if self.make_folder(path, &rel, &local) {
                    folders.push_back(Folder { path: path.to_string(), rel, depth });
                }
            }
            EntryKind::File => {
                let md5 = md5.as_deref().and_then(parse_hex);
                self.files.push(Planned { path: path.to_string(), rel, local, size: size.unwrap_or(0), md5, renamed });
            }
            // Anything else the host lists (it should not) is not a file to fetch.
            _ => {}
        }
        Ok(())
    }

    /// Lists every folder in `folders` and what they contain, several listings in flight.
    fn list_all(&mut self, mut folders: VecDeque<Folder>) -> Result<(), ClientError> {
        let mut in_flight: VecDeque<Folder> = VecDeque::new();
        loop {
            if self.cancel.is_cancelled() {
                return Err(ClientError::Cancelled);
            }
            let mut batch = Vec::new();
            let (mut count, mut bytes) = self.conn.awaiting();
            while count < LISTS_IN_FLIGHT && bytes < MAX_IN_FLIGHT_BYTES {
                let Some(f) = folders.pop_front() else { break };
                if let Some(listing) = self.listed.remove(&f.path) {
                    // Listed already (in the first batch): no request.
                    self.take_listing(&mut folders, f, listing)?;
                    continue;
                }
                let list = Request::List { path: f.path.clone() };
                count += 1;
                bytes += wire_len(&list);
                batch.push(list);
                in_flight.push_back(f);
            }
            if !batch.is_empty() {
                self.conn.send_ahead(&batch)?;
            }
            let Some(folder) = in_flight.pop_front() else { return Ok(()) };
            let listing = self.conn.read_reply::<TreeListing>()?.map(|l| l.entries);
            self.take_listing(&mut folders, folder, listing)?;
        }
    }

    /// Adds what a folder's listing holds (or reports why there is none).
    fn take_listing(
        &mut self,
        folders: &mut VecDeque<Folder>,
        folder: Folder,
        listing: Result<Vec<TreeEntry>, ErrorReply>,
    ) -> Result<(), ClientError> {
        let entries = match listing {
            Ok(entries) => entries,
            Err(e) => {
                self.refuse(folder.path.clone(), folder.rel.clone(), ClientError::Server(e));
                return Ok(());
            }
        };
        self.count(entries.len())?;
        {
            for entry in entries {
                let path = join(&folder.path, &entry.name);
                self.add(
                    folders,
                    &folder.rel,
                    &path,
                    &entry.name,
                    entry.kind,
                    entry.size,
                    entry.md5,
                    folder.depth + 1,
                )?;
            }
        }
        Ok(())
    }
}

/// A `get` sent and not answered yet.
enum Pending {
    /// A download through the single-file path.
    Download { file: Planned, target: Box<Target>, start: Start },
    /// A file already at its destination, checked against the host's trailer: the `get` asked
    /// from offset = its size, so the host sends no bytes.
    Check { file: Planned, len: u64 },
}

/// The fetch: pipelined `get`s, one verdict each.
struct Fetch<'a> {
    conn: &'a mut Connection,
    req: &'a TreeRequest,
    cancel: &'a CancelToken,
    summary: &'a mut TreeSummary,
    update: &'a mut dyn FnMut(TreeUpdate),
    files_total: u64,
    bytes_total: u64,
    files_done: u64,
    /// Bytes of the finished files (as planned).
    bytes_done: u64,
    /// Verdicts to send with the next requests.
    verdicts: VecDeque<Request>,
    /// Local folders and their canonical paths (for claiming their files).
    canonical: HashMap<PathBuf, PathBuf>,
    /// Local folders that files were renamed into: flushed once at the end.
    touched: HashSet<PathBuf>,
}

/// What to do with one planned file before any request.
enum Plan {
    Send(Box<Pending>, Request),
    Done(Planned, FileResult),
}

impl Fetch<'_> {
    fn progress(&mut self, current: u64) {
        (self.update)(TreeUpdate::Progress {
            files_done: self.files_done,
            files_total: self.files_total,
            done: (self.bytes_done + current).min(self.bytes_total),
            total: self.bytes_total,
        });
    }

    fn finish(&mut self, file: &Planned, result: FileResult) {
        self.files_done += 1;
        self.bytes_done += file.size;
        match &result {
            FileResult::Verified { md5, size, resumed_from, .. } => {
                self.summary.manifest.push(file.rel.clone(), *md5);
                self.summary.downloaded += 1;
                self.summary.bytes += size;
                if *resumed_from > 0 {
                    self.summary.resumed += 1;
                }
            }
            FileResult::AlreadyThere { md5, size } => {
                self.summary.manifest.push(file.rel.clone(), *md5);
                self.summary.already_there += 1;
                self.summary.bytes += size;
            }
            _ => {}
        }
        let report = FileReport { path: file.path.clone(), rel: file.rel.clone(), result };
        (self.update)(TreeUpdate::File(report.clone()));
        if !report.result.is_verified() {
            self.summary.problems.push(report);
        }
        self.progress(0);
    }

    /// Decides how to fetch one file: skip it, check it in place, or download it.
    fn plan(&mut self, file: Planned) -> Result<Plan, ClientError> {
        let overwrite = self.req.overwrite;
        let meta = fs::symlink_metadata(&file.local);
        let absent = matches!(&meta, Err(e) if e.kind() == io::ErrorKind::NotFound);
        let exists = |file: Planned| {
            let words = ClientError::Exists(file.local.clone()).to_string();
            Ok(Plan::Done(file, FileResult::Failed(words)))
        };
        match meta {
            Ok(m) if m.is_dir() => {
                let e = ClientError::BadDestination {
                    path: file.local.display().to_string(),
                    reason: "a folder is in the way".into(),
                };
                Ok(Plan::Done(file, FileResult::Failed(e.to_string())))
            }
            Ok(m) if m.is_file() && (file.md5.is_some() || !overwrite) => {
                if m.len() != file.size {
                    return if overwrite { Ok(self.download_plan(file, false)) } else { exists(file) };
                }
                if let Some(expected) = file.md5 {
                    let actual = hash_file(&file.local, None)?;
                    if actual == expected {
                        let size = file.size;
                        return Ok(Plan::Done(file, FileResult::AlreadyThere { md5: actual, size }));
                    }
                    return if overwrite { Ok(self.download_plan(file, false)) } else { exists(file) };
                }
                let get = Request::Get { path: file.path.clone(), offset: m.len() };
                Ok(Plan::Send(Box::new(Pending::Check { file, len: m.len() }), get))
            }
            _ => Ok(self.download_plan(file, absent)),
        }
    }

    /// `dest_absent`: [`Fetch::plan`] just saw nothing at the file's destination.
    fn download_plan(&mut self, file: Planned, dest_absent: bool) -> Plan {
        let req = DownloadRequest { path: file.path.clone(), dest: file.local.clone(), overwrite: self.req.overwrite };
        let folder = file.local.parent().unwrap_or(Path::new(".")).to_path_buf();
        let canonical_folder = match self.canonical.get(&folder) {
            Some(c) => Some(c.clone()),
            None => dunce::canonicalize(&folder).ok().inspect(|c| {
                self.canonical.insert(folder.clone(), c.clone());
            }),
        };
        self.touched.insert(folder);
        let options = TargetOptions {
            canonical_folder,
            skip_space_check: file.size < SPACE_CHECK_FROM,
            folder_synced_by_caller: true,
            dest_absent,
        };
        match Target::open_with(self.conn, &req, options).and_then(|mut t| t.prepare().map(|s| (t, s))) {
            Ok((target, start)) => {
                let get = Request::Get { path: file.path.clone(), offset: start.offset() };
                Plan::Send(Box::new(Pending::Download { file, target: Box::new(target), start }), get)
            }
            Err(e) => Plan::Done(file, FileResult::Failed(e.to_string())),
        }
    }

    fn fetch(&mut self, files: Vec<Planned>) -> Result<(), ClientError> {
        let mut queue: VecDeque<Planned> = files.into();
        let mut retries: VecDeque<(Planned, Box<Target>)> = VecDeque::new();
        let mut in_flight: VecDeque<Pending> = VecDeque::new();
        let limit = self.req.limits.in_flight.max(1);
        self.progress(0);
        loop {
            if self.cancel.is_cancelled() {
                return Err(ClientError::Cancelled);
            }
            if in_flight.is_empty() {
                // Only acknowledgements are owed: read them, so the bound below counts only
                // what is sent next.
                self.conn.read_acks()?;
            }
            // Refill the pipeline once a quarter of it is answered (one write, and one wake-up of
            // the host, per many files): the verdicts owed, then as many requests as the bounds
            // allow.
            // When nothing is in flight, one request goes out whatever its size, so the job
            // always moves on.
            let mut batch = Vec::new();
            if in_flight.len() <= limit - limit.div_ceil(4) {
                let (_, mut bytes) = self.conn.awaiting();
                let fits = |bytes: usize, n: usize, first: bool| first || bytes + n <= MAX_IN_FLIGHT_BYTES;
                while let Some(v) = self.verdicts.front() {
                    let n = wire_len(v);
                    if !fits(bytes, n, batch.is_empty() && in_flight.is_empty()) {
                        break;
                    }
                    bytes += n;
                    batch.extend(self.verdicts.pop_front());
                }
                while in_flight.len() < limit {
                    let next = retries.front().map(|(f, _)| &f.path).or(queue.front().map(|f| &f.path));
                    let Some(path) = next else { break };
                    let n = wire_len(&Request::Get { path: path.clone(), offset: u64::MAX });
                    if !fits(bytes, n, in_flight.is_empty()) {
                        break;
                    }
                    if let Some((file, mut target)) = retries.pop_front() {
                        let start = target.prepare()?;
                        bytes += n;
                        batch.push(Request::Get { path: file.path.clone(), offset: start.offset() });
                        in_flight.push_back(Pending::Download { file, target, start });
                        continue;
                    }
                    let Some(file) = queue.pop_front() else { break };
                    match self.plan(file)? {
                        Plan::Done(file, result) => self.finish(&file, result),
                        Plan::Send(pending, get) => {
                            bytes += n;
                            batch.push(get);
                            in_flight.push_back(*pending);
                        }
                    }
                    if batch.len() >= FIRST_WRITE && in_flight.len() <= FIRST_WRITE {
                        // The host gets to work while the rest of the pipeline is prepared.
                        self.conn.send_ahead(&std::mem::take(&mut batch))?;
                    }
                }
            }
            if !batch.is_empty() {
                self.conn.send_ahead(&batch)?;
            }
            let Some(pending) = in_flight.pop_front() else {
                if queue.is_empty() && retries.is_empty() && self.verdicts.is_empty() {
                    // Everything answered; the last acknowledgements, so the host has handled
                    // every verdict before the connection closes.
                    return self.conn.read_acks();
                }
                continue;
            };
            match pending {
                Pending::Download { file, mut target, start } => {
                    self.conn.set_patience(Target::patience(start.offset()));
                    let reply = self.conn.read_reply::<GetReply>()?;
                    let base = self.bytes_done;
                    let (total_done, total) = (self.files_done, self.files_total);
                    let bytes_total = self.bytes_total;
                    let update = &mut *self.update;
                    let mut on_progress = |p: Progress| {
                        update(TreeUpdate::Progress {
                            files_done: total_done,
                            files_total: total,
                            done: (base + p.done).min(bytes_total),
                            total: bytes_total,
                        })
                    };
                    let attempt = target.receive(self.conn, start, reply, self.cancel, &mut on_progress);
                    let step = attempt.and_then(|a: Attempt| target.settle(a));
                    match step {
                        Ok(Step::Done(Outcome::Verified { md5, size, resumed_from, renamed, .. })) => {
                            self.verdicts.push_back(verdict(&file.path, &md5, true));
                            let renamed = renamed.or(file.renamed.clone());
                            self.finish(&file, FileResult::Verified { md5, size, resumed_from, renamed });
                        }
                        Ok(Step::Done(Outcome::Mismatch { expected, actual, size })) => {
                            self.verdicts.push_back(verdict(&file.path, &actual, false));
                            self.finish(&file, FileResult::Mismatch { expected, actual, size });
                        }
                        // Not an outcome of a data section (settle never says it); as a verified file.
                        Ok(Step::Done(Outcome::Identical { md5, size, .. })) => {
                            self.finish(&file, FileResult::AlreadyThere { md5, size });
                        }
                        Ok(Step::Retry) => retries.push_back((file, target)),
                        Err(e) if self.conn.poisoned || self.cancel.is_cancelled() => return Err(e),
                        Err(e) => self.finish(&file, FileResult::Failed(e.to_string())),
                    }
                }
                Pending::Check { file, len } => {
                    let reply = self.conn.read_reply::<GetReply>()?;
                    let result = self.check(&file, len, reply)?;
                    self.finish(&file, result);
                }
            }
        }
    }

    /// Compares a file already at its destination with the host's trailer (the host was asked
    /// from offset = its length, so it sends no bytes unless its file is longer now).
    fn check(
        &mut self,
        file: &Planned,
        len: u64,
        reply: Result<GetReply, ErrorReply>,
    ) -> Result<FileResult, ClientError> {
        let exists = || FileResult::Failed(ClientError::Exists(file.local.clone()).to_string());
        let GetReply { size, offset } = match reply {
            Ok(r) => r,
            // Shorter on the host than here: not the same file.
            Err(e) if e.error == ErrorCode::BadRequest => return Ok(exists()),
            Err(e) => return Ok(FileResult::Failed(ClientError::Server(e).to_string())),
        };
        if offset != len || size < offset {
            return Err(ClientError::Protocol(format!(
                "asked for offset {len}, the server answered offset {offset} of a {size}-byte file"
            )));
        }
        let timeout = self.conn.timeout;
        self.conn.poisoned = true;
        let n =
            data::read_header(&mut self.conn.reader, size - offset).map_err(|e| ClientError::from_data(e, timeout))?;
        // Bytes past our length (the host's file grew): read and dropped.
        let mut hasher = Md5::new();
        let mut buf = std::mem::take(&mut self.conn.buf);
        buf.resize(data::CHUNK, 0);
        let drained =
            data::copy_hashed(&mut self.conn.reader, &mut io::sink(), n, &mut hasher, &mut buf, &mut |_| true);
        self.conn.buf = buf;
        drained.map_err(|e| ClientError::from_data(data::DataError::Copy(e), timeout))?;
        let expected = data::read_trailer(&mut self.conn.reader).map_err(|e| ClientError::from_data(e, timeout))?;
        self.conn.poisoned = false;
        if n > 0 {
            return Ok(exists());
        }
        let actual = hash_file(&file.local, Some(len))?;
        self.verdicts.push_back(verdict(&file.path, &actual, actual == expected));
        if actual == expected { Ok(FileResult::AlreadyThere { md5: actual, size: len }) } else { Ok(exists()) }
    }
}

/// MD5 of a local file (its first `len` bytes, when given).
fn hash_file(path: &Path, len: Option<u64>) -> Result<Md5Digest, ClientError> {
    let mut file = File::open(path).map_err(ClientError::local("cannot read", path))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; data::CHUNK];
    let mut left = len.unwrap_or(u64::MAX);
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ClientError::local("cannot read", path)(e)),
        };
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(data::finish(hasher))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_lines_are_sorted_by_path_bytes_and_fingerprinted() {
        let mut m = Manifest::default();
        m.push("b/z.txt", data::md5_of(b"z"));
        m.push("B.txt", data::md5_of(b""));
        m.push("b/a.txt", data::md5_of(b"a"));
        let text = m.text();
        let paths: Vec<&str> = text.lines().map(|l| &l[34..]).collect();
        assert_eq!(paths, ["B.txt", "b/a.txt", "b/z.txt"]);
        assert!(text.starts_with("d41d8cd98f00b204e9800998ecf8427e  B.txt\n"), "{text}");
        assert_eq!(m.fingerprint(), data::md5_of(text.as_bytes()));
    }
}
