//! Many files over one connection: whole folders and several files in one job.
//!
//! Two phases on one connection:
//! 1. **Walk** (`walk.rs`). Each asked-for path is looked up in its parent's listing; each folder is
//!    listed, with several `list` requests in flight at once. The walk is bounded
//!    ([`TreeLimits`]: entries and depth), so a hostile or huge tree ends in a clear error, not
//!    in exhausted memory. Every name from the host passes the same checks as a single file's
//!    name ([`check_file_name`], then this system's name rules, adjusted and reported when
//!    needed); a name that cannot be saved is refused for that entry alone. Local folders are
//!    created as they are found, empty ones too.
//! 2. **Fetch** (`fetch.rs`). `get` requests are **pipelined**: up to [`TreeLimits::in_flight`] are sent
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

mod fetch;
mod walk;

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{CancelToken, ClientError, Connection, Renamed};
use crate::protocol::data;
use crate::protocol::message::{EntryKind, Request};
use crate::protocol::{Md5Digest, hex};

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
    /// Only these, as [`FileReport::rel`] names them (relative to `dest`): each a file, or a
    /// folder and everything in it; nothing else is fetched, checked or reported, and only the
    /// folders on the way to them are listed. For retrying the problems of an earlier run
    /// ([`TreeSummary::after_retry`]). `None`: everything.
    pub only: Option<BTreeSet<String>>,
}

impl TreeRequest {
    /// Whether `rel` is one of [`TreeRequest::only`] or inside one.
    fn covers(&self, rel: &str) -> bool {
        self.only.as_ref().is_none_or(|only| covered(only, rel))
    }

    /// Whether `rel` is covered or a folder on the way to something covered.
    fn leads_to(&self, rel: &str) -> bool {
        self.only.as_ref().is_none_or(|only| covered(only, rel) || holds(only, rel))
    }
}

/// Whether the relative path `rel` is in `only`, or inside a folder that is: a lookup for it
/// and each folder above it, so a retry of many files in a big tree stays cheap per entry.
fn covered(only: &BTreeSet<String>, rel: &str) -> bool {
    let mut at = rel;
    loop {
        if only.contains(at) {
            return true;
        }
        match at.rfind('/') {
            Some(i) => at = &at[..i],
            None => return false,
        }
    }
}

/// Whether something in `only` lies inside the folder `rel` (the first path after `rel/` in
/// order says).
fn holds(only: &BTreeSet<String>, rel: &str) -> bool {
    let inside = format!("{rel}/");
    only.range(inside.clone()..).next().is_some_and(|o| o.starts_with(&inside))
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
    /// This summary of a retry (a request whose [`TreeRequest::only`] is `only`) folded into
    /// `earlier`, the summary of the run it retried: the files verified then outside `only`
    /// stay in the manifest (each was verified when it arrived), and for everything inside
    /// `only` this run's word counts.
    pub fn after_retry(mut self, earlier: &Manifest, only: &BTreeSet<String>) -> TreeSummary {
        for (rel, md5) in &earlier.entries {
            if !covered(only, rel) {
                self.manifest.push(rel.clone(), *md5);
            }
        }
        self
    }

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
    let mut run = || -> Result<TreeSummary, ClientError> {
        let mut summary = TreeSummary::default();
        if !req.dest.is_dir() {
            fs::create_dir_all(&req.dest).map_err(ClientError::local("cannot create the folder", &req.dest))?;
        }
        let files = walk::walk(conn, req, first_sent, cancel, &mut summary, update)?;
        let bytes: u64 = files.iter().map(|f| f.size).sum();
        update(TreeUpdate::Planned { files: files.len() as u64, bytes, folders: summary.folders as u64 });
        fetch::fetch(conn, req, cancel, &mut summary, update, files, bytes)?;
        Ok(summary)
    };
    let result = run();
    conn.set_patience(Duration::ZERO);
    match result {
        Err(_) if cancel.is_cancelled() => Err(ClientError::Cancelled),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_covers_its_paths_and_what_is_inside_and_leads_through_their_folders() {
        let req = TreeRequest {
            paths: vec!["a".into()],
            dest: PathBuf::from("."),
            overwrite: false,
            limits: TreeLimits::default(),
            only: Some(BTreeSet::from(["a/small".into(), "a/x/y.txt".into()])),
        };
        assert!(req.covers("a/small") && req.covers("a/small/1.txt") && req.covers("a/x/y.txt"));
        assert!(!req.covers("a/smallish") && !req.covers("a/x") && !req.covers("a/x/y.txt2"));
        assert!(req.leads_to("a") && req.leads_to("a/x") && req.leads_to("a/small/deeper"));
        assert!(!req.leads_to("a/z") && !req.leads_to("a/smallish") && !req.leads_to("b"));
        let all = TreeRequest { only: None, ..req };
        assert!(all.covers("anything") && all.leads_to("anything"));
    }

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
