//! The command line beside a running server: while `crmkit serve` holds an installation's
//! database (redb lets one process open it for writing), commands on that installation go
//! through the server, over a Unix socket in the installation's data folder, and print and
//! exit exactly as they would have run directly.
//!
//! The protocol (version 1) is a sequence of frames, each `tag: u8`, `length: u32`
//! (big-endian) and `length` bytes:
//!
//! - the client sends one `R` frame: JSON `{"version": V, "cwd": C, "args": [A…]}` — the
//!   crmkit version of the client (the server refuses another), its working folder and its
//!   command line (program name first);
//! - the server runs the command as the client would have, and sends `O` frames (bytes of
//!   stdout) and `E` frames (bytes of stderr) in the order the command wrote them, then one
//!   `X` frame with the exit status (`i32`, big-endian), and closes.
//!
//! The socket is `DIR/data/control/crmkit.sock`, in a folder of mode 0700, itself of mode
//! 0600: only the installation's owner reaches it. Files named on the command line are read
//! and written by the server, at their paths relative to the client's working folder.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use crmkit_core::Installation;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::console::{self, Stream};

/// The folder the socket is in, below an installation's folder.
const SOCKET_DIR: &str = "data/control";
/// The socket's name.
const SOCKET_NAME: &str = "crmkit.sock";
/// The largest request a server reads.
const MAX_REQUEST: u32 = 1 << 20;

const REQUEST: u8 = b'R';
const STDOUT: u8 = b'O';
const STDERR: u8 = b'E';
const EXIT: u8 = b'X';

/// The socket of the installation in `dir`.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(SOCKET_DIR).join(SOCKET_NAME)
}

/// What a client asks.
#[derive(Serialize, Deserialize)]
struct Request {
    version: String,
    cwd: PathBuf,
    args: Vec<String>,
}

/// A connection to the server of the installation in `dir`, if one answers there. A socket
/// file no server answers on (left by a server that was killed) is not one.
fn connect(dir: &Path) -> Result<Option<std::os::unix::net::UnixStream>> {
    let path = socket_path(dir);
    if !path.exists() {
        return Ok(None);
    }
    match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reaching the server of {} on {}", dir.display(), path.display())),
    }
}

/// Whether a server answers on the socket of the installation in `dir`.
pub fn server_running(dir: &Path) -> Result<bool> {
    Ok(connect(dir)?.is_some())
}

/// Runs the command line `args` (`None`: this process's) through the server of the
/// installation in `dir`, if one runs: copies its output to this process's stdout and stderr
/// and returns its exit status. `None` when no server answers (the command then runs here).
pub fn forward(dir: &Path, args: Option<&[String]>) -> Result<Option<i32>> {
    let Some(mut stream) = connect(dir)? else { return Ok(None) };
    let args = match args {
        Some(args) => args.to_vec(),
        None => std::env::args_os()
            .map(|a| a.into_string().map_err(|a| anyhow::anyhow!("{a:?} is not UTF-8: a server cannot be given it")))
            .collect::<Result<Vec<_>>>()?,
    };
    let request = Request {
        version: env!("CARGO_PKG_VERSION").to_string(),
        cwd: std::env::current_dir().context("reading the working folder")?,
        args,
    };
    let body = serde_json::to_vec(&request)?;
    let mut head = [REQUEST, 0, 0, 0, 0];
    head[1..].copy_from_slice(&(body.len() as u32).to_be_bytes());
    stream.write_all(&head).and_then(|()| stream.write_all(&body)).context("sending the command to the server")?;
    let mut out = std::io::stdout().lock();
    loop {
        let mut head = [0u8; 5];
        stream.read_exact(&mut head).context("the server ended the command without an exit status")?;
        let len = u32::from_be_bytes(head[1..].try_into().expect("4 bytes")) as usize;
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).context("reading the server's answer")?;
        match head[0] {
            STDOUT => {
                if let Err(e) = out.write_all(&payload) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(Some(0));
                    }
                    return Err(e.into());
                }
            }
            STDERR => {
                out.flush()?;
                std::io::stderr().write_all(&payload)?;
            }
            EXIT if len == 4 => {
                out.flush()?;
                return Ok(Some(i32::from_be_bytes(payload.try_into().expect("4 bytes"))));
            }
            other => bail!("the server answered a frame of unknown kind {other:#04x}"),
        }
    }
}

/// The socket a server listens on for commands, and the commands it is running.
pub(crate) struct Listener {
    path: PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    /// Each running command holds a read guard; stopping waits for the write guard.
    running: Arc<tokio::sync::RwLock<()>>,
}

impl Listener {
    /// Listens on the socket of `inst`'s folder, replacing a socket file left by a server
    /// that was killed (this process holds the database, so no other server runs). A
    /// server that cannot listen serves without it, and says so.
    pub(crate) fn start(inst: Arc<Installation>) -> Option<Listener> {
        let path = socket_path(inst.dir());
        let listener = match bind(&path) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(
                    "commands cannot reach this server: {e:#}; the command line cannot open the database while it runs"
                );
                return None;
            }
        };
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let running = Arc::new(tokio::sync::RwLock::new(()));
        let guards = running.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stopped.changed() => break,
                };
                match accepted {
                    Ok((stream, _)) => {
                        let guard = guards.clone().read_owned().await;
                        let inst = inst.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve_command(stream, inst).await {
                                tracing::warn!("a command from the command line: {e:#}");
                            }
                            drop(guard);
                        });
                    }
                    Err(e) => {
                        tracing::warn!("accepting a command failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Some(Listener { path, stop, running })
    }

    /// Stops taking commands and removes the socket; then waits up to `grace` for the
    /// commands running to finish.
    pub(crate) async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!("removing {}: {e}", self.path.display());
        }
        if tokio::time::timeout(grace, self.running.write()).await.is_err() {
            tracing::warn!("a command from the command line still runs after {grace:?}; it stops with the process");
        }
    }
}

/// Binds the socket at `path`: its folder of mode 0700 (created if missing), the socket of
/// mode 0600.
fn bind(path: &Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = path.parent().expect("the socket is in a folder");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))?;
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!("removed the socket a stopped server left: {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing the old socket {}", path.display())),
    }
    let listener = tokio::net::UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(listener)
}

/// Reads one request from `stream`, runs it and sends its output and exit status.
async fn serve_command(mut stream: tokio::net::UnixStream, inst: Arc<Installation>) -> Result<()> {
    let mut head = [0u8; 5];
    match stream.read_exact(&mut head).await {
        Ok(_) => {}
        // A client that only looked whether a server runs (`crmkit restore`).
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
        Err(e) => return Err(e).context("reading the request"),
    }
    let len = u32::from_be_bytes(head[1..].try_into().expect("4 bytes"));
    if head[0] != REQUEST || len > MAX_REQUEST {
        bail!("not a request (frame kind {:#04x}, {len} bytes)", head[0]);
    }
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).await.context("reading the request")?;
    let request: Request = serde_json::from_slice(&body).context("the request is not the JSON of a command")?;
    let (output, mut frames) = tokio::sync::mpsc::unbounded_channel();
    let ran = if request.version != env!("CARGO_PKG_VERSION") {
        let message = format!(
            "error: the server of this installation is crmkit {}, this command line is {}: run the command with the \
             server's crmkit, or restart the server with this one\n",
            env!("CARGO_PKG_VERSION"),
            request.version
        );
        let _ = output.send((Stream::Err, message.into_bytes()));
        drop(output);
        tokio::spawn(async { 1 })
    } else {
        tracing::info!("command line: {}", request.args.get(1..).unwrap_or_default().join(" "));
        tokio::task::spawn_blocking(move || {
            console::run_beside(inst, request.cwd, output, || crate::cli::run_command_line(&request.args))
        })
    };
    let mut client_gone = false;
    while let Some((which, bytes)) = frames.recv().await {
        if client_gone {
            continue;
        }
        let tag = if which == Stream::Out { STDOUT } else { STDERR };
        if write_frame(&mut stream, tag, &bytes).await.is_err() {
            // The command goes on to its end (an import commits what it started).
            client_gone = true;
        }
    }
    let code = ran.await.unwrap_or_else(|e| {
        tracing::error!("a command from the command line failed: {e}");
        101
    });
    if !client_gone {
        write_frame(&mut stream, EXIT, &code.to_be_bytes()).await?;
        stream.shutdown().await?;
    }
    Ok(())
}

async fn write_frame(stream: &mut tokio::net::UnixStream, tag: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut head = [tag, 0, 0, 0, 0];
    head[1..].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    stream.write_all(&head).await?;
    stream.write_all(payload).await
}
