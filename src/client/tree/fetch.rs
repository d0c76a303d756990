//! The fetch: pipelined `get`s through the single-file path, one verdict each; files already
//! there are checked against the host's trailer instead.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{
    FIRST_WRITE, FileReport, FileResult, MAX_IN_FLIGHT_BYTES, Planned, SPACE_CHECK_FROM, TreeRequest, TreeSummary,
    TreeUpdate, wire_len,
};
use crate::client::download::{Attempt, Start, Step, Target, TargetOptions, sync_folder_of};
use crate::client::{CancelToken, ClientError, Connection, DownloadRequest, Outcome, Progress, verdict};
use crate::protocol::Md5Digest;
use crate::protocol::data::{self, Digest, Md5};
use crate::protocol::message::{ErrorCode, ErrorReply, GetReply, Request};

/// Fetches the planned `files` (`bytes` in all) and flushes the folders they were renamed into.
pub(super) fn fetch(
    conn: &mut Connection,
    req: &TreeRequest,
    cancel: &CancelToken,
    summary: &mut TreeSummary,
    update: &mut dyn FnMut(TreeUpdate),
    files: Vec<Planned>,
    bytes: u64,
) -> Result<(), ClientError> {
    let mut fetch = Fetch {
        conn,
        req,
        cancel,
        summary,
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
    fetched
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
        let timeout = self.conn.timeout();
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
