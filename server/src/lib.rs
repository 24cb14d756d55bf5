//! crmkit as a library: the command line and the HTTP server of the `crmkit` binary, so that
//! `crmkit-bench` serves an installation in its own process with the same code.
//!
//! The surface is what the binary and the benchmarks need: [`cli::main`] (the whole command
//! line), [`cli::run_command_line`] (one command line, run in this process), [`serve`] and
//! [`Served`] (the HTTP API), [`engine_and_scripts`] (an installation's process engine with
//! its scripts and plugins bound), [`token`] (API tokens), [`make_demo`] and [`human_bytes`]. Everything
//! else stays inside.

#![warn(missing_docs)]

/// Prints a line to the command's stdout: the process's, or the client's when a running
/// server runs the command for the command line. A reader that has gone away
/// (`crmkit stats DIR | head -3`) ends the program quietly instead of with a panic.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::console::say(format_args!($($arg)*))
    };
}

/// Prints a line to the command's stderr (see [`say!`]).
macro_rules! complain {
    ($($arg:tt)*) => {
        $crate::console::complain(format_args!($($arg)*))
    };
}

mod analytics;
mod attachments;
mod beside;
mod claims;
pub mod cli;
#[doc(hidden)]
pub mod console;
mod dossier;
mod graph;
mod http;
mod jsonl;
mod loyalty;
pub mod password;
mod plugin;
mod progress;
mod script;
mod stats;
mod strategy;
pub mod token;
mod transfer;

pub use cli::{human_bytes, make_demo};
pub use http::{serve, Served};
pub use script::{engine_and_scripts, Runtimes};

use cli::{acting_user, Format};
