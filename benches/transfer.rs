//! The transfer benchmark (issue 4): ferry against the MD5 limit, a plain `nc` pipe and an HTTP
//! peer, on one machine over 127.0.0.1, in one run.
//!
//! ```sh
//! cargo bench --bench transfer                                               # 1 GiB, 3 runs, 2000 files
//! cargo bench --bench transfer -- --size 64MiB --runs 3 --files 500          # quick (< 1 minute)
//! ```
//!
//! Options: `--size SIZE` (big file, default 1GiB), `--runs N` (default 3), `--files N` (small
//! files, default 2000), `--file-size SIZE` (default 4KiB), `--dir DIR` (work folder; default
//! `/dev/shm` when it has room, else the temp folder). `cargo bench` adds `--bench`, which is
//! accepted and ignored. Run without `--bench` (as `cargo test --benches` does), the defaults
//! shrink to a smoke test and nothing is installed.
//!
//! Every figure is the median of `--runs` runs with min and max; MB = 10^6 bytes. The rows are
//! measured round-robin (one run of each per round) so a change in background load hits every
//! row alike. Every transfer's digest is checked against `md5sum` of the source; a mismatch, a
//! failed command or a server that does not stop on Ctrl-C exits non-zero. Targets are reported
//! as PASS/MISS and never fail the run.

use std::collections::VecDeque;
use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ferry::client::{CancelToken, ConnectOptions, Connection, DownloadRequest, Outcome};
use ferry::protocol::message::EntryKind;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
/// MB as NOTES.md and the issue use it.
const MB: f64 = 1e6;
/// The issue's RSS ceiling for each side.
const RSS_LIMIT_KIB: u64 = 32 * 1024;

type Result<T, E = String> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Options::parse(&args) {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS, // --help
        Err(e) => {
            eprintln!("transfer bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = ctrlc::set_handler(on_ctrl_c) {
        eprintln!("transfer bench: cannot catch Ctrl-C ({e}); an interrupted run may leave files behind");
    }
    let result = run(&opts);
    let code = match result {
        Ok(problems) if problems.is_empty() => ExitCode::SUCCESS,
        Ok(problems) => {
            eprintln!("\ntransfer bench: the run finished, but something is broken:");
            for p in problems {
                eprintln!("  - {p}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("\ntransfer bench: FAILED: {e}");
            ExitCode::FAILURE
        }
    };
    // Everything (work folder, children) was cleaned up by the guards inside `run`.
    code
}

// ---------------------------------------------------------------------------------------------
// Options

const USAGE: &str =
    "usage: cargo bench --bench transfer -- [--size SIZE] [--runs N] [--files N] [--file-size SIZE] [--dir DIR]
  --size SIZE       the big file (default 1GiB; units B, KiB, MiB, GiB, KB, MB, GB)
  --runs N          runs of every measurement; each figure is their median, min and max (default 3)
  --files N         the many-small-files test: how many files (default 2000)
  --file-size SIZE  ... and how big each (default 4KiB)
  --dir DIR         where to put the work folder (default /dev/shm when it has room, else the temp folder)
quick run (< 1 minute after the build): cargo bench --bench transfer -- --size 64MiB --runs 3 --files 500";

struct Options {
    size: u64,
    runs: usize,
    files: usize,
    file_size: u64,
    dir: Option<PathBuf>,
    /// Run by `cargo bench` (it passes `--bench`); otherwise a smoke test that installs nothing.
    bench_mode: bool,
    argv: Vec<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Option<Options>> {
        let bench_mode = args.iter().any(|a| a == "--bench");
        let (mut size, mut runs, mut files, mut file_size) = (None, None, None, None);
        let mut dir = None;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = || -> Result<String> {
                inline.clone().or_else(|| it.next().cloned()).ok_or_else(|| format!("{name} needs a value"))
            };
            match name {
                "--bench" => {}
                "-h" | "--help" => {
                    println!("{USAGE}");
                    return Ok(None);
                }
                "--size" => size = Some(parse_size(&value()?)?),
                "--file-size" => file_size = Some(parse_size(&value()?)?),
                "--runs" => runs = Some(parse_count(name, &value()?)?),
                "--files" => files = Some(parse_count(name, &value()?)?),
                "--dir" => dir = Some(PathBuf::from(value()?)),
                // `cargo bench FILTER` hands the filter to every bench target.
                filter if !filter.starts_with('-') => eprintln!("transfer bench: ignoring the filter {filter:?}"),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        // Without `--bench` this binary is being run as a test: keep it small.
        let (d_size, d_runs, d_files) = if bench_mode { (GIB, 3, 2000) } else { (8 * MIB, 1, 100) };
        let opts = Options {
            size: size.unwrap_or(d_size),
            runs: runs.unwrap_or(d_runs),
            files: files.unwrap_or(d_files),
            file_size: file_size.unwrap_or(4 * KIB),
            dir,
            bench_mode,
            argv: args.to_vec(),
        };
        if opts.size == 0 || opts.file_size == 0 {
            return Err("sizes must be above zero".into());
        }
        Ok(Some(opts))
    }

    /// The command that reproduces this run.
    fn command(&self) -> String {
        let mut c = format!(
            "cargo bench --bench transfer -- --size {} --runs {} --files {}",
            size_arg(self.size),
            self.runs,
            self.files
        );
        if self.file_size != 4 * KIB {
            let _ = write!(c, " --file-size {}", size_arg(self.file_size));
        }
        if let Some(d) = &self.dir {
            let _ = write!(c, " --dir {}", d.display());
        }
        c
    }
}

fn parse_count(name: &str, s: &str) -> Result<usize> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{name} wants a whole number above zero, not {s:?}")),
    }
}

/// `1GiB`, `64MiB`, `4KiB`, `500MB`, `1G`, `4096` (bytes). K/M/G alone are binary.
fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().map_err(|_| format!("cannot read the size {s:?} (try 1GiB, 64MiB, 4KiB)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => KIB as f64,
        "m" | "mib" => MIB as f64,
        "g" | "gib" => GIB as f64,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        _ => return Err(format!("unknown unit in {s:?} (use B, KiB, MiB, GiB, KB, MB or GB)")),
    };
    Ok((num * mult).round() as u64)
}

fn size_arg(n: u64) -> String {
    for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("{}{name}", n / unit);
        }
    }
    format!("{n}B")
}

// ---------------------------------------------------------------------------------------------
// Child processes: every one is killed and reaped on every way out.

/// Child processes not yet reaped, and the work folder: what Ctrl-C must clean up.
static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static WORK_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

fn live() -> std::sync::MutexGuard<'static, Vec<i32>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

fn on_ctrl_c() {
    // Under the lock, so no pid here can have been reaped (and reused) meanwhile.
    for &pid in live().iter() {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    if let Some(dir) = WORK_DIR.lock().unwrap_or_else(|p| p.into_inner()).take() {
        let _ = fs::remove_dir_all(dir);
    }
    eprintln!("\ntransfer bench: interrupted; child processes stopped and the work folder removed");
    std::process::exit(130);
}

/// A child process, killed and reaped when dropped unless it was already reaped.
struct Proc {
    child: Child,
    name: String,
    reaped: bool,
}

/// How a child ended. (Its `ru_maxrss` is deliberately not used: on Linux a spawned child's
/// `ru_maxrss` includes the spawning parent's RSS, since posix_spawn shares the parent's memory
/// until exec and exec records the old memory's high-water mark. See [`RssSampler`].)
struct Exit {
    status: ExitStatus,
}

impl Proc {
    fn spawn(cmd: &mut Command, name: &str) -> Result<Proc> {
        let mut lock = live();
        let child = cmd.spawn().map_err(|e| format!("cannot run {name}: {e}"))?;
        lock.push(child.id() as i32);
        Ok(Proc { child, name: name.to_string(), reaped: false })
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.child.stdout.take().expect("stdout was piped")
    }

    fn take_stderr(&mut self) -> std::process::ChildStderr {
        self.child.stderr.take().expect("stderr was piped")
    }

    /// Waits for the exit (optionally giving up after `timeout`), then reaps it. The pid leaves
    /// [`LIVE`] before it is reaped, so nothing kills (or samples) a recycled pid.
    fn wait_for(&mut self, timeout: Option<Duration>) -> Result<Option<Exit>> {
        if self.reaped {
            return Err(format!("{} was already reaped", self.name));
        }
        let pid = self.pid();
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let flags = libc::WEXITED | libc::WNOWAIT | if deadline.is_some() { libc::WNOHANG } else { 0 };
            let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
            if r == -1 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("waiting for {}: {e}", self.name));
            }
            if unsafe { info.si_pid() } != 0 {
                break;
            }
            match deadline {
                Some(d) if Instant::now() >= d => return Ok(None),
                _ => thread::sleep(Duration::from_millis(5)),
            }
        }
        let mut lock = live();
        lock.retain(|&p| p != pid);
        let mut status = 0;
        let r = loop {
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break r;
        };
        self.reaped = true;
        drop(lock);
        if r == -1 {
            return Err(format!("reaping {}: {}", self.name, std::io::Error::last_os_error()));
        }
        Ok(Some(Exit { status: ExitStatus::from_raw(status) }))
    }

    fn wait(&mut self) -> Result<Exit> {
        Ok(self.wait_for(None)?.expect("no timeout"))
    }

    /// `Some` once the child has exited (and is reaped).
    fn exited(&mut self) -> Result<Option<Exit>> {
        self.wait_for(Some(Duration::ZERO))
    }

    fn signal(&self, sig: libc::c_int) {
        if !self.reaped {
            unsafe { libc::kill(self.pid(), sig) };
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(libc::SIGKILL);
            let _ = self.wait();
        }
    }
}

/// Kills the given children if a measurement runs past its deadline (a hung tool must not
/// hang the benchmark). Killing happens under the [`LIVE`] lock, so only unreaped pids are hit.
struct Watchdog {
    disarm: Option<mpsc::Sender<()>>,
    fired: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn arm(pids: Vec<i32>, limit: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fired2 = fired.clone();
        let thread = thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                fired2.store(true, std::sync::atomic::Ordering::SeqCst);
                let lock = live();
                for pid in pids.iter().filter(|p| lock.contains(p)) {
                    unsafe { libc::kill(*pid, libc::SIGKILL) };
                }
            }
        });
        Watchdog { disarm: Some(tx), fired, thread: Some(thread) }
    }

    /// Stops the watchdog; true if it had fired.
    fn finish(mut self) -> bool {
        self.stop();
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn stop(&mut self) {
        self.disarm.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Samples a child's peak RSS (VmHWM in /proc/PID/status, a high-water mark of the child's own
/// memory since its exec) every few milliseconds until it exits. Only growth in the last few
/// milliseconds before exit could be missed; a transfer's peak comes long before.
struct RssSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    peak: Arc<std::sync::atomic::AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: i32) -> RssSampler {
        use std::sync::atomic::Ordering::SeqCst;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (stop2, peak2) = (stop.clone(), peak.clone());
        let thread = thread::spawn(move || {
            while !stop2.load(SeqCst) {
                {
                    // Under the LIVE lock: a pid still listed there is not reaped, so not reused.
                    let lock = live();
                    if !lock.contains(&pid) {
                        break;
                    }
                    if let Some(kib) = vm_hwm_kib(pid) {
                        peak2.fetch_max(kib, SeqCst);
                    }
                }
                thread::sleep(Duration::from_millis(2));
            }
        });
        RssSampler { stop, peak, thread: Some(thread) }
    }

    /// The peak seen, KiB (call after the child has exited).
    fn finish(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Reads a pipe to its end on a thread, keeping the last `keep` lines; the first line also
/// goes out on a channel (for servers that announce their address).
struct Drain {
    tail: Arc<Mutex<VecDeque<String>>>,
    first: mpsc::Receiver<String>,
    thread: Option<JoinHandle<()>>,
}

impl Drain {
    fn new(pipe: impl Read + Send + 'static, keep: usize) -> Drain {
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, first) = mpsc::channel();
        let tail2 = tail.clone();
        let thread = thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(tx) = tx.take() {
                    let _ = tx.send(line.clone());
                }
                let mut t = tail2.lock().unwrap_or_else(|p| p.into_inner());
                if t.len() == keep {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
        Drain { tail, first, thread: Some(thread) }
    }

    fn text(&self) -> String {
        let t = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        t.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }

    /// Everything kept, after the pipe has closed.
    fn finish(mut self) -> String {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.text()
    }
}

/// A command's result, for error messages.
fn describe_failure(what: &str, status: ExitStatus, stderr: &str) -> String {
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (_, Some(s)) => format!("signal {s}"),
        _ => "an unknown status".into(),
    };
    let stderr = stderr.trim();
    if stderr.is_empty() { format!("{what} failed with {how}") } else { format!("{what} failed with {how}: {stderr}") }
}

/// Runs a short command to its end, capturing stdout and stderr.
fn run_quiet(cmd: &mut Command, name: &str) -> Result<(ExitStatus, String, String)> {
    let mut p = Proc::spawn(cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()), name)?;
    let out = Drain::new(p.take_stdout(), 10_000);
    let err = Drain::new(p.take_stderr(), 10_000);
    let exit = p.wait()?;
    Ok((exit.status, out.finish(), err.finish()))
}

/// The first 32-hex-digit word of an `md5sum`-style line.
fn digest_of(line: &str) -> Option<String> {
    let word = line.split_whitespace().next()?.to_ascii_lowercase();
    (word.len() == 32 && word.bytes().all(|b| b.is_ascii_hexdigit())).then_some(word)
}

// ---------------------------------------------------------------------------------------------
// Ports

/// A port nothing listens on now (the kernel's pick for port 0).
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Whether something listens on TCP `port` (from /proc/net/tcp{,6}; never connects, since a
/// probe connection would be the one connection `nc -l` accepts).
fn listening(port: u16) -> Result<bool> {
    let mut any_table = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else { continue };
        any_table = true;
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 3 && f[3] == "0A" {
                let local_port = f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
                if local_port == Some(port) {
                    return Ok(true);
                }
            }
        }
    }
    if any_table { Ok(false) } else { Err("cannot read /proc/net/tcp (this benchmark needs Linux)".into()) }
}

/// Waits until `proc` listens on `port`, failing at once if it exits.
fn wait_listening(proc: &mut Proc, port: u16, stderr: Option<&Drain>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if listening(port)? {
            return Ok(());
        }
        if let Some(exit) = proc.exited()? {
            let err = stderr.map(Drain::text).unwrap_or_default();
            return Err(describe_failure(
                &format!("{} (before listening on port {port})", proc.name),
                exit.status,
                &err,
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!("{} did not listen on port {port} within 30 s", proc.name));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// Tools

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    })
}

/// First line of a tool's version output (or `-h` for nc, which has no `--version`).
fn tool_version(name: &str, args: &[&str]) -> String {
    match run_quiet(Command::new(name).args(args), name) {
        Ok((_, out, err)) => {
            let text = if out.trim().is_empty() { err } else { out };
            text.lines().next().unwrap_or("").trim().to_string()
        }
        Err(e) => e,
    }
}

/// netcat-openbsd's `nc` (it has `-N`), installing it with apt-get when missing and allowed.
/// `Err` is why the row is skipped.
fn netcat(may_install: bool) -> Result<String> {
    let is_openbsd = || {
        run_quiet(Command::new("nc").arg("-h"), "nc -h")
            .map(|(_, out, err)| {
                let text = format!("{out}{err}");
                text.contains("OpenBSD") || text.contains("\t-N")
            })
            .unwrap_or(false)
    };
    if find_in_path("nc").is_none() {
        if !may_install {
            return Err("`nc` is not installed (not installing anything outside `cargo bench`)".into());
        }
        if find_in_path("apt-get").is_none() {
            return Err("`nc` is not installed and there is no apt-get; install netcat-openbsd".into());
        }
        if unsafe { libc::geteuid() } != 0 {
            return Err("`nc` is not installed; run `sudo apt-get install netcat-openbsd`".into());
        }
        println!("nc is missing: installing netcat-openbsd with apt-get ...");
        let install = || {
            run_quiet(
                Command::new("apt-get")
                    .args(["install", "-y", "-q", "--no-install-recommends", "netcat-openbsd"])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
                "apt-get install netcat-openbsd",
            )
        };
        let (status, _, err) = install()?;
        if !status.success() {
            // The package lists may be missing or stale.
            let _ = run_quiet(Command::new("apt-get").args(["update", "-q"]), "apt-get update")?;
            let (status, _, err2) = install()?;
            if !status.success() {
                return Err(format!(
                    "installing netcat-openbsd failed: {}",
                    describe_failure("apt-get install", status, &format!("{err}\n{err2}"))
                ));
            }
        }
        if find_in_path("nc").is_none() {
            return Err("netcat-openbsd was installed but `nc` is still not on PATH".into());
        }
    }
    if !is_openbsd() {
        return Err("the installed `nc` is not netcat-openbsd (it lacks -N); install netcat-openbsd".into());
    }
    Ok(tool_version("nc", &["-h"]))
}

// ---------------------------------------------------------------------------------------------
// The machine

struct Machine {
    cpu: String,
    cores: usize,
    kernel: String,
    os: String,
}

impl Machine {
    fn read() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| "unknown CPU".into());
        let listed = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
        let cores = thread::available_parallelism().map(|n| n.get()).unwrap_or(listed.max(1));
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
        let os = fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_default();
        Machine { cpu, cores, kernel, os }
    }

    fn line(&self) -> String {
        let os = if self.os.is_empty() { String::new() } else { format!(", {}", self.os) };
        format!("{}, {} cores, Linux {}{os}", self.cpu, self.cores, self.kernel)
    }
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------------------------
// The work folder and the files

/// Bytes free for new files in `dir`'s file system (for tmpfs, also bounded by free memory).
fn free_bytes(dir: &Path) -> Option<u64> {
    let c = CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Whether `dir` is on tmpfs (memory), where writes and fsyncs cost no disk I/O.
fn is_tmpfs(dir: &Path) -> bool {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let Ok(c) = CString::new(dir.as_os_str().as_encoded_bytes()) else { return false };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == TMPFS_MAGIC }
}

fn mem_available() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 =
        text.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024)
}

/// The work folder: `--dir`, else /dev/shm (tmpfs) if it has room, else the temp folder.
fn work_dir(opts: &Options) -> Result<(tempfile::TempDir, String)> {
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
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let mut seed = [0u8; 8];
        if getrandom::fill(&mut seed).is_err() {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            seed = (t.as_nanos() as u64 ^ std::process::id() as u64).to_le_bytes();
        }
        Rng(u64::from_le_bytes(seed))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

fn write_random_file(path: &Path, size: u64, rng: &mut Rng) -> Result<()> {
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
fn warm_cache(path: &Path) -> Result<()> {
    let mut f = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut buf = vec![0u8; 8 * MIB as usize];
    while f.read(&mut buf).map_err(|e| format!("cannot read {}: {e}", path.display()))? > 0 {}
    Ok(())
}

fn remove_file_if_any(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("cannot remove {}: {e}", path.display())),
        _ => Ok(()),
    }
}

fn fresh_dir(path: &Path) -> Result<()> {
    if path.exists() {
        fs::remove_dir_all(path).map_err(|e| format!("cannot empty {}: {e}", path.display()))?;
    }
    fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Checks that `dir` holds exactly a byte-for-byte copy of every source file.
fn check_copies(what: &str, names: &[String], src: &Path, dir: &Path) -> Result<()> {
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

// ---------------------------------------------------------------------------------------------
// Figures

/// One row: the runs' figures (MB/s or files/s), or why it was skipped.
#[derive(Default)]
struct Series {
    samples: Vec<f64>,
    skipped: Option<String>,
}

impl Series {
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.samples.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    fn median(&self) -> Option<f64> {
        let v = self.sorted();
        let n = v.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(v[n / 2]),
            _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
        }
    }

    fn min(&self) -> Option<f64> {
        self.sorted().first().copied()
    }

    fn max(&self) -> Option<f64> {
        self.sorted().last().copied()
    }
}

fn num(x: f64) -> String {
    if x >= 100.0 { format!("{x:.0}") } else { format!("{x:.1}") }
}

fn opt_num(x: Option<f64>) -> String {
    x.map_or("–".into(), num)
}

/// `a / b` of the medians, as `0.87x`.
fn ratio(a: &Series, b: &Series) -> Option<f64> {
    match (a.median(), b.median()) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn opt_ratio(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.2}x"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn secs_limit(bytes: u64) -> Duration {
    // Generous: a broken tool is caught, a slow machine is not.
    Duration::from_secs(120) + Duration::from_secs_f64(bytes as f64 / (5.0 * MB))
}

/// VmHWM (peak RSS), KiB, of a running process.
fn vm_hwm_kib(pid: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.split_whitespace().next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// The measurements

struct Bench<'a> {
    opts: &'a Options,
    work: PathBuf,
    big: PathBuf,
    big_name: String,
    dl: PathBuf,
    /// `md5sum` of the big file (from the first `md5sum` run).
    reference: Option<String>,
    problems: Vec<String>,
    server_peak_kib: u64,
    client_peak_kib: u64,
    server_peak_warm_kib: u64,
    client_peak_warm_kib: u64,
}

/// A timed run's outcome: seconds and the digest the command printed.
struct Timed {
    secs: f64,
    digest: String,
}

impl Bench<'_> {
    fn mbps(&self, secs: f64) -> f64 {
        self.opts.size as f64 / secs.max(1e-9) / MB
    }

    fn check_digest(&mut self, what: &str, got: &str) -> Result<()> {
        match &self.reference {
            None => {
                self.reference = Some(got.to_string());
                Ok(())
            }
            Some(r) if r == got => Ok(()),
            Some(r) => Err(format!("DIGEST MISMATCH in {what}: got {got}, md5sum of the source says {r}")),
        }
    }

    /// Runs `producer | md5sum` (the producer already spawned with a piped stdout): waits for
    /// both and returns md5sum's digest.
    fn finish_md5_pipe(&self, what: &str, producer: &mut Proc, producer_err: Drain, md5: &mut Proc) -> Result<String> {
        let md5_out = Drain::new(md5.take_stdout(), 10);
        let md5_err = Drain::new(md5.take_stderr(), 10);
        let dog = Watchdog::arm(vec![producer.pid(), md5.pid()], secs_limit(self.opts.size));
        let m = md5.wait()?;
        let p = producer.wait()?;
        if dog.finish() {
            return Err(format!("{what} took too long and was stopped"));
        }
        if !p.status.success() {
            return Err(describe_failure(&producer.name, p.status, &producer_err.finish()));
        }
        if !m.status.success() {
            return Err(describe_failure("md5sum", m.status, &md5_err.finish()));
        }
        let out = md5_out.finish();
        digest_of(&out).ok_or_else(|| format!("{what}: md5sum printed {out:?}, not a digest"))
    }

    fn md5sum(&mut self, path: &Path) -> Result<Timed> {
        let start = Instant::now();
        let (status, out, err) = run_quiet(Command::new("md5sum").arg(path), "md5sum")?;
        let secs = start.elapsed().as_secs_f64();
        if !status.success() {
            return Err(describe_failure("md5sum", status, &err));
        }
        let digest = digest_of(&out).ok_or_else(|| format!("md5sum printed {out:?}, not a digest"))?;
        Ok(Timed { secs, digest })
    }

    fn run_md5sum(&mut self) -> Result<f64> {
        let t = self.md5sum(&self.big.clone())?;
        self.check_digest("md5sum FILE", &t.digest)?;
        Ok(self.mbps(t.secs))
    }

    /// `nc -l 127.0.0.1 PORT | md5sum`, fed by `nc -N 127.0.0.1 PORT < FILE`.
    fn run_nc(&mut self) -> Result<f64> {
        let port = free_port()?;
        let mut listener = Proc::spawn(
            Command::new("nc")
                .args(["-l", "127.0.0.1", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
            "nc -l",
        )?;
        let listener_err = Drain::new(listener.take_stderr(), 20);
        let mut md5 = Proc::spawn(
            Command::new("md5sum")
                .stdin(Stdio::from(listener.take_stdout()))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
            "md5sum",
        )?;
        wait_listening(&mut listener, port, Some(&listener_err))?;
        let input = File::open(&self.big).map_err(|e| format!("cannot open {}: {e}", self.big.display()))?;
        let start = Instant::now();
        let mut sender = Proc::spawn(
            Command::new("nc")
                .args(["-N", "127.0.0.1", &port.to_string()])
                .stdin(Stdio::from(input))
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
            "nc -N (sender)",
        )?;
        let sender_err = Drain::new(sender.take_stderr(), 20);
        let dog = Watchdog::arm(vec![sender.pid()], secs_limit(self.opts.size));
        let digest = self.finish_md5_pipe("nc -l | md5sum", &mut listener, listener_err, &mut md5)?;
        let secs = start.elapsed().as_secs_f64();
        let s = sender.wait()?;
        if dog.finish() {
            return Err("the nc sender took too long and was stopped".into());
        }
        if !s.status.success() {
            return Err(describe_failure("nc -N (sender)", s.status, &sender_err.finish()));
        }
        self.check_digest("nc -l | md5sum", &digest)?;
        Ok(self.mbps(secs))
    }

    /// `curl -sS --fail URL | md5sum`.
    fn run_curl_pipe(&mut self, url: &str) -> Result<f64> {
        let start = Instant::now();
        let mut curl = Proc::spawn(
            Command::new("curl")
                .args(["-sS", "--fail", url])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
            "curl",
        )?;
        let curl_err = Drain::new(curl.take_stderr(), 20);
        let mut md5 = Proc::spawn(
            Command::new("md5sum").stdin(Stdio::from(curl.take_stdout())).stdout(Stdio::piped()).stderr(Stdio::piped()),
            "md5sum",
        )?;
        let digest = self.finish_md5_pipe("curl | md5sum", &mut curl, curl_err, &mut md5)?;
        let secs = start.elapsed().as_secs_f64();
        self.check_digest("curl | md5sum", &digest)?;
        Ok(self.mbps(secs))
    }

    /// `curl -sS --fail -o DEST URL`, then `md5sum DEST`, timed together.
    fn run_curl_disk(&mut self, url: &str) -> Result<f64> {
        let dest = self.dl.join("curl.bin");
        remove_file_if_any(&dest)?;
        let start = Instant::now();
        let mut curl = Proc::spawn(
            Command::new("curl")
                .args(["-sS", "--fail", "-o"])
                .arg(&dest)
                .arg(url)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
            "curl -o",
        )?;
        let err = Drain::new(curl.take_stderr(), 20);
        let dog = Watchdog::arm(vec![curl.pid()], secs_limit(self.opts.size));
        let exit = curl.wait()?;
        if dog.finish() {
            return Err("curl -o took too long and was stopped".into());
        }
        if !exit.status.success() {
            return Err(describe_failure("curl -o", exit.status, &err.finish()));
        }
        let t = self.md5sum(&dest)?;
        let secs = start.elapsed().as_secs_f64();
        self.check_digest("curl -o DEST, md5sum DEST", &t.digest)?;
        remove_file_if_any(&dest)?;
        Ok(self.mbps(secs))
    }

    /// One timed `ferry get ADDR NAME -o DEST --force`; checks the printed digest (and, when
    /// `check_bytes`, the file itself with md5sum, untimed). Returns (MB/s, client peak RSS).
    fn ferry_get(&mut self, what: &str, addr: &str, dest: &Path, check_bytes: bool) -> Result<(f64, u64)> {
        remove_file_if_any(dest)?;
        let start = Instant::now();
        let mut get = Proc::spawn(
            Command::new(FERRY)
                .args(["get", addr, &self.big_name, "-o"])
                .arg(dest)
                .arg("--force")
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

    fn run_ferry_cold(&mut self, first: bool) -> Result<f64> {
        let server = FerryServer::start(&self.work)?;
        let addr = server.addr.clone();
        let (mbps, client_kib) = self.ferry_get("ferry cold", &addr, &self.dl.join("ferry-cold.bin"), first)?;
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
struct FerryServer {
    proc: Proc,
    addr: String,
    stdout: Option<Drain>,
    stderr: Option<Drain>,
}

impl FerryServer {
    fn start(dir: &Path) -> Result<FerryServer> {
        let mut proc = Proc::spawn(
            Command::new(FERRY)
                .arg("serve")
                .arg(dir)
                .args(["--bind", "127.0.0.1:0"])
                // Nothing from a benchmark goes to the real network (loopback is not announced anyway).
                .env("FERRY_NO_DISCOVERY", "1")
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

    fn peak_rss_kib(&self) -> Option<u64> {
        vm_hwm_kib(self.proc.pid())
    }

    /// Ctrl-C (SIGINT), as a user would; ferry must exit 0 promptly. Err is a problem to report.
    fn stop(mut self) -> Result<()> {
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

/// The python HTTP peer, serving the whole work folder.
struct HttpPeer {
    _proc: Proc,
    port: u16,
    _stderr: Drain,
}

impl HttpPeer {
    fn start(dir: &Path) -> Result<HttpPeer> {
        let port = free_port()?;
        let mut proc = Proc::spawn(
            Command::new("python3")
                .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory"])
                .arg(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
            "python3 -m http.server",
        )?;
        // It logs a line per request on stderr: drained, the last few kept for errors.
        let stderr = Drain::new(proc.take_stderr(), 20);
        wait_listening(&mut proc, port, Some(&stderr))?;
        Ok(HttpPeer { _proc: proc, port, _stderr: stderr })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

/// ferry, in-process, over one connection: list, then get every file to disk. Files/s.
fn small_ferry(dir: &Path, names: &[String], dest: &Path) -> Result<f64> {
    fresh_dir(dest)?;
    let server = FerryServer::start(dir)?;
    let addr = server.addr.clone();
    let start = Instant::now();
    let mut conn =
        Connection::connect(&addr, &ConnectOptions::default()).map_err(|e| format!("ferry small files: {e}"))?;
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

/// One curl process fetching every file (URLs from a `-K` config file). Files/s.
fn small_curl(http: &HttpPeer, config: &Path, src: &Path, names: &[String], dest: &Path) -> Result<f64> {
    fresh_dir(dest)?;
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut cfg = String::new();
    for n in names {
        let out = dest.join(n);
        let _ = writeln!(
            cfg,
            "url = \"{}\"\noutput = \"{}\"",
            http.url(&format!("small/{n}")),
            quote(&out.to_string_lossy())
        );
    }
    fs::write(config, cfg).map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    let start = Instant::now();
    let mut curl = Proc::spawn(
        Command::new("curl")
            .args(["-sS", "--fail", "-K"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
        "curl -K",
    )?;
    let err = Drain::new(curl.take_stderr(), 20);
    let dog =
        Watchdog::arm(vec![curl.pid()], Duration::from_secs(120) + Duration::from_millis(100) * names.len() as u32);
    let exit = curl.wait()?;
    let secs = start.elapsed().as_secs_f64();
    if dog.finish() {
        return Err("curl -K (small files) took too long and was stopped".into());
    }
    if !exit.status.success() {
        return Err(describe_failure("curl -K (small files)", exit.status, &err.finish()));
    }
    check_copies("curl small files", names, src, dest)?;
    Ok(names.len() as f64 / secs.max(1e-9))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// The run

struct Rows {
    md5sum: Series,
    nc: Series,
    curl_pipe: Series,
    curl_disk: Series,
    cold: Series,
    warm: Series,
    small_ferry: Series,
    small_curl: Series,
}

fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

fn run(opts: &Options) -> Result<Vec<String>> {
    let machine = Machine::read();
    let command = opts.command();
    say("# ferry transfer benchmark");
    say(format!("command:  {command}"));
    say(format!("argv:     {}", opts.argv.join(" ")));
    say(format!("machine:  {}", machine.line()));
    say(format!("date:     {}", chrono::Local::now().format("%Y-%m-%d %H:%M %Z")));
    let load_before = loadavg();
    say(format!("load avg: {load_before} (1, 5, 15 min) before the run"));
    let profile = if cfg!(debug_assertions) { "debug build: figures are NOT meaningful" } else { "optimised build" };
    say(format!("ferry:    {FERRY} ({}, {profile})", tool_version(FERRY, &["--version"])));
    if !opts.bench_mode {
        say(
            "mode:     smoke test (no --bench argument, so not run by `cargo bench`): small defaults, nothing installed",
        );
    }

    // Tools.
    if find_in_path("md5sum").is_none() {
        return Err("md5sum (GNU coreutils) is required: it is the reference digest and row 1".into());
    }
    say(format!("md5sum:   {}", tool_version("md5sum", &["--version"])));
    let nc = netcat(opts.bench_mode);
    match &nc {
        Ok(v) => say(format!("nc:       {v}")),
        Err(e) => say(format!("nc:       SKIPPED: {e}")),
    }
    let http_missing = match (find_in_path("python3"), find_in_path("curl")) {
        (Some(_), Some(_)) => None,
        (None, _) => Some("python3 is not installed".to_string()),
        (_, None) => Some("curl is not installed".to_string()),
    };
    match &http_missing {
        None => say(format!(
            "http:     {}; {}",
            tool_version("python3", &["--version"]),
            tool_version("curl", &["--version"]).split(" (").next().unwrap_or("")
        )),
        Some(e) => say(format!("http:     SKIPPED: {e}")),
    }

    // The work folder and the files.
    let (tmp, where_) = work_dir(opts)?;
    let work = tmp.path().to_path_buf();
    *WORK_DIR.lock().unwrap_or_else(|p| p.into_inner()) = Some(work.clone());
    say(format!("work dir: {} — {where_}", work.display()));
    let big_name = "big.bin".to_string();
    let big = work.join(&big_name);
    let dl = work.join("dl");
    fresh_dir(&dl)?;
    let mut rng = Rng::seeded();
    let t = Instant::now();
    write_random_file(&big, opts.size, &mut rng)?;
    warm_cache(&big)?;
    say(format!(
        "big file: {} ({} bytes, {:.1} MB), random, written and read once in {:.2} s",
        size_arg(opts.size),
        opts.size,
        opts.size as f64 / MB,
        t.elapsed().as_secs_f64()
    ));
    let small = work.join("small");
    fresh_dir(&small)?;
    let width = opts.files.to_string().len().max(5);
    let names: Vec<String> = (0..opts.files).map(|i| format!("f{i:0width$}.bin")).collect();
    let mut buf = vec![0u8; opts.file_size as usize];
    for n in &names {
        rng.fill(&mut buf);
        fs::write(small.join(n), &buf).map_err(|e| format!("cannot write small file {n}: {e}"))?;
    }
    say(format!("small:    {} files of {} ({} bytes each)", opts.files, size_arg(opts.file_size), opts.file_size));
    say(format!("runs:     {} of each, round-robin; figures are median (min–max); MB = 10^6 bytes", opts.runs));
    say("");

    let mut bench = Bench {
        opts,
        work: work.clone(),
        big: big.clone(),
        big_name: big_name.clone(),
        dl: dl.clone(),
        reference: None,
        problems: Vec::new(),
        server_peak_kib: 0,
        client_peak_kib: 0,
        server_peak_warm_kib: 0,
        client_peak_warm_kib: 0,
    };
    let mut rows = Rows {
        md5sum: Series::default(),
        nc: Series::default(),
        curl_pipe: Series::default(),
        curl_disk: Series::default(),
        cold: Series::default(),
        warm: Series::default(),
        small_ferry: Series::default(),
        small_curl: Series::default(),
    };
    if let Err(e) = &nc {
        rows.nc.skipped = Some(e.clone());
    }
    let http = match &http_missing {
        None => Some(HttpPeer::start(&work)?),
        Some(e) => {
            rows.curl_pipe.skipped = Some(e.clone());
            rows.curl_disk.skipped = Some(e.clone());
            rows.small_curl.skipped = Some(e.clone());
            None
        }
    };
    let big_url = http.as_ref().map(|h| h.url(&big_name));

    // The reference digest first, then a warm server primed with one (untimed) get.
    let reference = bench.md5sum(&big)?;
    bench.reference = Some(reference.digest.clone());
    say(format!("md5 of the big file: {}", reference.digest));
    let warm_server = FerryServer::start(&work)?;
    let warm_addr = warm_server.addr.clone();
    let (prime_mbps, prime_kib) =
        bench.ferry_get("ferry warm (priming get)", &warm_addr, &dl.join("ferry-warm.bin"), true)?;
    bench.client_peak_warm_kib = prime_kib;
    say(format!("warm server at {warm_addr}, primed with one get ({} MB/s, untimed)", num(prime_mbps)));

    let note = |label: &str, r: usize, v: f64, unit: &str| {
        say(format!("  [{r}/{}] {label:<40} {:>8} {unit}", opts.runs, num(v)));
    };
    for r in 1..=opts.runs {
        say(format!("round {r}/{} (big file)", opts.runs));
        let v = bench.run_md5sum()?;
        rows.md5sum.samples.push(v);
        note("md5sum FILE", r, v, "MB/s");
        if rows.nc.skipped.is_none() {
            let v = bench.run_nc()?;
            rows.nc.samples.push(v);
            note("nc -l | md5sum  <-  nc -N < FILE", r, v, "MB/s");
        }
        if let Some(url) = &big_url {
            let v = bench.run_curl_pipe(url)?;
            rows.curl_pipe.samples.push(v);
            note("http.server -> curl | md5sum", r, v, "MB/s");
            let v = bench.run_curl_disk(url)?;
            rows.curl_disk.samples.push(v);
            note("http.server -> curl -o DEST; md5sum DEST", r, v, "MB/s");
        }
        let v = bench.run_ferry_cold(r == 1)?;
        rows.cold.samples.push(v);
        note("ferry cold (fresh serve, get, verified)", r, v, "MB/s");
        let (v, kib) = bench.ferry_get("ferry warm", &warm_addr, &dl.join("ferry-warm.bin"), false)?;
        bench.client_peak_warm_kib = bench.client_peak_warm_kib.max(kib);
        rows.warm.samples.push(v);
        note("ferry warm (same server again)", r, v, "MB/s");
    }
    bench.server_peak_warm_kib = warm_server.peak_rss_kib().unwrap_or(0);
    if let Err(e) = warm_server.stop() {
        bench.problems.push(e);
    }

    let curl_cfg = work.join("curl-small.cfg");
    for r in 1..=opts.runs {
        say(format!("round {r}/{} (small files)", opts.runs));
        let v = small_ferry(&small, &names, &work.join("dl-ferry-small"))?;
        rows.small_ferry.samples.push(v);
        note("ferry: one connection, list + get each", r, v, "files/s");
        if let Some(h) = &http {
            let v = small_curl(h, &curl_cfg, &small, &names, &work.join("dl-curl-small"))?;
            rows.small_curl.samples.push(v);
            note("http.server <- one curl -K", r, v, "files/s");
        }
    }
    drop(http);
    let load = format!("{load_before} before, {} after (1, 5, 15 min)", loadavg());
    say(format!("load avg: {load}"));
    say("");

    let report = report(opts, &Context { machine: &machine, command: &command, load: &load }, &rows, &bench);
    say(report);
    let problems = std::mem::take(&mut bench.problems);
    *WORK_DIR.lock().unwrap_or_else(|p| p.into_inner()) = None;
    drop(tmp);
    Ok(problems)
}

// ---------------------------------------------------------------------------------------------
// The report (Markdown, ready for docs/benchmarks.md)

/// What the report says about the run itself.
struct Context<'a> {
    machine: &'a Machine,
    command: &'a str,
    load: &'a str,
}

fn report(opts: &Options, cx: &Context<'_>, rows: &Rows, bench: &Bench<'_>) -> String {
    let mut s = String::new();
    let size = size_arg(opts.size);
    let _ = writeln!(s, "## Results\n");
    let _ = writeln!(s, "- Machine: {}", cx.machine.line());
    let _ = writeln!(s, "- Command: `{}`", cx.command);
    let _ = writeln!(s, "- Date: {}; load average {}", chrono::Local::now().format("%Y-%m-%d %H:%M %Z"), cx.load);
    let _ = writeln!(
        s,
        "- Big file: {size} of random bytes, 127.0.0.1, work folder on {}; median (min–max) of {} run{}; MB = 10^6 bytes",
        if is_tmpfs(&bench.work) { "tmpfs" } else { "disk (not tmpfs)" },
        opts.runs,
        if opts.runs == 1 { "" } else { "s" }
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "| # | what | MB/s median | min | max | ferry cold vs this | ferry warm vs this |");
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|");
    let big_rows: [(&str, &str, &Series, bool); 6] = [
        ("1", "`md5sum FILE` (the hash limit, one core)", &rows.md5sum, true),
        ("2", "`nc -l \\| md5sum` fed by `nc -N < FILE`", &rows.nc, true),
        ("3a", "`python3 -m http.server` → `curl \\| md5sum`", &rows.curl_pipe, true),
        ("3b", "`python3 -m http.server` → `curl -o DEST`, then `md5sum DEST`", &rows.curl_disk, true),
        ("4", "**ferry cold**: fresh `ferry serve`, `ferry get -o DEST --force`, verified", &rows.cold, false),
        ("5", "**ferry warm**: the same file again from the same server", &rows.warm, false),
    ];
    for (n, what, series, peer) in big_rows {
        if let Some(why) = &series.skipped {
            let _ = writeln!(s, "| {n} | {what} | skipped: {why} | | | | |");
            continue;
        }
        let (c, w) = if peer {
            (opt_ratio(ratio(&rows.cold, series)), opt_ratio(ratio(&rows.warm, series)))
        } else {
            (String::new(), String::new())
        };
        let _ = writeln!(
            s,
            "| {n} | {what} | {} | {} | {} | {c} | {w} |",
            opt_num(series.median()),
            opt_num(series.min()),
            opt_num(series.max())
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "| peak RSS | cold runs | warm runs (incl. the priming get) |");
    let _ = writeln!(s, "|---|---:|---:|");
    let _ = writeln!(s, "| `ferry serve` | {} | {} |", mib(bench.server_peak_kib), mib(bench.server_peak_warm_kib));
    let _ = writeln!(s, "| `ferry get` | {} | {} |", mib(bench.client_peak_kib), mib(bench.client_peak_warm_kib));
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Many small files: {} files of {}, to disk, every one checked byte for byte afterwards.\n",
        opts.files,
        size_arg(opts.file_size)
    );
    let _ = writeln!(s, "| what | files/s median | min | max | ferry vs this |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for (what, series, peer) in [
        (
            "**ferry**: one connection, `list` + `get` each, verified (in-process client, `ferry serve`)",
            &rows.small_ferry,
            false,
        ),
        ("`python3 -m http.server` ← one `curl -K urls`", &rows.small_curl, true),
    ] {
        match &series.skipped {
            Some(why) => {
                let _ = writeln!(s, "| {what} | skipped: {why} | | | |");
            }
            None => {
                let vs = if peer { opt_ratio(ratio(&rows.small_ferry, series)) } else { String::new() };
                let _ = writeln!(
                    s,
                    "| {what} | {} | {} | {} | {vs} |",
                    opt_num(series.median()),
                    opt_num(series.min()),
                    opt_num(series.max())
                );
            }
        }
    }
    let _ = writeln!(s);

    // Targets, on medians.
    let target = |got: Option<f64>, want: f64| match got {
        None => "n/a".to_string(),
        Some(g) if g >= want => "PASS".into(),
        Some(_) => "MISS".into(),
    };
    let under = |kib: u64| {
        if kib == 0 {
            "n/a"
        } else if kib < RSS_LIMIT_KIB {
            "PASS"
        } else {
            "MISS"
        }
    };
    let small_per_s = rows.small_ferry.median();
    let _ = writeln!(s, "Targets (issue 4; on medians; reported, never enforced):\n");
    let _ = writeln!(s, "| target | measured | |");
    let _ = writeln!(s, "|---|---:|---|");
    let _ = writeln!(
        s,
        "| cold ≥ 1.0x `nc \\| md5sum` | {} | {} |",
        opt_ratio(ratio(&rows.cold, &rows.nc)),
        target(ratio(&rows.cold, &rows.nc), 1.0)
    );
    let _ = writeln!(
        s,
        "| cold ≥ 1.1x `curl \\| md5sum` | {} | {} |",
        opt_ratio(ratio(&rows.cold, &rows.curl_pipe)),
        target(ratio(&rows.cold, &rows.curl_pipe), 1.1)
    );
    let _ = writeln!(
        s,
        "| cold vs `md5sum` (ceiling ≈ 0.8x with both ends hashing on 2 cores) | {} | reported |",
        opt_ratio(ratio(&rows.cold, &rows.md5sum))
    );
    let _ = writeln!(
        s,
        "| warm ≥ 0.85x `md5sum` | {} | {} |",
        opt_ratio(ratio(&rows.warm, &rows.md5sum)),
        target(ratio(&rows.warm, &rows.md5sum), 0.85)
    );
    let server_peak = bench.server_peak_kib.max(bench.server_peak_warm_kib);
    let client_peak = bench.client_peak_kib.max(bench.client_peak_warm_kib);
    let _ = writeln!(
        s,
        "| peak RSS `ferry serve` < 32 MiB ({size} transfers) | {} | {} |",
        mib(server_peak),
        under(server_peak)
    );
    let _ = writeln!(
        s,
        "| peak RSS `ferry get` < 32 MiB ({size} transfers) | {} | {} |",
        mib(client_peak),
        under(client_peak)
    );
    let _ = writeln!(s, "| small files ≥ 2,000 files/s | {} | {} |", opt_num(small_per_s), target(small_per_s, 2000.0));
    let _ = writeln!(
        s,
        "| small files ≥ 1.5x the HTTP peer | {} | {} |",
        opt_ratio(ratio(&rows.small_ferry, &rows.small_curl)),
        target(ratio(&rows.small_ferry, &rows.small_curl), 1.5)
    );
    s
}
