//! `vidbatch report DIR [--format csv|json|jsonl]`: the report from the state
//! file, offline. `csv` (the default) rewrites `report.csv` and `index.html`
//! in the batch folder; `json` and `jsonl` print to stdout, streamed one item
//! at a time (redirect to keep a file).

use std::path::PathBuf;

use super::Exit;
use crate::report::json::{JsonStream, Layout};
use crate::{report, state};

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Batch folder (holds state.db), e.g. output/example
    pub dir: PathBuf,
    /// csv: rewrite report.csv and index.html in DIR; json: print one JSON
    /// array; jsonl: print one JSON object per line
    #[arg(long, value_name = "FORMAT", default_value = "csv", value_parser = ["csv", "json", "jsonl"])]
    pub format: String,
}

pub fn run(args: &ReportArgs) -> anyhow::Result<Exit> {
    // Opened first so a missing or unreadable state is reported as such (exit 2/3).
    let conn = state::open_ro(&args.dir)?;
    let layout = match args.format.as_str() {
        "json" => Layout::Array,
        "jsonl" => Layout::Lines,
        _ => {
            drop(conn);
            let written = report::write_outputs(&args.dir, false)?;
            crate::outln!("{}", written.report.display());
            crate::outln!("{}", written.gallery.display());
            return Ok(Exit::Success);
        }
    };
    let stdout = std::io::stdout().lock();
    let mut out = JsonStream::new(std::io::BufWriter::new(stdout), layout);
    let streamed = state::for_each_item(&conn, true, |r| {
        out.item(&report::as_on_disk(r, &args.dir))?;
        Ok::<(), anyhow::Error>(())
    });
    closed_pipe_is_fine(streamed.and_then(|()| Ok(out.finish().map(drop)?)))?;
    Ok(Exit::Success)
}

/// A reader that stopped early (`| head`) ends the output, not in an error.
pub(super) fn closed_pipe_is_fine(r: anyhow::Result<()>) -> anyhow::Result<()> {
    match r {
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(())
        }
        other => other,
    }
}
