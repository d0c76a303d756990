//! The figures (median, min, max of the runs) and the Markdown report, ready for
//! docs/benchmarks.md.

use std::fmt::Write as _;

use crate::args::{Options, size_arg};
use crate::files::is_tmpfs;
use crate::measure::Machine;
use crate::{Bench, RSS_LIMIT_KIB, Rows};

/// One row: the runs' figures (MB/s or files/s), or why it was skipped.
#[derive(Default)]
pub struct Series {
    pub samples: Vec<f64>,
    pub skipped: Option<String>,
}

impl Series {
    pub fn sorted(&self) -> Vec<f64> {
        let mut v = self.samples.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    pub fn median(&self) -> Option<f64> {
        let v = self.sorted();
        let n = v.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(v[n / 2]),
            _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
        }
    }

    pub fn min(&self) -> Option<f64> {
        self.sorted().first().copied()
    }

    pub fn max(&self) -> Option<f64> {
        self.sorted().last().copied()
    }
}

pub fn num(x: f64) -> String {
    if x >= 100.0 { format!("{x:.0}") } else { format!("{x:.1}") }
}

pub fn opt_num(x: Option<f64>) -> String {
    x.map_or("–".into(), num)
}

/// `a / b` of the medians, as `0.87x`.
pub fn ratio(a: &Series, b: &Series) -> Option<f64> {
    match (a.median(), b.median()) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

pub fn opt_ratio(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.2}x"))
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// What the report says about the run itself.
pub struct Context<'a> {
    pub machine: &'a Machine,
    pub command: &'a str,
    pub load: &'a str,
}

pub fn report(opts: &Options, cx: &Context<'_>, rows: &Rows, bench: &Bench<'_>) -> String {
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
    let _ = writeln!(
        s,
        "| # | what | MB/s median | min | max | ferry cold vs this | ferry warm vs this | ferry first get (row 6) vs this | CPU s/GiB, both ends |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let after = rows.indexed_after.median().map_or("N".to_string(), |a| format!("{:.0}", a.ceil()));
    let indexed_tls = format!(
        "**ferry, first download from a folder hosted {after} s ago**: fresh `ferry serve` (it indexes the folder in the background), then `ferry get`, verified (TLS 1.3)"
    );
    let indexed_plain = format!("the same, `--plain` on both sides (hosted {after} s ago; `sendfile`)");
    let big_rows: [(&str, &str, &Series, Option<&Series>); 12] = [
        ("1", "`md5sum FILE` (the hash limit, one core)", &rows.md5sum, None),
        ("2", "`nc -l \\| md5sum` fed by `nc -N < FILE`", &rows.nc, None),
        ("3a", "`python3 -m http.server` → `curl \\| md5sum`", &rows.curl_pipe, None),
        ("3b", "`python3 -m http.server` → `curl -o DEST`, then `md5sum DEST`", &rows.curl_disk, None),
        (
            "4",
            "**ferry cold**: fresh `ferry serve --index off` (a file it never saw), `ferry get -o DEST --force`, verified (TLS 1.3)",
            &rows.cold,
            Some(&rows.cpu_cold),
        ),
        ("5", "**ferry warm**: the same file again from the same server (TLS 1.3)", &rows.warm, Some(&rows.cpu_warm)),
        ("6", &indexed_tls, &rows.indexed, Some(&rows.cpu_indexed)),
        (
            "4p",
            "ferry cold, `--plain` on both sides (version 1, no encryption)",
            &rows.cold_plain,
            Some(&rows.cpu_cold_plain),
        ),
        (
            "5p",
            "ferry warm, `--plain` on both sides (version 1, `sendfile`)",
            &rows.warm_plain,
            Some(&rows.cpu_warm_plain),
        ),
        ("6p", &indexed_plain, &rows.indexed_plain, Some(&rows.cpu_indexed_plain)),
        (
            "7",
            "**ferry put**: fresh `ferry serve --allow-upload` of an empty folder, `ferry put ADDR FILE`; the host hashes what arrives and keeps it only if it matches the trailer (TLS 1.3)",
            &rows.put,
            Some(&rows.cpu_put),
        ),
        ("7p", "the same, `--plain` on both sides", &rows.put_plain, Some(&rows.cpu_put_plain)),
    ];
    for (n, what, series, cpu) in big_rows {
        if let Some(why) = &series.skipped {
            let _ = writeln!(s, "| {n} | {what} | skipped: {why} | | | | | | |");
            continue;
        }
        let (c, w, i) = match cpu {
            None => (
                opt_ratio(ratio(&rows.cold, series)),
                opt_ratio(ratio(&rows.warm, series)),
                opt_ratio(ratio(&rows.indexed, series)),
            ),
            Some(_) => (String::new(), String::new(), String::new()),
        };
        let cpu = cpu.map_or(String::new(), |c| c.median().map_or("–".into(), |v| format!("{v:.2}")));
        let _ = writeln!(
            s,
            "| {n} | {what} | {} | {} | {} | {c} | {w} | {i} | {cpu} |",
            opt_num(series.median()),
            opt_num(series.min()),
            opt_num(series.max())
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Rows 6 and 6p: each run starts a host on a folder holding only the file (a new name for the same bytes) with an empty cache folder, and starts the get once the host has logged that it indexed the folder: {} s after it started (median; min {}, max {}). That indexing cost the host {} CPU s/GiB (median), before the download and not in its CPU column. CPU: user + system seconds of `ferry serve` (during the transfer) and `ferry get` (or `ferry put`), per GiB.",
        opt_num(rows.indexed_after.median()),
        opt_num(rows.indexed_after.min()),
        opt_num(rows.indexed_after.max()),
        rows.cpu_index.median().map_or("–".into(), |v| format!("{v:.2}"))
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| peak RSS | cold runs and uploads (rows 4, 7) | warm runs (incl. the priming get) | rows 6 and 6p |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|");
    let _ = writeln!(
        s,
        "| `ferry serve` | {} | {} | {} |",
        mib(bench.server_peak_kib),
        mib(bench.server_peak_warm_kib),
        mib(bench.server_peak_indexed_kib)
    );
    let _ = writeln!(
        s,
        "| `ferry get`, `ferry put` | {} (with rows 6) | {} | |",
        mib(bench.client_peak_kib),
        mib(bench.client_peak_warm_kib)
    );
    let _ = writeln!(s);
    let (index_first, index_second) = rows.index_rss_kib;
    let _ = writeln!(
        s,
        "Digest index: {} small files (in folders of 1,000) indexed by `ferry serve --index whole` at {} files/s; its peak RSS {}; a restarted host that loaded that index, listed a folder of 1,000 (each with its MD5) and sent one file: peak RSS {}.",
        opts.index_files,
        opt_num(rows.index_files_per_sec),
        mib(index_first),
        mib(index_second)
    );
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
            "**ferry**: one connection, `list` + `get` each, verified (in-process client, `ferry serve`, TLS 1.3)",
            &rows.small_ferry,
            false,
        ),
        ("ferry, the same with `--plain` on both sides", &rows.small_plain, true),
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
    let _ = writeln!(s, "Targets (issues 4, 11, 12 and 13; on medians; reported, never enforced):\n");
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
    let _ = writeln!(
        s,
        "| first download from a folder hosted {after} s ago ≥ 0.9x `md5sum` (issue 11; TLS) | {} | {} |",
        opt_ratio(ratio(&rows.indexed, &rows.md5sum)),
        target(ratio(&rows.indexed, &rows.md5sum), 0.9)
    );
    let _ = writeln!(
        s,
        "| the same, `--plain` (issue 11) | {} | {} |",
        opt_ratio(ratio(&rows.indexed_plain, &rows.md5sum)),
        target(ratio(&rows.indexed_plain, &rows.md5sum), 0.9)
    );
    let index_peak = index_first.max(index_second);
    let _ = writeln!(
        s,
        "| peak RSS `ferry serve` < 32 MiB with a {}-file index (issue 11) | {} | {} |",
        opts.index_files,
        mib(index_peak),
        under(index_peak)
    );
    let server_peak = bench.server_peak_kib.max(bench.server_peak_warm_kib).max(bench.server_peak_indexed_kib);
    let client_peak = bench.client_peak_kib.max(bench.client_peak_warm_kib);
    let _ = writeln!(
        s,
        "| peak RSS `ferry serve` < 32 MiB ({size} transfers) | {} | {} |",
        mib(server_peak),
        under(server_peak)
    );
    let _ = writeln!(
        s,
        "| peak RSS `ferry get` and `ferry put` < 32 MiB ({size} transfers) | {} | {} |",
        mib(client_peak),
        under(client_peak)
    );
    let _ = writeln!(
        s,
        "| encrypted cold ≥ 0.9x `--plain` cold (issue 12) | {} | {} |",
        opt_ratio(ratio(&rows.cold, &rows.cold_plain)),
        target(ratio(&rows.cold, &rows.cold_plain), 0.9)
    );
    let _ = writeln!(
        s,
        "| encrypted warm ≥ 0.9x `--plain` warm (issue 12) | {} | {} |",
        opt_ratio(ratio(&rows.warm, &rows.warm_plain)),
        target(ratio(&rows.warm, &rows.warm_plain), 0.9)
    );
    let _ = writeln!(
        s,
        "| upload (row 7) vs cold download (row 4): both ends hash in each (issue 13) | {} | reported |",
        opt_ratio(ratio(&rows.put, &rows.cold))
    );
    let _ = writeln!(
        s,
        "| encrypted small files ≥ 0.8x `--plain` (issue 12) | {} | {} |",
        opt_ratio(ratio(&rows.small_ferry, &rows.small_plain)),
        target(ratio(&rows.small_ferry, &rows.small_plain), 0.8)
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
