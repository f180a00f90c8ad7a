//! `vidbatch completions SHELL` and `vidbatch man`: generated from the clap
//! definitions (`cli::command()`), so they never drift from the real flags.
//!
//! Output goes to a buffer first and then to stdout, so `| head` (a closed
//! pipe) ends the command quietly instead of a panic in the generator.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;

use super::Exit;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// Shell to generate completions for. Bash: `vidbatch completions bash >
    /// ~/.local/share/bash-completion/completions/vidbatch`; zsh: a file named `_vidbatch` in a
    /// directory of your `$fpath`; fish: `~/.config/fish/completions/vidbatch.fish`;
    /// PowerShell: `vidbatch completions powershell | Out-String | Invoke-Expression` in your profile
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn completions(args: &CompletionsArgs) -> anyhow::Result<Exit> {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut super::command(), "vidbatch", &mut buf);
    print_all(&buf)
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write vidbatch.1 and one page per subcommand (vidbatch-run.1, …) into DIR instead of
    /// printing the main page (e.g. `--out ~/.local/share/man/man1`)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn man(args: &ManArgs) -> anyhow::Result<Exit> {
    let cmd = super::command();
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        clap_mangen::generate_to(cmd, dir)
            .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
        crate::outln!("man pages written to {}", dir.display());
        return Ok(Exit::Success);
    }
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut buf)?;
    print_all(&buf)
}

/// Write to stdout; a reader that went away (`| head`) is not an error.
fn print_all(bytes: &[u8]) -> anyhow::Result<Exit> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(Exit::Success),
    }
}
