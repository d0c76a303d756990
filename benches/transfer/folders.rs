//! The folder rows (issue 10): a folder of many small files and one of a few large ones,
//! fetched whole by `ferry get -r`, by `rsync -a` from a local rsync daemon and by `curl` from
//! `python3 -m http.server`, over 127.0.0.1 and through a relay started here that holds every
//! chunk for `--delay-ms` in each direction (20 ms round trip by default; the kernel here has
//! no netem). Every copy is checked afterwards: ferry's printed manifest against the sources'
//! MD5s, and every tool's files byte for byte.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::Result;
use crate::args::size_arg;
use crate::ferry_runs::{FerryServer, Wire, ferry_command};
use crate::files::{Rng, check_copies, fresh_dir};
use crate::peers::HttpPeer;
use crate::procs::{Drain, Proc, Watchdog, describe_failure, find_in_path, free_port, tool_version, wait_listening};
use crate::report::Series;

/// One folder of the benchmark: `work/trees/NAME/fNNNNN.bin`.
pub struct FolderSet {
    pub name: &'static str,
    pub names: Vec<String>,
    pub file_size: u64,
    /// `md5sum` lines as ferry prints them (`NAME/file`), sorted.
    pub manifest: String,
}

impl FolderSet {
    pub fn create(trees: &Path, name: &'static str, files: usize, file_size: u64, rng: &mut Rng) -> Result<FolderSet> {
        use md5::Digest;
        let dir = trees.join(name);
        fresh_dir(&dir)?;
        let width = files.to_string().len().max(5);
        let names: Vec<String> = (0..files).map(|i| format!("f{i:0width$}.bin")).collect();
        let mut buf = vec![0u8; file_size as usize];
        let mut lines = Vec::new();
        for n in &names {
            rng.fill(&mut buf);
            fs::write(dir.join(n), &buf).map_err(|e| format!("cannot write {n}: {e}"))?;
            let md5: String = md5::Md5::digest(&buf).iter().map(|b| format!("{b:02x}")).collect();
            lines.push(format!("{md5}  {name}/{n}\n"));
        }
        // Sorted by path, as ferry prints it (the zero-padded names sort as created).
        Ok(FolderSet { name, names, file_size, manifest: lines.concat() })
    }

    pub fn describe(&self) -> String {
        format!("{} x {}", self.names.len(), size_arg(self.file_size))
    }
}

/// The figures of one folder over one link: files/s for each tool, plus MB/s.
#[derive(Default)]
pub struct LinkRows {
    pub ferry: Series,
    pub rsync: Series,
    pub curl: Series,
}

/// A TCP relay on 127.0.0.1 that delays every chunk by `delay` in each direction, as a link
/// with that one-way latency would (the bytes are held, not the reads: throughput is not capped
/// by the delay). Per direction at most `MAX_HELD` bytes are held; past that the relay stops
/// reading, as a full link would.
pub struct LatencyRelay {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

const MAX_HELD: usize = 64 * 1024 * 1024;

/// Chunks read and not yet written (each with when it is due), their bytes, and whether the
/// reading side has ended.
#[derive(Default)]
struct Queue {
    chunks: VecDeque<(Instant, Vec<u8>)>,
    bytes: usize,
    ended: bool,
}

struct Held {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl LatencyRelay {
    pub fn start(target: SocketAddr, delay: Duration) -> Result<LatencyRelay> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("latency relay: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        thread::Builder::new()
            .name("latency-relay".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(target) else { continue };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    delayed_pipe(client, server, delay);
                    delayed_pipe(s2, c2, delay);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(LatencyRelay { addr, stop })
    }
}

impl Drop for LatencyRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// `from` -> `to`, each chunk written `delay` after it was read.
fn delayed_pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let held = Arc::new(Held { queue: Mutex::new(Queue::default()), changed: Condvar::new() });
    let h2 = held.clone();
    thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            };
            let mut g = h2.queue.lock().unwrap();
            if n == 0 {
                g.ended = true;
                h2.changed.notify_all();
                return;
            }
            while g.bytes >= MAX_HELD {
                g = h2.changed.wait(g).unwrap();
            }
            g.chunks.push_back((Instant::now() + delay, buf[..n].to_vec()));
            g.bytes += n;
            h2.changed.notify_all();
        }
    });
    thread::spawn(move || {
        loop {
            let (due, chunk) = {
                let mut g = held.queue.lock().unwrap();
                loop {
                    if let Some(c) = g.chunks.pop_front() {
                        g.bytes -= c.1.len();
                        held.changed.notify_all();
                        break c;
                    }
                    if g.ended {
                        let _ = to.shutdown(Shutdown::Write);
                        return;
                    }
                    g = held.changed.wait(g).unwrap();
                }
            };
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
    });
}

/// `rsync --daemon` on 127.0.0.1, serving `dir` read-only as module `trees`.
pub struct RsyncDaemon {
    proc: Proc,
    pub port: u16,
    _stderr: Drain,
}

impl RsyncDaemon {
    pub fn start(work: &Path, dir: &Path) -> Result<RsyncDaemon> {
        let port = free_port()?;
        let conf = work.join("rsyncd.conf");
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let text = format!(
            "use chroot = no\nuid = {uid}\ngid = {gid}\npid file = {}\n[trees]\npath = {}\nread only = yes\n",
            work.join("rsyncd.pid").display(),
            dir.display()
        );
        fs::write(&conf, text).map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        let mut proc = Proc::spawn(
            Command::new("rsync")
                .args(["--daemon", "--no-detach", "--address=127.0.0.1"])
                .arg(format!("--port={port}"))
                .arg(format!("--config={}", conf.display()))
                .arg(format!("--log-file={}", work.join("rsyncd.log").display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
            "rsync --daemon",
        )?;
        let stderr = Drain::new(proc.take_stderr(), 20);
        wait_listening(&mut proc, port, Some(&stderr))?;
        Ok(RsyncDaemon { proc, port, _stderr: stderr })
    }
}

impl Drop for RsyncDaemon {
    fn drop(&mut self) {
        self.proc.signal(libc::SIGTERM);
        let _ = self.proc.wait_for(Some(Duration::from_secs(5)));
    }
}

/// Whether rsync is there; in a real run (`--bench`) it is installed with apt-get if missing.
pub fn rsync(bench_mode: bool) -> Result<String> {
    if find_in_path("rsync").is_none() {
        if !bench_mode {
            return Err("rsync is not installed (a smoke run installs nothing)".into());
        }
        let ok = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "rsync"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok || find_in_path("rsync").is_none() {
            return Err("rsync is not installed and `apt-get install rsync` failed".into());
        }
    }
    Ok(tool_version("rsync", &["--version"]))
}

fn limit_for(set: &FolderSet) -> Duration {
    Duration::from_secs(300) + Duration::from_millis(50) * set.names.len() as u32
}

/// One timed `ferry get -r ADDR NAME -o DEST` (fresh DEST); checks the printed manifest.
/// Files/s.
pub fn ferry_folder(addr: &str, set: &FolderSet, dest: &Path) -> Result<f64> {
    fresh_dir(dest)?;
    let start = Instant::now();
    let mut get = Proc::spawn(
        ferry_command()
            .args(["get", "-r", addr, set.name, "-o"])
            .arg(dest)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        "ferry get -r",
    )?;
    let out = Drain::new(get.take_stdout(), set.names.len() + 10);
    let err = Drain::new(get.take_stderr(), 20);
    let dog = Watchdog::arm(vec![get.pid()], limit_for(set));
    let exit = get.wait()?;
    let secs = start.elapsed().as_secs_f64();
    if dog.finish() {
        return Err("ferry get -r took too long and was stopped".into());
    }
    let (out, err) = (out.finish(), err.finish());
    if !exit.status.success() {
        return Err(describe_failure("ferry get -r", exit.status, &err));
    }
    let printed: String = out.lines().map(|l| format!("{l}\n")).collect();
    if printed != set.manifest {
        return Err(format!("ferry get -r ({}): the printed manifest differs from the sources' MD5s", set.name));
    }
    check_copies("ferry get -r", &set.names, &trees_of(dest, set), &dest.join(set.name))?;
    Ok(set.names.len() as f64 / secs.max(1e-9))
}

/// The source folder of `set` (kept beside the destinations: `work/trees/NAME`).
fn trees_of(dest: &Path, set: &FolderSet) -> PathBuf {
    dest.parent().unwrap_or(dest).join("trees").join(set.name)
}

/// One timed `rsync -a rsync://127.0.0.1:PORT/trees/NAME DEST/`. Files/s.
pub fn rsync_folder(port: u16, set: &FolderSet, dest: &Path) -> Result<f64> {
    fresh_dir(dest)?;
    let start = Instant::now();
    let mut p = Proc::spawn(
        Command::new("rsync")
            .arg("-a")
            .arg(format!("rsync://127.0.0.1:{port}/trees/{}", set.name))
            .arg(format!("{}/", dest.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
        "rsync -a",
    )?;
    let err = Drain::new(p.take_stderr(), 20);
    let dog = Watchdog::arm(vec![p.pid()], limit_for(set));
    let exit = p.wait()?;
    let secs = start.elapsed().as_secs_f64();
    if dog.finish() {
        return Err("rsync -a took too long and was stopped".into());
    }
    if !exit.status.success() {
        return Err(describe_failure("rsync -a", exit.status, &err.finish()));
    }
    check_copies("rsync -a", &set.names, &trees_of(dest, set), &dest.join(set.name))?;
    Ok(set.names.len() as f64 / secs.max(1e-9))
}

/// One timed `curl -Z --parallel-max 16 -K urls` from http.server (at `port`: its own, or a
/// relay's). Files/s.
pub fn curl_folder(http: &HttpPeer, port: u16, config: &Path, set: &FolderSet, dest: &Path) -> Result<f64> {
    fresh_dir(dest)?;
    let out_dir = dest.join(set.name);
    fresh_dir(&out_dir)?;
    let mut cfg = String::new();
    for n in &set.names {
        let url =
            http.url(&format!("trees/{}/{n}", set.name)).replace(&format!(":{}/", http.port()), &format!(":{port}/"));
        let _ = writeln!(cfg, "url = \"{url}\"\noutput = \"{}\"", out_dir.join(n).display());
    }
    fs::write(config, cfg).map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    let start = Instant::now();
    let mut curl = Proc::spawn(
        Command::new("curl")
            .args(["-sS", "--fail", "-Z", "--parallel-max", "16", "-K"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
        "curl -Z -K",
    )?;
    let err = Drain::new(curl.take_stderr(), 20);
    let dog = Watchdog::arm(vec![curl.pid()], limit_for(set));
    let exit = curl.wait()?;
    let secs = start.elapsed().as_secs_f64();
    if dog.finish() {
        return Err("curl -Z -K took too long and was stopped".into());
    }
    if !exit.status.success() {
        return Err(describe_failure("curl -Z -K", exit.status, &err.finish()));
    }
    check_copies("curl -Z -K", &set.names, &trees_of(dest, set), &out_dir)?;
    Ok(set.names.len() as f64 / secs.max(1e-9))
}

/// Everything measured for the folders.
pub struct FolderRows {
    pub sets: Vec<FolderSet>,
    /// `[set][link]`, link 0 = 127.0.0.1, 1 = through the latency relay.
    pub rows: Vec<[LinkRows; 2]>,
    pub delay: Duration,
}

/// Runs the folder rows, round-robin over `runs` rounds. `http` serves `work` (so
/// `trees/NAME/FILE` is a URL).
#[allow(clippy::too_many_arguments)]
pub fn run(
    work: &Path,
    sets: Vec<FolderSet>,
    runs: usize,
    delay: Duration,
    rsync_ok: std::result::Result<(), String>,
    http: Option<&HttpPeer>,
    http_skip: Option<String>,
    say: &dyn Fn(String),
) -> Result<FolderRows> {
    let trees = work.join("trees");
    let server = FerryServer::start(&trees, Wire::Tls)?;
    let daemon = match &rsync_ok {
        Ok(()) => Some(RsyncDaemon::start(work, &trees)?),
        Err(_) => None,
    };
    let ferry_addr: SocketAddr = server.addr.parse().map_err(|e| format!("{e}"))?;
    let ferry_relay = LatencyRelay::start(ferry_addr, delay)?;
    let rsync_relay = match &daemon {
        Some(d) => Some(LatencyRelay::start(SocketAddr::from(([127, 0, 0, 1], d.port)), delay)?),
        None => None,
    };
    let http_relay = match http {
        Some(h) => Some(LatencyRelay::start(SocketAddr::from(([127, 0, 0, 1], h.port())), delay)?),
        None => None,
    };
    let mut rows: Vec<[LinkRows; 2]> = sets.iter().map(|_| [LinkRows::default(), LinkRows::default()]).collect();
    for set_rows in &mut rows {
        for link in set_rows.iter_mut() {
            if let Err(e) = &rsync_ok {
                link.rsync.skipped = Some(e.clone());
            }
            if let Some(e) = &http_skip {
                link.curl.skipped = Some(e.clone());
            }
        }
    }
    let dest = work.join("dl-folders");
    let cfg = work.join("curl-folders.cfg");
    for r in 1..=runs {
        for (i, set) in sets.iter().enumerate() {
            for (link, row) in rows[i].iter_mut().enumerate() {
                let where_ = if link == 0 { "127.0.0.1" } else { "20 ms RTT" };
                let label = |tool: &str| format!("  [{r}/{runs}] {tool:<14} {} {where_:<10}", set.describe());
                let addr = if link == 0 { server.addr.clone() } else { ferry_relay.addr.to_string() };
                let v = ferry_folder(&addr, set, &dest)?;
                say(format!("{} {:>9.0} files/s", label("ferry get -r"), v));
                row.ferry.samples.push(v);
                if let Some(d) = &daemon {
                    let port = if link == 0 { d.port } else { rsync_relay.as_ref().map_or(d.port, |r| r.addr.port()) };
                    let v = rsync_folder(port, set, &dest)?;
                    say(format!("{} {:>9.0} files/s", label("rsync -a"), v));
                    row.rsync.samples.push(v);
                }
                if let Some(h) = http {
                    let port =
                        if link == 0 { h.port() } else { http_relay.as_ref().map_or(h.port(), |r| r.addr.port()) };
                    let v = curl_folder(h, port, &cfg, set, &dest)?;
                    say(format!("{} {:>9.0} files/s", label("curl -Z"), v));
                    row.curl.samples.push(v);
                }
                let _ = fs::remove_dir_all(&dest);
            }
        }
    }
    drop((ferry_relay, rsync_relay, http_relay, daemon));
    server.stop()?;
    Ok(FolderRows { sets, rows, delay })
}

/// The Markdown table of the folder rows: files/s (and MB/s), ferry's ratio to each peer.
pub fn report(f: &FolderRows, single_file_mbps: Option<f64>) -> String {
    use crate::report::{num, opt_num, opt_ratio, ratio};
    let mut s = String::new();
    let rtt = f.delay.as_millis() * 2;
    let _ = writeln!(
        s,
        "Folders (issue 10): each tool fetches the whole folder to a fresh destination; every copy \
         is checked byte for byte afterwards (ferry's printed manifest against the sources' MD5s \
         too). \"{rtt} ms RTT\" goes through a relay started by the bench that holds each chunk \
         {} ms in each direction. `rsync -a` from `rsync --daemon`; `curl -Z --parallel-max 16 -K \
         urls` from `python3 -m http.server`. ferry: `ferry get -r` from one `ferry serve` \
         (TLS), every file MD5-verified and renamed into place.\n",
        f.delay.as_millis()
    );
    let _ = writeln!(s, "| folder | link | tool | files/s median | min | max | MB/s | ferry vs this |");
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|");
    for (set, rows) in f.sets.iter().zip(&f.rows) {
        for (link, lr) in rows.iter().enumerate() {
            let where_ = if link == 0 { "127.0.0.1".to_string() } else { format!("{rtt} ms RTT") };
            for (tool, series, peer) in
                [("**ferry get -r**", &lr.ferry, false), ("rsync -a", &lr.rsync, true), ("curl -Z", &lr.curl, true)]
            {
                if let Some(why) = &series.skipped {
                    let _ = writeln!(s, "| {} | {where_} | {tool} | skipped: {why} | | | | |", set.describe());
                    continue;
                }
                let mbps = series.median().map(|v| v * set.file_size as f64 / 1e6);
                let vs = if peer { opt_ratio(ratio(&lr.ferry, series)) } else { String::new() };
                let _ = writeln!(
                    s,
                    "| {} | {where_} | {tool} | {} | {} | {} | {} | {vs} |",
                    set.describe(),
                    opt_num(series.median()),
                    opt_num(series.min()),
                    opt_num(series.max()),
                    opt_num(mbps),
                );
            }
        }
    }
    let _ = writeln!(s);
    for (set, rows) in f.sets.iter().zip(&f.rows) {
        for (link, lr) in rows.iter().enumerate() {
            if set.file_size <= 64 * 1024 {
                let where_ = if link == 0 { "127.0.0.1".to_string() } else { format!("{rtt} ms RTT") };
                let r = ratio(&lr.ferry, &lr.rsync);
                let verdict = match r {
                    Some(r) if r >= 1.0 => "PASS",
                    Some(_) => "MISS",
                    None => "–",
                };
                let _ = writeln!(
                    s,
                    "- Target: {} on {where_}, ferry >= 1.0x rsync: {} ({verdict})",
                    set.describe(),
                    opt_ratio(r)
                );
            } else if link == 0
                && let (Some(single), Some(m)) = (single_file_mbps, rows[0].ferry.median())
            {
                let mbps = m * set.file_size as f64 / 1e6;
                let r = mbps / single;
                let verdict = if r >= 0.9 { "PASS" } else { "MISS" };
                let _ = writeln!(
                    s,
                    "- Target: {} on 127.0.0.1 within 10% of ferry's single-file cold speed ({} MB/s): \
                     {} MB/s, {r:.2}x ({verdict})",
                    set.describe(),
                    num(single),
                    num(mbps)
                );
            }
        }
    }
    s
}
