#![cfg(feature = "gui")]
//! The window downloads a whole folder: select it, Download folder, one card with the files'
//! progress and one verdict with the folder's fingerprint; a file that cannot be saved is named
//! on the card, with a button to try again.

use std::path::Path;
use std::time::Duration;

use egui_kittest::kittest::Queryable;
use ferry::gui::verdict::fingerprint_names;
use ferry::server::{Server, ServerConfig, ServerEvent};
use md5::{Digest, Md5};

#[path = "support/kittest.rs"]
mod kittest;
use kittest::{App, app, click, has, step_until};

const WAIT: Duration = Duration::from_secs(60);

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn spawn_server(root: &Path) -> (Server, String) {
    let (server, events) = Server::spawn(ServerConfig::new(root, "127.0.0.1:0"), None);
    for event in events.iter() {
        match event {
            ServerEvent::Listening { addr, .. } => return (server, addr.to_string()),
            ServerEvent::StartFailed { error } => panic!("{error}"),
            _ => {}
        }
    }
    panic!("the server stopped before listening");
}

/// `album/` with files in nested folders and an empty folder; returns the manifest lines.
fn album(root: &Path) -> String {
    let files = [
        ("album/a.txt", b"first".to_vec()),
        ("album/b.bin", vec![7u8; 100_000]),
        ("album/deeper/c.txt", b"third, deeper".to_vec()),
    ];
    for (rel, bytes) in &files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    std::fs::create_dir_all(root.join("album/empty")).unwrap();
    files.iter().map(|(rel, bytes)| format!("{}  {rel}\n", md5_hex(bytes))).collect()
}

/// Connects from the Client tab and waits until `shown` is listed.
fn connect(h: &mut App, addr: &str, shown: &str) {
    click(h, "Client");
    h.get_by_label("Server address").set_text_value_accesskit(addr);
    h.run_steps(2);
    click(h, "Connect");
    step_until(h, "the listing", WAIT, |h| h.query_by_label(shown).is_some());
}

fn connect_and_select_album(h: &mut App, addr: &str) {
    connect(h, addr, "album");
    click(h, "album");
}

#[test]
fn a_selected_folder_downloads_whole_with_one_verdict_and_its_fingerprint() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let manifest = album(share.path());
    let (_server, addr) = spawn_server(share.path());
    let mut h = app(downloads.path());
    connect_and_select_album(&mut h, &addr);

    let into = downloads.path().display().to_string();
    assert_eq!(h.get_by_label("Save into").value().as_deref(), Some(into.as_str()));
    click(&mut h, "Download folder");
    step_until(&mut h, "the folder's verdict", WAIT, |h| has(h, "3 files, all MD5 verified"));

    let fingerprint: [u8; 16] = Md5::digest(manifest.as_bytes()).into();
    let label = format!("fingerprint: {}", fingerprint_names(&fingerprint));
    assert_eq!(h.query_all_by_label(&label).count(), 1, "the folder's fingerprint is MD5 of its manifest");
    assert!(has(&h, &md5_hex(manifest.as_bytes())));
    assert_eq!(std::fs::read(downloads.path().join("album/deeper/c.txt")).unwrap(), b"third, deeper");
    assert!(downloads.path().join("album/empty").is_dir(), "empty folders too");
    assert!(!has(&h, "did not verify"));
}

#[test]
fn a_file_that_cannot_be_saved_is_named_and_can_be_retried() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let manifest = album(share.path());
    // Something of the person's own where a file of the folder goes: never replaced.
    std::fs::create_dir_all(downloads.path().join("album")).unwrap();
    std::fs::write(downloads.path().join("album/a.txt"), b"mine!").unwrap();
    let (_server, addr) = spawn_server(share.path());
    let mut h = app(downloads.path());
    connect_and_select_album(&mut h, &addr);
    click(&mut h, "Download folder");
    step_until(&mut h, "the folder's verdict", WAIT, |h| has(h, "1 of 3 files did not verify"));
    assert!(has(&h, "a.txt: "), "the file is named with the reason");
    assert_eq!(std::fs::read(downloads.path().join("album/a.txt")).unwrap(), b"mine!");
    assert_eq!(std::fs::read(downloads.path().join("album/b.bin")).unwrap(), vec![7u8; 100_000]);

    // Out of the way, then one click tries that file again, and only that file: b.bin, changed
    // here since it was verified, is neither looked at nor reported (a whole-folder retry would
    // say it differs from the host's).
    std::fs::remove_file(downloads.path().join("album/a.txt")).unwrap();
    std::fs::write(downloads.path().join("album/b.bin"), vec![8u8; 100_000]).unwrap();
    click(&mut h, "Retry failed");
    step_until(&mut h, "the second verdict", WAIT, |h| has(h, "3 files, all MD5 verified"));
    assert_eq!(std::fs::read(downloads.path().join("album/a.txt")).unwrap(), b"first");
    assert_eq!(std::fs::read(downloads.path().join("album/b.bin")).unwrap(), vec![8u8; 100_000]);
    // The fingerprint is the whole folder's, as if everything had arrived in one run.
    let fingerprint: [u8; 16] = Md5::digest(manifest.as_bytes()).into();
    let label = format!("fingerprint: {}", fingerprint_names(&fingerprint));
    assert_eq!(h.query_all_by_label(&label).count(), 1, "{label}");
}

#[test]
fn several_files_and_folders_chosen_with_ctrl_shift_and_select_all_download_in_one_job() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    for (rel, bytes) in [("a.txt", "aa"), ("b.txt", "bb"), ("c.txt", "cc"), ("dir/x.txt", "xx")] {
        let p = share.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    let (_server, addr) = spawn_server(share.path());
    let mut h = app(downloads.path());
    connect(&mut h, &addr, "c.txt");

    // A click, then shift-click: the range a..c.
    click(&mut h, "a.txt");
    h.get_by_label("c.txt").click_modifiers(egui::Modifiers::SHIFT);
    h.run_steps(2);
    assert!(h.query_by_label("Download 3 items").is_some());
    // Ctrl-click takes b out and adds the folder.
    h.get_by_label("b.txt").click_modifiers(egui::Modifiers::COMMAND);
    h.run_steps(2);
    assert!(h.query_by_label("Download 2 items").is_some());
    h.get_by_label("dir").click_modifiers(egui::Modifiers::COMMAND);
    h.run_steps(2);
    let into = downloads.path().display().to_string();
    assert_eq!(h.get_by_label("Save into").value().as_deref(), Some(into.as_str()));
    click(&mut h, "Download 3 items");
    step_until(&mut h, "the job's verdict", WAIT, |h| has(h, "3 files, all MD5 verified"));
    assert_eq!(std::fs::read(downloads.path().join("a.txt")).unwrap(), b"aa");
    assert_eq!(std::fs::read(downloads.path().join("c.txt")).unwrap(), b"cc");
    assert_eq!(std::fs::read(downloads.path().join("dir/x.txt")).unwrap(), b"xx");
    assert!(!downloads.path().join("b.txt").exists(), "b was taken out");

    // A plain click is one selection again; Ctrl+A chooses everything, Enter downloads it.
    click(&mut h, "b.txt");
    assert!(h.query_by_label("Download").is_some() && !has(&h, "Download 3 items"));
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.run_steps(2);
    assert!(h.query_by_label("Download 4 items").is_some());
    h.key_press(egui::Key::Enter);
    h.run_steps(2);
    step_until(&mut h, "b.txt downloaded too", WAIT, |_| downloads.path().join("b.txt").exists());
    step_until(&mut h, "the second job's verdict", WAIT, |h| has(h, "4 files, all MD5 verified"));
}

#[test]
fn shift_and_the_arrow_keys_choose_a_range_from_the_keyboard() {
    let share = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    for name in ["a.txt", "b.txt", "c.txt", "d.txt"] {
        std::fs::write(share.path().join(name), name).unwrap();
    }
    let (_server, addr) = spawn_server(share.path());
    let mut h = app(downloads.path());
    connect(&mut h, &addr, "d.txt");

    click(&mut h, "b.txt");
    for _ in 0..2 {
        h.key_press_modifiers(egui::Modifiers::SHIFT, egui::Key::ArrowDown);
        h.run_steps(2);
    }
    assert!(h.query_by_label("Download 3 items").is_some(), "b..d");
    // Back up past where the range started: it now runs the other way, a..b.
    for _ in 0..3 {
        h.key_press_modifiers(egui::Modifiers::SHIFT, egui::Key::ArrowUp);
        h.run_steps(2);
    }
    assert!(h.query_by_label("Download 2 items").is_some(), "a..b");
    h.key_press(egui::Key::Enter);
    h.run_steps(2);
    step_until(&mut h, "the job's verdict", WAIT, |h| has(h, "2 files, all MD5 verified"));
    assert_eq!(std::fs::read(downloads.path().join("a.txt")).unwrap(), b"a.txt");
    assert_eq!(std::fs::read(downloads.path().join("b.txt")).unwrap(), b"b.txt");
    assert!(!downloads.path().join("c.txt").exists() && !downloads.path().join("d.txt").exists());
}
