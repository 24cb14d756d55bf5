//! The command line of the CRM engine — create, check, fill, inspect and serve
//! installations — behind the `crmkit` binary.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use crmkit_core::time::{ManualClock, SystemClock};
use crmkit_core::Installation;
use crmkit_demo::{self as demo, DemoOptions};

use crate::console::{self, Exit};
use crate::progress::Bar;
use crate::{analytics, attachments, beside, dossier, graph, http, plugin, script, stats, token, transfer};

#[derive(Parser)]
#[command(name = "crmkit", version, about = "An embeddable CRM engine: installations, demo data, statistics")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for a user acting in one of their roles; prints the token alone.
    Create {
        dir: PathBuf,
        #[arg(long)]
        user: String,
        /// admin, head, manager or viewer.
        #[arg(long)]
        role: String,
    },
    /// Revoke a token, by the id `token list` shows (or the token itself).
    Revoke { dir: PathBuf, id: String },
    /// The tokens: id, user, role, created, whether revoked.
    List { dir: PathBuf },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Set a user's password for the web page, read from the first line of stdin (at least
    /// 10 characters); kept only as its Argon2id hash. While a server holds the
    /// installation, an admin sets it over the API instead (PUT /api/v1/users/{id}/password).
    Passwd { dir: PathBuf, login: String },
}

#[derive(Subcommand)]
enum Command {
    /// Create a new installation folder with the default config and an empty database.
    Init {
        /// The folder (created if missing).
        dir: PathBuf,
    },
    /// Validate an installation's config and database without changing anything (the
    /// database is opened read-only; a file left unrecovered by a crash is reported, and
    /// `crmkit repair` recovers it).
    Check { dir: PathBuf },
    /// Open the database for writing — which recovers a file a crash left unrecovered,
    /// migrates an older schema and brings in config's users — then check it as `check` does.
    Repair { dir: PathBuf },
    /// Write a consistent copy of the database to a new file, from one snapshot, while a
    /// server serves and writes go on.
    Backup {
        dir: PathBuf,
        /// The backup file to create (it must not exist).
        out: PathBuf,
    },
    /// Replace the installation's database with a backup, atomically; refused while a
    /// server runs and for a file that is not a crmkit database.
    Restore {
        /// The backup file.
        backup: PathBuf,
        dir: PathBuf,
    },
    /// Create an installation filled with a synthetic, deterministic company.
    Demo {
        /// Where to create it.
        #[arg(long, default_value = "demo")]
        dir: PathBuf,
        /// How many deals to generate (partners: one per ten deals).
        #[arg(long, default_value_t = 20_000)]
        deals: usize,
        /// The random seed: the same seed gives the same company.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Replace an existing installation in DIR even if it is not a demo.
        #[arg(long)]
        force: bool,
        /// Stop after creating it instead of serving it.
        #[arg(long)]
        no_serve: bool,
        /// Where to serve it.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
    },
    /// Ask the bound `deal.score` handler again about the open deals (every deal with
    /// `--all`) and keep the scores, in one transaction: a handler's fault writes nothing.
    Score {
        dir: PathBuf,
        /// Every deal, closed ones too.
        #[arg(long)]
        all: bool,
    },
    /// Count the entities of an installation, its deals by status and the pipeline of open
    /// deals per process kind and stage.
    Stats {
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Everything about one partner: card, counterparties, contacts, relations, deals,
    /// documents and balances, revenue, and the latest interactions.
    Dossier {
        dir: PathBuf,
        /// The partner's id or exact name.
        partner: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Interactions of the timeline to show.
        #[arg(long, default_value_t = 20)]
        timeline: usize,
    },
    /// A deal's file: its stage history, tasks, interactions, documents, attachments and
    /// audit entries in time order, with its environment.
    Deal {
        dir: PathBuf,
        /// The deal's id.
        deal: String,
        /// Only these kinds of item (step, task, interaction, document, attachment, audit).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The group of companies a partner belongs to, with each member's deals, revenue and
    /// balances, and the total.
    Group {
        dir: PathBuf,
        /// The partner's id or exact name (any member of the group).
        partner: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The partners linked to a partner, with each link's type and direction.
    Neighbours {
        dir: PathBuf,
        /// The partner's id or exact name.
        partner: String,
        /// Only links of this type (an id of `partner_link_types`).
        #[arg(long)]
        link_type: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The shortest chain of partner links from one partner to another, hop by hop.
    Path {
        dir: PathBuf,
        /// Where the chain starts: a partner's id or exact name.
        from: String,
        /// Where it ends: a partner's id or exact name.
        to: String,
        /// The longest chain to look for, in links.
        #[arg(long, default_value_t = 6)]
        max_depth: usize,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The deals a partner took part in (as a competitor, subcontractor, …) or that were
    /// lost to it, and how they ended.
    Competitor {
        dir: PathBuf,
        /// The partner's id or exact name.
        partner: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The deals a contact person touched: in a deal's environment or in an interaction.
    ContactDeals {
        dir: PathBuf,
        /// The contact person's id, e-mail or exact name.
        contact: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Merge a duplicate partner into the partner that stays: everything that refers to
    /// the duplicate moves, then the duplicate is deleted; a refusal writes nothing.
    Merge {
        dir: PathBuf,
        /// The partner that stays: id or exact name.
        keep: String,
        /// The partner that goes: id or exact name.
        duplicate: String,
        /// The user recorded in the audit log (default: the system).
        #[arg(long = "as", value_name = "LOGIN")]
        actor: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Attach a file to an entity; content already stored is not stored again.
    Attach {
        dir: PathBuf,
        /// The entity as KIND:ID (`deal:ID`, `partner:ID`, `contact:ID`, …).
        entity: String,
        /// The file to attach.
        file: PathBuf,
        /// The name to store (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        /// The MIME type (default: guessed from the name's extension).
        #[arg(long)]
        mime: Option<String>,
        /// The user recorded in the audit log (default: the system).
        #[arg(long = "as", value_name = "LOGIN")]
        actor: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The files attached to an entity.
    Attachments {
        dir: PathBuf,
        /// The entity as KIND:ID.
        entity: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Write an attachment's content to stdout or to a file.
    Fetch {
        dir: PathBuf,
        /// The attachment's id.
        attachment: String,
        /// The file to write (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Delete an attachment; its content goes with the last attachment that has it.
    Detach {
        dir: PathBuf,
        /// The attachment's id.
        attachment: String,
        /// The user recorded in the audit log (default: the system).
        #[arg(long = "as", value_name = "LOGIN")]
        actor: Option<String>,
    },
    /// Serve the installation over HTTP until SIGINT or SIGTERM.
    Serve {
        dir: PathBuf,
        /// The address to listen on (port 0: any free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// How log lines (one per request, warnings, scripts' `log`) are written to stderr:
        /// text for people, or json — one JSON object per line, for a log collector.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Users' passwords for the web page.
    User {
        #[command(subcommand)]
        what: UserCommand,
    },
    /// API tokens: random, shown once, stored only as a hash.
    Token {
        #[command(subcommand)]
        what: TokenCommand,
    },
    /// Run a report script (scripts/reports/NAME.rhai) and print its table.
    Report {
        dir: PathBuf,
        /// The report's name.
        name: String,
        /// A parameter of the report, NAME=VALUE (repeatable).
        #[arg(long = "param")]
        params: Vec<String>,
        /// table, csv or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// A built-in sales report over the installation's deals and their stage history, as a
    /// table, CSV, JSON or an SVG chart (docs/analytics.md lists the reports).
    Analytics {
        /// The report's name (funnel, …).
        report: String,
        dir: PathBuf,
        /// Only the deals of this process kind (its id).
        #[arg(long)]
        kind: Option<String>,
        /// The period's first day, YYYY-MM-DD (UTC).
        #[arg(long)]
        from: Option<String>,
        /// The period's last day, YYYY-MM-DD (UTC).
        #[arg(long)]
        to: Option<String>,
        /// The state at the end of this day, YYYY-MM-DD (UTC), replayed from the history.
        #[arg(long)]
        as_of: Option<String>,
        /// Only the deals this manager (a login) holds.
        #[arg(long)]
        manager: Option<String>,
        /// Only the deals of managers in this department.
        #[arg(long)]
        department: Option<String>,
        /// Only the deals of partners in this segment.
        #[arg(long)]
        segment: Option<String>,
        /// table, csv, json, or svg for a report with a chart.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Check and try out the installation's Rhai scripts.
    Script {
        #[command(subcommand)]
        what: script::What,
    },
    /// Run the relationship strategies: name every client partner's segment by the
    /// partner.strategy rule, report segment changes and partners due for contact, and with
    /// --apply write the segments and create the recommended tasks (never twice).
    Strategy {
        dir: PathBuf,
        #[arg(long)]
        apply: bool,
    },
    /// Loyalty programs, cards and their ledgers: list them, issue, redeem, correct, block
    /// and reissue cards, accrue sales written before their cards, expire cards and points.
    Loyalty {
        #[command(subcommand)]
        what: crate::loyalty::What,
    },
    /// Claims: list them, show one with its steps, register one and take it through its
    /// lifecycle — review, postpone, decide, close, reopen.
    Claims {
        #[command(subcommand)]
        what: crate::claims::What,
    },
    /// Inspect, check and try out WASM plugins (plugins/ABI.md).
    Plugin {
        #[command(subcommand)]
        what: plugin::What,
    },
    /// Import rows from a CSV or JSONL file: each row's external key makes re-running the
    /// file update rather than duplicate; bad rows are skipped and listed in
    /// FILE.errors.csv next to the input.
    Import {
        dir: PathBuf,
        /// partners, counterparties, contacts, loyalty-programs, loyalty-cards, deals, interactions,
        /// documents or claims.
        #[arg(long)]
        entity: String,
        /// The file (.csv or .jsonl).
        file: PathBuf,
        /// csv or jsonl (default: from the file name).
        #[arg(long)]
        format: Option<String>,
        /// Column mapping: a TOML file with a [columns] table, or "File column=column,…"
        /// ("-" ignores a column).
        #[arg(long)]
        map: Option<String>,
        /// The CSV delimiter (default: guessed from the header, , or ;).
        #[arg(long)]
        delimiter: Option<char>,
        /// Rows per committed batch.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// All or nothing: any bad row and nothing is written.
        #[arg(long)]
        atomic: bool,
        /// Check every row and report, writing nothing.
        #[arg(long)]
        dry_run: bool,
        /// The user the import acts as (login); the system when absent.
        #[arg(long = "as")]
        as_user: Option<String>,
    },
    /// Export an entity kind as CSV or JSONL, in the columns import reads.
    Export {
        dir: PathBuf,
        /// partners, counterparties, contacts, loyalty-programs, loyalty-cards, deals, interactions,
        /// documents or claims.
        #[arg(long)]
        entity: String,
        /// csv or jsonl.
        #[arg(long, default_value = "csv")]
        format: String,
        /// The file to write (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The CSV delimiter.
        #[arg(long)]
        delimiter: Option<char>,
    },
}

/// How log lines are written.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum Format {
    Table,
    Json,
}

/// Runs the command line: parses the arguments, runs the command, and exits with status 1
/// and the error on stderr when it fails.
pub fn main() {
    let cli = Cli::parse();
    // Log lines (requests, scripts' `log` and `print`) go to stderr, from level info up
    // unless RUST_LOG says otherwise.
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_writer(console::log_writer).with_target(false).with_env_filter(filter);
    match cli.command {
        // One JSON object per line: the event's fields at the top level beside timestamp,
        // level and message.
        Command::Serve { log_format: LogFormat::Json, .. } => {
            logs.json().flatten_event(true).with_current_span(false).with_span_list(false).init()
        }
        _ => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    let code = console::finish(run(cli, None));
    if code != 0 {
        std::process::exit(code);
    }
}

impl Command {
    /// The installation of a command that runs through its server while one runs, or runs
    /// here when none does — with the same output and exit status either way.
    fn beside(&self) -> Option<&Path> {
        match self {
            Command::Check { dir }
            | Command::Repair { dir }
            | Command::Backup { dir, .. }
            | Command::Stats { dir, .. }
            | Command::Score { dir, .. }
            | Command::Report { dir, .. }
            | Command::Analytics { dir, .. }
            | Command::Import { dir, .. }
            | Command::Export { dir, .. } => Some(dir),
            Command::Script { what } => Some(what.dir()),
            Command::Loyalty { what } => Some(what.dir()),
            Command::Claims { what } => Some(what.dir()),
            Command::Strategy { dir, .. } => Some(dir),
            Command::Plugin { what } => what.dir(),
            _ => None,
        }
    }
}

/// Gives the demo's admin, a head, a manager and the viewer a fresh password each: (role, login,
/// password), to print.
fn demo_passwords(inst: &Installation) -> Result<Vec<(&'static str, String, String)>> {
    use crmkit_core::model::{Role, User};
    let users: Vec<User> = crmkit_core::store::Reader::list(&inst.store().read()?, None, usize::MAX)?;
    let mut out = Vec::new();
    for (name, role) in
        [("admin", Role::Admin), ("head", Role::Head), ("manager", Role::Manager), ("viewer", Role::Viewer)]
    {
        let Some(u) = users.iter().find(|u| u.active && u.roles.first() == Some(&role)) else { continue };
        // Twelve letters and digits that cannot be taken for one another.
        const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzACDEFGHJKLMNPQRSTUVWXYZ23456789";
        let password: String =
            token::random::<12>()?.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
        crate::password::set(inst, &u.login, &password)?;
        out.push((name, u.login.clone(), password));
    }
    Ok(out)
}

/// Runs the command line `args` (the program's name first) in this process as the `crmkit`
/// binary runs it, and returns its exit status: through the installation's server while one
/// answers on its socket (a server in this same process included, as a benchmark that
/// serves an installation has it), here otherwise. Its output goes to this process's stdout
/// and stderr — or to the client's, when this is a server running a command a client sent
/// (see `beside.rs`). It blocks: call it off an async runtime's threads.
pub fn run_command_line(args: &[String]) -> i32 {
    match Cli::try_parse_from(args) {
        Ok(cli) => console::finish(run(cli, Some(args))),
        Err(e) => {
            complain!("{e}");
            2
        }
    }
}

/// Runs `cli`, parsed from `args` (`None`: this process's command line).
fn run(cli: Cli, args: Option<&[String]>) -> Result<()> {
    // The one place that decides: through the installation's server while one runs.
    if let Some(dir) = cli.command.beside().filter(|_| !console::is_beside()) {
        if let Some(code) = beside::forward(dir, args)? {
            return if code == 0 { Ok(()) } else { Err(Exit(code).into()) };
        }
    }
    match cli.command {
        Command::Init { dir } => {
            Installation::init(&dir, None, Arc::new(SystemClock))?;
            say!("created installation in {}", dir.display());
            say!("config: {}", dir.join(crmkit_core::config::CONFIG_FILE).display());
            Ok(())
        }
        Command::Check { dir } => check(&*console::installation_read_only(&dir)?, &dir),
        Command::Repair { dir } => {
            let inst = console::installation(&dir)?;
            say!("repair: the database is open for writing (recovered, migrated and in step with config's users)");
            check(&inst, &dir)
        }
        Command::Backup { dir, out } => {
            if console::path(&out).exists() {
                bail!("{}: a file is already there; a backup never replaces one", out.display());
            }
            let inst = console::installation_read_only(&dir)?;
            let copied = {
                let bar = Bar::stages();
                inst.store().back_up_with_progress(&console::path(&out), &mut |p| bar.update(p))?
            };
            say!(
                "backed up {} entries ({} of keys and values, schema version {}) to {}",
                copied.entries,
                human_bytes(copied.bytes),
                copied.schema_version,
                out.display()
            );
            Ok(())
        }
        Command::Restore { backup, dir } => restore(&backup, &dir),
        Command::Demo { dir, deals, seed, force, no_serve, addr } => {
            let summary = make_demo(&dir, deals, seed, force, true, None, true)?;
            say!("{}", summary.to_string().trim_end());
            say!("\ninstallation: {}", dir.display());
            let d = dir.display().to_string();
            say!("the admin login: {DEMO_ADMIN} (config/crmkit.toml's [[users]]; the API takes tokens, not passwords)");
            if no_serve {
                say!("an admin token for the API, printed once:");
                say!("  crmkit token create {d} --user {DEMO_ADMIN} --role admin");
                say!("then serve it and call the API with the token:");
                say!("  crmkit serve {d} --addr {addr}");
                say!("  curl -H 'Authorization: Bearer TOKEN' http://{addr}/api/v1/me");
                say!("(an admin may also create tokens for other users: POST /api/v1/tokens; crmkit stats {d} counts what is there)");
                return Ok(());
            }
            let (token, people) = {
                let inst = Installation::open(&dir, Arc::new(SystemClock))?;
                (token::create(&inst, DEMO_ADMIN, crmkit_core::model::Role::Admin)?, demo_passwords(&inst)?)
            };
            let deal = {
                let inst = Installation::open(&dir, Arc::new(SystemClock))?;
                let r = inst.store().read()?;
                crmkit_core::store::Reader::list::<crmkit_core::model::Deal>(&r, None, 1)?
                    .first()
                    .map(|d| d.id.to_string())
                    .unwrap_or_default()
            };
            http::serve_then(&dir, &addr, move |url| {
                say!("\nthe web page: {url}/ — sign in as");
                for (role, login, password) in &people {
                    say!("  {role:<8} {login}  password {password}");
                }
                say!("\nthe demo is served at {url} (Ctrl-C stops it); a token of {DEMO_ADMIN} in the admin role: {token}");
                say!("  curl {url}/health");
                say!("  curl -H 'Authorization: Bearer {token}' {url}/api/v1/me");
                say!("  curl -H 'Authorization: Bearer {token}' -d '{{\"login\":\"{DEMO_ADMIN}\",\"role\":\"admin\"}}' {url}/api/v1/tokens   # another token");
                say!("  curl -H 'Authorization: Bearer {token}' {url}/api/v1/deals/{deal}");
            })
        }
        Command::Stats { dir, format } => stats::run(&dir, format),
        Command::Score { dir, all } => score(&dir, all),
        Command::Script { what } => script::run(what),
        Command::Plugin { what } => plugin::run(what),
        Command::Loyalty { what } => crate::loyalty::run(what),
        Command::Claims { what } => crate::claims::run(what),
        Command::Strategy { dir, apply } => crate::strategy::run(&dir, apply),
        Command::Serve { dir, addr, log_format: _ } => http::serve(&dir, &addr),
        Command::User { what: UserCommand::Passwd { dir, login } } => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).context("reading the password from stdin")?;
            let password = line.strip_suffix('\n').unwrap_or(&line);
            let password = password.strip_suffix('\r').unwrap_or(password);
            let inst = Installation::open(&dir, Arc::new(SystemClock))?;
            crate::password::set(&inst, &login, password)?;
            say!("the password of {login} is set");
            Ok(())
        }
        Command::Token { what } => match what {
            TokenCommand::Create { dir, user, role } => {
                let inst = Installation::open(&dir, Arc::new(SystemClock))?;
                let t = token::create(&inst, &user, token::role(&role)?)?;
                say!("{t}");
                Ok(())
            }
            TokenCommand::Revoke { dir, id } => {
                let inst = Installation::open(&dir, Arc::new(SystemClock))?;
                let t = token::revoke(&inst, &id)?;
                say!("revoked token {} of {} ({:?})", t.id(), t.login, t.role);
                Ok(())
            }
            TokenCommand::List { dir } => {
                for t in token::load(&dir)? {
                    say!(
                        "{}  {:<20} {:<8} {}{}",
                        t.id(),
                        t.login,
                        format!("{:?}", t.role).to_lowercase(),
                        t.created,
                        if t.revoked { "  revoked" } else { "" }
                    );
                }
                Ok(())
            }
        },
        Command::Report { dir, name, params, format } => script::report(&dir, &name, &params, &format),
        Command::Analytics { report, dir, kind, from, to, as_of, manager, department, segment, format } => {
            let given = [
                ("kind", kind),
                ("from", from),
                ("to", to),
                ("as_of", as_of),
                ("manager", manager),
                ("department", department),
                ("segment", segment),
            ];
            let params = given.into_iter().filter_map(|(n, v)| v.map(|v| (n.to_string(), v))).collect();
            analytics::run(analytics::Args { report: &report, dir: &dir, params, format: &format })
        }
        Command::Import { dir, entity, file, format, map, delimiter, batch, atomic, dry_run, as_user } => {
            transfer::import(transfer::ImportArgs {
                dir,
                entity,
                file,
                format,
                map,
                delimiter,
                batch,
                atomic,
                dry_run,
                as_user,
            })
        }
        Command::Export { dir, entity, format, out, delimiter } => {
            transfer::export(&dir, &entity, &format, out.as_deref(), delimiter)
        }
        Command::Dossier { dir, partner, format, timeline } => dossier::run(&dir, &partner, format, timeline),
        Command::Deal { dir, deal, only, format } => dossier::deal(&dir, &deal, &only, format),
        Command::Group { dir, partner, format } => dossier::group(&dir, &partner, format),
        Command::Neighbours { dir, partner, link_type, format } => {
            graph::neighbours(&dir, &partner, link_type.as_deref(), format)
        }
        Command::Path { dir, from, to, max_depth, format } => graph::path(&dir, &from, &to, max_depth, format),
        Command::Competitor { dir, partner, format } => graph::competitor(&dir, &partner, format),
        Command::ContactDeals { dir, contact, format } => graph::contact_deals(&dir, &contact, format),
        Command::Merge { dir, keep, duplicate, actor, format } => {
            graph::merge(&dir, &keep, &duplicate, actor.as_deref(), format)
        }
        Command::Attach { dir, entity, file, name, mime, actor, format } => attachments::attach(
            &dir,
            attachments::AttachArgs {
                entity: &entity,
                file: &file,
                name: name.as_deref(),
                mime: mime.as_deref(),
                login: actor.as_deref(),
                format,
            },
        ),
        Command::Attachments { dir, entity, format } => attachments::list(&dir, &entity, format),
        Command::Fetch { dir, attachment, out } => attachments::fetch(&dir, &attachment, out.as_deref()),
        Command::Detach { dir, attachment, actor } => attachments::detach(&dir, &attachment, actor.as_deref()),
    }
}

/// The demo config's admin user (config/demo.toml).
const DEMO_ADMIN: &str = "admin";

/// Marks an installation made by `crmkit demo`, which a later demo may replace.
const DEMO_MARKER: &str = ".crmkit-demo";

/// Creates a demo installation in `dir` and fills it with `deals` deals from `seed`, with a
/// progress bar when `show` is set: an earlier demo there is replaced, another installation
/// only with `force`. `caches_mb` sets its page and record caches (MiB) instead of the demo
/// config's; `compact` compacts the file afterwards.
pub fn make_demo(
    dir: &Path,
    deals: usize,
    seed: u64,
    force: bool,
    show: bool,
    caches_mb: Option<(u64, u64)>,
    compact: bool,
) -> Result<demo::Summary> {
    if dir.join(crmkit_core::config::CONFIG_FILE).exists() {
        // A demo replaces an earlier demo; anything else only with --force.
        if !force && !dir.join(DEMO_MARKER).exists() {
            bail!("{} holds an installation that is not a demo; pass --force to replace it", dir.display());
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let opts = DemoOptions::new(deals, seed);
    let clock = Arc::new(ManualClock::new(opts.start));
    let config = match caches_mb {
        Some((pages, records)) => demo::DEMO_CONFIG
            .replacen("\ncache_mb = 256", &format!("\ncache_mb = {pages}"), 1)
            .replacen("\nrecord_cache_mb = 64", &format!("\nrecord_cache_mb = {records}"), 1),
        None => demo::DEMO_CONFIG.to_string(),
    };
    let inst = Installation::init(dir, Some(&config), clock.clone())?;
    std::fs::write(dir.join(DEMO_MARKER), format!("deals = {deals}\nseed = {seed}\n"))?;
    let summary = {
        let shown = show.then(|| {
            Bar::new(
                opts.estimated_entities(),
                "{msg:<14} [{bar:40}] {human_pos}/{human_len} entities ({elapsed}, {eta} left)",
            )
        });
        demo::populate(inst.store(), &clock, &opts, &mut |p| {
            if let Some(b) = &shown {
                b.bar().set_message(p.phase);
                b.bar().set_position(p.written);
            }
        })?
    };
    if compact {
        let database = inst.settings().database.clone();
        drop(inst);
        // redb compacts in one call that reports nothing: a spinner shows it works.
        let size = std::fs::metadata(&database).map(|m| m.len()).unwrap_or(0);
        let _spinner = show.then(|| Bar::spinner(format!("compacting {} ({})", database.display(), human_bytes(size))));
        crmkit_core::store::redb::RedbBackend::compact_file(&database)?;
    }
    Ok(summary)
}

/// `crmkit restore BACKUP DIR`.
fn restore(backup: &Path, dir: &Path) -> Result<()> {
    if beside::server_running(dir)? {
        bail!("a crmkit server is serving {}: stop it before restoring its database", dir.display());
    }
    let settings = crmkit_core::config::Settings::load_installation(dir)?;
    let version = crmkit_core::store::Store::inspect_file(backup)
        .with_context(|| format!("{} is not a crmkit backup; nothing was replaced", backup.display()))?;
    let bytes = crmkit_core::store::Store::restore_file(backup, &settings.database)?;
    say!(
        "restored {} ({}, schema version {version}) as {}",
        backup.display(),
        human_bytes(bytes),
        settings.database.display()
    );
    Ok(())
}

fn check(inst: &Installation, dir: &Path) -> Result<()> {
    let stats = inst.store().stats()?;
    let s = inst.settings();
    say!(
        "config: ok ({} users, {} process kinds, {} custom fields)",
        s.users.len(),
        s.process_kinds.len(),
        s.custom_fields.values().map(Vec::len).sum::<usize>()
    );
    // Lines said while the bar is shown go above it; it is cleared before the verdict.
    let bar = Bar::stages();
    let problems = inst.store().verify_indexes_with_progress(&mut |p| bar.update(p))?;
    if !problems.is_empty() {
        for p in &problems {
            complain!("index problem: {p}");
        }
        bail!("{} index problem(s) in {}", problems.len(), s.database.display());
    }
    let histories = inst.store().verify_histories_with_progress(&mut |p| bar.update(p))?;
    if !histories.is_empty() {
        for p in &histories {
            complain!("stage history problem: {p}");
        }
        bail!("{} stage history problem(s) in {}", histories.len(), s.database.display());
    }
    let totals = inst.store().verify_funnel_totals_with_progress(&mut |p| bar.update(p))?;
    if !totals.is_empty() {
        for p in &totals {
            complain!("funnel totals problem: {p}");
        }
        bail!("{} funnel totals problem(s) in {}", totals.len(), s.database.display());
    }
    let mut rows = inst.store().verify_scan_rows_with_progress(&mut |p| bar.update(p))?;
    rows.extend(inst.store().verify_deal_heads_with_progress(&mut |p| bar.update(p))?);
    rows.extend(inst.store().verify_document_rows_with_progress(&mut |p| bar.update(p))?);
    rows.extend(inst.store().verify_deal_documents_with_progress(&mut |p| bar.update(p))?);
    rows.extend(inst.store().verify_interaction_rows_with_progress(&mut |p| bar.update(p))?);
    rows.extend(inst.store().verify_task_rows_with_progress(&mut |p| bar.update(p))?);
    rows.extend(inst.store().verify_shipment_rows_with_progress(&mut |p| bar.update(p))?);
    if !rows.is_empty() {
        for p in &rows {
            complain!("scan layout problem: {p}");
        }
        bail!("{} scan layout problem(s) in {}", rows.len(), s.database.display());
    }
    let ledgers = crmkit_core::process::loyalty::verify(&inst.store().read()?)?;
    if !ledgers.is_empty() {
        drop(bar);
        for p in &ledgers {
            complain!("loyalty ledger problem: {p}");
        }
        bail!("{} loyalty ledger problem(s) in {}", ledgers.len(), s.database.display());
    }
    let attachments = inst.store().verify_attachments_with_progress(&mut |p| bar.update(p))?;
    drop(bar);
    if !attachments.is_empty() {
        for p in &attachments {
            complain!("attachment problem: {p}");
        }
        bail!("{} attachment problem(s) in {}", attachments.len(), s.database.display());
    }
    say!(
        "database: ok ({}, schema version {}, indexes consistent, {} stage history steps consistent, funnel totals, scan rows and heads match the deals, document, revenue, interaction and task rows and the deals' documents match their records, loyalty cards match their ledgers, attachments match their content)",
        s.database.display(),
        stats.schema_version,
        stats.stage_history_steps
    );
    let c = script::check_installation(inst)?;
    say!("scripts: ok ({} compiled, {} bindings to script functions checked)", c.scripts, c.script_bindings);
    say!("plugins: ok ({} loaded, {} bindings to plugin exports checked)", c.plugins, c.plugin_bindings);
    let mut missing = Vec::new();
    for kind in &s.process_kinds {
        let guidance = kind.guidance.iter().chain(kind.stages.iter().flat_map(|st| st.guidance.iter()));
        for g in guidance {
            if let Some(f) = &g.file {
                if !console::path(&dir.join(f)).is_file() {
                    missing
                        .push(format!("process kind \"{}\": guidance \"{}\": file {f} is missing", kind.id, g.title));
                }
            }
        }
    }
    if !missing.is_empty() {
        for m in &missing {
            complain!("{m}");
        }
        bail!("{} guidance file(s) missing in {}", missing.len(), dir.display());
    }
    let native = s.hooks.iter().filter(|b| b.runtime == crmkit_core::hooks::NATIVE).count();
    if native > 0 {
        say!("hooks: {native} binding(s) to handlers the embedding program registers");
    }
    Ok(())
}

/// A byte count for people: `512 B`, `1.5 KiB`, `3.8 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The user `--as LOGIN` names, recorded as the actor of a write (`None`: the system).
pub(crate) fn acting_user<R: crmkit_core::store::Reader>(
    r: &R,
    login: Option<&str>,
) -> Result<Option<crmkit_core::id::UserId>> {
    let Some(login) = login else { return Ok(None) };
    match r.user_by_login(login)? {
        Some(u) if u.active => Ok(Some(u.id)),
        Some(_) => bail!("--as: user \"{login}\" is deactivated"),
        None => bail!("--as: no user has the login \"{login}\""),
    }
}

/// `crmkit score DIR [--all]`: scores deals again through the installation's bindings.
fn score(dir: &Path, all: bool) -> Result<()> {
    let inst = console::installation(dir)?;
    let engine = script::engine(&inst)?;
    if !engine.scores() {
        bail!(
            "no deal.score handler is bound in {}: nothing to score (bind one in [[hooks]], see docs/hooks.md)",
            dir.join(crmkit_core::config::CONFIG_FILE).display()
        );
    }
    let done = {
        let bar = Bar::stages();
        engine.rescore(inst.store(), None, all, &mut |p| bar.update(p))?
    };
    say!(
        "scored {}{} deals: {} changed, {} unchanged, {} without a score, {} with a probability set by hand (kept)",
        done.deals,
        if all { "" } else { " open" },
        done.changed,
        done.deals - done.changed,
        done.unscored,
        done.manual
    );
    Ok(())
}
