//! The rows ferry is compared with: `md5sum` (the hash limit), `nc -l | md5sum` (a plain TCP
//! pipe) and `python3 -m http.server` with `curl` (an HTTP peer), plus netcat's installation.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::files::{check_copies, fresh_dir, remove_file_if_any};
use crate::procs::{
    Drain, Proc, Watchdog, describe_failure, digest_of, find_in_path, free_port, run_quiet, tool_version,
    wait_listening,
};
use crate::{Bench, Result, Timed, secs_limit};

impl Bench<'_> {
    /// Runs `producer | md5sum` (the producer already spawned with a piped stdout): waits for
    /// both and returns md5sum's digest.
    pub fn finish_md5_pipe(
        &self,
        what: &str,
        producer: &mut Proc,
        producer_err: Drain,
        md5: &mut Proc,
    ) -> Result<String> {
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

    pub fn md5sum(&mut self, path: &Path) -> Result<Timed> {
        let start = Instant::now();
        let (status, out, err) = run_quiet(Command::new("md5sum").arg(path), "md5sum")?;
        let secs = start.elapsed().as_secs_f64();
        if !status.success() {
            return Err(describe_failure("md5sum", status, &err));
        }
        let digest = digest_of(&out).ok_or_else(|| format!("md5sum printed {out:?}, not a digest"))?;
        Ok(Timed { secs, digest })
    }

    pub fn run_md5sum(&mut self) -> Result<f64> {
        let t = self.md5sum(&self.big.clone())?;
        self.check_digest("md5sum FILE", &t.digest)?;
        Ok(self.mbps(t.secs))
    }

    /// `nc -l 127.0.0.1 PORT | md5sum`, fed by `nc -N 127.0.0.1 PORT < FILE`.
    pub fn run_nc(&mut self) -> Result<f64> {
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
    pub fn run_curl_pipe(&mut self, url: &str) -> Result<f64> {
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
    pub fn run_curl_disk(&mut self, url: &str) -> Result<f64> {
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
}

/// netcat-openbsd's `nc` (it has `-N`), installing it with apt-get when missing and allowed.
/// `Err` is why the row is skipped.
pub fn netcat(may_install: bool) -> Result<String> {
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

/// The python HTTP peer, serving the whole work folder.
pub struct HttpPeer {
    _proc: Proc,
    port: u16,
    _stderr: Drain,
}

impl HttpPeer {
    pub fn start(dir: &Path) -> Result<HttpPeer> {
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

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

/// One curl process fetching every file (URLs from a `-K` config file). Files/s.
pub fn small_curl(http: &HttpPeer, config: &Path, src: &Path, names: &[String], dest: &Path) -> Result<f64> {
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
