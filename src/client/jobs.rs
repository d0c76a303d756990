//! Client work on worker threads: each job reports [`ClientEvent`]s on one crossbeam channel
//! and can be cancelled from any thread. A download job always ends with exactly one terminal
//! event: `Verified`, `Mismatch`, `Identical`, `Failed` or `Cancelled`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::partial::part_path;
use super::{
    CancelToken, ClientError, ConnectOptions, Connection, DownloadRequest, FileReport, Outcome, Renamed, TreeRequest,
    TreeSummary, TreeUpdate, UploadOutcome, UploadRequest, local_dest,
};
use crate::protocol::Md5Digest;
use crate::protocol::message::{HelloReply, ListReply};
use crate::sink::{DEFAULT_QUEUE, Delivery, Notify, Policy, Sink};

/// How often an idle browse session checks that the host is still there.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Identifies one job among those started from the same [`Jobs`].
pub type JobId = u64;

/// One event of one job.
#[derive(Debug)]
pub struct ClientEvent {
    pub job: JobId,
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug)]
pub enum EventKind {
    /// `hello` succeeded.
    /// `identity` is who answered an encrypted connection and how that compares with what was
    /// remembered (`None` on a plain one).
    Connected { server: HelloReply, peer: SocketAddr, identity: Option<super::HostIdentity> },
    /// A folder listing arrived (browse sessions).
    Listing(ListReply),
    /// A listing was refused; the session goes on.
    ListFailed { path: String, error: ClientError },
    /// Bytes of the whole file on disk, its size, and the recent rate; at most ~20 a second.
    Progress { done: u64, total: u64, bytes_per_sec: f64 },
    /// Terminal: the file is in place and its MD5 matches the host's.
    /// `renamed` is set when the file was saved under another name than the one asked for.
    Verified { md5: Md5Digest, dest: PathBuf, size: u64, resumed_from: u64, renamed: Option<Renamed> },
    /// Terminal: the digests differ; nothing was saved under the final name.
    Mismatch { expected: Md5Digest, actual: Md5Digest, size: u64 },
    /// Terminal for an upload: the host's MD5 of the whole file equals the one computed here,
    /// and the file is at `path` on the host.
    Uploaded { md5: Md5Digest, path: String, size: u64, resumed_from: u64 },
    /// Terminal for an upload: the host's MD5 (`host`, when it said) differs from the one
    /// computed here (`sent`); the host kept nothing.
    UploadMismatch { sent: Md5Digest, host: Option<Md5Digest>, size: u64 },
    /// Terminal: nothing was downloaded, the destination already holds the file (its MD5 is
    /// the one the host lists; see [`super::already_have`]).
    Identical { md5: Md5Digest, dest: PathBuf, size: u64 },
    /// Terminal: the job failed (for a browse session: it could not connect).
    Failed(ClientError),
    /// Terminal: cancelled; a download keeps its partial file for a later resume.
    Cancelled { part: Option<PathBuf> },
    /// Terminal for a browse session that was closed.
    Closed,
    /// A folder job's walk is done: this many files, bytes and folders.
    TreePlanned { files: u64, bytes: u64, folders: u64 },
    /// A folder job's overall progress: files finished, bytes on disk, the totals, the recent
    /// rate; at most ~20 a second.
    TreeProgress { files_done: u64, files_total: u64, done: u64, total: u64, bytes_per_sec: f64 },
    /// Files of a folder job that ended (verified, mismatched or failed), in order. Verified
    /// ones are gathered and sent with the progress (~20 a second), so a folder of many small
    /// files does not wake the front once per file; a problem goes out at once. Events of
    /// verified files only may be dropped when the front falls far behind (the summary lists
    /// them all); problems never.
    TreeFiles(Vec<FileReport>),
    /// Terminal for a folder job that ran to its end, whatever happened to each file: the
    /// summary says which verified (the manifest) and which did not.
    TreeFinished(TreeSummary),
}

impl EventKind {
    /// True for the event that ends a job.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            EventKind::Verified { .. }
                | EventKind::Mismatch { .. }
                | EventKind::Uploaded { .. }
                | EventKind::UploadMismatch { .. }
                | EventKind::Identical { .. }
                | EventKind::Failed(_)
                | EventKind::Cancelled { .. }
                | EventKind::Closed
                | EventKind::TreeFinished(_)
        )
    }
}

/// Starts client jobs; all their events arrive on the receiver returned by [`Jobs::new`].
pub struct Jobs {
    sink: Sink<ClientEvent>,
    next: AtomicU64,
}

/// Sends one job's events. The terminal event goes out exactly once: a second is ignored, and
/// if the job's thread ends without one (it panicked), dropping the emitter sends `Failed`.
struct Emitter {
    job: JobId,
    sink: Sink<ClientEvent>,
    ended: bool,
}

impl Emitter {
    fn emit(&mut self, kind: EventKind) {
        if kind.is_terminal() {
            if self.ended {
                return;
            }
            self.ended = true;
        }
        self.sink.send(ClientEvent { job: self.job, kind });
    }
}

impl Drop for Emitter {
    fn drop(&mut self) {
        if !self.ended {
            self.emit(EventKind::Failed(ClientError::Internal("the job's thread panicked".into())));
        }
    }
}

/// A running job.
pub struct JobHandle {
    pub id: JobId,
    cancel: CancelToken,
    thread: Option<JoinHandle<()>>,
}

impl JobHandle {
    /// Cancels the job (it ends with `Cancelled`, or with its verdict if that came first).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A token that cancels this job from anywhere (a Ctrl-C handler, another thread).
    pub fn canceller(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Waits for the job's thread to end.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

enum BrowseCommand {
    List(String),
}

/// A browse session: one connection, kept open, answering list requests in turn.
/// Dropping it closes the connection.
pub struct BrowseHandle {
    pub id: JobId,
    commands: Option<Sender<BrowseCommand>>,
    cancel: CancelToken,
}

impl BrowseHandle {
    /// Asks for a listing; the answer arrives as `Listing` or `ListFailed`.
    pub fn list(&self, path: &str) {
        if let Some(tx) = &self.commands {
            let _ = tx.send(BrowseCommand::List(path.to_string()));
        }
    }
}

impl Drop for BrowseHandle {
    fn drop(&mut self) {
        self.commands.take();
        self.cancel.cancel();
    }
}

impl Jobs {
    pub fn new(notify: Option<Notify>) -> (Jobs, Receiver<ClientEvent>) {
        // Progress is superseded by the next one; everything else the front asked for.
        let policy = Policy {
            limit: DEFAULT_QUEUE,
            delivery: |e: &ClientEvent| match e.kind {
                EventKind::Progress { .. } | EventKind::TreeProgress { .. } => Delivery::Coalesce,
                EventKind::TreeFiles(ref files) if files.iter().all(|f| f.result.is_verified()) => Delivery::Droppable,
                _ => Delivery::Essential,
            },
            dropped: |_| None,
        };
        let (sink, rx) = Sink::with_policy(policy, notify);
        (Jobs { sink, next: AtomicU64::new(1) }, rx)
    }

    fn emitter(&self) -> (JobId, Emitter) {
        let job = self.next.fetch_add(1, Ordering::Relaxed);
        (job, Emitter { job, sink: self.sink.clone(), ended: false })
    }

    /// Downloads one file on a connection of its own.
    pub fn download(&self, addr: &str, opts: &ConnectOptions, req: DownloadRequest) -> JobHandle {
        let (addr, opts) = (addr.to_string(), opts.clone());
        self.spawn_job("get", "download", move |token, emitter| {
            run_download(&addr, &opts, &req, token, &mut |kind| emitter.emit(kind))
        })
    }

    /// Uploads one file on a connection of its own; it ends in `Uploaded`, `UploadMismatch`,
    /// `Failed` or `Cancelled` (a cancelled upload leaves the host its partial file, which the
    /// same upload later resumes).
    pub fn upload(&self, addr: &str, opts: &ConnectOptions, req: UploadRequest) -> JobHandle {
        let (addr, opts) = (addr.to_string(), opts.clone());
        self.spawn_job("put", "upload", move |token, emitter| {
            run_upload(&addr, &opts, &req, token, &mut |kind| emitter.emit(kind))
        })
    }

    /// Downloads files and whole folders on one connection of its own (pipelined, see
    /// [`super::tree`]). Ends in `TreeFinished` (each file's verdict inside), `Failed` or
    /// `Cancelled`.
    pub fn download_tree(&self, addr: &str, opts: &ConnectOptions, req: TreeRequest) -> JobHandle {
        let (addr, opts) = (addr.to_string(), opts.clone());
        self.spawn_job("tree", "folder download", move |token, emitter| {
            run_tree(&addr, &opts, &req, token, &mut |kind| emitter.emit(kind))
        })
    }

    /// Runs `job` on a thread of its own (`ferry-NAME-ID`) with the job's cancel token and
    /// emitter (which ends the job with one terminal event even if `job` panics).
    fn spawn_job(
        &self,
        name: &str,
        what: &str,
        job: impl FnOnce(&CancelToken, &mut Emitter) + Send + 'static,
    ) -> JobHandle {
        let (id, mut emitter) = self.emitter();
        let cancel = CancelToken::new();
        let token = cancel.clone();
        let thread = thread::Builder::new()
            .name(format!("ferry-{name}-{id}"))
            .spawn(move || job(&token, &mut emitter))
            .unwrap_or_else(|e| panic!("spawn {what} thread: {e}"));
        JobHandle { id, cancel, thread: Some(thread) }
    }

    /// Opens a browse session; it connects at once and lists nothing until asked.
    pub fn browse(&self, addr: &str, opts: &ConnectOptions) -> BrowseHandle {
        let (id, mut emitter) = self.emitter();
        let cancel = CancelToken::new();
        let (tx, rx) = crossbeam_channel::unbounded();
        let (addr, opts, token) = (addr.to_string(), opts.clone(), cancel.clone());
        thread::Builder::new()
            .name(format!("ferry-browse-{id}"))
            .spawn(move || run_browse(&addr, &opts, &rx, &token, &mut |kind| emitter.emit(kind)))
            .expect("spawn browse thread");
        BrowseHandle { id, commands: Some(tx), cancel }
    }
}

fn run_download(
    addr: &str,
    opts: &ConnectOptions,
    req: &DownloadRequest,
    cancel: &CancelToken,
    emit: &mut impl FnMut(EventKind),
) {
    // The partial file of the name the download is saved under.
    let part = local_dest(req, opts.names).map_or_else(|_| part_path(&req.dest), |(dest, _)| part_path(&dest));
    let result = Connection::connect_with(addr, opts, Some(cancel)).and_then(|mut conn| {
        emit(connected(&conn));
        #[cfg(test)]
        crate::sink::panic_if_injected(&req.path);
        conn.download(req, cancel, &mut progress_reporter(emit))
    });
    emit(match result {
        Ok(Outcome::Verified { md5, dest, size, resumed_from, renamed }) => {
            EventKind::Verified { md5, dest, size, resumed_from, renamed }
        }
        Ok(Outcome::Mismatch { expected, actual, size }) => EventKind::Mismatch { expected, actual, size },
        Ok(Outcome::Identical { md5, dest, size }) => EventKind::Identical { md5, dest, size },
        Err(ClientError::Cancelled) => EventKind::Cancelled { part: part.exists().then_some(part) },
        Err(_) if cancel.is_cancelled() => EventKind::Cancelled { part: part.exists().then_some(part) },
        Err(e) => EventKind::Failed(e),
    });
}

/// The event that says whom a job reached.
fn connected(conn: &Connection) -> EventKind {
    EventKind::Connected { server: conn.server().clone(), peer: conn.peer(), identity: conn.identity().cloned() }
}

/// Progress events at most ~20 a second, but always the start, the first bytes and the end.
fn progress_reporter(emit: &mut impl FnMut(EventKind)) -> impl FnMut(super::Progress) + '_ {
    let mut rate = crate::rate::RateMeter::default();
    let mut last: Option<(Instant, u64)> = None;
    move |p| {
        let now = Instant::now();
        let bytes_per_sec = rate.update(now, p.done);
        let due = match last {
            None => true,
            Some((t, done)) => now.duration_since(t) >= Duration::from_millis(50) || done == 0 || p.done == p.total,
        };
        if due && last.is_none_or(|(_, done)| done != p.done || p.done == p.total) {
            last = Some((now, p.done));
            emit(EventKind::Progress { done: p.done, total: p.total, bytes_per_sec });
        }
    }
}

fn run_upload(
    addr: &str,
    opts: &ConnectOptions,
    req: &UploadRequest,
    cancel: &CancelToken,
    emit: &mut impl FnMut(EventKind),
) {
    let result = Connection::connect_with(addr, opts, Some(cancel)).and_then(|mut conn| {
        emit(connected(&conn));
        #[cfg(test)]
        crate::sink::panic_if_injected(&req.path);
        conn.upload(req, cancel, &mut progress_reporter(emit))
    });
    emit(match result {
        Ok(UploadOutcome::Verified { md5, path, size, resumed_from }) => {
            EventKind::Uploaded { md5, path, size, resumed_from }
        }
        Ok(UploadOutcome::Mismatch { sent, host, size }) => EventKind::UploadMismatch { sent, host, size },
        Err(_) if cancel.is_cancelled() => EventKind::Cancelled { part: None },
        Err(e) => EventKind::Failed(e),
    });
}

fn run_tree(
    addr: &str,
    opts: &ConnectOptions,
    req: &TreeRequest,
    cancel: &CancelToken,
    emit: &mut impl FnMut(EventKind),
) {
    // The job's first listings go out right behind hello.
    let first = super::tree::first_batch(req);
    let ahead = first.as_deref().unwrap_or_default();
    let result = Connection::connect_ahead(addr, opts, Some(cancel), ahead).and_then(|mut conn| {
        emit(connected(&conn));
        #[cfg(test)]
        if let Some(p) = req.paths.first() {
            crate::sink::panic_if_injected(p);
        }
        let mut rate = crate::rate::RateMeter::default();
        let mut last: Option<Instant> = None;
        let mut verified: Vec<FileReport> = Vec::new();
        let result = super::tree::download_tree(&mut conn, req, first.is_some(), cancel, &mut |u| match u {
            TreeUpdate::Planned { files, bytes, folders } => emit(EventKind::TreePlanned { files, bytes, folders }),
            TreeUpdate::Progress { files_done, files_total, done, total } => {
                let now = Instant::now();
                let bytes_per_sec = rate.update(now, done);
                let due = last.is_none_or(|t| now.duration_since(t) >= Duration::from_millis(50))
                    || files_done == files_total;
                if due {
                    last = Some(now);
                    if !verified.is_empty() {
                        emit(EventKind::TreeFiles(std::mem::take(&mut verified)));
                    }
                    emit(EventKind::TreeProgress { files_done, files_total, done, total, bytes_per_sec });
                }
            }
            TreeUpdate::File(report) if report.result.is_verified() => verified.push(report),
            TreeUpdate::File(report) => {
                // In order: the verified files before it first.
                let mut files = std::mem::take(&mut verified);
                files.push(report);
                emit(EventKind::TreeFiles(files));
            }
        });
        if !verified.is_empty() {
            emit(EventKind::TreeFiles(verified));
        }
        result
    });
    emit(match result {
        Ok(summary) => EventKind::TreeFinished(summary),
        Err(ClientError::Cancelled) => EventKind::Cancelled { part: None },
        Err(_) if cancel.is_cancelled() => EventKind::Cancelled { part: None },
        Err(e) => EventKind::Failed(e),
    });
}

fn run_browse(
    addr: &str,
    opts: &ConnectOptions,
    commands: &Receiver<BrowseCommand>,
    cancel: &CancelToken,
    emit: &mut impl FnMut(EventKind),
) {
    let connect = || Connection::connect_with(addr, opts, Some(cancel));
    let mut conn = match connect() {
        Ok(c) => c,
        Err(e) => {
            emit(if cancel.is_cancelled() { EventKind::Closed } else { EventKind::Failed(e) });
            return;
        }
    };
    emit(EventKind::Connected { server: conn.server().clone(), peer: conn.peer(), identity: conn.identity().cloned() });
    loop {
        let path = match commands.recv_timeout(WATCH_EVERY) {
            Ok(BrowseCommand::List(path)) => {
                #[cfg(test)]
                crate::sink::panic_if_injected(&path);
                path
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) if cancel.is_cancelled() => break,
            Err(RecvTimeoutError::Timeout) => {
                if conn.peer_closed() {
                    // Stopped hosting, or closed an idle connection: only a new connection
                    // tells which. A host that is gone ends the session now, not at the next
                    // request.
                    match connect() {
                        Ok(c) => conn = c,
                        Err(_) if cancel.is_cancelled() => break,
                        Err(e) => {
                            emit(EventKind::Failed(e));
                            return;
                        }
                    }
                }
                continue;
            }
        };
        let mut result = conn.list(&path);
        if matches!(result, Err(ClientError::Lost(_) | ClientError::TimedOut(_))) && !cancel.is_cancelled() {
            // The server may have closed an idle connection: reconnect once and retry.
            match connect() {
                Ok(c) => {
                    conn = c;
                    result = conn.list(&path);
                }
                Err(e) => result = Err(e),
            }
        }
        match result {
            Ok(listing) => emit(EventKind::Listing(listing)),
            Err(_) if cancel.is_cancelled() => break,
            Err(error @ ClientError::Server(_)) => emit(EventKind::ListFailed { path, error }),
            Err(error) => {
                emit(EventKind::Failed(error));
                return;
            }
        }
    }
    emit(EventKind::Closed);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::server::{Server, ServerConfig, ServerEvent};
    use crate::sink::INJECTED_PANIC;

    fn host(dir: &std::path::Path) -> (Server, String) {
        std::fs::write(dir.join(INJECTED_PANIC), b"boom").unwrap();
        let (server, events) = Server::spawn(ServerConfig::new(dir, "127.0.0.1:0"), None);
        loop {
            if let ServerEvent::Listening { addr, .. } = events.recv_timeout(Duration::from_secs(10)).unwrap() {
                return (server, addr.to_string());
            }
        }
    }

    /// The job's events up to its thread's end.
    fn until_end(events: &Receiver<ClientEvent>) -> Vec<EventKind> {
        let mut seen = Vec::new();
        while let Ok(e) = events.recv_timeout(Duration::from_secs(10)) {
            let terminal = e.kind.is_terminal();
            seen.push(e.kind);
            if terminal {
                break;
            }
        }
        // Nothing after the terminal event.
        assert!(events.recv_timeout(Duration::from_millis(200)).is_err(), "{seen:?}");
        seen
    }

    fn assert_one_internal_failure(seen: &[EventKind]) {
        assert_eq!(seen.iter().filter(|k| k.is_terminal()).count(), 1, "{seen:?}");
        assert!(
            matches!(seen.last(), Some(EventKind::Failed(ClientError::Internal(m))) if m.contains("panicked")),
            "{seen:?}"
        );
    }

    #[test]
    fn a_download_whose_thread_panics_ends_in_one_failed_event() {
        let (dir, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_server, addr) = host(dir.path());
        let (jobs, events) = Jobs::new(None);
        let req = DownloadRequest { path: INJECTED_PANIC.into(), dest: out.path().join("x"), overwrite: false };
        let job = jobs.download(&addr, &ConnectOptions::default(), req);
        let seen = until_end(&events);
        job.join();
        assert_one_internal_failure(&seen);
    }

    #[test]
    fn a_folder_download_whose_thread_panics_ends_in_one_failed_event() {
        let (dir, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_server, addr) = host(dir.path());
        let (jobs, events) = Jobs::new(None);
        let req = TreeRequest {
            paths: vec![INJECTED_PANIC.into()],
            dest: out.path().into(),
            overwrite: false,
            limits: Default::default(),
            only: None,
        };
        let job = jobs.download_tree(&addr, &ConnectOptions::default(), req);
        let seen = until_end(&events);
        job.join();
        assert_one_internal_failure(&seen);
    }

    #[test]
    fn an_upload_whose_thread_panics_ends_in_one_failed_event() {
        let (dir, src) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_server, addr) = host(dir.path());
        std::fs::write(src.path().join("x"), b"x").unwrap();
        let (jobs, events) = Jobs::new(None);
        let req = UploadRequest { local: src.path().join("x"), path: INJECTED_PANIC.into(), mkdirs: false };
        let job = jobs.upload(&addr, &ConnectOptions::default(), req);
        let seen = until_end(&events);
        job.join();
        assert_one_internal_failure(&seen);
    }

    #[test]
    fn a_browse_session_whose_thread_panics_ends_in_one_failed_event() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, addr) = host(dir.path());
        let (jobs, events) = Jobs::new(None);
        let session = jobs.browse(&addr, &ConnectOptions::default());
        session.list(INJECTED_PANIC);
        let seen = until_end(&events);
        assert_one_internal_failure(&seen);
        drop(session);
    }
}
