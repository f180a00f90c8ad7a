use std::process::ExitCode;

use vidbatch::cli;

fn main() -> ExitCode {
    vidbatch::malloc::set_up();
    let cli = cli::parse();
    let exit = match cli::run(cli) {
        Ok(exit) => exit,
        Err(err) => {
            cli::report_error(&err);
            cli::exit_code(&err)
        }
    };
    ExitCode::from(exit as u8)
}
