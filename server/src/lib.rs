//! crmkit as a library: the command line and the HTTP server of the `crmkit` binary, so that
//! `crmkit-bench` serves an installation in its own process with the same code.
//!
//! The surface is what the binary and the benchmarks need: [`cli::main`] (the whole command
//! line), [`serve`] and [`Served`] (the HTTP API), [`engine_and_scripts`] (an installation's
//! process engine with its scripts bound), [`token`] (API tokens), [`make_demo`] and
//! [`human_bytes`]. Everything else stays inside.

#![warn(missing_docs)]

/// Prints a line to stdout. A reader that has gone away (`crmkit stats DIR | head -3`) ends
/// the program quietly instead of with a panic.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod attachments;
pub mod cli;
mod dossier;
mod graph;
mod http;
mod script;
pub mod token;
mod transfer;

pub use cli::{human_bytes, make_demo};
pub use http::{serve, Served};
pub use script::engine_and_scripts;

use cli::{acting_user, Format};
