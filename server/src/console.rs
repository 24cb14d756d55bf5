//! What a command writes to and works on: the process's stdout and stderr and an
//! installation it opens itself — or, for a command a running server runs on behalf of the
//! command line (see `beside.rs`), the client's streams (as frames) and the server's open
//! installation. Commands reach both through this module, so they read the same either way.
//!
//! The choice is the calling thread's: [`run_beside`] sets it for the thread that runs one
//! forwarded command; every other thread writes to the process's streams.

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use crmkit_core::time::SystemClock;
use crmkit_core::Installation;

/// Which of the client's streams a piece of output belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Out,
    Err,
}

/// A running server's side of one forwarded command.
struct Beside {
    inst: Arc<Installation>,
    /// The client's working folder: relative paths on its command line are relative to it.
    cwd: PathBuf,
    output: tokio::sync::mpsc::UnboundedSender<(Stream, Vec<u8>)>,
}

thread_local! {
    static BESIDE: RefCell<Option<Beside>> = const { RefCell::new(None) };
}

/// A command ended with this exit status, having said why already (an import with failed
/// rows exits 1 after its summary).
#[derive(Debug)]
pub struct Exit(pub i32);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// The exit status of a command's outcome; an error is written to stderr as
/// `error: MESSAGE` first. The one place that turns a result into a status, for commands
/// run directly and beside a server alike.
pub(crate) fn finish(outcome: Result<()>) -> i32 {
    match outcome {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(Exit(code)) => *code,
            None => {
                complain(format_args!("error: {e:#}"));
                1
            }
        },
    }
}

/// Runs `f` on this thread as a command forwarded by a client in `cwd`: its output goes to
/// `output`, and it works on `inst`.
pub(crate) fn run_beside<R>(
    inst: Arc<Installation>,
    cwd: PathBuf,
    output: tokio::sync::mpsc::UnboundedSender<(Stream, Vec<u8>)>,
    f: impl FnOnce() -> R,
) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            BESIDE.with(|b| b.borrow_mut().take());
        }
    }
    BESIDE.with(|b| *b.borrow_mut() = Some(Beside { inst, cwd, output }));
    let _reset = Reset;
    f()
}

/// Whether this thread runs a command for a client of a running server.
pub(crate) fn is_beside() -> bool {
    BESIDE.with(|b| b.borrow().is_some())
}

/// Sends `bytes` to the client's `stream`, when this thread runs a forwarded command.
fn send(stream: Stream, bytes: &[u8]) -> bool {
    BESIDE.with(|b| match &*b.borrow() {
        Some(beside) => {
            // A client that went away no longer reads; the command still runs to its end.
            let _ = beside.output.send((stream, bytes.to_vec()));
            true
        }
        None => false,
    })
}

/// Writes a line to stdout (what `say!` expands to). A reader that has gone away
/// (`crmkit stats DIR | head -3`) ends the program quietly.
#[doc(hidden)]
pub fn say(args: std::fmt::Arguments<'_>) {
    let line = format!("{args}\n");
    if send(Stream::Out, line.as_bytes()) {
        return;
    }
    if let Err(e) = crate::progress::around(|| std::io::stdout().lock().write_all(line.as_bytes())) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Writes a line to stderr.
pub(crate) fn complain(args: std::fmt::Arguments<'_>) {
    let line = format!("{args}\n");
    if !send(Stream::Err, line.as_bytes()) {
        let _ = crate::progress::around(|| std::io::stderr().lock().write_all(line.as_bytes()));
    }
}

/// A command's stdout as a writer (for bulk output such as an export).
pub(crate) fn stdout() -> Box<dyn Write> {
    if is_beside() {
        Box::new(Client(Stream::Out))
    } else {
        Box::new(std::io::stdout().lock())
    }
}

/// The stderr log lines go to: the client's when this thread runs a forwarded command (a
/// script's `print` in `crmkit script run`), else the process's, with a progress bar on it
/// lifted out of the way of each line.
pub(crate) fn log_writer() -> Box<dyn Write> {
    if is_beside() {
        Box::new(Client(Stream::Err))
    } else {
        Box::new(Stderr)
    }
}

/// The process's stderr, written around a progress bar.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::progress::around(|| std::io::stderr().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        // A log line is written whole, in one lift of the bar.
        crate::progress::around(|| std::io::stderr().lock().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// One of the client's streams.
struct Client(Stream);

impl Write for Client {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        send(self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A path from the command line, for opening: relative to the client's working folder when
/// this thread runs a forwarded command. Messages show the path as it was given.
pub(crate) fn path(p: &Path) -> PathBuf {
    BESIDE.with(|b| match &*b.borrow() {
        Some(beside) if p.is_relative() => beside.cwd.join(p),
        _ => p.to_path_buf(),
    })
}

/// The installation in `dir`, for a command that may write: the server's when this thread
/// runs a forwarded command, else opened here.
pub(crate) fn installation(dir: &Path) -> Result<Arc<Installation>> {
    if let Some(inst) = BESIDE.with(|b| b.borrow().as_ref().map(|b| b.inst.clone())) {
        return Ok(inst);
    }
    Installation::open(dir, Arc::new(SystemClock)).map(Arc::new).map_err(|e| held(dir, e))
}

/// The installation in `dir`, for a command that only reads and promises to write nothing:
/// the server's when this thread runs a forwarded command (the server writes nothing for
/// it), else opened read-only here.
pub(crate) fn installation_read_only(dir: &Path) -> Result<Arc<Installation>> {
    if let Some(inst) = BESIDE.with(|b| b.borrow().as_ref().map(|b| b.inst.clone())) {
        return Ok(inst);
    }
    match Installation::open_read_only(dir, Arc::new(SystemClock)) {
        Ok(inst) => Ok(Arc::new(inst)),
        Err(e @ crmkit_core::Error::NeedsRecovery { .. }) => Err(anyhow::Error::new(e).context(format!(
            "the database cannot be read without recovering it first: run `crmkit repair {}`",
            dir.display()
        ))),
        Err(e @ crmkit_core::Error::OlderSchema { .. }) => Err(anyhow::Error::new(e).context(format!(
            "the database must be migrated before it is read: run `crmkit repair {}`",
            dir.display()
        ))),
        Err(e) => Err(held(dir, e)),
    }
}

/// A database another process holds, while no server answers on the installation's
/// socket: says so plainly.
fn held(dir: &Path, e: crmkit_core::Error) -> anyhow::Error {
    match e {
        crmkit_core::Error::InUse { .. } => anyhow::Error::new(e).context(format!(
            "another process holds the database, and no crmkit server answers on {} (a server started before \
             command sockets existed, or one whose socket was removed): stop that process or restart the server",
            crate::beside::socket_path(dir).display()
        )),
        other => other.into(),
    }
}
