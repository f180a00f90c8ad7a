//! Command-line interface: clap definitions (data only) and one file per
//! subcommand. This is the only layer that uses `anyhow`; [`exit_code`] is the
//! one place that maps an error to a process exit code, and [`report_error`]
//! the one place that prints it.

pub mod emulate;
pub mod ls;
pub mod plan;
pub mod report;
pub mod run;
pub mod status;
pub mod validate;

use clap::{Parser, Subcommand};

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
    /// Run a local emulator of the Kling API.
    Emulate(emulate::EmulateArgs),
}

/// Run the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    init_logging(cli.verbose);
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Run(args) => run::run(&args, cli.quiet),
        Command::Status(args) => status::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Ls(args) => ls::run(&args),
        Command::Emulate(args) => emulate::run(&args),
    }
}

fn init_logging(verbose: u8) {
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
        .with_ansi(std::env::var_os("NO_COLOR").is_none())
        .try_init();
}

/// Map an error that reached the top to an exit code, in one place.
pub fn exit_code(err: &anyhow::Error) -> Exit {
    use crate::state::StateError;
    if err
        .downcast_ref::<crate::manifest::ManifestError>()
        .is_some()
        || err
            .downcast_ref::<crate::settings::SettingsError>()
            .is_some()
    {
        return Exit::BadInput;
    }
    match err.downcast_ref::<StateError>() {
        Some(StateError::Missing { .. }) => Exit::BadInput,
        Some(
            StateError::Locked { .. }
            | StateError::CreateDir { .. }
            | StateError::TooNew { .. }
            | StateError::Corrupt { .. }
            | StateError::Sql(_)
            | StateError::WriterGone
            | StateError::LockIo { .. },
        )
        | None => Exit::Aborted,
    }
}

/// Print an error that reached the top: its chain, and every manifest problem.
pub fn report_error(err: &anyhow::Error) {
    eprintln!("error: {err}");
    if let Some(crate::manifest::ManifestError::Invalid { problems, .. }) =
        err.downcast_ref::<crate::manifest::ManifestError>()
    {
        for p in problems {
            eprintln!("  {p}");
        }
        eprintln!("nothing was submitted");
    }
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}
