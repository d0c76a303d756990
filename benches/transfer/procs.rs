//! Child processes (every one killed and reaped on every way out, and on Ctrl-C), their
//! output, and the ports they listen on.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::Result;

/// Child processes not yet reaped, and the work folder: what Ctrl-C must clean up.
pub static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());
pub static WORK_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

pub fn live() -> std::sync::MutexGuard<'static, Vec<i32>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn on_ctrl_c() {
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
pub struct Proc {
    child: Child,
    pub name: String,
    reaped: bool,
}

/// How a child ended. (Its `ru_maxrss` is deliberately not used: on Linux a spawned child's
/// `ru_maxrss` includes the spawning parent's RSS, since posix_spawn shares the parent's memory
/// until exec and exec records the old memory's high-water mark. See [`RssSampler`].)
pub struct Exit {
    pub status: ExitStatus,
    /// CPU seconds the child used (user + system), from `wait4`'s accounting.
    pub cpu_secs: f64,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, name: &str) -> Result<Proc> {
        let mut lock = live();
        let child = cmd.spawn().map_err(|e| format!("cannot run {name}: {e}"))?;
        lock.push(child.id() as i32);
        Ok(Proc { child, name: name.to_string(), reaped: false })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.child.stdout.take().expect("stdout was piped")
    }

    pub fn take_stderr(&mut self) -> std::process::ChildStderr {
        self.child.stderr.take().expect("stderr was piped")
    }

    /// Waits for the exit (optionally giving up after `timeout`), then reaps it. The pid leaves
    /// [`LIVE`] before it is reaped, so nothing kills (or samples) a recycled pid.
    pub fn wait_for(&mut self, timeout: Option<Duration>) -> Result<Option<Exit>> {
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
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = loop {
            let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
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
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        let cpu_secs = secs(usage.ru_utime) + secs(usage.ru_stime);
        Ok(Some(Exit { status: ExitStatus::from_raw(status), cpu_secs }))
    }

    pub fn wait(&mut self) -> Result<Exit> {
        Ok(self.wait_for(None)?.expect("no timeout"))
    }

    /// `Some` once the child has exited (and is reaped).
    pub fn exited(&mut self) -> Result<Option<Exit>> {
        self.wait_for(Some(Duration::ZERO))
    }

    pub fn signal(&self, sig: libc::c_int) {
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
pub struct Watchdog {
    disarm: Option<mpsc::Sender<()>>,
    fired: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub fn arm(pids: Vec<i32>, limit: Duration) -> Watchdog {
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
    pub fn finish(mut self) -> bool {
        self.stop();
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn stop(&mut self) {
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

/// Reads a pipe to its end on a thread, keeping the last `keep` lines; the first line also
/// goes out on a channel (for servers that announce their address).
pub struct Drain {
    tail: Arc<Mutex<VecDeque<String>>>,
    pub first: mpsc::Receiver<String>,
    thread: Option<JoinHandle<()>>,
}

impl Drain {
    pub fn new(pipe: impl Read + Send + 'static, keep: usize) -> Drain {
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

    pub fn text(&self) -> String {
        let t = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        t.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }

    /// Everything kept, after the pipe has closed.
    pub fn finish(mut self) -> String {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.text()
    }
}

/// CPU seconds (user + system) a running process has used so far, from /proc/PID/stat.
pub fn cpu_secs(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses: utime is the 14th
    // field of the line, stime the 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks.max(1.0))
}

/// A command's result, for error messages.
pub fn describe_failure(what: &str, status: ExitStatus, stderr: &str) -> String {
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (_, Some(s)) => format!("signal {s}"),
        _ => "an unknown status".into(),
    };
    let stderr = stderr.trim();
    if stderr.is_empty() { format!("{what} failed with {how}") } else { format!("{what} failed with {how}: {stderr}") }
}

/// Runs a short command to its end, capturing stdout and stderr.
pub fn run_quiet(cmd: &mut Command, name: &str) -> Result<(ExitStatus, String, String)> {
    let mut p = Proc::spawn(cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()), name)?;
    let out = Drain::new(p.take_stdout(), 10_000);
    let err = Drain::new(p.take_stderr(), 10_000);
    let exit = p.wait()?;
    Ok((exit.status, out.finish(), err.finish()))
}

/// The first 32-hex-digit word of an `md5sum`-style line.
pub fn digest_of(line: &str) -> Option<String> {
    let word = line.split_whitespace().next()?.to_ascii_lowercase();
    (word.len() == 32 && word.bytes().all(|b| b.is_ascii_hexdigit())).then_some(word)
}

/// A port nothing listens on now (the kernel's pick for port 0).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Whether something listens on TCP `port` (from /proc/net/tcp{,6}; never connects, since a
/// probe connection would be the one connection `nc -l` accepts).
pub fn listening(port: u16) -> Result<bool> {
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
pub fn wait_listening(proc: &mut Proc, port: u16, stderr: Option<&Drain>) -> Result<()> {
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

pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    })
}

/// First line of a tool's version output (or `-h` for nc, which has no `--version`).
pub fn tool_version(name: &str, args: &[&str]) -> String {
    version_line(Command::new(name).args(args), name)
}

/// First line of what `cmd` prints (stdout, else stderr), or why it could not run.
pub fn version_line(cmd: &mut Command, name: &str) -> String {
    match run_quiet(cmd, name) {
        Ok((_, out, err)) => {
            let text = if out.trim().is_empty() { err } else { out };
            text.lines().next().unwrap_or("").trim().to_string()
        }
        Err(e) => e,
    }
}
