//! The headless front: `ferry serve`, `ferry ls`, `ferry get`, on the same engine as the window.
//!
//! Exit codes: 0 success (for `get`: verified), 2 checksum mismatch, 1 any other failure.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::jobs::{EventKind, Jobs};
use crate::client::{ClientError, ConnectOptions, Connection, DownloadRequest, md5sum_line};
use crate::format;
use crate::protocol::message::EntryKind;
use crate::protocol::path::{Escaped, default_local_name};
use crate::protocol::{hex, message};
use crate::server::{DEFAULT_BIND, DEFAULT_MAX_CLIENTS, Server, ServerConfig, ServerEvent};

/// Exit code for a verified download or any other success.
pub const EXIT_OK: i32 = 0;
/// Exit code for any failure other than a checksum mismatch.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code for a download whose MD5 did not match.
pub const EXIT_MISMATCH: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Move files between two machines and prove they arrived intact (MD5-verified).",
    long_about = "Move files between two machines and prove they arrived intact.\n\n\
        With no command, ferry opens its desktop window. The commands below do the same work \
        headless: host a folder, list it from another machine, download a file with a progress \
        bar and an MD5 verdict.",
    after_help = "Exit codes: 0 success (get: MD5 verified), 2 MD5 mismatch, 1 any other failure.\n\
        Examples:\n  ferry serve ~/Public\n  ferry ls 192.168.1.20\n  ferry get 192.168.1.20 photos/cat.jpg -o cat.jpg"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Host a folder: let others list it and download from it (read-only).
    Serve {
        /// The folder to host.
        dir: PathBuf,
        /// Address and port to listen on (127.0.0.1:PORT for this machine only).
        #[arg(long, default_value = DEFAULT_BIND, value_name = "ADDR")]
        bind: String,
        /// Most clients at once; more are told the server is busy.
        #[arg(long, default_value_t = DEFAULT_MAX_CLIENTS, value_name = "N")]
        max_clients: usize,
        /// Close connections idle (or stalled) this many seconds.
        #[arg(long, default_value_t = 300, value_name = "SECS")]
        idle_timeout: u64,
        /// Require a PIN from clients; with no value, a random 6-digit PIN is made and shown.
        #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "PIN")]
        pin: Option<String>,
    },
    /// List a folder on a host (folders first, with sizes and dates).
    Ls {
        /// The host: HOST, HOST:PORT, or [IPv6]:PORT (port 7878 if none is given).
        addr: String,
        /// The folder on the host ("" or nothing for the hosted folder itself).
        #[arg(default_value = "")]
        path: String,
        /// The host's PIN, if it asks for one (or set FERRY_PIN).
        #[arg(long, env = "FERRY_PIN", hide_env_values = true)]
        pin: Option<String>,
    },
    /// Download a file, verify its MD5, print "<md5>  <dest>" like md5sum.
    Get {
        /// The host: HOST, HOST:PORT, or [IPv6]:PORT (port 7878 if none is given).
        addr: String,
        /// The file's path on the host, e.g. photos/cat.jpg.
        path: String,
        /// Where to save it (a file name, or an existing folder). Default: the file's own
        /// name in the current folder.
        #[arg(short = 'o', long = "output", value_name = "DEST")]
        output: Option<PathBuf>,
        /// Replace DEST if it already exists.
        #[arg(long)]
        force: bool,
        /// The host's PIN, if it asks for one (or set FERRY_PIN).
        #[arg(long, env = "FERRY_PIN", hide_env_values = true)]
        pin: Option<String>,
        /// Give up when the host sends nothing for this many seconds.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        timeout: u64,
    },
    /// Open the desktop window (what running ferry with no command does).
    Gui,
}

/// Runs a parsed command line; returns the process exit code. [`Command::Gui`] opens the
/// window and returns when it closes.
pub fn run(command: Command) -> i32 {
    match command {
        Command::Serve { dir, bind, max_clients, idle_timeout, pin } => {
            let pin = pin.map(|p| if p.is_empty() { crate::server::random_pin() } else { p });
            let mut config = ServerConfig::new(dir, bind);
            config.max_clients = max_clients.max(1);
            config.idle_timeout = Duration::from_secs(idle_timeout.max(1));
            config.pin = pin;
            serve(config)
        }
        Command::Ls { addr, path, pin } => ls(&addr, &path, pin),
        Command::Get { addr, path, output, force, pin, timeout } => {
            let opts = ConnectOptions { pin, io_timeout: Duration::from_secs(timeout.max(1)), ..Default::default() };
            get(&addr, &path, output.as_deref(), force, &opts)
        }
        #[cfg(feature = "gui")]
        Command::Gui => crate::gui::run(),
        #[cfg(not(feature = "gui"))]
        Command::Gui => {
            eprintln!("ferry: this build has no desktop window (built without the \"gui\" feature)");
            EXIT_FAILURE
        }
    }
}

fn log(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{} {line}", format::clock_now());
    let _ = out.flush();
}

fn serve(config: ServerConfig) -> i32 {
    let pin = config.pin.clone();
    let (server, events) = Server::spawn(config, None);
    let server = std::sync::Arc::new(server);
    {
        let server = server.clone();
        if let Err(e) = ctrlc::set_handler(move || server.stop()) {
            eprintln!("ferry: cannot catch Ctrl-C: {e}");
        }
    }
    let mut transfers = std::collections::HashMap::new();
    let mut failed = false;
    for event in events.iter() {
        match event {
            ServerEvent::Listening { addr, root } => {
                log(format_args!("hosting {} at {addr} (read-only); Ctrl-C stops", root.display()));
                if addr.ip().is_unspecified() {
                    let lan: Vec<String> = crate::net::lan_addresses()
                        .iter()
                        .map(|ip| std::net::SocketAddr::new(*ip, addr.port()).to_string())
                        .collect();
                    if !lan.is_empty() {
                        log(format_args!("reach it from other machines at: {}", lan.join(", ")));
                    }
                } else if addr.ip().is_loopback() {
                    log(format_args!("reachable from this machine only"));
                }
                if let Some(pin) = &pin {
                    // Shown once, on the terminal that started ferry, never in the log lines.
                    log(format_args!("clients must give the PIN"));
                    eprintln!("PIN: {pin}  (read it out to the person connecting)");
                }
            }
            ServerEvent::StartFailed { error } => {
                eprintln!("ferry: {error}");
                failed = true;
            }
            ServerEvent::ClientConnected { client, peer } => log(format_args!("client {client} connected from {peer}")),
            ServerEvent::ClientRejected { peer, reason } => {
                log(format_args!("turned away {peer}: {}", Escaped(&reason)))
            }
            ServerEvent::ClientDisconnected { client, peer, reason } => match reason {
                Some(r) => log(format_args!("client {client} ({peer}) disconnected: {}", Escaped(&r))),
                None => log(format_args!("client {client} ({peer}) disconnected")),
            },
            ServerEvent::TransferStarted { client, transfer, path, size, offset, .. } => {
                let from = if offset > 0 { format!(" from byte {offset}") } else { String::new() };
                log(format_args!("client {client} get \"{}\" ({}){from}", Escaped(&path), format::size(size)));
                transfers.insert(transfer, (client, path));
            }
            ServerEvent::TransferProgress { .. } => {}
            ServerEvent::TransferFinished { transfer, md5, sent, elapsed } => {
                if let Some((client, path)) = transfers.remove(&transfer) {
                    log(format_args!(
                        "client {client} sent \"{}\": {} in {:.2} s ({}), md5 {}",
                        Escaped(&path),
                        format::size(sent),
                        elapsed.as_secs_f64(),
                        format::speed(sent as f64 / elapsed.as_secs_f64().max(1e-6)),
                        hex(&md5)
                    ));
                }
            }
            ServerEvent::TransferFailed { transfer, error } => {
                if let Some((client, path)) = transfers.remove(&transfer) {
                    log(format_args!("client {client} get \"{}\" failed: {}", Escaped(&path), Escaped(&error)));
                }
            }
            ServerEvent::RequestRefused { client, request, error, .. } => {
                log(format_args!("client {client} {} refused: {}", Escaped(&request), Escaped(&error)))
            }
            ServerEvent::Stopped => {
                if !failed {
                    log(format_args!("stopped"));
                }
                break;
            }
        }
    }
    if failed { EXIT_FAILURE } else { EXIT_OK }
}

fn connect_error(e: ClientError) -> i32 {
    eprintln!("ferry: {e}");
    EXIT_FAILURE
}

fn ls(addr: &str, path: &str, pin: Option<String>) -> i32 {
    let opts = ConnectOptions { pin, ..Default::default() };
    let mut conn = match Connection::connect(addr, &opts) {
        Ok(c) => c,
        Err(e) => return connect_error(e),
    };
    let mut listing = match conn.list(path) {
        Ok(l) => l,
        Err(e) => return connect_error(e),
    };
    message::sort_entries(&mut listing.entries);
    let mut out = std::io::stdout().lock();
    for e in &listing.entries {
        let when = match format::modified(e.modified) {
            t if t.is_empty() => "-".repeat(16),
            t => t,
        };
        let (size, suffix) = match e.kind {
            EntryKind::Dir => ("-".to_string(), "/"),
            _ => (e.size.map_or("-".to_string(), format::size), ""),
        };
        if writeln!(out, "{size:>12}  {when}  {}{suffix}", Escaped(&e.name)).is_err() {
            break; // stdout closed (e.g. piped into head)
        }
    }
    if listing.entries.is_empty() {
        let _ = writeln!(out, "(empty folder)");
    }
    EXIT_OK
}

/// Where `ferry get` saves: `-o` (a file, or an existing folder to save into), or the
/// requested file's own name in the current folder. The name comes from what the user typed,
/// checked anyway: it travels to the host and back in error messages.
fn destination(path: &str, output: Option<&Path>) -> Result<PathBuf, String> {
    let name = || {
        default_local_name(path).map(str::to_string).map_err(|e| {
            format!("cannot name the local file after {:?}: {e}; give one with -o", Escaped(path).to_string())
        })
    };
    match output {
        Some(dir) if dir.is_dir() => Ok(dir.join(name()?)),
        Some(file) => Ok(file.to_path_buf()),
        None => Ok(PathBuf::from(name()?)),
    }
}

fn get(addr: &str, path: &str, output: Option<&Path>, force: bool, opts: &ConnectOptions) -> i32 {
    let dest = match destination(path, output) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("ferry: {e}");
            return EXIT_FAILURE;
        }
    };
    let (jobs, events) = Jobs::new(None);
    let job =
        jobs.download(addr, opts, DownloadRequest { path: path.to_string(), dest: dest.clone(), overwrite: force });
    let job = std::sync::Arc::new(job);
    {
        let job = job.clone();
        let _ = ctrlc::set_handler(move || job.cancel());
    }
    let tty = std::io::stderr().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    let mut last_line = Instant::now() - Duration::from_secs(10);
    loop {
        let Ok(event) = events.recv() else { break EXIT_FAILURE };
        match event.kind {
            EventKind::Connected { .. } | EventKind::Listing(_) | EventKind::ListFailed { .. } => {}
            EventKind::Progress { done, total, bytes_per_sec } => {
                if tty {
                    let b = bar.get_or_insert_with(|| {
                        let b = ProgressBar::new(total);
                        b.set_style(
                            ProgressStyle::with_template(
                                "{wide_bar:.cyan/blue} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                            )
                            .expect("valid template")
                            .progress_chars("=> "),
                        );
                        b
                    });
                    b.set_length(total);
                    b.set_position(done);
                } else if last_line.elapsed() >= Duration::from_secs(1) || done == total {
                    last_line = Instant::now();
                    let pct = if total == 0 { 100.0 } else { done as f64 * 100.0 / total as f64 };
                    eprintln!(
                        "{pct:5.1}%  {} of {}  {}",
                        format::size(done),
                        format::size(total),
                        format::speed(bytes_per_sec)
                    );
                }
            }
            EventKind::Verified { md5, dest, resumed_from, .. } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                if resumed_from > 0 {
                    eprintln!("ferry: resumed from byte {resumed_from}");
                }
                eprintln!("ferry: MD5 verified");
                println!("{}", md5sum_line(&md5, &dest.display().to_string()));
                break EXIT_OK;
            }
            EventKind::Mismatch { expected, actual, .. } => {
                if let Some(b) = bar.take() {
                    b.abandon();
                }
                eprintln!("ferry: MD5 MISMATCH: the file was damaged in transit and was not saved");
                eprintln!("  host sent: {}", hex(&expected));
                eprintln!("  computed:  {}", hex(&actual));
                break EXIT_MISMATCH;
            }
            EventKind::Failed(e) => {
                if let Some(b) = bar.take() {
                    b.abandon();
                }
                eprintln!("ferry: {e}");
                let part = crate::client::part_path(&dest);
                if part.exists() && !matches!(e, ClientError::Exists(_)) {
                    eprintln!(
                        "ferry: the partial download is kept in {}; run the same command to resume",
                        part.display()
                    );
                }
                break EXIT_FAILURE;
            }
            EventKind::Cancelled { part } => {
                if let Some(b) = bar.take() {
                    b.abandon();
                }
                match part {
                    Some(p) => {
                        eprintln!("ferry: cancelled; partial download kept in {} (run again to resume)", p.display())
                    }
                    None => eprintln!("ferry: cancelled"),
                }
                break EXIT_FAILURE;
            }
            EventKind::Closed => break EXIT_FAILURE,
        }
    }
}
