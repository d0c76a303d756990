#![cfg(feature = "gui")]
//! Tab goes through the window in reading order and never stops on something without a name
//! (an invisible stop leaves a keyboard user lost).

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use ferry::gui::{FerryApp, State};

/// The names of the Tab stops, one lap from the start.
fn tab_stops(h: &mut Harness<'static, FerryApp>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..40 {
        h.key_press(egui::Key::Tab);
        h.run_steps(2);
        let focused = h.root().children_recursive().find(|n| n.is_focused());
        let name = focused.map(|n| n.accesskit_node().label().unwrap_or_default()).unwrap_or_default();
        if seen.first() == Some(&name) {
            break;
        }
        seen.push(name);
    }
    seen
}

#[test]
fn tab_follows_the_layout_and_every_stop_has_a_name() {
    let state = State { download_dir: std::env::temp_dir().display().to_string(), ..State::default() };
    let mut h = Harness::builder()
        .with_size([1100.0, 900.0])
        .with_step_dt(1.0 / 60.0)
        .build_eframe(move |cc| FerryApp::new(state, &cc.egui_ctx).with_native_dialogs(false).with_discovery(false));
    h.run_steps(2);
    let top = ["Server", "Client", "System", "Light", "Dark"];
    let server = tab_stops(&mut h);
    let expected: Vec<&str> = top
        .iter()
        .copied()
        .chain([
            "Folder to host",
            "Choose folder…",
            "Listen on",
            "port",
            "Require a PIN",
            "Allow uploads",
            "Start hosting",
        ])
        .collect();
    assert_eq!(server, expected);

    h.get_by_label("Client").click();
    h.run_steps(2);
    let client = tab_stops(&mut h);
    let expected: Vec<&str> = top.iter().copied().chain(["Server address", "PIN", "Connect"]).collect();
    assert_eq!(client, expected, "no unnamed stop (the split bar is dragged with the mouse only)");
}
