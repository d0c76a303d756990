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
use crate::procs::{Drain, Proc, Watchdog, describe_failure, digest_of, wait_listening};
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
    /// `check_bytes`, the file itself with md5sum, untimed). Returns (MB/s, client peak RSS).
    pub fn ferry_get(
        &mut self,
        what: &str,
        wire: Wire,
        addr: &str,
        dest: &Path,
        check_bytes: bool,
    ) -> Result<(f64, u64)> {
        remove_file_if_any(dest)?;
        let start = Instant::now();
        let mut get = Proc::spawn(
            ferry_command()
                .args(["get", addr, &self.big_name, "-o"])
                .arg(dest)
                .arg("--force")
                .args(wire.args())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
            "ferry get",
        )?;
        let out = Drain::new(get.take_stdout(), 20);
        let err = Drain::new(get.take_stderr(), 20);
        let dog = Watchdog::arm(vec![get.pid()], secs_limit(self.opts.size));
        let rss = RssSampler::start(get.pid());
        let exit = get.wait()?;
        let secs = start.elapsed().as_secs_f64();
        let peak_kib = rss.finish();
        if dog.finish() {
            return Err(format!("{what}: ferry get took too long and was stopped"));
        }
        let (out, err) = (out.finish(), err.finish());
        if !exit.status.success() {
            return Err(describe_failure(&format!("{what}: ferry get"), exit.status, &err));
        }
        let printed =
            digest_of(&out).ok_or_else(|| format!("{what}: ferry get printed {out:?}, not `<md5>  <dest>`"))?;
        self.check_digest(what, &printed)?;
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
        Ok((self.mbps(secs), peak_kib))
    }

    pub fn run_ferry_cold(&mut self, wire: Wire, first: bool) -> Result<f64> {
        let server = FerryServer::start(&self.work, wire)?;
        let addr = server.addr.clone();
        let what = format!("ferry cold ({})", wire.label());
        let (mbps, client_kib) = self.ferry_get(&what, wire, &addr, &self.dl.join("ferry-cold.bin"), first)?;
        self.client_peak_kib = self.client_peak_kib.max(client_kib);
        self.server_peak_kib = self.server_peak_kib.max(server.peak_rss_kib().unwrap_or(0));
        if let Err(e) = server.stop() {
            self.problems.push(e);
        }
        Ok(mbps)
    }
}

/// A `ferry serve DIR --bind 127.0.0.1:0` process; its stdout is drained (it logs every
/// transfer, and a full pipe would stall it).
pub struct FerryServer {
    proc: Proc,
    pub addr: String,
    stdout: Option<Drain>,
    stderr: Option<Drain>,
}

impl FerryServer {
    pub fn start(dir: &Path, wire: Wire) -> Result<FerryServer> {
        let mut proc = Proc::spawn(
            ferry_command()
                .arg("serve")
                .arg(dir)
                .args(["--bind", "127.0.0.1:0"])
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
        Ok(FerryServer { proc, addr, stdout: Some(stdout), stderr: Some(stderr) })
    }

    pub fn peak_rss_kib(&self) -> Option<u64> {
        vm_hwm_kib(self.proc.pid())
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
