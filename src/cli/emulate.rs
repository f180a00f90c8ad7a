//! `vidbatch emulate`: serve the Kling API emulator until Ctrl-C.

use super::Exit;

#[derive(Debug, clap::Args)]
pub struct EmulateArgs {
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

pub fn run(args: &EmulateArgs) -> anyhow::Result<Exit> {
    let _ = args;
    todo!("emulate")
}
