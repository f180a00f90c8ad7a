//! Command-line interface: clap definitions (data only) and one file per
//! subcommand. This is the only layer that uses `anyhow`; [`exit_code`] is the
//! one place that maps an error to a process exit code, and [`report_error`]
//! the one place that prints it. [`parse`] builds the command ([`command`]:
//! the version line names the state schema; `--color` is honoured by clap's
//! own help and errors too) and is what `main` calls.

pub mod cancel;
pub mod completions;
pub mod emulate;
pub mod ls;
pub mod merge;
pub mod plan;
mod pool;
pub mod report;
pub mod run;
pub mod status;
pub mod validate;
pub mod verify;

use std::ffi::OsString;
use std::io::IsTerminal as _;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};

/// Process exit codes, documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every item done.
    Success = 0,
    /// The run finished but some items failed or timed out.
    ItemsFailed = 1,
    /// Bad input (manifest, flags, environment): nothing was submitted.
    BadInput = 2,
    /// Aborted: auth, balance, lock held by another runner, corrupt state.
    Aborted = 3,
    /// Interrupted (Ctrl-C): state flushed, rerun resumes.
    Interrupted = 130,
    /// Hung up (SIGHUP): as Ctrl-C.
    HungUp = 129,
    /// Terminated (SIGTERM: `docker stop`, systemd, `timeout`): as Ctrl-C.
    Terminated = 143,
}

#[derive(Debug, Parser)]
#[command(
    name = "vidbatch",
    version,
    args_override_self = true,
    about = "Batch runner for AI video generation APIs (Kling first): submit a manifest of prompts \
             exactly once, poll, download, report, resume",
    after_help = "Exit codes: 0 all done, 1 some items failed, 2 bad input, 3 aborted, 130 interrupted.\n\
                  Try it offline: vidbatch run manifests/example.yaml --emulator"
)]
pub struct Cli {
    /// Log each request and decision to stderr (-vv for more). Secrets are never logged.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// No progress display; print only errors and the final summary.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Colours in logs, help and errors: auto (only on a terminal, and not when NO_COLOR is set),
    /// always, never
    #[arg(long, value_enum, global = true, value_name = "WHEN", default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a manifest offline and summarize it.
    Validate(validate::ValidateArgs),
    /// Show what `run` would do and estimate its cost, without network.
    Plan(plan::PlanArgs),
    /// Submit every item, poll, download and report; rerun to resume.
    Run(Box<run::RunArgs>),
    /// Counts by state of a batch (works while a run is going).
    Status(status::StatusArgs),
    /// Rewrite a batch's report.csv and index.html from its state file (or print it as JSON).
    Report(report::ReportArgs),
    /// List a batch's items with status and reason, filtered by status and age.
    Ls(ls::LsArgs),
    /// Merge the shard folders of one batch (run --shard i/N) into one report, summary and gallery.
    Merge(merge::MergeArgs),
    /// Run a local emulator of the Kling API.
    Emulate(emulate::EmulateArgs),
    /// Re-hash every downloaded video; forget missing or changed ones so the next run fetches them again.
    Verify(verify::VerifyArgs),
    /// Ask the provider to cancel the batch's tasks that have not started (where it can).
    Cancel(cancel::CancelArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff), or write every page into a folder with --out.
    Man(completions::ManArgs),
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

impl ColorWhen {
    /// Whether to colour a stream: the flag wins, then NO_COLOR, then "is it a terminal".
    pub fn enabled(self, is_terminal: bool) -> bool {
        match self {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => is_terminal && !no_color_env(),
        }
    }

    fn clap(self) -> clap::ColorChoice {
        match self {
            ColorWhen::Always => clap::ColorChoice::Always,
            ColorWhen::Never => clap::ColorChoice::Never,
            ColorWhen::Auto if no_color_env() => clap::ColorChoice::Never,
            ColorWhen::Auto => clap::ColorChoice::Auto,
        }
    }
}

/// NO_COLOR set to anything non-empty (no-color.org).
fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// The clap command with its runtime parts: the version line names the
/// state schema this build writes, so a bug report says which state files it reads.
pub fn command() -> clap::Command {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let version = VERSION.get_or_init(|| {
        format!(
            "{} (state schema {})",
            env!("CARGO_PKG_VERSION"),
            crate::state::SCHEMA_VERSION
        )
    });
    Cli::command().version(version.as_str())
}

/// Parse the process arguments. `--color` is looked for before clap runs so
/// that clap's own help and errors follow it too.
pub fn parse() -> Cli {
    parse_from(std::env::args_os())
}

/// [`parse`] over given arguments (first one: the program name).
pub fn parse_from(args: impl IntoIterator<Item = OsString>) -> Cli {
    let args: Vec<OsString> = args.into_iter().collect();
    let color = color_flag(&args).unwrap_or(ColorWhen::Auto);
    let matches = command().color(color.clap()).get_matches_from(args);
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The last `--color WHEN` / `--color=WHEN` before a `--`.
fn color_flag(args: &[OsString]) -> Option<ColorWhen> {
    let mut found = None;
    let mut it = args.iter().skip(1).map(|a| a.to_str());
    while let Some(arg) = it.next() {
        let value = match arg {
            Some("--") => break,
            Some("--color") => it.next().flatten(),
            Some(a) => a.strip_prefix("--color="),
            None => None,
        };
        if let Some(v) = value.and_then(|v| ColorWhen::from_str(v, true).ok()) {
            found = Some(v);
        }
    }
    found
}

/// Run the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    init_logging(cli.verbose, cli.color);
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Run(args) => run::run(&args, cli.quiet),
        Command::Status(args) => status::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Ls(args) => ls::run(&args),
        Command::Merge(args) => merge::run(&args, cli.quiet),
        Command::Emulate(args) => emulate::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Cancel(args) => cancel::run(&args),
        Command::Completions(args) => completions::completions(&args),
        Command::Man(args) => completions::man(&args),
    }
}

/// `-v` logs to stderr; colours only where `--color` / NO_COLOR / a terminal allow
/// (a log file or CI capture gets no ANSI codes).
fn init_logging(verbose: u8, color: ColorWhen) {
    if verbose == 0 {
        return;
    }
    let level = if verbose == 1 {
        "vidbatch=debug"
    } else {
        "vidbatch=trace,reqwest=debug"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Its internal-error report uses eprintln!, which panics on a closed
        // stderr and takes the logging task (and so the run) down with it.
        .log_internal_errors(false)
        .with_ansi(color.enabled(std::io::stderr().is_terminal()))
        .try_init();
}

/// Map an error that reached the top to an exit code, in one place.
pub fn exit_code(err: &anyhow::Error) -> Exit {
    use crate::state::StateError;
    if err
        .downcast_ref::<crate::manifest::ManifestError>()
        .is_some()
        || err.downcast_ref::<crate::accounts::AccountsError>().is_some()
        || err
            .downcast_ref::<crate::settings::SettingsError>()
            .is_some()
        // Emulator options that contradict each other are bad input too.
        || err
            .downcast_ref::<crate::emulator::ConfigError>()
            .is_some()
        || err
            .downcast_ref::<crate::emulator::fal::FalConfigError>()
            .is_some()
        // A --webhook-listen address that cannot be bound.
        || err.downcast_ref::<crate::webhook::WebhookError>().is_some()
    {
        return Exit::BadInput;
    }
    match err.downcast_ref::<crate::storage::StorageError>() {
        Some(e) if e.is_bad_input() => return Exit::BadInput,
        Some(crate::storage::StorageError::State(e)) => return state_exit(e),
        Some(_) => return Exit::Aborted,
        None => {}
    }
    match err.downcast_ref::<crate::shard::ShardError>() {
        Some(crate::shard::ShardError::State(e)) => return state_exit(e),
        Some(_) => return Exit::BadInput,
        None => {}
    }
    match err.downcast_ref::<crate::report::merge::MergeError>() {
        Some(crate::report::merge::MergeError::State(e)) => return state_exit(e),
        Some(e) if e.is_bad_input() => return Exit::BadInput,
        Some(_) => return Exit::Aborted,
        None => {}
    }
    match err.downcast_ref::<crate::batch::BatchError>() {
        Some(
            crate::batch::BatchError::OtherBatch { .. }
            | crate::batch::BatchError::NewBatchHere { .. },
        ) => {
            return Exit::BadInput;
        }
        Some(
            crate::batch::BatchError::Unreadable { .. }
            | crate::batch::BatchError::KeepAside { .. },
        ) => return Exit::Aborted,
        Some(crate::batch::BatchError::State(e)) => return state_exit(e),
        Some(crate::batch::BatchError::Shard(crate::shard::ShardError::State(e))) => {
            return state_exit(e);
        }
        Some(crate::batch::BatchError::Shard(_) | crate::batch::BatchError::Manifest(_)) => {
            return Exit::BadInput;
        }
        None => {}
    }
    match err.downcast_ref::<StateError>() {
        Some(e) => state_exit(e),
        None => Exit::Aborted,
    }
}

fn state_exit(e: &crate::state::StateError) -> Exit {
    use crate::state::StateError;
    match e {
        StateError::Missing { .. } => Exit::BadInput,
        StateError::Locked { .. }
        | StateError::CreateDir { .. }
        | StateError::TooNew { .. }
        | StateError::Corrupt { .. }
        | StateError::Sql(_)
        | StateError::WriterGone
        | StateError::LockIo { .. }
        | StateError::DiskFull { .. }
        | StateError::Replaced { .. } => Exit::Aborted,
    }
}

/// Print an error that reached the top: its chain, and every manifest problem.
pub fn report_error(err: &anyhow::Error) {
    crate::errln!("error: {err}");
    if let Some(crate::manifest::ManifestError::Invalid { problems, .. }) =
        err.downcast_ref::<crate::manifest::ManifestError>()
    {
        for p in problems {
            crate::errln!("  {p}");
        }
        crate::errln!("nothing was submitted");
    }
    for cause in err.chain().skip(1) {
        crate::errln!("  caused by: {cause}");
    }
}
