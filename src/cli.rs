//! The headless front: `ferry serve`, `ferry discover`, `ferry ls`, `ferry get`, `ferry put`,
//! on the same engine as the window.
//!
//! Exit codes: 0 success (for `get` and `put`: verified), 2 checksum mismatch, 1 any other
//! failure.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::jobs::{EventKind, Jobs};
use crate::client::{
    CancelToken, ClientError, ConnectOptions, Connection, DownloadRequest, FileResult, HostIdentity, TreeLimits,
    TreeRequest, TreeSummary, UploadOutcome, UploadRequest, md5sum_line,
};
use crate::discovery::{self, AnnounceEvent, Announcement, Announcer, BrowseEvent, DiscoveryError, Reach};
use crate::format;
use crate::protocol::message::EntryKind;
use crate::protocol::names::Os;
use crate::protocol::path::{Escaped, default_local_name};
use crate::protocol::{hex, message};
use crate::server::{
    DEFAULT_BIND, DEFAULT_MAX_CLIENTS, DEFAULT_MAX_PER_ADDRESS, IndexMode, Server, ServerConfig, ServerEvent,
};
use crate::transport::Contact;

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
        headless: host a folder, find hosts on the local network, list a host's folder, download \
        a file with a progress bar and an MD5 verdict. FERRY_NO_DISCOVERY=1 turns announcing \
        and browsing off.",
    after_help = "Exit codes: 0 success (get, put: MD5 verified), 2 MD5 mismatch, 1 any other failure.\n\
        Examples:\n  ferry serve ~/Public\n  ferry discover\n  ferry ls 192.168.1.20\n  ferry ls \"Public on alice-laptop\"\n  ferry get 192.168.1.20 photos/cat.jpg -o cat.jpg\n  ferry serve ~/Inbox --allow-upload\n  ferry put 192.168.1.20 report.pdf photos/ -r --to from-bob"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Host a folder: let others list it and download from it (and, with --allow-upload,
    /// upload into it).
    Serve {
        /// The folder to host.
        dir: PathBuf,
        /// Address and port to listen on (127.0.0.1:PORT for this machine only).
        #[arg(long, default_value = DEFAULT_BIND, value_name = "ADDR")]
        bind: String,
        /// Most clients at once; more are told the server is busy.
        #[arg(long, default_value_t = DEFAULT_MAX_CLIENTS, value_name = "N")]
        max_clients: usize,
        /// Most connections at once from one address; more from it are told the server is busy.
        #[arg(long, default_value_t = DEFAULT_MAX_PER_ADDRESS, value_name = "N")]
        max_per_address: usize,
        /// Close connections idle (or stalled) this many seconds.
        #[arg(long, default_value_t = 300, value_name = "SECS")]
        idle_timeout: u64,
        /// Require a PIN from clients; with no value, a random 6-digit PIN is made and shown.
        #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "PIN")]
        pin: Option<String>,
        /// Speak unencrypted protocol version 1 (for debugging with a packet capture; clients
        /// must use --plain too). Anyone on the network can then read everything.
        #[arg(long)]
        plain: bool,
        /// Let clients upload files into the hosted folder (ferry put). Existing files are never
        /// replaced; every file is kept only after its MD5 is verified.
        #[arg(long)]
        allow_upload: bool,
        /// Take uploads only into this folder inside the hosted one (e.g. "inbox").
        #[arg(long, value_name = "SUBFOLDER", requires = "allow_upload")]
        upload_folder: Option<String>,
        /// Take only uploaded names that Windows accepts too (no CON, a:b, name. …).
        #[arg(long)]
        windows_names: bool,
        /// What to hash in the background (low priority, paused while sending) so downloads
        /// start warm and listings show each file's MD5: the whole folder from the start,
        /// only folders clients list, or nothing (each file is hashed as it is first sent).
        /// Digests are kept in the cache folder (FERRY_CACHE_DIR overrides it).
        #[arg(long, value_enum, default_value_t = IndexArg::Whole, value_name = "WHAT")]
        index: IndexArg,
    },
    /// Find ferry hosts on the local network (mDNS); say why when none answers.
    Discover {
        /// How long to listen for hosts.
        #[arg(long, default_value_t = 3, value_name = "SECS")]
        timeout: u64,
    },
    /// List a folder on a host (folders first, with sizes and dates).
    Ls {
        /// The host: HOST, HOST:PORT, [IPv6]:PORT (port 7878 if none is given), or the name
        /// `ferry discover` shows.
        addr: String,
        /// The folder on the host ("" or nothing for the hosted folder itself).
        #[arg(default_value = "")]
        path: String,
        /// Show each file's MD5 where the host already knows it (from its digest index; "-"
        /// where it does not yet: it hashes listed folders in the background).
        #[arg(long)]
        md5: bool,
        /// The host's PIN, if it asks for one (or set FERRY_PIN).
        #[arg(long, env = "FERRY_PIN", hide_env_values = true)]
        pin: Option<String>,
        /// Connect unencrypted (protocol version 1), to a host that runs with --plain.
        #[arg(long)]
        plain: bool,
        /// Go on although the host's identity differs from the remembered one, and remember
        /// the new one (only after comparing the colours with the host's screen).
        #[arg(long)]
        accept_new_identity: bool,
    },
    /// Download a file, verify its MD5, print "<md5>  <dest>" like md5sum. With -r: files and
    /// whole folders, every file verified, the md5sum manifest printed.
    Get {
        /// The host: HOST, HOST:PORT, [IPv6]:PORT (port 7878 if none is given), or the name
        /// `ferry discover` shows.
        addr: String,
        /// The file's path on the host, e.g. photos/cat.jpg. With -r: one or more files or
        /// folders ("" is the whole hosted folder).
        #[arg(required = true, num_args = 1.., value_name = "PATH")]
        paths: Vec<String>,
        /// Download folders (recursively, empty ones too) and several files in one job, over
        /// one connection; each PATH is saved under its own name in DEST (a folder, created if
        /// missing). Files already there with the host's MD5 are skipped, partial ones resumed.
        #[arg(short = 'r', long)]
        recursive: bool,
        /// With -r: also save the manifest as DEST/MD5SUMS (`md5sum -c MD5SUMS` re-checks the copy).
        #[arg(long, requires = "recursive")]
        manifest: bool,
        /// Where to save it (a file name, or an existing folder). Default: the file's own
        /// name in the current folder. With -r: the folder to save into (default: the
        /// current folder).
        #[arg(short = 'o', long = "output", value_name = "DEST")]
        output: Option<PathBuf>,
        /// Replace DEST if it already exists (and discard ferry's own partial download of
        /// another file to DEST). Without it, a DEST whose MD5 is the one the host lists for
        /// the file is left as it is and reported identical (exit 0). With -r: replace files
        /// that differ from the host's.
        #[arg(long)]
        force: bool,
        /// The host's PIN, if it asks for one (or set FERRY_PIN).
        #[arg(long, env = "FERRY_PIN", hide_env_values = true)]
        pin: Option<String>,
        /// Give up when the host sends nothing for this many seconds.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        timeout: u64,
        /// Save under a name Windows accepts too (for a drive that Windows will read): `CON`,
        /// `a:b` or `name.` are saved adjusted, and the adjustment is reported. On Windows this
        /// is always so.
        #[arg(long)]
        windows_names: bool,
        /// Connect unencrypted (protocol version 1), to a host that runs with --plain.
        #[arg(long)]
        plain: bool,
        /// Go on although the host's identity differs from the remembered one, and remember
        /// the new one (only after comparing the colours with the host's screen).
        #[arg(long)]
        accept_new_identity: bool,
    },
    /// Upload files to a host that takes uploads (ferry serve --allow-upload); the host keeps
    /// each only once its MD5 matches. Prints "<md5>  <file>" like md5sum for each.
    Put {
        /// The host: HOST, HOST:PORT, [IPv6]:PORT (port 7878 if none is given), or the name
        /// `ferry discover` shows.
        addr: String,
        /// The files to upload (folders too, with -r).
        #[arg(required = true, value_name = "LOCAL")]
        local: Vec<PathBuf>,
        /// The folder on the host to put them in (made if missing). Default: the hosted folder.
        #[arg(long = "to", value_name = "REMOTE_DIR", default_value = "")]
        to: String,
        /// Upload folders with everything in them.
        #[arg(short = 'r', long)]
        recursive: bool,
        /// The host's PIN, if it asks for one (or set FERRY_PIN).
        #[arg(long, env = "FERRY_PIN", hide_env_values = true)]
        pin: Option<String>,
        /// Give up when the host answers nothing for this many seconds.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        timeout: u64,
        /// Connect unencrypted (protocol version 1), to a host that runs with --plain.
        #[arg(long)]
        plain: bool,
        /// Go on although the host's identity differs from the remembered one, and remember
        /// the new one (only after comparing the colours with the host's screen).
        #[arg(long)]
        accept_new_identity: bool,
    },
    /// Open the desktop window (what running ferry with no command does).
    Gui,
}

/// `serve --index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IndexArg {
    Whole,
    Listed,
    Off,
}

/// Runs a parsed command line; returns the process exit code. [`Command::Gui`] opens the
/// window and returns when it closes.
pub fn run(command: Command) -> i32 {
    match command {
        Command::Serve {
            dir,
            bind,
            max_clients,
            max_per_address,
            idle_timeout,
            pin,
            plain,
            allow_upload,
            upload_folder,
            windows_names,
            index,
        } => {
            let pin = pin.map(|p| if p.is_empty() { crate::server::random_pin() } else { p });
            let mut config = ServerConfig::new(dir, bind);
            config.max_clients = max_clients.max(1);
            config.max_per_address = max_per_address.max(1);
            config.idle_timeout = Duration::from_secs(idle_timeout.max(1));
            config.pin = pin.map(Into::into);
            config.plain = plain;
            config.allow_upload = allow_upload;
            config.upload_folder = upload_folder.map(|f| f.trim_matches('/').to_string()).filter(|f| !f.is_empty());
            if windows_names {
                config.upload_names = Os::Windows;
            }
            config.index = match index {
                IndexArg::Whole => IndexMode::Whole,
                IndexArg::Listed => IndexMode::Listed,
                IndexArg::Off => IndexMode::Off,
            };
            serve(config)
        }
        Command::Discover { timeout } => discover(Duration::from_secs(timeout.max(1))),
        Command::Ls { addr, path, md5, pin, plain, accept_new_identity } => match host_address(&addr) {
            Ok(addr) => {
                let opts = ConnectOptions {
                    pin: pin.map(Into::into),
                    plain,
                    accept_new_identity,
                    ..ConnectOptions::remembering()
                };
                ls(&addr, &path, md5, &opts)
            }
            Err(code) => code,
        },
        Command::Get {
            addr,
            paths,
            recursive,
            manifest,
            output,
            force,
            pin,
            timeout,
            windows_names,
            plain,
            accept_new_identity,
        } => {
            let names = if windows_names { Os::Windows } else { Os::current() };
            let opts = ConnectOptions {
                pin: pin.map(Into::into),
                io_timeout: Duration::from_secs(timeout.max(1)),
                names,
                plain,
                accept_new_identity,
                ..ConnectOptions::remembering()
            };
            if !recursive && paths.len() > 1 {
                eprintln!("ferry: several paths need -r (one job for all of them)");
                return EXIT_FAILURE;
            }
            match host_address(&addr) {
                Ok(addr) if recursive => {
                    let dest = output.unwrap_or_else(|| PathBuf::from("."));
                    get_tree(&addr, paths, dest, force, manifest, &opts)
                }
                Ok(addr) => get(&addr, &paths[0], output.as_deref(), force, &opts),
                Err(code) => code,
            }
        }
        Command::Put { addr, local, to, recursive, pin, timeout, plain, accept_new_identity } => {
            let opts = ConnectOptions {
                pin: pin.map(Into::into),
                io_timeout: Duration::from_secs(timeout.max(1)),
                plain,
                accept_new_identity,
                ..ConnectOptions::remembering()
            };
            let files = match crate::client::plan_uploads(&local, &to, recursive) {
                Ok(plan) => {
                    for skipped in &plan.skipped {
                        eprintln!("ferry: skipped {} (not a file or folder, or a link to a folder)", skipped.display());
                    }
                    plan.files
                }
                Err(e) => {
                    eprintln!("ferry: {e}");
                    return EXIT_FAILURE;
                }
            };
            match host_address(&addr) {
                Ok(addr) => put(&addr, &files, &opts),
                Err(code) => code,
            }
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

/// "5.00 MiB in 0.42 s (11.9 MiB/s)": how much a transfer moved and how fast.
fn moved(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    format!("{} in {secs:.2} s ({})", format::size(bytes), format::speed(bytes as f64 / secs.max(1e-6)))
}

fn log(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{} {line}", format::clock_now());
    let _ = out.flush();
}

fn serve(config: ServerConfig) -> i32 {
    let pin = config.pin.clone();
    let (allow_upload, upload_folder) = (config.allow_upload, config.upload_folder.clone());
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
    let mut announcer: Option<(Announcer, std::thread::JoinHandle<()>)> = None;
    let mut index_log = IndexLog::default();
    for event in events.iter() {
        match event {
            ServerEvent::Listening { addr, root, identity } => {
                let uploads = match (allow_upload, &upload_folder) {
                    (false, _) => "read-only".to_string(),
                    (true, Some(f)) => format!("takes uploads into \"{}\"", Escaped(f)),
                    (true, None) => "takes uploads".to_string(),
                };
                log(format_args!("hosting {} at {addr} ({uploads}); Ctrl-C stops", root.display()));
                match &identity {
                    Some(id) => {
                        log(format_args!("encrypted (TLS 1.3); this host's identity: {}", id.groups()));
                        if std::io::stdout().is_terminal() {
                            println!("{}", crate::format::identity_strip(id));
                        }
                    }
                    None => log(format_args!("UNENCRYPTED (--plain): anyone on the network can read everything")),
                }
                if addr.ip().is_unspecified() {
                    let lan: Vec<String> = crate::net::reachable_addresses(addr)
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
                    eprintln!("PIN: {}  (read it out to the person connecting)", pin.expose());
                }
                announcer = announce(&Announcement::for_host(addr, &root, pin.is_some(), identity.as_ref()));
            }
            ServerEvent::StartFailed { error } => {
                eprintln!("ferry: {error}");
                failed = true;
            }
            ServerEvent::ClientConnected { client, peer, .. } => {
                log(format_args!("client {client} connected from {peer}"))
            }
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
                transfers.insert(transfer, (client, path, "get"));
            }
            ServerEvent::UploadStarted { client, transfer, path, size, offset, .. } => {
                let from = if offset > 0 { format!(" resumed from byte {offset}") } else { String::new() };
                log(format_args!("client {client} put \"{}\" ({}){from}", Escaped(&path), format::size(size)));
                transfers.insert(transfer, (client, path, "put"));
            }
            ServerEvent::UploadFinished { transfer, expected, actual, received, elapsed } => {
                if let Some((client, path, _)) = transfers.remove(&transfer) {
                    if expected == actual {
                        log(format_args!(
                            "client {client} uploaded \"{}\": {}, md5 {} verified, saved",
                            Escaped(&path),
                            moved(received, elapsed),
                            hex(&actual)
                        ));
                    } else {
                        log(format_args!(
                            "client {client} put \"{}\": MD5 MISMATCH (client sent {}, received {}); not kept",
                            Escaped(&path),
                            hex(&expected),
                            hex(&actual)
                        ));
                    }
                }
            }
            ServerEvent::TransferProgress { .. } => {}
            ServerEvent::Indexing(p) => index_log.update(&p),
            ServerEvent::IndexProblem { error } => log(format_args!("{}", Escaped(&error))),
            ServerEvent::TransferFinished { transfer, md5, sent, elapsed } => {
                if let Some((client, path, _)) = transfers.remove(&transfer) {
                    log(format_args!(
                        "client {client} sent \"{}\": {}, md5 {}",
                        Escaped(&path),
                        moved(sent, elapsed),
                        hex(&md5)
                    ));
                }
            }
            ServerEvent::TransferFailed { transfer, error } => {
                if let Some((client, path, op)) = transfers.remove(&transfer) {
                    log(format_args!("client {client} {op} \"{}\" failed: {}", Escaped(&path), Escaped(&error)));
                }
            }
            ServerEvent::TransferConfirmed { client, path, ok, .. } => {
                let what = if ok { "verified and saved" } else { "did NOT match (not saved)" };
                log(format_args!("client {client} says \"{}\" {what}", Escaped(&path)))
            }
            ServerEvent::RequestRefused { client, request, error, .. } => {
                log(format_args!("client {client} {} refused: {}", Escaped(&request), Escaped(&error)))
            }
            ServerEvent::EventsDropped { count } => {
                log(format_args!("{count} more refusals, connections and transfers (not logged one by one)"))
            }
            ServerEvent::Stopped => {
                if let Some((a, logger)) = announcer.take() {
                    a.stop();
                    let _ = logger.join();
                }
                if !failed {
                    log(format_args!("stopped"));
                }
                break;
            }
        }
    }
    if failed { EXIT_FAILURE } else { EXIT_OK }
}

/// What `serve` logs of the digest index: when hashing starts, every 10 s while it runs, and
/// when it is done (with what it cost), so the host's own cost is visible.
#[derive(Default)]
struct IndexLog {
    /// When the current run of hashing started, and the totals then.
    run: Option<(Instant, u64, u64)>,
    last_line: Option<Instant>,
    known: Option<u64>,
}

impl IndexLog {
    fn update(&mut self, p: &crate::server::IndexProgress) {
        let left = || {
            let folders = match p.folders_left {
                0 => String::new(),
                n => format!(" and {n} folders to look at"),
            };
            format!("{} files ({}) left{folders}", p.files_left, format::size(p.bytes_left))
        };
        match self.run {
            None if p.idle() => {
                if self.known.is_none() {
                    log(format_args!("digest index: {} files known", p.known));
                }
            }
            None => {
                self.run = Some((Instant::now(), p.files_done, p.bytes_done));
                self.last_line = Some(Instant::now());
                log(format_args!("indexing in the background (low priority, pauses while sending): {}", left()));
            }
            Some((started, files0, bytes0)) if p.idle() => {
                let secs = started.elapsed().as_secs_f64();
                let bytes = p.bytes_done - bytes0;
                log(format_args!(
                    "indexed {} files ({}) in {secs:.1} s ({}); {} files known",
                    p.files_done - files0,
                    format::size(bytes),
                    format::speed(bytes as f64 / secs.max(1e-6)),
                    p.known
                ));
                self.run = None;
            }
            Some((_, files0, bytes0)) => {
                if self.last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    self.last_line = Some(Instant::now());
                    let paused = if p.paused { " (paused while sending)" } else { "" };
                    log(format_args!(
                        "indexing: {} files ({}) hashed, {}{paused}",
                        p.files_done - files0,
                        format::size(p.bytes_done - bytes0),
                        left()
                    ));
                }
            }
        }
        self.known = Some(p.known);
    }
}

/// Announces the host on the local network and logs what the announcer reports (on a thread
/// that ends with the announcement). `None` when it is not announced, with the reason logged.
fn announce(what: &Announcement) -> Option<(Announcer, std::thread::JoinHandle<()>)> {
    let (announcer, events) = match Announcer::start(what, None) {
        Ok(x) => x,
        // Already said: "reachable from this machine only".
        Err(DiscoveryError::LoopbackOnly(_)) => return None,
        Err(e) => {
            log(format_args!("not announced on the local network: {e}"));
            return None;
        }
    };
    let logger = std::thread::Builder::new().name("ferry-announce-log".into()).spawn(move || {
        let mut announced = false;
        for event in events.iter() {
            match event {
                AnnounceEvent::Announced { instance, .. } if !announced => {
                    announced = true;
                    log(format_args!(
                        "announced on the local network as \"{}\" (ferry discover lists it)",
                        Escaped(&instance)
                    ));
                }
                AnnounceEvent::Announced { .. } => {}
                AnnounceEvent::Renamed { instance } => {
                    log(format_args!("the name was taken on the network; announced as \"{}\"", Escaped(&instance)))
                }
                AnnounceEvent::Problem(p) => log(format_args!("discovery: {}", Escaped(&p))),
                AnnounceEvent::Withdrawn => log(format_args!("announcement withdrawn")),
            }
        }
    });
    match logger {
        Ok(logger) => Some((announcer, logger)),
        Err(_) => None,
    }
}

/// `ferry discover`: one line per reachable host, tab-separated (name, address:port, folder,
/// pin, tls, id); exit 1 with the diagnosis when none answers.
fn discover(timeout: Duration) -> i32 {
    let opts = discovery::BrowseOptions { diagnose_after: timeout, ..Default::default() };
    let probe = opts.probe_timeout;
    let (browser, events) = match discovery::Browser::start(opts, None) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("ferry: {e}; type the host's address instead (ferry ls HOST:PORT)");
            return EXIT_FAILURE;
        }
    };
    let start = Instant::now();
    let mut hosts: std::collections::BTreeMap<String, discovery::Host> = Default::default();
    let mut diagnosis = None;
    // Listen for `timeout`; then give checks under way the time they may take.
    let hard_deadline = start + timeout + probe * 2 + Duration::from_secs(2);
    loop {
        let checking = hosts.values().any(|h| h.reach == Reach::Checking);
        let reachable = hosts.values().any(|h| h.reach == Reach::Reachable);
        let now = Instant::now();
        if diagnosis.is_some() || now >= hard_deadline || (now >= start + timeout && reachable && !checking) {
            break;
        }
        let wait_until = if now < start + timeout { start + timeout } else { hard_deadline };
        match events.recv_deadline(wait_until) {
            Ok(BrowseEvent::Found(h)) | Ok(BrowseEvent::Updated(h)) => {
                hosts.insert(h.key.clone(), h);
            }
            Ok(BrowseEvent::Lost { key, .. }) => {
                hosts.remove(&key);
            }
            Ok(BrowseEvent::NothingFound(d)) => diagnosis = Some(d),
            Ok(BrowseEvent::Stopped { error }) => {
                if let Some(e) = error {
                    eprintln!("ferry: {e}");
                }
                break;
            }
            Err(_) => {}
        }
    }
    drop(browser);
    let mut out = std::io::stdout().lock();
    let mut shown = 0;
    for h in hosts.values() {
        match &h.reach {
            Reach::Reachable => {
                shown += 1;
                let _ = writeln!(
                    out,
                    "{}\t{}\tfolder={}\tpin={}\ttls={}\tid={}",
                    Escaped(&h.name),
                    h.address(),
                    Escaped(&h.folder),
                    if h.pin { "yes" } else { "no" },
                    if h.tls { "yes" } else { "no" },
                    h.id.as_deref().unwrap_or("-"),
                );
            }
            Reach::Unreachable(why) if diagnosis.is_none() => {
                eprintln!("ferry: seen but not reachable: \"{}\": {}", Escaped(&h.name), Escaped(why))
            }
            _ => {}
        }
    }
    let _ = out.flush();
    if shown > 0 {
        return EXIT_OK;
    }
    match diagnosis {
        Some(d) => {
            for line in d.lines() {
                eprintln!("ferry: {}", Escaped(&line));
            }
        }
        None => eprintln!("ferry: no ferry host found in {} s", timeout.as_secs()),
    }
    EXIT_FAILURE
}

/// What `ls` and `get` connect to: an address as typed, or the address of the discovered host
/// with that name. `Err` holds the exit code once the reason is printed.
fn host_address(typed: &str) -> Result<String, i32> {
    if discovery::is_address(typed) || discovery::disabled() {
        return Ok(typed.to_string());
    }
    match discovery::lookup(typed, Duration::from_secs(3)) {
        Ok(discovery::Lookup::Found(h)) => Ok(h.address()),
        Ok(discovery::Lookup::Ambiguous(hosts)) => {
            eprintln!("ferry: several hosts share the folder name \"{}\"; give one of:", Escaped(typed));
            for h in hosts {
                eprintln!("  \"{}\" ({})", Escaped(&h.name), h.address());
            }
            Err(EXIT_FAILURE)
        }
        // Maybe an ordinary host name (DNS): the connection says if it is not.
        Ok(discovery::Lookup::NotFound) if crate::client::resolve_addr(typed).is_ok() => Ok(typed.to_string()),
        Ok(discovery::Lookup::NotFound) => {
            eprintln!(
                "ferry: no host called \"{}\" answered on the local network, and it is no address \
                 (ferry discover lists the hosts it can see)",
                Escaped(typed)
            );
            Err(EXIT_FAILURE)
        }
        Err(e) => {
            eprintln!("ferry: cannot look for \"{}\" on the local network: {e}", Escaped(typed));
            Err(EXIT_FAILURE)
        }
    }
}

fn connect_error(e: ClientError) -> i32 {
    eprintln!("ferry: {e}");
    EXIT_FAILURE
}

/// Tells the person who answered, when it is news: a first contact (compare the colours with
/// the host's screen) or an identity they just accepted. On stderr, so stdout stays clean.
fn report_identity(identity: Option<&HostIdentity>, opts: &ConnectOptions) {
    let Some(id) = identity else {
        eprintln!("ferry: UNENCRYPTED connection (--plain): anyone on the network can read it");
        return;
    };
    let remembered = match &opts.known_hosts {
        Some(path) => format!("remembered in {}", path.display()),
        None => "not remembered".to_string(),
    };
    let proven = if id.pin_verified { "; the PIN exchange proved it is the host with that PIN" } else { "" };
    let headline = match id.contact {
        Contact::Known => return,
        Contact::First => "new host: compare these colours and groups with the host's screen",
        Contact::Changed { .. } => "accepted the host's NEW identity",
    };
    eprintln!("ferry: {headline}{proven}");
    eprintln!("  {}  identity {}", id.host, id.fingerprint.groups());
    if std::io::stderr().is_terminal() {
        eprintln!("  {}", crate::format::identity_strip(&id.fingerprint));
    }
    eprintln!("  ({remembered})");
}

fn ls(addr: &str, path: &str, md5: bool, opts: &ConnectOptions) -> i32 {
    let mut conn = match Connection::connect(addr, opts) {
        Ok(c) => c,
        Err(e) => return connect_error(e),
    };
    report_identity(conn.identity(), opts);
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
        let digest = match (md5, e.kind, e.digest()) {
            (false, _, _) => String::new(),
            (true, EntryKind::File, Some(d)) => format!("{}  ", hex(&d)),
            (true, _, _) => format!("{:<32}  ", "-"),
        };
        if writeln!(out, "{size:>12}  {when}  {digest}{}{suffix}", Escaped(&e.name)).is_err() {
            break; // stdout closed (e.g. piped into head)
        }
    }
    if listing.entries.is_empty() {
        let _ = writeln!(out, "(empty folder)");
    }
    EXIT_OK
}

/// Where `ferry get` saves: `-o` (a file, or an existing folder to save into), or the current
/// folder. Saving into a folder, the engine names the file after the requested one, held to
/// this system's name rules ([`crate::client::local_dest`]). The name is checked here first
/// too, so a name that can never be a file name is refused before connecting, with a hint.
fn destination(path: &str, output: Option<&Path>) -> Result<PathBuf, String> {
    let name = || {
        default_local_name(path).map(|_| ()).map_err(|e| {
            format!("cannot name the local file after {:?}: {e}; give one with -o", Escaped(path).to_string())
        })
    };
    match output {
        Some(dir) if dir.is_dir() => name().map(|()| dir.to_path_buf()),
        Some(file) => Ok(file.to_path_buf()),
        None => name().map(|()| PathBuf::from(".")),
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
    cancel_on_ctrl_c(job.canceller());
    let mut meter = Meter::new();
    loop {
        let Ok(event) = events.recv() else { break EXIT_FAILURE };
        match event.kind {
            EventKind::Connected { identity, .. } => report_identity(identity.as_ref(), opts),
            EventKind::Listing(_) | EventKind::ListFailed { .. } => {}
            EventKind::Progress { done, total, bytes_per_sec } => meter.show(done, total, None, Some(bytes_per_sec)),
            EventKind::Verified { md5, dest, resumed_from, renamed, .. } => {
                meter.clear();
                if let Some(r) = renamed {
                    eprintln!("ferry: {r}");
                }
                if resumed_from > 0 {
                    eprintln!("ferry: resumed from byte {resumed_from}");
                }
                eprintln!("ferry: MD5 verified");
                // `./name` reads as `name`, as md5sum would print it.
                let shown = dest.strip_prefix(".").unwrap_or(&dest);
                println!("{}", md5sum_line(&md5, &shown.display().to_string()));
                break EXIT_OK;
            }
            EventKind::Identical { md5, dest, .. } => {
                meter.clear();
                eprintln!(
                    "ferry: identical: already have it (MD5 matches the host's), nothing downloaded; \
                     --force downloads it anyway"
                );
                let shown = dest.strip_prefix(".").unwrap_or(&dest);
                println!("{}", md5sum_line(&md5, &shown.display().to_string()));
                break EXIT_OK;
            }
            EventKind::Mismatch { expected, actual, .. } => {
                meter.abandon();
                eprintln!("ferry: MD5 MISMATCH: the file was damaged in transit and was not saved");
                eprintln!("  host sent: {}", hex(&expected));
                eprintln!("  computed:  {}", hex(&actual));
                break EXIT_MISMATCH;
            }
            EventKind::Failed(e) => {
                meter.abandon();
                eprintln!("ferry: {e}");
                let asked = DownloadRequest { path: path.to_string(), dest: dest.clone(), overwrite: force };
                let saved = crate::client::local_dest(&asked, opts.names).map_or_else(|_| dest.clone(), |(d, _)| d);
                let part = crate::client::part_path(&saved);
                // Only when the partial file is this download's own (not a conflict over it).
                let conflict = matches!(
                    e,
                    ClientError::Exists(_)
                        | ClientError::NotOurs(_)
                        | ClientError::PartialOfOther { .. }
                        | ClientError::InUse(_)
                );
                if part.exists() && !conflict {
                    eprintln!(
                        "ferry: the partial download is kept in {}; run the same command to resume",
                        part.display()
                    );
                }
                break EXIT_FAILURE;
            }
            EventKind::Cancelled { part } => {
                meter.abandon();
                match part {
                    Some(p) => {
                        eprintln!("ferry: cancelled; partial download kept in {} (run again to resume)", p.display())
                    }
                    None => eprintln!("ferry: cancelled"),
                }
                break EXIT_FAILURE;
            }
            // Not the end of a download.
            EventKind::Closed | EventKind::Uploaded { .. } | EventKind::UploadMismatch { .. } => break EXIT_FAILURE,
            EventKind::TreePlanned { .. }
            | EventKind::TreeProgress { .. }
            | EventKind::TreeFiles(_)
            | EventKind::TreeFinished(_) => {}
        }
    }
}

/// `ferry put`: each file in turn on one connection, a progress bar, an md5sum line per
/// verified file. Exit 2 if any file's MD5 did not match on the host, else 1 if any failed.
fn put(addr: &str, files: &[(PathBuf, String)], opts: &ConnectOptions) -> i32 {
    let cancel = CancelToken::new();
    cancel_on_ctrl_c(cancel.clone());
    let mut conn = match Connection::connect(addr, opts) {
        Ok(c) => c,
        Err(e) => return connect_error(e),
    };
    report_identity(conn.identity(), opts);
    let (mut failed, mut mismatched) = (false, false);
    for (local, remote) in files {
        let mut meter = Meter::new();
        let req = UploadRequest { local: local.clone(), path: remote.clone(), mkdirs: true };
        let result = conn.upload(&req, &cancel, &mut |p| meter.show(p.done, p.total, None, None));
        meter.clear();
        match result {
            Ok(UploadOutcome::Verified { md5, resumed_from, .. }) => {
                if resumed_from > 0 {
                    eprintln!("ferry: {}: resumed from byte {resumed_from}", local.display());
                }
                eprintln!("ferry: {}: MD5 verified by the host, saved as \"{}\"", local.display(), Escaped(remote));
                println!("{}", md5sum_line(&md5, &local.display().to_string()));
            }
            Ok(UploadOutcome::Mismatch { sent, host, .. }) => {
                mismatched = true;
                eprintln!(
                    "ferry: {}: MD5 MISMATCH: the file was damaged in transit and the host did not keep it",
                    local.display()
                );
                eprintln!("  sent:          {}", hex(&sent));
                eprintln!("  host computed: {}", host.map_or_else(|| "(not said)".to_string(), |h| hex(&h)));
            }
            Err(ClientError::Cancelled) => {
                eprintln!("ferry: cancelled; the host keeps the partial upload: run the same command to resume");
                return EXIT_FAILURE;
            }
            Err(e) => {
                failed = true;
                eprintln!("ferry: {}: {e}", local.display());
                if conn.is_broken() || matches!(e, ClientError::Lost(_) | ClientError::TimedOut(_)) {
                    // The connection broke mid-file: a new one for the files left.
                    conn = match Connection::connect(addr, opts) {
                        Ok(c) => c,
                        Err(e) => return connect_error(e),
                    };
                }
            }
        }
    }
    if mismatched {
        EXIT_MISMATCH
    } else if failed {
        EXIT_FAILURE
    } else {
        EXIT_OK
    }
}

/// Ctrl-C cancels the job behind `cancel`: it ends with its own Cancelled event (and message),
/// its partial file kept for a resume.
fn cancel_on_ctrl_c(cancel: CancelToken) {
    let _ = ctrlc::set_handler(move || cancel.cancel());
}

/// Progress on stderr: a bar on a terminal; elsewhere (a log, a pipe) a line at most once a
/// second and at the end.
struct Meter {
    bar: Option<ProgressBar>,
    tty: bool,
    last_line: Option<Instant>,
}

impl Meter {
    fn new() -> Meter {
        Meter { bar: None, tty: std::io::stderr().is_terminal(), last_line: None }
    }

    /// `done` of `total` bytes; a folder job also gives its files done and in all, and a
    /// download its speed for the line (the bar measures its own).
    fn show(&mut self, done: u64, total: u64, files: Option<(u64, u64)>, speed: Option<f64>) {
        if self.tty {
            let b = self.bar.get_or_insert_with(|| {
                let counted = if files.is_some() { "{msg} " } else { "" };
                let template = format!(
                    "{counted}{{wide_bar:.cyan/blue}} {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} ETA {{eta}}"
                );
                let b = ProgressBar::new(total);
                b.set_style(ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "));
                b
            });
            b.set_length(total);
            b.set_position(done);
            if let Some((files_done, files_total)) = files {
                b.set_message(format!("{files_done}/{files_total} files"));
            }
            return;
        }
        let finished = files.map_or(done == total, |(d, t)| d == t);
        if !finished && self.last_line.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.last_line = Some(Instant::now());
        let counted = match files {
            Some((files_done, files_total)) => format!("{files_done}/{files_total} files"),
            None => format!("{:5.1}%", if total == 0 { 100.0 } else { done as f64 * 100.0 / total as f64 }),
        };
        let speed = speed.map(|s| format!("  {}", format::speed(s))).unwrap_or_default();
        eprintln!("{counted}  {} of {}{speed}", format::size(done), format::size(total));
    }

    /// A line that does not break the bar.
    fn say(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// The job ended well: the bar goes.
    fn clear(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }

    /// The job failed: the bar stays where it stopped.
    fn abandon(&mut self) {
        if let Some(b) = self.bar.take() {
            b.abandon();
        }
    }
}

/// `ferry get -r`: one job for files and folders, one progress bar, each problem on stderr as
/// it happens, then the manifest (`md5sum` lines relative to DEST) on stdout.
fn get_tree(addr: &str, paths: Vec<String>, dest: PathBuf, force: bool, manifest: bool, opts: &ConnectOptions) -> i32 {
    let (jobs, events) = Jobs::new(None);
    let req = TreeRequest { paths, dest: dest.clone(), overwrite: force, limits: TreeLimits::default(), only: None };
    let job = jobs.download_tree(addr, opts, req);
    cancel_on_ctrl_c(job.canceller());
    let mut meter = Meter::new();
    loop {
        let Ok(event) = events.recv() else { break EXIT_FAILURE };
        match event.kind {
            EventKind::Connected { identity, .. } => report_identity(identity.as_ref(), opts),
            EventKind::TreePlanned { files, bytes, folders } => {
                eprintln!("ferry: {files} files ({}) in {folders} folders", format::size(bytes));
            }
            EventKind::TreeProgress { files_done, files_total, done, total, bytes_per_sec } => {
                meter.show(done, total, Some((files_done, files_total)), Some(bytes_per_sec));
            }
            EventKind::TreeFiles(reports) => {
                for report in reports {
                    let line = match &report.result {
                        FileResult::Mismatch { expected, actual, .. } => format!(
                            "MD5 MISMATCH: {} was damaged in transit and was not saved (host sent {}, computed {})",
                            Escaped(&report.rel),
                            hex(expected),
                            hex(actual)
                        ),
                        FileResult::Failed(why) => format!("{}: {}", Escaped(&report.rel), Escaped(why)),
                        FileResult::Verified { renamed: Some(r), .. } => format!("{}: {r}", Escaped(&report.rel)),
                        _ => continue,
                    };
                    meter.say(&format!("ferry: {line}"));
                }
            }
            EventKind::TreeFinished(summary) => {
                meter.clear();
                break tree_verdict(&summary, &dest, manifest);
            }
            EventKind::Failed(e) => {
                meter.abandon();
                eprintln!("ferry: {e}");
                break EXIT_FAILURE;
            }
            EventKind::Cancelled { .. } => {
                meter.abandon();
                eprintln!("ferry: cancelled; run the same command again to resume");
                break EXIT_FAILURE;
            }
            _ => {}
        }
    }
}

/// Prints a finished folder job's manifest and verdict; the exit code.
fn tree_verdict(summary: &TreeSummary, dest: &Path, save_manifest: bool) -> i32 {
    let text = summary.manifest.text();
    {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
    let files = summary.manifest.len();
    let mut extra = Vec::new();
    if summary.already_there > 0 {
        extra.push(format!("{} already there", summary.already_there));
    }
    if summary.resumed > 0 {
        extra.push(format!("{} resumed", summary.resumed));
    }
    let extra = if extra.is_empty() { String::new() } else { format!(" ({})", extra.join(", ")) };
    let fingerprint = hex(&summary.manifest.fingerprint());
    let mut code = if summary.all_verified() {
        eprintln!("ferry: {files} files, all MD5 verified{extra}; folder fingerprint {fingerprint}");
        EXIT_OK
    } else {
        eprintln!(
            "ferry: {files} files MD5 verified{extra}, {} NOT: see above (run the same command to retry them)",
            summary.problems.len()
        );
        if summary.any_mismatch() { EXIT_MISMATCH } else { EXIT_FAILURE }
    };
    if save_manifest {
        let path = dest.join("MD5SUMS");
        match write_new_or_same(&path, text.as_bytes()) {
            Ok(()) => {
                eprintln!("ferry: manifest saved as {} (md5sum -c MD5SUMS in that folder re-checks)", path.display())
            }
            Err(e) => {
                eprintln!("ferry: manifest not saved: {e}");
                if code == EXIT_OK {
                    code = EXIT_FAILURE;
                }
            }
        }
    }
    code
}

/// Writes a new file, or leaves an existing one with exactly these bytes; never replaces one
/// that differs.
fn write_new_or_same(path: &Path, bytes: &[u8]) -> Result<(), String> {
    match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(mut f) => f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match std::fs::read(path) {
            Ok(old) if old == bytes => Ok(()),
            _ => Err(format!("{} already exists with other contents; not replacing it", path.display())),
        },
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}
