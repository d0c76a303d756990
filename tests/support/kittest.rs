//! The window's test harness and the one way its tests wait: step the UI until a condition
//! holds, with a deadline. Shared by tests/gui.rs and tests/gui_nearby.rs.

use std::thread;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use ferry::gui::FerryApp;

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
