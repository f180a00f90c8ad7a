//! Command-line interface: clap definitions (data only) and one file per
//! subcommand. This is the only layer that uses `anyhow`; [`exit_code`] is the
//! one place that maps an error to a process exit code.

pub mod emulate;
pub mod plan;
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
#[command(name = "vidbatch", version, about = "Batch runner for AI video generation APIs (Kling first)", long_about = None)]
pub struct Cli {
    /// Log each request and decision (-vv for more). Secrets are never logged.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print only errors and the final summary.
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
    /// Run a local emulator of the Kling API.
    Emulate(emulate::EmulateArgs),
}

/// Run the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Emulate(args) => emulate::run(&args),
    }
}

/// Map an error that reached the top to an exit code, in one exhaustive place.
pub fn exit_code(err: &anyhow::Error) -> Exit {
    if err.downcast_ref::<crate::manifest::ManifestError>().is_some() {
        return Exit::BadInput;
    }
    Exit::Aborted
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
    }
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}
