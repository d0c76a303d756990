//! The downloads model: one row per download, each driven by one engine job, from the start
//! to its verdict (or failure, or cancellation), and restarted (resumed) from here.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::session::describe;
use crate::client::jobs::{EventKind, JobHandle, JobId, Jobs};
use crate::client::{
    ClientError, ConnectOptions, DownloadRequest, FileReport, Manifest, TreeLimits, TreeRequest, UploadRequest,
    part_path, record_path,
};
use crate::gui::verdict::Verdict;
use crate::protocol::Md5Digest;
use crate::protocol::path::Escaped;

/// Where a download stands.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    Connecting,
    Running,
    Done {
        verdict: Verdict,
        size: u64,
        resumed_from: u64,
    },
    Failed {
        message: String,
    },
    /// Cancelled; `part` is the partial file the engine kept for a resume.
    Cancelled {
        part: Option<PathBuf>,
    },
    /// The destination exists; waiting for the person to say whether to replace it.
    Exists,
    /// The person chose to keep the existing file.
    Kept,
    /// A folder download ran to its end: how many files verified, which did not, and the
    /// folder's fingerprint (MD5 of its manifest).
    FolderDone {
        problems: Vec<FileReport>,
        /// The verified files: a retry of the problems adds to them.
        manifest: Manifest,
        /// The manifest's MD5, kept rather than hashed again every frame.
        fingerprint: Md5Digest,
    },
}

/// One row of the Downloads list.
pub(crate) struct Download {
    pub row: u64,
    job: Option<JobHandle>,
    job_id: JobId,
    pub addr: String,
    opts: ConnectOptions,
    pub remote: String,
    /// The local file: where a download goes, or what an upload sends.
    pub dest: PathBuf,
    /// An upload of `dest` to `remote` (else a download of `remote` into `dest`).
    pub upload: bool,
    overwrite: bool,
    pub phase: Phase,
    pub done: u64,
    pub total: u64,
    pub bytes_per_sec: f64,
    /// Restarted with a partial file to check before new bytes arrive.
    pub resuming: bool,
    /// A folder (or several files and folders) in one job: `dest` is the folder they are
    /// saved into, `paths` what was asked for.
    pub folder: bool,
    pub paths: Vec<String>,
    /// Files finished and planned, for a folder download.
    pub files: (u64, u64),
    /// A folder job retrying only the earlier run's problems (their relative paths), and the
    /// manifest of the files that run verified.
    retry: Option<(BTreeSet<String>, Manifest)>,
}

impl Download {
    pub fn is_running(&self) -> bool {
        matches!(self.phase, Phase::Connecting | Phase::Running)
    }

    pub fn name(&self) -> String {
        if self.folder {
            if self.paths.len() > 1 {
                return format!("{} items", self.paths.len());
            }
            let name = self.remote.rsplit('/').next().unwrap_or(&self.remote);
            return Escaped(name).to_string();
        }
        let name = self.dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Escaped(&name).to_string()
    }
}

/// Every download of this run, newest first.
#[derive(Default)]
pub(crate) struct Transfers {
    pub rows: Vec<Download>,
    next_row: u64,
    /// A download waiting for "replace the existing file?".
    pub confirm: Option<u64>,
    /// A removed card whose partial file may be deleted: (row, the download's destination, the
    /// bytes that arrived).
    pub offer_delete: Option<(u64, PathBuf, u64)>,
}

impl Transfers {
    pub fn running_count(&self) -> usize {
        self.rows.iter().filter(|d| d.is_running()).count()
    }

    /// Starts downloading `remote` from `addr` into `dest`.
    pub fn start(&mut self, jobs: &Jobs, addr: &str, opts: &ConnectOptions, remote: String, dest: PathBuf) {
        self.begin(jobs, addr, opts, remote, dest, false, Vec::new());
    }

    /// Starts uploading the local file `local` to `remote` on `addr`.
    pub fn start_upload(&mut self, jobs: &Jobs, addr: &str, opts: &ConnectOptions, local: PathBuf, remote: String) {
        self.begin(jobs, addr, opts, remote, local, true, Vec::new());
    }

    /// Starts downloading the folders and files `paths` (folders recursively, every file
    /// verified) into the folder `into`, in one job.
    pub fn start_folder(&mut self, jobs: &Jobs, addr: &str, opts: &ConnectOptions, paths: Vec<String>, into: PathBuf) {
        let remote = paths.join(", ");
        self.begin(jobs, addr, opts, remote, into, false, paths);
    }

    /// `paths` empty: one file, `remote`; else a folder job for `paths`.
    #[allow(clippy::too_many_arguments)]
    fn begin(
        &mut self,
        jobs: &Jobs,
        addr: &str,
        opts: &ConnectOptions,
        remote: String,
        dest: PathBuf,
        upload: bool,
        paths: Vec<String>,
    ) {
        let folder = !paths.is_empty();
        self.next_row += 1;
        let mut d = Download {
            row: self.next_row,
            job: None,
            job_id: 0,
            addr: addr.to_string(),
            opts: download_options(opts),
            remote,
            dest,
            upload,
            overwrite: false,
            phase: Phase::Connecting,
            done: 0,
            total: 0,
            bytes_per_sec: 0.0,
            resuming: false,
            folder,
            paths,
            files: (0, 0),
            retry: None,
        };
        start_job(jobs, &mut d);
        self.rows.insert(0, d);
    }

    /// Starts a finished, failed or cancelled download again; a kept partial file is resumed.
    /// `credentials` are the browsed connection's, when it is to the same host: the PIN typed
    /// since the download first started is the one that counts.
    pub fn restart(&mut self, jobs: &Jobs, row: u64, overwrite: bool, credentials: Option<(&str, &ConnectOptions)>) {
        let Some(d) = self.rows.iter_mut().find(|d| d.row == row) else { return };
        if d.is_running() {
            return;
        }
        if let Some((addr, opts)) = credentials
            && addr == d.addr
        {
            d.opts.pin = opts.pin.clone();
        }
        d.overwrite |= overwrite;
        if let Phase::FolderDone { problems, manifest, .. } = &d.phase {
            // "Retry failed": only the files that failed (a failed or cancelled retry, started
            // again, keeps its scope).
            let only = problems.iter().map(|p| p.rel.clone()).collect();
            d.retry = (!problems.is_empty()).then(|| (only, manifest.clone()));
        }
        d.resuming = matches!(d.phase, Phase::Cancelled { part: Some(_) }) || d.done > 0;
        d.done = 0;
        d.total = 0;
        start_job(jobs, d);
    }

    pub fn cancel(&mut self, row: u64) {
        if let Some(job) = self.rows.iter().find(|d| d.row == row).and_then(|d| d.job.as_ref()) {
            job.cancel();
        }
    }

    pub fn keep_existing(&mut self, row: u64) {
        if let Some(d) = self.rows.iter_mut().find(|d| d.row == row) {
            d.phase = Phase::Kept;
        }
        self.confirm = None;
        self.ask_next();
    }

    pub fn replace_existing(&mut self, jobs: &Jobs, row: u64, credentials: Option<(&str, &ConnectOptions)>) {
        self.confirm = None;
        self.restart(jobs, row, true, credentials);
        self.ask_next();
    }

    /// Removes a card that has ended. A cancelled download's partial file (which the engine
    /// made and reported) is offered for deletion rather than left where nothing points to it.
    pub fn dismiss(&mut self, row: u64) {
        if let Some(d) = self.rows.iter().find(|d| d.row == row)
            && let Phase::Cancelled { part: Some(_) } = &d.phase
        {
            // The engine kept one; it and its record are found by the destination.
            self.offer_delete = Some((row, d.dest.clone(), d.done));
        }
        self.rows.retain(|d| d.row != row || d.is_running());
    }

    /// Deletes the offered partial file, on a worker thread (the window never waits on the disk).
    pub fn delete_offered_part(&mut self) {
        if let Some((_, dest, _)) = self.offer_delete.take() {
            let _ = std::thread::Builder::new().name("ferry-delete-part".into()).spawn(move || {
                // The partial file first, then the record that marks it as ferry's.
                if std::fs::remove_file(part_path(&dest)).is_ok() {
                    let _ = std::fs::remove_file(record_path(&dest));
                }
            });
        }
    }

    pub fn clear_finished(&mut self) {
        self.rows.retain(|d| d.is_running() || matches!(d.phase, Phase::Exists));
    }

    /// Cancels every download (when the window closes); their partial files stay for a resume.
    /// Not joined: a job still connecting could hold the window open for the connect timeout,
    /// and a partial file cut short anywhere is still resumed safely (the MD5 covers it all).
    pub fn shutdown(&mut self) {
        for job in self.rows.iter().filter_map(|d| d.job.as_ref()) {
            job.cancel();
        }
    }

    /// Whether `job` drives one of the rows.
    pub fn owns(&self, job: JobId) -> bool {
        self.rows.iter().any(|d| d.job_id == job && d.job.is_some())
    }

    /// Handles an event of a download job.
    pub fn handle(&mut self, job: JobId, kind: EventKind) {
        let Some(d) = self.rows.iter_mut().find(|d| d.job_id == job && d.job.is_some()) else { return };
        if kind.is_terminal() {
            d.job = None; // the job's thread ends by itself
        }
        match kind {
            EventKind::Connected { .. } => d.phase = Phase::Running,
            EventKind::Progress { done, total, bytes_per_sec } => {
                d.phase = Phase::Running;
                d.done = done;
                d.total = total;
                d.bytes_per_sec = bytes_per_sec;
            }
            EventKind::Verified { md5, dest, size, resumed_from, .. } => {
                d.dest = dest;
                d.done = size;
                d.total = size;
                d.phase = Phase::Done { verdict: Verdict::Verified(md5), size, resumed_from };
            }
            EventKind::Identical { md5, dest, size } => {
                d.dest = dest;
                d.done = 0;
                d.total = size;
                d.phase = Phase::Done { verdict: Verdict::Identical(md5), size, resumed_from: 0 };
            }
            EventKind::Mismatch { expected, actual, size } => {
                d.phase = Phase::Done { verdict: Verdict::Mismatch { expected, actual }, size, resumed_from: 0 };
            }
            EventKind::Uploaded { md5, size, resumed_from, .. } => {
                d.done = size;
                d.total = size;
                d.phase = Phase::Done { verdict: Verdict::Verified(md5), size, resumed_from };
            }
            EventKind::UploadMismatch { sent, host, size } => {
                // The host computed `host` over what arrived, against the `sent` trailer.
                let verdict = Verdict::Mismatch { expected: sent, actual: host.unwrap_or_default() };
                d.phase = Phase::Done { verdict, size, resumed_from: 0 };
            }
            EventKind::Failed(ClientError::Exists(_)) => d.phase = Phase::Exists,
            EventKind::Failed(error) => d.phase = Phase::Failed { message: describe(&error) },
            EventKind::Cancelled { part } => d.phase = Phase::Cancelled { part },
            EventKind::Listing(_) | EventKind::ListFailed { .. } | EventKind::Closed | EventKind::TreeFiles(_) => {}
            EventKind::TreePlanned { files, bytes, .. } => {
                d.phase = Phase::Running;
                d.files = (0, files);
                d.total = bytes;
            }
            EventKind::TreeProgress { files_done, files_total, done, total, bytes_per_sec } => {
                d.phase = Phase::Running;
                d.files = (files_done, files_total);
                d.done = done;
                d.total = total;
                d.bytes_per_sec = bytes_per_sec;
            }
            EventKind::TreeFinished(summary) => {
                let summary = match d.retry.take() {
                    Some((only, earlier)) => summary.after_retry(&earlier, &only),
                    None => summary,
                };
                d.done = d.total;
                d.phase = Phase::FolderDone {
                    fingerprint: summary.manifest.fingerprint(),
                    problems: summary.problems,
                    manifest: summary.manifest,
                };
            }
        }
        self.ask_next();
    }

    /// Puts the next download waiting on "replace?" in front of the person.
    fn ask_next(&mut self) {
        if self.confirm.is_none() {
            self.confirm = self.rows.iter().rev().find(|d| matches!(d.phase, Phase::Exists)).map(|d| d.row);
        }
    }
}

/// A download's connection waits longer than a browsing one: a host busy hashing a large file
/// before it sends may be silent for a while.
fn download_options(browse: &ConnectOptions) -> ConnectOptions {
    ConnectOptions {
        connect_timeout: ConnectOptions::default().connect_timeout,
        io_timeout: ConnectOptions::default().io_timeout,
        ..browse.clone()
    }
}

fn start_job(jobs: &Jobs, d: &mut Download) {
    let job = if d.upload {
        let req = UploadRequest { local: d.dest.clone(), path: d.remote.clone(), mkdirs: true };
        jobs.upload(&d.addr, &d.opts, req)
    } else if d.folder {
        let req = TreeRequest {
            paths: d.paths.clone(),
            dest: d.dest.clone(),
            overwrite: d.overwrite,
            limits: TreeLimits::default(),
            only: d.retry.as_ref().map(|(only, _)| only.clone()),
        };
        jobs.download_tree(&d.addr, &d.opts, req)
    } else {
        let req = DownloadRequest { path: d.remote.clone(), dest: d.dest.clone(), overwrite: d.overwrite };
        jobs.download(&d.addr, &d.opts, req)
    };
    d.job_id = job.id;
    d.job = Some(job);
    d.phase = Phase::Connecting;
    d.bytes_per_sec = 0.0;
}
