//! Names a host lists that the client's disk cannot take as they are (issue 9): over a real
//! socket, a client saving under Windows' rules (what a Windows client always does, and
//! `ferry get --windows-names` does anywhere) never writes such a name silently wrong: it saves
//! under the nearest valid name and says so in the outcome, or refuses with a clear message.
//!
//! The host here is in this process, so it must be able to store these names: Unix only. (The
//! rules themselves are tested on every system in `src/protocol/names.rs`.)
#![cfg(unix)]

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use ferry::client::jobs::{EventKind, Jobs};
use ferry::client::{CancelToken, ClientError, ConnectOptions, Connection, DownloadRequest, Outcome, part_path};
use ferry::protocol::names::{NameProblem, Os};
use support::*;

fn windows_rules() -> ConnectOptions {
    ConnectOptions { names: Os::Windows, ..ConnectOptions::default() }
}

fn get(addr: &str, opts: &ConnectOptions, path: &str, dest: &Path) -> Result<Outcome, ClientError> {
    let mut conn = Connection::connect(addr, opts)?;
    let req = DownloadRequest { path: path.into(), dest: dest.to_path_buf(), overwrite: false };
    conn.download(&req, &CancelToken::new(), &mut |_| {})
}

/// The host's name, what a client under Windows' rules saves it as, and why.
const ADJUSTED: &[(&str, &str)] = &[
    ("CON", "CON_"),
    ("aux.txt", "aux_.txt"),
    ("com1.tar.gz", "com1_.tar.gz"),
    ("a:b", "a_b"),
    ("trailing.", "trailing_"),
    ("spaced ", "spaced_"),
    ("what?*<>|\".txt", "what______.txt"),
];

#[test]
fn names_windows_cannot_take_are_saved_adjusted_and_the_outcome_says_so() {
    let srv = TestServer::start();
    let mut contents = Vec::new();
    for (i, (name, _)) in ADJUSTED.iter().enumerate() {
        contents.push(srv.put(name, random_bytes(10_000 + i * 1000, i as u64)));
    }
    // The host really lists them all.
    let mut conn = Connection::connect(&srv.addr_string(), &windows_rules()).unwrap();
    let listed: Vec<String> = conn.list("").unwrap().entries.into_iter().map(|e| e.name).collect();
    for (name, _) in ADJUSTED {
        assert!(listed.iter().any(|n| n == name), "{name:?} not listed: {listed:?}");
    }

    let out = tempfile::tempdir().unwrap();
    for ((name, saved), bytes) in ADJUSTED.iter().zip(&contents) {
        let asked = out.path().join(name);
        match get(&srv.addr_string(), &windows_rules(), name, &asked).unwrap() {
            Outcome::Verified { dest, renamed, .. } => {
                assert_eq!(dest, out.path().join(saved), "{name:?}");
                let renamed = renamed.unwrap_or_else(|| panic!("{name:?}: the rename is not reported"));
                assert_eq!((renamed.asked.as_str(), renamed.saved.as_str()), (*name, *saved));
                assert!(renamed.to_string().contains("instead of"), "{renamed}");
            }
            other => panic!("{name:?}: {other:?}"),
        }
        assert_eq!(md5_file(&out.path().join(saved)), md5_hex(bytes), "{name:?}");
        assert!(!asked.exists(), "{name:?} was written under the name Windows cannot take");
    }
    // Nothing else appeared: one file per name, no partial files left.
    let mut on_disk: Vec<String> =
        fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    on_disk.sort();
    let mut want: Vec<String> = ADJUSTED.iter().map(|(_, s)| s.to_string()).collect();
    want.sort();
    assert_eq!(on_disk, want);

    // Under Linux's own rules (the default here) the same names are ordinary and kept.
    if Os::current() == Os::Linux {
        let here = tempfile::tempdir().unwrap();
        for ((name, _), bytes) in ADJUSTED.iter().zip(&contents) {
            let dest = here.path().join(name);
            let outcome = get(&srv.addr_string(), &ConnectOptions::default(), name, &dest).unwrap();
            assert!(matches!(outcome, Outcome::Verified { renamed: None, .. }), "{name:?}: {outcome:?}");
            assert_eq!(md5_file(&dest), md5_hex(bytes), "{name:?}");
        }
    }
}

#[test]
fn saving_into_a_folder_names_the_file_after_the_host_under_the_rules() {
    // The host's name never becomes a path before it passed the rules: on Windows "a:b" as a
    // path would name drive A:.
    let srv = TestServer::start();
    let bytes = srv.put("sub/a:b", random_bytes(7000, 9));
    let out = tempfile::tempdir().unwrap();
    match get(&srv.addr_string(), &windows_rules(), "sub/a:b", out.path()).unwrap() {
        Outcome::Verified { dest, renamed: Some(r), .. } => {
            assert_eq!(dest, out.path().join("a_b"));
            assert_eq!(r.why, NameProblem::Character(':', Os::Windows));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(md5_file(&out.path().join("a_b")), md5_hex(&bytes));
    // A host name that cannot be a file name at all is refused, naming the reason.
    srv.put("bad\u{7}.txt", random_bytes(10, 1));
    match get(&srv.addr_string(), &windows_rules(), "bad\u{7}.txt", out.path()) {
        Err(e @ ClientError::BadDestination { .. }) => assert!(e.to_string().contains("control character"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_trailing_forms_of_one_name_do_not_overwrite_each_other() {
    let srv = TestServer::start();
    let first = srv.put("trailing.", random_bytes(5000, 1));
    srv.put("trailing ", random_bytes(6000, 2));
    let out = tempfile::tempdir().unwrap();
    let opts = windows_rules();
    assert!(matches!(
        get(&srv.addr_string(), &opts, "trailing.", &out.path().join("trailing.")).unwrap(),
        Outcome::Verified { .. }
    ));
    // Both become "trailing_": the second is refused as existing, never written over the first.
    match get(&srv.addr_string(), &opts, "trailing ", &out.path().join("trailing ")) {
        Err(ClientError::Exists(p)) => assert_eq!(p, out.path().join("trailing_")),
        other => panic!("{other:?}"),
    }
    assert_eq!(md5_file(&out.path().join("trailing_")), md5_hex(&first));
}

#[test]
fn names_differing_only_in_case_are_refused_under_windows_rules_and_kept_apart_here() {
    let srv = TestServer::start();
    let upper = srv.put("README", random_bytes(3000, 3));
    let lower = srv.put("Readme", random_bytes(4000, 4));
    let out = tempfile::tempdir().unwrap();

    assert!(matches!(
        get(&srv.addr_string(), &windows_rules(), "README", &out.path().join("README")).unwrap(),
        Outcome::Verified { renamed: None, .. }
    ));
    match get(&srv.addr_string(), &windows_rules(), "Readme", &out.path().join("Readme")) {
        Err(e @ ClientError::CaseTwin { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("README") && msg.contains("differing only in case"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!out.path().join("Readme").exists() && !part_path(&out.path().join("Readme")).exists());
    assert_eq!(md5_file(&out.path().join("README")), md5_hex(&upper));

    // Under Linux's own rules (the default here) both are ordinary, distinct names.
    if Os::current() == Os::Linux {
        let opts = ConnectOptions::default();
        assert!(matches!(
            get(&srv.addr_string(), &opts, "Readme", &out.path().join("Readme")).unwrap(),
            Outcome::Verified { renamed: None, .. }
        ));
        assert_eq!(md5_file(&out.path().join("Readme")), md5_hex(&lower));
    }
}

#[test]
fn a_name_with_no_sensible_adjustment_is_refused_and_nothing_is_written() {
    let srv = TestServer::start();
    srv.put("ctrl\u{1}name.txt", random_bytes(100, 5));
    let out = tempfile::tempdir().unwrap();
    for opts in [windows_rules(), ConnectOptions::default()] {
        match get(&srv.addr_string(), &opts, "ctrl\u{1}name.txt", &out.path().join("ctrl\u{1}name.txt")) {
            Err(e @ ClientError::BadDestination { .. }) => {
                assert!(e.to_string().contains(&NameProblem::Control.to_string()), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn the_window_and_cli_events_carry_the_rename() {
    let srv = TestServer::start();
    let bytes = srv.put("nul.log", random_bytes(20_000, 6));
    let out = tempfile::tempdir().unwrap();
    let (jobs, events) = Jobs::new(None);
    let req = DownloadRequest { path: "nul.log".into(), dest: out.path().join("nul.log"), overwrite: false };
    let job = jobs.download(&srv.addr_string(), &windows_rules(), req);
    let event = wait_for(&events, Duration::from_secs(30), |e| e.kind.is_terminal());
    job.join();
    match event.kind {
        EventKind::Verified { dest, renamed: Some(r), .. } => {
            assert_eq!(dest, out.path().join("nul_.log"));
            assert_eq!(r.why, NameProblem::Device("nul".into()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(md5_file(&out.path().join("nul_.log")), md5_hex(&bytes));
}

#[test]
fn ferry_get_with_windows_names_reports_the_name_it_saved_under() {
    let srv = TestServer::start();
    let bytes = srv.put("dir/aux.txt", random_bytes(30_000, 7));
    let here = tempfile::tempdir().unwrap();
    let out = ferry_command()
        .args(["get", "--windows-names", &srv.addr_string(), "dir/aux.txt"])
        .current_dir(here.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("saved as \"aux_.txt\" instead of \"aux.txt\""), "{stderr}");
    assert!(stderr.contains("device name on Windows"), "{stderr}");
    assert_eq!(stdout.trim(), format!("{}  aux_.txt", md5_hex(&bytes)));
    assert_eq!(md5_file(&here.path().join("aux_.txt")), md5_hex(&bytes));
    assert!(!here.path().join("aux.txt").exists());
}
