//! The ferry rows: the real `ferry serve` and `ferry get` binaries (always with discovery off),
//! and the library's client for the many small files.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry::client::{CancelToken, ConnectOptions, Connection, DownloadRequest, Outcome};
use ferry::protocol::message::EntryKind;

use crate::files::{check_copies, fresh_dir, remove_file_if_any};
use crate::measure::{RssSampler, vm_hwm_kib};
use crate::procs::{Drain, Proc, Watchdog, cpu_secs, describe_failure, digest_of, wait_listening};
use crate::{Bench, Result, secs_limit};

/// The `ferry` binary of this build.
pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// A command running `ferry` with mDNS discovery off: the benchmark measures transfers, and
/// never announces or browses on the machine's network.
pub fn ferry_command() -> Command {
    let mut c = Command::new(FERRY);
    c.env("FERRY_NO_DISCOVERY", "1");
    c
}

/// How ferry connects: version 2 (TLS 1.3, the default) or plain version 1 (`--plain` on
/// both sides), measured side by side.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Tls,
    Plain,
}

impl Wire {
    /// The extra argument `serve` and `get` take.
    fn args(self) -> &'static [&'static str] {
        match self {
            Wire::Tls => &[],
            Wire::Plain => &["--plain"],
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Wire::Tls => "TLS",
            Wire::Plain => "plain",
        }
    }
}

impl Bench<'_> {
    /// One timed `ferry get ADDR NAME -o DEST --force`; checks the printed digest (and, when
    /// `check_bytes`, the file itself with md5sum, untimed).
    pub fn ferry_get(&mut self, what: &str, wire: Wire, addr: &str, dest: &Path, check_bytes: bool) -> Result<GetRun> {
        remove_file_if_any(dest)?;
        let mut get = ferry_command();
        get.args(["get", addr, &self.big_name, "-o"]).arg(dest).arg("--force").args(wire.args());
        let run = self.timed_ferry(what, "ferry get", &mut get)?;
        let size =
            fs::metadata(dest).map(|m| m.len()).map_err(|e| format!("{what}: no file at {}: {e}", dest.display()))?;
        if size != self.opts.size {
            return Err(format!("{what}: {} has {size} bytes, expected {}", dest.display(), self.opts.size));
        }
        if check_bytes {
            let t = self.md5sum(dest)?;
            self.check_digest(&format!("{what} (md5sum of the saved file)"), &t.digest)?;
        }
        remove_file_if_any(dest)?;
        Ok(GetRun { mbps: self.mbps(run.secs), peak_kib: run.peak_kib, cpu_secs: run.cpu_secs })
    }

    /// Runs `command` (`ferry get` or `ferry put`, named `name`) to its end, timed, with a
    /// watchdog; it must succeed and print an md5sum line with the big file's digest.
    fn timed_ferry(&mut self, what: &str, name: &str, command: &mut Command) -> Result<TimedRun> {
        let start = Instant::now();
        let mut proc = Proc::spawn(command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()), name)?;
        let out = Drain::new(proc.take_stdout(), 20);
        let err = Drain::new(proc.take_stderr(), 20);
        let dog = Watchdog::arm(vec![proc.pid()], secs_limit(self.opts.size));
        let rss = RssSampler::start(proc.pid());
        let exit = proc.wait()?;
        let secs = start.elapsed().as_secs_f64();
        let peak_kib = rss.finish();
        if dog.finish() {
            return Err(format!("{what}: {name} took too long and was stopped"));
        }
        let (out, err) = (out.finish(), err.finish());
        if !exit.status.success() {
            return Err(describe_failure(&format!("{what}: {name}"), exit.status, &err));
        }
        let printed = digest_of(&out).ok_or_else(|| format!("{what}: {name} printed {out:?}, not `<md5>  <file>`"))?;
        self.check_digest(what, &printed)?;
        Ok(TimedRun { secs, peak_kib, cpu_secs: exit.cpu_secs })
    }

    /// One timed get from `server`, with the CPU both processes spent on it, per GiB.
    pub fn ferry_get_from(&mut self, what: &str, server: &FerryServer, dest: &Path, check: bool) -> Result<Run> {
        let before = server.cpu_secs()?;
        let get = self.ferry_get(what, server.wire, &server.addr, dest, check)?;
        let host = server.cpu_secs()? - before;
        let gib = self.opts.size as f64 / (1u64 << 30) as f64;
        Ok(Run { mbps: get.mbps, client_kib: get.peak_kib, cpu_per_gib: (host + get.cpu_secs) / gib })
    }

    /// A fresh `ferry serve --index off` (nothing hashed ahead, nothing kept: a host that never
    /// saw the file), one get.
    pub fn run_ferry_cold(&mut self, wire: Wire, first: bool) -> Result<Run> {
        let server = FerryServer::start(&self.work, wire)?;
        let what = format!("ferry cold ({})", wire.label());
        let run = self.ferry_get_from(&what, &server, &self.dl.join("ferry-cold.bin"), first)?;
        self.client_peak_kib = self.client_peak_kib.max(run.client_kib);
        self.server_peak_kib = self.server_peak_kib.max(server.peak_rss_kib().unwrap_or(0));
        if let Err(e) = server.stop() {
            self.problems.push(e);
        }
        Ok(run)
    }

    /// A fresh `ferry serve --allow-upload` of an empty folder, one timed `ferry put ADDR FILE`
    /// of the big file: the host hashes what arrives, compares it with the trailer and renames
    /// it into place. The printed digest is checked, and (when `check`) the kept file with
    /// md5sum, untimed.
    pub fn run_ferry_put(&mut self, wire: Wire, check: bool) -> Result<Run> {
        let inbox = self.work.join("inbox");
        fresh_dir(&inbox)?;
        let server = FerryServer::start_with(&inbox, wire, "off", None, &["--allow-upload"])?;
        let what = format!("ferry put ({})", wire.label());
        let before = server.cpu_secs()?;
        let mut put = ferry_command();
        put.args(["put", &server.addr]).arg(&self.big).args(wire.args());
        let run = self.timed_ferry(&what, "ferry put", &mut put)?;
        self.client_peak_kib = self.client_peak_kib.max(run.peak_kib);
        let host = server.cpu_secs()? - before;
        let kept = inbox.join(&self.big_name);
        let size = fs::metadata(&kept).map(|m| m.len()).map_err(|e| format!("{what}: nothing kept: {e}"))?;
        if size != self.opts.size {
            return Err(format!("{what}: the host kept {size} bytes, expected {}", self.opts.size));
        }
        if check {
            let t = self.md5sum(&kept)?;
            self.check_digest(&format!("{what} (md5sum of the kept file)"), &t.digest)?;
        }
        self.server_peak_kib = self.server_peak_kib.max(server.peak_rss_kib().unwrap_or(0));
        if let Err(e) = server.stop() {
            self.problems.push(e);
        }
        let _ = fs::remove_dir_all(&inbox);
        let gib = self.opts.size as f64 / (1u64 << 30) as f64;
        Ok(Run { mbps: self.mbps(run.secs), client_kib: 0, cpu_per_gib: (host + run.cpu_secs) / gib })
    }

    /// Makes the folders the indexed rows host, one per run: each holds the big file under a
    /// hard link (a name no host saw). All are made before the warm servers are primed and
    /// removed after their last get, since making or removing a link changes the file's
    /// change time, which would make a warm server's remembered digest stale.
    pub fn make_hosted_folders(&self, runs: usize) -> Result<Vec<std::path::PathBuf>> {
        (1..=runs)
            .map(|r| {
                let hosted = self.work.join(format!("hosted-{r}"));
                fresh_dir(&hosted)?;
                fs::hard_link(&self.big, hosted.join(&self.big_name))
                    .map_err(|e| format!("cannot link the big file into {}: {e}", hosted.display()))?;
                Ok(hosted)
            })
            .collect()
    }

    /// A fresh `ferry serve` (`--index whole`, an empty cache folder) of `hosted`, a folder
    /// holding only the big file; once it logs that it has indexed it, one get: the first
    /// download from a folder hosted a few seconds ago. Returns the run, the seconds from
    /// starting the host to the get, and the CPU seconds per GiB the indexing cost the host.
    pub fn run_ferry_indexed(&mut self, wire: Wire, hosted: &Path) -> Result<(Run, f64, f64)> {
        let cache = self.work.join("cache-indexed");
        fresh_dir(&cache)?;
        let started = Instant::now();
        let server = FerryServer::start_with(hosted, wire, "whole", Some(&cache), &[])?;
        let indexed = server.wait_for_line(" indexed ", secs_limit(self.opts.size))?;
        if !indexed.contains("indexed 1 files") {
            return Err(format!("ferry indexed: expected one file indexed, the host said {indexed:?}"));
        }
        let index_cpu = server.cpu_secs()?;
        let after = started.elapsed().as_secs_f64();
        let gib = self.opts.size as f64 / (1u64 << 30) as f64;
        let what = format!("ferry indexed ({})", wire.label());
        let run = self.ferry_get_from(&what, &server, &self.dl.join("ferry-indexed.bin"), false)?;
        self.client_peak_kib = self.client_peak_kib.max(run.client_kib);
        self.server_peak_indexed_kib = self.server_peak_indexed_kib.max(server.peak_rss_kib().unwrap_or(0));
        if let Err(e) = server.stop() {
            self.problems.push(e);
        }
        let _ = fs::remove_dir_all(&cache);
        Ok((run, after, index_cpu / gib))
    }

    /// Peak RSS of a host whose index holds `files` digests: a folder of that many small files
    /// (in folders of 1,000), indexed from the start; then a second host over the same folder,
    /// with the index on disk, lists one folder (all its digests known) and sends one file.
    /// Returns (files indexed a second, peak RSS of the indexing host, of the restarted one).
    pub fn index_rss(&mut self, files: usize) -> Result<(f64, u64, u64)> {
        let many = self.work.join("many");
        let cache = self.work.join("cache-many");
        fresh_dir(&many)?;
        fresh_dir(&cache)?;
        for i in 0..files {
            let dir = many.join(format!("d{:03}", i / 1000));
            if i % 1000 == 0 {
                fs::create_dir(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
            }
            fs::write(dir.join(format!("f{i:06}")), i.to_le_bytes()).map_err(|e| format!("cannot write: {e}"))?;
        }
        let start = Instant::now();
        let first = FerryServer::start_with(&many, Wire::Tls, "whole", Some(&cache), &[])?;
        let line = first.wait_for_line(" indexed ", Duration::from_secs(600))?;
        let per_sec = files as f64 / start.elapsed().as_secs_f64().max(1e-9);
        if !line.contains(&format!("indexed {files} files")) {
            return Err(format!("index RSS: expected {files} files indexed, the host said {line:?}"));
        }
        let first_kib = first.peak_rss_kib().unwrap_or(0);
        first.stop()?;
        let second = FerryServer::start_with(&many, Wire::Tls, "listed", Some(&cache), &[])?;
        let mut conn = Connection::connect(&second.addr, &ConnectOptions::default())
            .map_err(|e| format!("index RSS: connect: {e}"))?;
        let listing = conn.list("d000").map_err(|e| format!("index RSS: list: {e}"))?;
        let known = listing.entries.iter().filter(|e| e.md5.is_some()).count();
        if known != listing.entries.len() || known == 0 {
            return Err(format!("index RSS: the restarted host knew {known} of {} digests", listing.entries.len()));
        }
        let dest = self.work.join("many-one.bin");
        let req = DownloadRequest { path: "d000/f000000".into(), dest: dest.clone(), overwrite: true };
        match conn.download(&req, &CancelToken::new(), &mut |_| {}) {
            Ok(Outcome::Verified { .. }) => {}
            other => return Err(format!("index RSS: get from the restarted host: {other:?}")),
        }
        drop(conn);
        let second_kib = second.peak_rss_kib().unwrap_or(0);
        second.stop()?;
        let _ = fs::remove_dir_all(&many);
        let _ = fs::remove_dir_all(&cache);
        let _ = fs::remove_file(&dest);
        Ok((per_sec, first_kib, second_kib))
    }
}

/// One timed `ferry get` or `ferry put`: seconds, its peak RSS (KiB) and its CPU seconds.
struct TimedRun {
    secs: f64,
    peak_kib: u64,
    cpu_secs: f64,
}

/// One `ferry get`: MB/s, its peak RSS (KiB) and its CPU seconds.
pub struct GetRun {
    pub mbps: f64,
    pub peak_kib: u64,
    pub cpu_secs: f64,
}

/// One ferry row's run: MB/s, the client's peak RSS (KiB), and the CPU seconds per GiB both
/// processes spent on the transfer.
pub struct Run {
    pub mbps: f64,
    pub client_kib: u64,
    pub cpu_per_gib: f64,
}

/// A `ferry serve DIR --bind 127.0.0.1:0` process; its stdout is drained (it logs every
/// transfer, and a full pipe would stall it).
pub struct FerryServer {
    proc: Proc,
    pub addr: String,
    pub wire: Wire,
    stdout: Option<Drain>,
    stderr: Option<Drain>,
}

impl FerryServer {
    /// `ferry serve DIR --index off`: no background hashing to disturb the other rows, and no
    /// index kept from an earlier run.
    pub fn start(dir: &Path, wire: Wire) -> Result<FerryServer> {
        Self::start_with(dir, wire, "off", None, &[])
    }

    /// `ferry serve DIR --index INDEX EXTRA…`, its index kept in `cache` (FERRY_CACHE_DIR) if
    /// given.
    pub fn start_with(
        dir: &Path,
        wire: Wire,
        index: &str,
        cache: Option<&Path>,
        extra: &[&str],
    ) -> Result<FerryServer> {
        let mut command = ferry_command();
        if let Some(cache) = cache {
            command.env("FERRY_CACHE_DIR", cache);
        }
        let mut proc = Proc::spawn(
            command
                .arg("serve")
                .arg(dir)
                .args(["--bind", "127.0.0.1:0", "--index", index])
                .args(extra)
                .args(wire.args())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
            "ferry serve",
        )?;
        let stdout = Drain::new(proc.take_stdout(), 50);
        let stderr = Drain::new(proc.take_stderr(), 50);
        let first = match stdout.first.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let why = match proc.exited()? {
                    Some(exit) => describe_failure("ferry serve", exit.status, &stderr.text()),
                    None => "ferry serve printed nothing within 30 s".into(),
                };
                return Err(why);
            }
        };
        // "HH:MM:SS hosting /path at 127.0.0.1:PORT (read-only); Ctrl-C stops"
        let addr = first
            .rfind(" at ")
            .and_then(|i| first[i + 4..].split_whitespace().next())
            .filter(|a| a.parse::<std::net::SocketAddr>().is_ok())
            .ok_or_else(|| format!("cannot find the address in ferry serve's first line: {first:?}"))?
            .to_string();
        let port: u16 = addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
        wait_listening(&mut proc, port, Some(&stderr))?;
        Ok(FerryServer { proc, addr, wire, stdout: Some(stdout), stderr: Some(stderr) })
    }

    pub fn peak_rss_kib(&self) -> Option<u64> {
        vm_hwm_kib(self.proc.pid())
    }

    /// CPU seconds the host has used so far.
    pub fn cpu_secs(&self) -> Result<f64> {
        cpu_secs(self.proc.pid()).ok_or_else(|| "cannot read ferry serve's CPU time".to_string())
    }

    /// Waits until the host logs a line containing `needle` (it keeps logging meanwhile).
    pub fn wait_for_line(&self, needle: &str, limit: Duration) -> Result<String> {
        let deadline = Instant::now() + limit;
        let stdout = self.stdout.as_ref().expect("drained until stopped");
        loop {
            if let Some(line) = stdout.text().lines().rev().find(|l| l.contains(needle)) {
                return Ok(line.to_string());
            }
            if Instant::now() >= deadline {
                return Err(format!("ferry serve did not log {needle:?} within {limit:?}: {}", stdout.text()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ctrl-C (SIGINT), as a user would; ferry must exit 0 promptly. Err is a problem to report.
    pub fn stop(mut self) -> Result<()> {
        self.proc.signal(libc::SIGINT);
        let exit = self.proc.wait_for(Some(Duration::from_secs(10)))?;
        let out = self.stdout.take().map(Drain::finish).unwrap_or_default();
        let err = self.stderr.take().map(Drain::finish).unwrap_or_default();
        match exit {
            None => Err("ferry serve did not stop within 10 s of SIGINT (killed)".into()),
            Some(e) if e.status.success() => Ok(()),
            Some(e) => Err(describe_failure("ferry serve, stopped by SIGINT,", e.status, &format!("{err}\n{out}"))),
        }
    }
}

/// ferry, in-process, over one connection: list, then get every file to disk. Files/s.
pub fn small_ferry(dir: &Path, names: &[String], dest: &Path, wire: Wire) -> Result<f64> {
    fresh_dir(dest)?;
    let server = FerryServer::start(dir, wire)?;
    let addr = server.addr.clone();
    let start = Instant::now();
    let opts = ConnectOptions { plain: wire == Wire::Plain, ..Default::default() };
    let mut conn = Connection::connect(&addr, &opts).map_err(|e| format!("ferry small files: {e}"))?;
    let listing = conn.list("").map_err(|e| format!("ferry small files: list: {e}"))?;
    let files: Vec<String> =
        listing.entries.into_iter().filter(|e| matches!(e.kind, EntryKind::File)).map(|e| e.name).collect();
    if files.len() != names.len() {
        return Err(format!("ferry small files: the listing has {} files, expected {}", files.len(), names.len()));
    }
    let cancel = CancelToken::new();
    for name in &files {
        let req = DownloadRequest { path: name.clone(), dest: dest.join(name), overwrite: true };
        match conn.download(&req, &cancel, &mut |_| {}) {
            Ok(Outcome::Verified { .. }) => {}
            Ok(Outcome::Identical { .. }) => {
                return Err(format!("ferry small files, {name}: not downloaded (identical)"));
            }
            Ok(Outcome::Mismatch { expected, actual, .. }) => {
                return Err(format!(
                    "DIGEST MISMATCH: ferry small files, {name}: host sent {}, computed {}",
                    hex(&expected),
                    hex(&actual)
                ));
            }
            Err(e) => return Err(format!("ferry small files, get {name}: {e}")),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    drop(conn);
    server.stop()?;
    check_copies("ferry small files", names, dir, dest)?;
    Ok(names.len() as f64 / secs.max(1e-9))
}

pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}
