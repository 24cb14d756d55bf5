//! Progress bars of the long commands (check, repair, backup, export, import, demo and its
//! compaction): drawn on stderr only when stderr is a terminal and the command runs in this
//! process. A command a running server runs for the command line (see `beside.rs`) draws
//! none: the server's stderr is not the user's terminal. While a bar is shown, every other
//! line bound for the terminal — `say!`, `complain!`, log lines — is written with the bar
//! lifted out of the way ([`ProgressBar::suspend`]), so nothing breaks it up.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::Duration;

use crmkit_core::progress::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// The bar on the terminal, if one is shown (one at a time).
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A progress bar, shown or hidden; cleared from the terminal when dropped.
pub(crate) struct Bar {
    bar: ProgressBar,
    shown: bool,
}

impl Bar {
    /// A bar that counts `len` items of a command with `template` (indicatif's syntax),
    /// shown when this process's stderr is a terminal and the command runs here.
    pub(crate) fn new(len: u64, template: &str) -> Bar {
        if !wanted() {
            return Bar { bar: ProgressBar::hidden(), shown: false };
        }
        let bar = ProgressBar::new(len)
            .with_style(ProgressStyle::with_template(template).expect("a valid template").progress_chars("=> "));
        *SHOWN.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
        Bar { bar, shown: true }
    }

    /// A bar for core's stages ([`Progress`]): the stage's name, a bar, items done of the
    /// stage's total, the time run and the time left.
    pub(crate) fn stages() -> Bar {
        Bar::new(0, "{msg:<16} [{bar:40}] {human_pos}/{human_len} ({elapsed}, {eta} left)")
    }

    /// A spinner with `message` and the time it has run, for work that reports no counts.
    pub(crate) fn spinner(message: String) -> Bar {
        let b = Bar::new(0, "{spinner} {msg} ({elapsed})");
        b.bar.set_message(message);
        if b.shown {
            b.bar.enable_steady_tick(Duration::from_millis(120));
        }
        b
    }

    /// Shows how far core's operation is; a new stage starts the bar again at its total.
    pub(crate) fn update(&self, p: Progress) {
        if self.bar.message() != p.stage {
            self.bar.set_length(p.total);
            self.bar.set_position(p.done);
            self.bar.reset_eta();
            self.bar.reset_elapsed();
            self.bar.set_message(p.stage);
        } else {
            self.bar.set_position(p.done);
        }
    }

    /// The bar itself, for commands that count in their own units (bytes, demo entities).
    pub(crate) fn bar(&self) -> &ProgressBar {
        &self.bar
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        if self.shown {
            SHOWN.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }
}

/// Whether a bar would be drawn: stderr is a terminal and the command runs in this process.
pub(crate) fn wanted() -> bool {
    !crate::console::is_beside() && std::io::stderr().is_terminal()
}

/// Runs `write` (a line to stdout or stderr) with the shown bar, if any, lifted off the
/// terminal; the bar is drawn again below what was written.
pub(crate) fn around<R>(write: impl FnOnce() -> R) -> R {
    let shown = SHOWN.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match shown {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}
