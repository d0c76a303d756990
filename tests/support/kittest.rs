//! The window's test harness, the one way its tests wait (step the UI until a condition holds,
//! with a deadline), and how they drive it: by label, through the accessibility tree. Shared by
//! the tests/gui*.rs files.
#![allow(dead_code)] // each test file uses its own part

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ferry::gui::{FerryApp, State};

pub type App = Harness<'static, FerryApp>;

/// Steps the UI until `done` holds; the workers run on their own threads meanwhile. `run()`
/// would panic: spinners and progress bars keep asking for repaints.
#[track_caller]
pub fn step_until(h: &mut App, what: &str, timeout: Duration, done: impl Fn(&App) -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        h.step();
        if done(h) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// The window with native dialogs (the typed-path fields stand in for them) and discovery off,
/// downloads going to `download_dir`.
pub fn app(download_dir: &Path) -> App {
    app_sized(download_dir, [1100.0, 900.0])
}

/// The window at `size`, as [`app`] makes it.
pub fn app_sized(download_dir: &Path, size: [f32; 2]) -> App {
    let state = State { download_dir: download_dir.display().to_string(), ..State::default() };
    Harness::builder()
        .with_size(size)
        // A real frame's length: the default (0.25 s) would space two clicks too far apart to
        // make a double click.
        .with_step_dt(1.0 / 60.0)
        .build_eframe(move |cc| FerryApp::new(state, &cc.egui_ctx).with_native_dialogs(false).with_discovery(false))
}

pub fn type_into(h: &mut App, label: &str, text: &str) {
    h.get_by_label(label).set_text_value_accesskit(text);
    h.run_steps(2);
}

pub fn click(h: &mut App, label: &str) {
    h.get_by_label(label).click();
    h.run_steps(2);
}

pub fn double_click(h: &mut App, label: &str) {
    // The harness's clock advances 1/60 s a step: let the last click age, or egui would count
    // a triple click.
    h.run_steps(30);
    let node = h.get_by_label(label);
    node.click();
    node.click();
    h.run_steps(2);
}

/// Some node's label contains `label`.
pub fn has(h: &App, label: &str) -> bool {
    h.query_all_by_label_contains(label).next().is_some()
}
