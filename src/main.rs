use std::process::ExitCode;

use clap::Parser;
use vidbatch::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let exit = match cli::run(cli) {
        Ok(exit) => exit,
        Err(err) => {
            cli::report_error(&err);
            cli::exit_code(&err)
        }
    };
    ExitCode::from(exit as u8)
}
