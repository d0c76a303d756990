//! Cross-OS interop: ferry's Windows build (ferry.exe under Wine) against this Linux build, both
//! ways: a Linux host and a Windows client, then a Windows host and a Linux client. Each moves a
//! file whose folder and name are in non-ASCII letters and a file over 4 MiB, and each download
//! is checked against an MD5 computed here.
//!
//! It needs the Windows ferry.exe (`FERRY_WINDOWS_EXE`) and Wine, so it is `#[ignore]`d in a
//! plain `cargo test`; `scripts/test-windows.sh` builds the exe and runs it with `--ignored`.
//! Without the exe it fails when `CI=true` and is skipped, saying why, elsewhere.
#![cfg(target_os = "linux")]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::*;

/// A folder and a file named in several scripts (all legal on Windows and Linux alike).
const FOLDER: &str = "Grüße";
const SMALL: &str = "čaj ☕ 日本語 ή Ελλάδα.txt";
/// Over 4 MiB: several data frames' worth of reads and, on a Linux host, the pipelined path.
const BIG: &str = "große Datei.bin";
const BIG_LEN: usize = 4 * 1024 * 1024 + 123_457;

/// The Windows ferry.exe and the Wine runner, or `None` (skipped) outside CI.
fn windows_ferry() -> Option<(PathBuf, PathBuf)> {
    let runner = std::env::var_os("FERRY_WINE_RUNNER")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wine/runner.sh"));
    let exe = match std::env::var_os("FERRY_WINDOWS_EXE").map(PathBuf::from) {
        Some(exe) if exe.is_file() => exe,
        other => {
            let why = match other {
                Some(exe) => format!("FERRY_WINDOWS_EXE={} does not exist", exe.display()),
                None => "FERRY_WINDOWS_EXE is not set".to_string(),
            };
            let msg = format!("{why}: run scripts/test-windows.sh (it builds ferry.exe and sets it)");
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("skipped: {msg}");
            return None;
        }
    };
    Some((exe, runner))
}

/// `ferry.exe ARGS` under Wine, in `cwd`.
fn wine_ferry(exe: &Path, runner: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(runner);
    c.arg(exe).args(args).env("FERRY_NO_DISCOVERY", "1");
    c.stdin(Stdio::null());
    c
}

/// A Linux path as a Windows program under Wine sees it (drive Z: is the Unix root).
fn wine_path(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The hosted tree: `Grüße/<SMALL>` and `<BIG>`; returns their contents.
fn fill(root: &Path) -> (Vec<u8>, Vec<u8>) {
    let small = "Grüße aus Wien — ファイル ✓\n".repeat(100).into_bytes();
    let big = random_bytes(BIG_LEN, 4242);
    std::fs::create_dir(root.join(FOLDER)).unwrap();
    std::fs::write(root.join(FOLDER).join(SMALL), &small).unwrap();
    std::fs::write(root.join(BIG), &big).unwrap();
    (small, big)
}

/// A finished `ferry get`: exit 0, the md5sum line naming `shown`, and the file on disk intact.
fn assert_verified(out: &Output, saved: &Path, shown: &str, want: &[u8]) {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.trim_end(), format!("{}  {shown}", md5_hex(want)), "stdout: {stdout}");
    assert!(text(&out.stderr).contains("MD5 verified"), "{}", text(&out.stderr));
    assert_eq!(md5_file(saved), md5_hex(want), "{}", saved.display());
}

#[test]
#[ignore = "needs the Windows ferry.exe and Wine: scripts/test-windows.sh runs it"]
fn linux_host_windows_client() {
    let Some((exe, runner)) = windows_ferry() else { return };
    let share = tempfile::tempdir().unwrap();
    let (small, big) = fill(share.path());
    let serve = ServeProcess::start(share.path(), &[]);
    let here = tempfile::tempdir().unwrap();

    // The Windows client lists the non-ASCII folder by name.
    let out = wine_ferry(&exe, &runner, &["ls", &serve.addr, FOLDER]).current_dir(here.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).lines().any(|l| l.ends_with(SMALL)), "listing: {}", text(&out.stdout));

    // Default destination: the file's own name, created by Windows in the current folder.
    let remote = format!("{FOLDER}/{SMALL}");
    let out = wine_ferry(&exe, &runner, &["get", &serve.addr, &remote]).current_dir(here.path()).output().unwrap();
    assert_verified(&out, &here.path().join(SMALL), SMALL, &small);

    // An explicit Windows path as the destination.
    let dest = here.path().join(BIG);
    let out = wine_ferry(&exe, &runner, &["get", &serve.addr, BIG, "-o", &wine_path(&dest)]).output().unwrap();
    assert_verified(&out, &dest, &wine_path(&dest), &big);
    let leftovers: Vec<_> = std::fs::read_dir(here.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 2, "only the two verified files: {leftovers:?}");
}

#[test]
#[ignore = "needs the Windows ferry.exe and Wine: scripts/test-windows.sh runs it"]
fn windows_host_linux_client() {
    let Some((exe, runner)) = windows_ferry() else { return };
    let share = tempfile::tempdir().unwrap();
    let (small, big) = fill(share.path());
    let mut child = wine_ferry(&exe, &runner, &["serve", &wine_path(share.path()), "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = Lines::read(child.stdout.take().unwrap());
    let _stderr = Lines::read(child.stderr.take().unwrap());
    // Wine may still be setting up its prefix on a first run.
    let first = stdout.wait_for(Duration::from_secs(120), |l| l.contains(" hosting "));
    let addr = first.split(" at ").nth(1).and_then(|r| r.split(' ').next()).expect(&first).to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{first}");
    let _reap = Reap(child);

    let here = tempfile::tempdir().unwrap();
    let out = ferry_command().args(["ls", &addr, FOLDER]).current_dir(here.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).lines().any(|l| l.ends_with(SMALL)), "listing: {}", text(&out.stdout));

    let remote = format!("{FOLDER}/{SMALL}");
    let out = ferry_command().args(["get", &addr, &remote]).current_dir(here.path()).output().unwrap();
    assert_verified(&out, &here.path().join(SMALL), SMALL, &small);
    let out = ferry_command().args(["get", &addr, BIG]).current_dir(here.path()).output().unwrap();
    assert_verified(&out, &here.path().join(BIG), BIG, &big);
    // The Windows host logged both transfers with the right digests.
    for want in [&small, &big] {
        let md5 = md5_hex(want);
        stdout.wait_for(Duration::from_secs(30), |l| l.contains(&format!("md5 {md5}")));
    }
}

/// Kills the Windows host (the Wine process) when the test ends, passed or failed.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
