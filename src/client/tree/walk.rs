//! The walk: each asked-for path looked up, each folder listed (several listings in flight),
//! every name checked, local folders created; out come the planned files.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::path::Path;

use super::{
    FileReport, FileResult, Folder, LISTS_IN_FLIGHT, MAX_IN_FLIGHT_BYTES, Planned, TreeEntry, TreeListing, TreeRequest,
    TreeSummary, TreeUpdate, first_lists, join, wire_len,
};
use crate::client::{CancelToken, ClientError, Connection, Renamed};
use crate::protocol::message::{EntryKind, ErrorCode, ErrorReply, Request};
use crate::protocol::names;
use crate::protocol::parse_hex;
use crate::protocol::path::{Escaped, check_file_name};

/// Walks `req`'s paths; the files to fetch, in the order found.
pub(super) fn walk(
    conn: &mut Connection,
    req: &TreeRequest,
    first_sent: bool,
    cancel: &CancelToken,
    summary: &mut TreeSummary,
    update: &mut dyn FnMut(TreeUpdate),
) -> Result<Vec<Planned>, ClientError> {
    let mut walk = Walk {
        conn,
        req,
        cancel,
        summary,
        update,
        files: Vec::new(),
        seen: HashSet::new(),
        entries: 0,
        listed: HashMap::new(),
        first_sent,
    };
    walk.walk()?;
    Ok(walk.files)
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
        if !self.req.leads_to(&rel) {
            return; // not asked for this time
        }
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
            EntryKind::Dir if !self.req.leads_to(&rel) => {}
            EntryKind::File if !self.req.covers(&rel) => {}
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
