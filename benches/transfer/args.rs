//! The command line, parsed by clap. `cargo bench` adds `--bench`; without it (as
//! `cargo test --benches` runs this binary) the defaults shrink to a smoke test.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Parser;

use crate::{GIB, KIB, MIB};

#[derive(Parser, Debug)]
#[command(
    name = "transfer",
    about = "ferry against the MD5 limit, a plain `nc` pipe and an HTTP peer, on this machine over 127.0.0.1",
    override_usage = "cargo bench --bench transfer -- [--size SIZE] [--runs N] [--files N] [--file-size SIZE] [--index-files N] [--folder-files N] [--folder-big N] [--folder-big-size SIZE] [--delay-ms MS] [--dir DIR]",
    after_help = "quick run (< 1 minute after the build): cargo bench --bench transfer -- --size 64MiB --runs 3 --files 500"
)]
struct Args {
    /// The big file (default 1GiB; units B, KiB, MiB, GiB, KB, MB, GB)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    size: Option<u64>,
    /// Runs of every measurement; each figure is their median, min and max (default 3)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    runs: Option<usize>,
    /// The many-small-files test: how many files (default 2000)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    files: Option<usize>,
    /// The digest index's memory test: how many files the host indexes (default 100000)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    index_files: Option<usize>,
    /// ... and how big each (default 4KiB)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    file_size: Option<u64>,
    /// The folder rows: the small-files folder's file count (default 2000, of --file-size)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    folder_files: Option<usize>,
    /// The folder rows: the large-files folder's file count (default 20)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    folder_big: Option<usize>,
    /// ... and how big each (default 50MiB)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    folder_big_size: Option<u64>,
    /// The folder rows' latency relay: delay in each direction, ms (default 10: 20 ms RTT)
    #[arg(long, value_name = "MS")]
    delay_ms: Option<u64>,
    /// Where to put the work folder (default /dev/shm when it has room, else the temp folder)
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Passed by `cargo bench`: the full run (without it, a smoke test that installs nothing)
    #[arg(long, hide = true)]
    bench: bool,
    /// `cargo bench FILTER` hands the filter to every bench target; it is ignored
    #[arg(hide = true)]
    filters: Vec<String>,
}

pub struct Options {
    pub size: u64,
    pub runs: usize,
    pub files: usize,
    pub file_size: u64,
    pub index_files: usize,
    pub dir: Option<PathBuf>,
    pub folder_files: usize,
    pub folder_big: usize,
    pub folder_big_size: u64,
    pub delay_ms: u64,
    /// Run by `cargo bench` (it passes `--bench`); otherwise a smoke test that installs nothing.
    pub bench_mode: bool,
    pub argv: Vec<String>,
}

impl Options {
    /// Parses the process's arguments; exits (status 2, or 0 for `--help`) on bad ones.
    pub fn from_env() -> Options {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let args = Args::parse();
        for filter in &args.filters {
            eprintln!("transfer bench: ignoring the filter {filter:?}");
        }
        // Without `--bench` this binary is being run as a test: keep it small.
        let (d_size, d_runs, d_files) = if args.bench { (GIB, 3, 2000) } else { (8 * MIB, 1, 100) };
        Options {
            size: args.size.unwrap_or(d_size),
            runs: args.runs.unwrap_or(d_runs),
            files: args.files.unwrap_or(d_files),
            file_size: args.file_size.unwrap_or(4 * KIB),
            index_files: args.index_files.unwrap_or(if args.bench { 100_000 } else { 2000 }),
            dir: args.dir,
            folder_files: args.folder_files.unwrap_or(if args.bench { 2000 } else { 100 }),
            folder_big: args.folder_big.unwrap_or(if args.bench { 20 } else { 2 }),
            folder_big_size: args.folder_big_size.unwrap_or(if args.bench { 50 * MIB } else { MIB }),
            delay_ms: args.delay_ms.unwrap_or(10),
            bench_mode: args.bench,
            argv,
        }
    }

    /// The command that reproduces this run.
    pub fn command(&self) -> String {
        let mut c = format!(
            "cargo bench --bench transfer -- --size {} --runs {} --files {}",
            size_arg(self.size),
            self.runs,
            self.files
        );
        if self.index_files != 100_000 {
            let _ = write!(c, " --index-files {}", self.index_files);
        }
        if self.file_size != 4 * KIB {
            let _ = write!(c, " --file-size {}", size_arg(self.file_size));
        }
        let _ = write!(
            c,
            " --folder-files {} --folder-big {} --folder-big-size {} --delay-ms {}",
            self.folder_files,
            self.folder_big,
            size_arg(self.folder_big_size),
            self.delay_ms
        );
        if let Some(d) = &self.dir {
            let _ = write!(c, " --dir {}", d.display());
        }
        c
    }
}

fn parse_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("wants a whole number above zero, not {s:?}")),
    }
}

/// `1GiB`, `64MiB`, `4KiB`, `500MB`, `1G`, `4096` (bytes). K/M/G alone are binary. Above zero.
fn parse_size(s: &str) -> Result<u64, String> {
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
    match (num * mult).round() as u64 {
        0 => Err("sizes must be above zero".into()),
        n => Ok(n),
    }
}

/// A size as the shortest exact argument: `1GiB`, `64MiB`, `4KiB`, `1000B`.
pub fn size_arg(n: u64) -> String {
    for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("{}{name}", n / unit);
        }
    }
    format!("{n}B")
}
