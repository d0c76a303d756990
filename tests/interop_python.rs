//! Version 2 against an independent implementation of PROTOCOL.md: a Python client
//! (tests/interop/ferry_v2_client.py) built on pyOpenSSL's TLS 1.3 and exporter and on
//! python-spake2, none of it ferry's code, fetches a file from the real `ferry serve` with a
//! PIN. It sees the identity ferry shows, proves the PIN by SPAKE2 and verifies the MD5 trailer.
//! Linux (and other Unix) only: under Wine a Debian python3 is not a Windows program.
#![cfg(unix)]

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/ferry_v2_client.py");

/// Debian's python3 with python3-openssl and python3-spake2 (`.ci/run` installs them); `None`,
/// with the reason printed, where they are missing.
fn python() -> Option<&'static str> {
    let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
    let ok = Command::new(python)
        .args(["-c", "import OpenSSL, spake2, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED: needs python3 with pyOpenSSL and python-spake2 (apt packages python3-openssl python3-spake2)"
        );
    }
    ok.then_some(python)
}

fn client(python: &str, addr: &str, pin: &str, path: &str) -> Output {
    let (host, port) = addr.rsplit_once(':').unwrap();
    Command::new(python).args([SCRIPT, host, port, pin, path]).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn hosted() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let content = random_bytes(3 * 1024 * 1024 + 17, 41);
    std::fs::write(dir.path().join("résumé.bin"), &content).unwrap();
    (dir, content)
}

#[test]
fn a_python_client_fetches_over_tls_with_the_pin_proven_by_spake2() {
    let Some(python) = python() else { return };
    let (dir, content) = hosted();
    let serve = ServeProcess::start(dir.path(), &["--pin", "4821"]);
    let out = client(python, &serve.addr, "4821", "résumé.bin");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    // The identity `ferry serve` uses: the key in this test process's configuration folder.
    let id = ferry::transport::Identity::load_or_create(&test_config_dir()).unwrap().fingerprint().hex();
    let folder = dir.path().file_name().unwrap().to_str().unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [format!("identity {id}"), format!("name {folder}"), format!("{}  résumé.bin", md5_hex(&content))],
        "{stdout}"
    );
}

#[test]
fn a_python_client_with_the_wrong_pin_fails_the_hosts_confirm() {
    let Some(python) = python() else { return };
    let (dir, _) = hosted();
    let serve = ServeProcess::start(dir.path(), &["--pin", "4821"]);
    let out = client(python, &serve.addr, "4822", "résumé.bin");
    assert_eq!(out.status.code(), Some(3), "stdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stderr).contains("confirm does not match"), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("name "), "{}", text(&out.stdout));
}

#[test]
fn a_python_plain_hello_to_an_encrypted_host_gets_tls_required() {
    let Some(python) = python() else { return };
    let (dir, _) = hosted();
    let serve = ServeProcess::start(dir.path(), &[]);
    let out = client(python, &serve.addr, "plain", "-");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    let reply: serde_json::Value = serde_json::from_str(stdout.trim().strip_prefix("reply ").unwrap()).unwrap();
    assert_eq!(reply["ok"], false, "{stdout}");
    assert_eq!(reply["error"], "tls_required", "{stdout}");
}
