//! The real `ferry` binary: output formats and exit codes.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_lists_every_command() {
    let out = ferry(&["--help"], Path::new("."));
    assert!(out.status.success());
    let help = text(&out.stdout);
    for cmd in ["serve", "ls", "get", "gui", "Exit codes"] {
        assert!(help.contains(cmd), "help lacks {cmd}: {help}");
    }
    let get_help = text(&ferry(&["get", "--help"], Path::new(".")).stdout);
    assert!(get_help.contains("--force") && get_help.contains("--output"), "{get_help}");
}

#[test]
fn get_prints_the_md5sum_line_and_exits_0() {
    let share = tempfile::tempdir().unwrap();
    let bytes = random_bytes(3 * 1024 * 1024 + 5, 21);
    std::fs::create_dir(share.path().join("sub")).unwrap();
    std::fs::write(share.path().join("sub/data file.bin"), &bytes).unwrap();
    let serve = ServeProcess::start(share.path(), &[]);
    let here = tempfile::tempdir().unwrap();

    // Default destination: the file's own name, in the current folder.
    let out = ferry(&["get", &serve.addr, "sub/data file.bin"], here.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}  data file.bin\n", md5_hex(&bytes)));
    assert_eq!(md5_file(&here.path().join("data file.bin")), md5_hex(&bytes));
    // Not a terminal: plain progress lines, then the verdict.
    let err = text(&out.stderr);
    assert!(err.contains("100.0%"), "{err}");
    assert!(err.contains("MD5 verified"), "{err}");

    // -o into an existing folder, and -o to a file name.
    let sub = here.path().join("into");
    std::fs::create_dir(&sub).unwrap();
    let out = ferry(&["get", &serve.addr, "sub/data file.bin", "-o", "into"], here.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(md5_file(&sub.join("data file.bin")), md5_hex(&bytes));
    let out = ferry(&["get", &serve.addr, "sub/data file.bin", "-o", "renamed.bin"], here.path());
    assert_eq!(text(&out.stdout), format!("{}  renamed.bin\n", md5_hex(&bytes)));
}

#[test]
fn get_refuses_to_overwrite_without_force() {
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("a.txt"), b"new contents").unwrap();
    let serve = ServeProcess::start(share.path(), &[]);
    let here = tempfile::tempdir().unwrap();
    std::fs::write(here.path().join("a.txt"), b"old").unwrap();
    let out = ferry(&["get", &serve.addr, "a.txt"], here.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already exists"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(here.path().join("a.txt")).unwrap(), b"old");
    let out = ferry(&["get", &serve.addr, "a.txt", "--force"], here.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(here.path().join("a.txt")).unwrap(), b"new contents");
}

#[test]
fn get_exits_2_on_a_checksum_mismatch_and_saves_nothing() {
    let share = tempfile::tempdir().unwrap();
    let bytes = random_bytes(1024 * 1024, 22);
    std::fs::write(share.path().join("c.bin"), &bytes).unwrap();
    // Plain on both sides: inside TLS a flipped byte never reaches the MD5 (tests/tls.rs).
    let serve = ServeProcess::start(share.path(), &["--plain"]);
    let relay = Relay::start(serve.addr.parse().unwrap(), Tamper::FlipByteAt(300_000));
    let here = tempfile::tempdir().unwrap();
    let out = ferry(&["get", "--plain", &relay.addr.to_string(), "c.bin"], here.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("MISMATCH"), "{err}");
    assert!(err.contains(&md5_hex(&bytes)), "the host's digest is shown: {err}");
    assert!(text(&out.stdout).is_empty());
    assert!(!here.path().join("c.bin").exists());
    assert!(!here.path().join("c.bin.ferry-part").exists());
}

#[test]
fn get_exits_1_with_a_clear_message_on_other_failures() {
    let share = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(share.path(), &[]);
    let here = tempfile::tempdir().unwrap();
    let out = ferry(&["get", &serve.addr, "missing.bin"], here.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not_found"), "{}", text(&out.stderr));
    let out = ferry(&["get", &serve.addr, "../../etc/passwd", "-o", "x"], here.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("bad_path"), "{}", text(&out.stderr));

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = ferry(&["get", &format!("127.0.0.1:{port}"), "x.bin"], here.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot connect"), "{}", text(&out.stderr));

    // A path whose last component is no usable file name needs -o.
    let out = ferry(&["get", &serve.addr, "dir/"], here.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("-o"), "{}", text(&out.stderr));
}

#[test]
fn ls_lists_folders_first_with_human_sizes_and_escapes_names() {
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("big.bin"), vec![0u8; 3 * 1024 * 1024]).unwrap();
    std::fs::write(share.path().join("small.txt"), b"12345").unwrap();
    // Windows file names cannot hold characters below 32; DEL is a control character it allows.
    let (evil, shown) =
        if cfg!(windows) { ("evil\u{7f}name", "evil\\u{7f}name") } else { ("evil\nname", "evil\\nname") };
    std::fs::write(share.path().join(evil), b"x").unwrap();
    std::fs::create_dir(share.path().join("zfolder")).unwrap();
    let serve = ServeProcess::start(share.path(), &[]);
    let out = ferry(&["ls", &serve.addr], Path::new("."));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 4, "{listing}");
    assert!(lines[0].ends_with("zfolder/"), "folders first: {listing}");
    assert!(lines[1].contains("3.00 MiB") && lines[1].ends_with("big.bin"), "{listing}");
    assert!(lines[2].ends_with(shown), "control characters escaped: {listing}");
    assert!(lines[3].contains("5 B") && lines[3].ends_with("small.txt"), "{listing}");

    let out = ferry(&["ls", &serve.addr, "small.txt"], Path::new("."));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not_a_directory"));
}

#[test]
fn serve_indexes_its_folder_logs_it_and_ls_md5_shows_the_digests() {
    let share = tempfile::tempdir().unwrap();
    let big = random_bytes(2 * 1024 * 1024 + 3, 41);
    std::fs::write(share.path().join("big.bin"), &big).unwrap();
    std::fs::create_dir(share.path().join("sub")).unwrap();
    std::fs::write(share.path().join("sub/small.txt"), b"12345").unwrap();
    let mut serve = ServeProcess::start(share.path(), &[]);
    let line = serve.stdout.wait_for(Duration::from_secs(30), |l| l.contains(" indexed "));
    assert!(line.contains("indexed 2 files"), "{line}");
    let out = ferry(&["ls", "--md5", &serve.addr], Path::new("."));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 2, "{listing}");
    assert!(lines[0].contains(&format!("{:<32}  sub/", "-")), "a folder has no digest: {listing}");
    assert!(lines[1].contains(&format!("{}  big.bin", md5_hex(&big))), "{listing}");
    let out = ferry(&["ls", "--md5", &serve.addr, "sub"], Path::new("."));
    assert!(text(&out.stdout).contains(&format!("{}  small.txt", md5_hex(b"12345"))), "{}", text(&out.stdout));
    let plain = ferry(&["ls", &serve.addr], Path::new("."));
    assert!(!text(&plain.stdout).contains(&md5_hex(&big)), "only with --md5");
}

#[test]
fn get_of_a_file_already_here_says_identical_and_force_downloads_anyway() {
    let share = tempfile::tempdir().unwrap();
    let bytes = random_bytes(1_500_000, 42);
    std::fs::write(share.path().join("same.bin"), &bytes).unwrap();
    let mut serve = ServeProcess::start(share.path(), &[]);
    serve.stdout.wait_for(Duration::from_secs(30), |l| l.contains(" indexed "));
    let here = tempfile::tempdir().unwrap();
    std::fs::write(here.path().join("same.bin"), &bytes).unwrap();

    let out = ferry(&["get", &serve.addr, "same.bin"], here.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}  same.bin\n", md5_hex(&bytes)));
    assert!(text(&out.stderr).contains("identical: already have it"), "{}", text(&out.stderr));

    let out = ferry(&["get", "--force", &serve.addr, "same.bin"], here.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("MD5 verified"), "downloaded again: {}", text(&out.stderr));
    let log = serve.stdout.wait_for(Duration::from_secs(10), |l| l.contains("sent \"same.bin\""));
    assert!(log.contains(&md5_hex(&bytes)), "{log}");
}

#[cfg(unix)] // Ctrl-C as SIGINT
#[test]
fn serve_logs_transfers_and_stops_cleanly_on_ctrl_c() {
    let share = tempfile::tempdir().unwrap();
    let bytes = random_bytes(10_000, 23);
    std::fs::write(share.path().join("logged.bin"), &bytes).unwrap();
    let mut serve = ServeProcess::start(share.path(), &[]);
    let here = tempfile::tempdir().unwrap();
    assert_eq!(ferry(&["get", &serve.addr, "logged.bin"], here.path()).status.code(), Some(0));
    // The host logs the transfer when it has sent it, which may be after the client is done.
    serve.stdout.wait_for(Duration::from_secs(10), |l| l.contains("md5 "));
    let (status, lines) = serve.interrupt_and_wait();
    assert_eq!(status.code(), Some(0));
    let log = lines.join("\n");
    assert!(log.contains("connected from 127.0.0.1"), "{log}");
    assert!(log.contains(&format!("md5 {}", md5_hex(&bytes))), "{log}");
    assert!(log.trim_end().ends_with("stopped"), "{log}");
}

#[test]
fn serve_of_a_missing_folder_exits_1() {
    let out = ferry(&["serve", "/no/such/ferry/folder", "--bind", "127.0.0.1:0"], Path::new("."));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/no/such/ferry/folder"), "{}", text(&out.stderr));
}
