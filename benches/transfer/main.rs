//! The transfer benchmark (issue 4): ferry against the MD5 limit, a plain `nc` pipe and an HTTP
//! peer, on one machine over 127.0.0.1, in one run.
//!
//! ```sh
//! cargo bench --bench transfer                                               # 1 GiB, 3 runs, 2000 files
//! cargo bench --bench transfer -- --size 64MiB --runs 3 --files 500          # quick (< 1 minute)
//! ```
//!
//! Options ([`args`]): `--size SIZE` (big file, default 1GiB), `--runs N` (default 3), `--files N`
//! (small files, default 2000), `--file-size SIZE` (default 4KiB), `--dir DIR` (work folder;
//! default `/dev/shm` when it has room, else the temp folder). `cargo bench` adds `--bench`.
//! Run without `--bench` (as `cargo test --benches` does), the defaults shrink to a smoke test
//! and nothing is installed.
//!
//! Every figure is the median of `--runs` runs with min and max; MB = 10^6 bytes. The rows are
//! measured round-robin (one run of each per round) so a change in background load hits every
//! row alike. Every transfer's digest is checked against `md5sum` of the source; a mismatch, a
//! failed command or a server that does not stop on Ctrl-C exits non-zero. Targets are reported
//! as PASS/MISS and never fail the run.
//!
//! The parts: [`args`] (the command line), [`procs`] (child processes, their output, ports),
//! [`files`] (the work folder and the files), [`peers`] (md5sum, nc, HTTP), [`ferry_runs`] (the
//! ferry rows), [`measure`] (peak RSS, the machine), [`report`] (figures and the Markdown table).
//!
//! Linux only (it reads /proc, signals and waits for processes with Linux calls, and measures
//! `sendfile`): every item is `cfg(target_os = "linux")`, and elsewhere `main` only says so, so
//! `cargo clippy --all-targets` works for every target.

#[cfg(target_os = "linux")]
mod args;
#[cfg(target_os = "linux")]
mod ferry_runs;
#[cfg(target_os = "linux")]
mod files;
#[cfg(target_os = "linux")]
mod folders;
#[cfg(target_os = "linux")]
mod measure;
#[cfg(target_os = "linux")]
mod peers;
#[cfg(target_os = "linux")]
mod procs;
#[cfg(target_os = "linux")]
mod report;

#[cfg(target_os = "linux")]
use std::fs;
#[cfg(target_os = "linux")]
use std::io::Write;
#[cfg(target_os = "linux")]
use std::path::PathBuf;
#[cfg(target_os = "linux")]
use std::process::ExitCode;
#[cfg(target_os = "linux")]
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
use args::{Options, size_arg};
#[cfg(target_os = "linux")]
use ferry_runs::{FERRY, FerryServer, Wire, ferry_command, small_ferry};
#[cfg(target_os = "linux")]
use files::{Rng, fresh_dir, warm_cache, work_dir, write_random_file};
#[cfg(target_os = "linux")]
use measure::{Machine, loadavg};
#[cfg(target_os = "linux")]
use peers::{HttpPeer, netcat, small_curl};
#[cfg(target_os = "linux")]
use procs::{WORK_DIR, find_in_path, on_ctrl_c, tool_version, version_line};
#[cfg(target_os = "linux")]
use report::{Context, Series, num, report};

#[cfg(target_os = "linux")]
const KIB: u64 = 1024;
#[cfg(target_os = "linux")]
const MIB: u64 = 1024 * KIB;
#[cfg(target_os = "linux")]
const GIB: u64 = 1024 * MIB;
/// MB as NOTES.md and the issue use it.
#[cfg(target_os = "linux")]
const MB: f64 = 1e6;
/// The issue's RSS ceiling for each side.
#[cfg(target_os = "linux")]
const RSS_LIMIT_KIB: u64 = 32 * 1024;

#[cfg(target_os = "linux")]
type Result<T, E = String> = std::result::Result<T, E>;

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let opts = Options::from_env();
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

#[cfg(target_os = "linux")]
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
    server_peak_indexed_kib: u64,
}

/// A timed run's outcome: seconds and the digest the command printed.
#[cfg(target_os = "linux")]
struct Timed {
    secs: f64,
    digest: String,
}

#[cfg(target_os = "linux")]
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
}

#[cfg(target_os = "linux")]
fn secs_limit(bytes: u64) -> Duration {
    // Generous: a broken tool is caught, a slow machine is not.
    Duration::from_secs(120) + Duration::from_secs_f64(bytes as f64 / (5.0 * MB))
}

#[cfg(target_os = "linux")]
struct Rows {
    md5sum: Series,
    nc: Series,
    curl_pipe: Series,
    curl_disk: Series,
    cold: Series,
    warm: Series,
    cold_plain: Series,
    warm_plain: Series,
    /// The first download from a folder hosted (and indexed) a few seconds before.
    indexed: Series,
    indexed_plain: Series,
    /// Seconds from starting that host to the get, per run.
    indexed_after: Series,
    /// CPU seconds per GiB, both processes, per ferry row.
    cpu_cold: Series,
    cpu_warm: Series,
    cpu_cold_plain: Series,
    cpu_warm_plain: Series,
    cpu_indexed: Series,
    cpu_indexed_plain: Series,
    /// CPU seconds per GiB the host spent indexing before the indexed rows' get.
    cpu_index: Series,
    /// The big file uploaded with `ferry put` to a host that takes uploads.
    put: Series,
    put_plain: Series,
    cpu_put: Series,
    cpu_put_plain: Series,
    /// The index memory test: files indexed a second, peak RSS (KiB) of the indexing host
    /// and of a restarted host with the index on disk.
    index_files_per_sec: Option<f64>,
    index_rss_kib: (u64, u64),
    small_ferry: Series,
    small_plain: Series,
    small_curl: Series,
}

#[cfg(target_os = "linux")]
fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

#[cfg(target_os = "linux")]
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
    say(format!("ferry:    {FERRY} ({}, {profile})", version_line(ferry_command().arg("--version"), "ferry")));
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
        server_peak_indexed_kib: 0,
    };
    let mut rows = Rows {
        md5sum: Series::default(),
        nc: Series::default(),
        curl_pipe: Series::default(),
        curl_disk: Series::default(),
        cold: Series::default(),
        warm: Series::default(),
        cold_plain: Series::default(),
        warm_plain: Series::default(),
        indexed: Series::default(),
        indexed_plain: Series::default(),
        indexed_after: Series::default(),
        cpu_cold: Series::default(),
        cpu_warm: Series::default(),
        cpu_cold_plain: Series::default(),
        cpu_warm_plain: Series::default(),
        cpu_indexed: Series::default(),
        cpu_indexed_plain: Series::default(),
        cpu_index: Series::default(),
        put: Series::default(),
        put_plain: Series::default(),
        cpu_put: Series::default(),
        cpu_put_plain: Series::default(),
        index_files_per_sec: None,
        index_rss_kib: (0, 0),
        small_ferry: Series::default(),
        small_plain: Series::default(),
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
    // Two folders per round for rows 6 and 6p, each a new name for the big file.
    let hosted = bench.make_hosted_folders(2 * opts.runs)?;
    let warm_server = FerryServer::start(&work, Wire::Tls)?;
    let warm_addr = warm_server.addr.clone();
    let prime = bench.ferry_get("ferry warm (priming get)", Wire::Tls, &warm_addr, &dl.join("ferry-warm.bin"), true)?;
    bench.client_peak_warm_kib = prime.peak_kib;
    say(format!("warm server at {warm_addr}, primed with one get ({} MB/s, untimed)", num(prime.mbps)));
    let warm_plain_server = FerryServer::start(&work, Wire::Plain)?;
    let warm_plain_addr = warm_plain_server.addr.clone();
    let prime = bench.ferry_get(
        "ferry warm plain (priming get)",
        Wire::Plain,
        &warm_plain_addr,
        &dl.join("ferry-warm.bin"),
        false,
    )?;
    say(format!("warm --plain server at {warm_plain_addr}, primed with one get ({} MB/s, untimed)", num(prime.mbps)));

    let note = |label: &str, r: usize, v: f64, unit: &str| {
        say(format!("  [{r}/{}] {label:<40} {:>8} {unit}", opts.runs, num(v)));
    };
    // A ferry row's run: its MB/s, and the CPU both ends spent, per GiB.
    let record = |row: &mut Series, cpu: &mut Series, run: &ferry_runs::Run, label: &str, r: usize| {
        row.samples.push(run.mbps);
        cpu.samples.push(run.cpu_per_gib);
        note(label, r, run.mbps, "MB/s");
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
        let run = bench.run_ferry_cold(Wire::Tls, r == 1)?;
        record(&mut rows.cold, &mut rows.cpu_cold, &run, "ferry cold (fresh serve, get, verified)", r);
        let run = bench.ferry_get_from("ferry warm", &warm_server, &dl.join("ferry-warm.bin"), false)?;
        bench.client_peak_warm_kib = bench.client_peak_warm_kib.max(run.client_kib);
        record(&mut rows.warm, &mut rows.cpu_warm, &run, "ferry warm (same server again)", r);
        let (run, after, index_cpu) = bench.run_ferry_indexed(Wire::Tls, &hosted[2 * r - 2])?;
        rows.indexed_after.samples.push(after);
        rows.cpu_index.samples.push(index_cpu);
        record(&mut rows.indexed, &mut rows.cpu_indexed, &run, &format!("ferry first get, hosted {after:.1} s ago"), r);
        let run = bench.run_ferry_cold(Wire::Plain, false)?;
        record(&mut rows.cold_plain, &mut rows.cpu_cold_plain, &run, "ferry cold --plain", r);
        let run = bench.ferry_get_from("ferry warm plain", &warm_plain_server, &dl.join("ferry-warm.bin"), false)?;
        record(&mut rows.warm_plain, &mut rows.cpu_warm_plain, &run, "ferry warm --plain", r);
        let (run, after, index_cpu) = bench.run_ferry_indexed(Wire::Plain, &hosted[2 * r - 1])?;
        rows.indexed_after.samples.push(after);
        rows.cpu_index.samples.push(index_cpu);
        record(
            &mut rows.indexed_plain,
            &mut rows.cpu_indexed_plain,
            &run,
            &format!("ferry first get --plain, hosted {after:.1} s ago"),
            r,
        );
        let run = bench.run_ferry_put(Wire::Tls, r == 1)?;
        record(&mut rows.put, &mut rows.cpu_put, &run, "ferry put (upload, host verifies)", r);
        let run = bench.run_ferry_put(Wire::Plain, false)?;
        record(&mut rows.put_plain, &mut rows.cpu_put_plain, &run, "ferry put --plain", r);
    }
    bench.server_peak_warm_kib = warm_server.peak_rss_kib().unwrap_or(0);
    for server in [warm_server, warm_plain_server] {
        if let Err(e) = server.stop() {
            bench.problems.push(e);
        }
    }
    for dir in hosted {
        let _ = fs::remove_dir_all(dir);
    }

    say(format!("digest index: {} files indexed by one host, then a restarted host lists and sends", opts.index_files));
    let (per_sec, first_kib, second_kib) = bench.index_rss(opts.index_files)?;
    rows.index_files_per_sec = Some(per_sec);
    rows.index_rss_kib = (first_kib, second_kib);
    say(format!(
        "  {} files/s indexed; peak RSS {} while indexing, {} restarted with the index",
        num(per_sec),
        report::mib(first_kib),
        report::mib(second_kib)
    ));

    let curl_cfg = work.join("curl-small.cfg");
    for r in 1..=opts.runs {
        say(format!("round {r}/{} (small files)", opts.runs));
        let v = small_ferry(&small, &names, &work.join("dl-ferry-small"), Wire::Tls)?;
        rows.small_ferry.samples.push(v);
        note("ferry: one connection, list + get each", r, v, "files/s");
        let v = small_ferry(&small, &names, &work.join("dl-ferry-small"), Wire::Plain)?;
        rows.small_plain.samples.push(v);
        note("ferry --plain: the same", r, v, "files/s");
        if let Some(h) = &http {
            let v = small_curl(h, &curl_cfg, &small, &names, &work.join("dl-curl-small"))?;
            rows.small_curl.samples.push(v);
            note("http.server <- one curl -K", r, v, "files/s");
        }
    }
    // The folders (issue 10), over 127.0.0.1 and through the latency relay.
    let trees = work.join("trees");
    fresh_dir(&trees)?;
    let sets = vec![
        folders::FolderSet::create(&trees, "small-files", opts.folder_files, opts.file_size, &mut rng)?,
        folders::FolderSet::create(&trees, "large-files", opts.folder_big, opts.folder_big_size, &mut rng)?,
    ];
    let rsync_ok = folders::rsync(opts.bench_mode).map(|v| say(format!("rsync:    {v}")));
    if let Err(e) = &rsync_ok {
        say(format!("rsync:    SKIPPED: {e}"));
    }
    say(format!(
        "folders:  {} and {}; latency relay {} ms each way",
        sets[0].describe(),
        sets[1].describe(),
        opts.delay_ms
    ));
    let folder_rows = folders::run(
        &work,
        sets,
        opts.runs,
        Duration::from_millis(opts.delay_ms),
        rsync_ok,
        http.as_ref(),
        http_missing.clone(),
        &|line| say(line),
    )?;
    drop(http);
    let load = format!("{load_before} before, {} after (1, 5, 15 min)", loadavg());
    say(format!("load avg: {load}"));
    say("");

    let report = report(opts, &Context { machine: &machine, command: &command, load: &load }, &rows, &bench);
    say(report);
    say(folders::report(&folder_rows, rows.cold.median()));
    let problems = std::mem::take(&mut bench.problems);
    *WORK_DIR.lock().unwrap_or_else(|p| p.into_inner()) = None;
    drop(tmp);
    Ok(problems)
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("transfer bench: this benchmark needs Linux (/proc, sendfile); nothing was measured");
}
