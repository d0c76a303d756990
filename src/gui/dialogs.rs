//! Native file dialogs (rfd) on a helper thread, so the window keeps drawing while one is open.
//! The answer comes back over a channel and wakes the UI.
//!
//! Where no dialog can be shown (no desktop portal and no `zenity`), rfd answers "nothing chosen"
//! at once; an answer that fast is taken to mean "no dialogs here", and the typed-path fields
//! are used from then on.

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

/// Faster than any person can dismiss a dialog: the dialog never appeared.
const NO_DIALOG_WITHIN: Duration = Duration::from_millis(250);

/// What a dialog was opened for.
#[derive(Debug, Clone)]
pub(crate) enum Purpose {
    /// Pick the folder to host.
    HostFolder,
    /// Choose where to save `remote`; `typed` is the path in the save-as field.
    SaveAs { remote: String, typed: PathBuf },
    /// Choose files to upload into the folder shown.
    Upload,
}

/// How a dialog ended.
#[derive(Debug)]
pub(crate) enum Answer {
    Chosen(PathBuf),
    /// Several files (an upload).
    ChosenMany(Vec<PathBuf>),
    /// The person closed the dialog without choosing.
    Dismissed,
    /// No dialog could be shown.
    Unavailable,
}

pub(crate) struct Dialogs {
    native: bool,
    pending: bool,
    tx: Sender<(Purpose, Answer)>,
    rx: Receiver<(Purpose, Answer)>,
    ctx: egui::Context,
}

impl Dialogs {
    pub fn new(ctx: &egui::Context, native: bool) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Dialogs { native, pending: false, tx, rx, ctx: ctx.clone() }
    }

    /// Whether native dialogs are used (false in tests, demos, and where none can be shown).
    pub fn native(&self) -> bool {
        self.native
    }

    pub fn set_native(&mut self, native: bool) {
        self.native = native;
    }

    /// A dialog is open.
    pub fn busy(&self) -> bool {
        self.pending
    }

    /// Opens a dialog for `purpose`, starting in `dir` with `file_name` suggested.
    pub fn open(&mut self, purpose: Purpose, dir: Option<PathBuf>, file_name: Option<String>) {
        if self.pending {
            return;
        }
        self.pending = true;
        let (tx, ctx) = (self.tx.clone(), self.ctx.clone());
        let fallback = purpose.clone();
        let spawned = thread::Builder::new().name("ferry-dialog".into()).spawn(move || {
            let started = Instant::now();
            let mut dialog = rfd::FileDialog::new();
            if let Some(dir) = dir.filter(|d| d.is_dir()) {
                dialog = dialog.set_directory(dir);
            }
            let chosen = match &purpose {
                Purpose::HostFolder => dialog.set_title("Host a folder").pick_folder().map(Answer::Chosen),
                Purpose::SaveAs { .. } => {
                    if let Some(name) = file_name {
                        dialog = dialog.set_file_name(name);
                    }
                    dialog.set_title("Save the download as").save_file().map(Answer::Chosen)
                }
                Purpose::Upload => dialog
                    .set_title("Upload files")
                    .pick_files()
                    .filter(|files| !files.is_empty())
                    .map(Answer::ChosenMany),
            };
            let answer = match chosen {
                Some(answer) => answer,
                None if started.elapsed() < NO_DIALOG_WITHIN => Answer::Unavailable,
                None => Answer::Dismissed,
            };
            let _ = tx.send((purpose, answer));
            ctx.request_repaint();
        });
        if spawned.is_err() {
            self.pending = false;
            let _ = self.tx.send((fallback, Answer::Unavailable));
        }
    }

    /// The answer of the open dialog, once it has one.
    pub fn poll(&mut self) -> Option<(Purpose, Answer)> {
        let got = self.rx.try_recv().ok()?;
        self.pending = false;
        if matches!(got.1, Answer::Unavailable) {
            self.native = false;
        }
        Some(got)
    }
}
