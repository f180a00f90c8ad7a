//! `vidbatch ls DIR [--status S] [--since DUR] [--json]`: the items of a
//! batch, one per line, with their status and why (error code and message,
//! or the video files) — filtered by status and by how recently they
//! changed. Streams from the state file; works while a run is going.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::Exit;
use super::report::closed_pipe_is_fine;
use crate::manifest::validate::parse_setting_duration;
use crate::report::json::Row;
use crate::state::{self, ItemRecord, Status};

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Batch folder (holds state.db), e.g. output/example
    pub dir: PathBuf,
    /// Only items in these statuses (repeat or separate with commas): pending,
    /// submitting, submitted, processing, succeeded, downloaded, failed, timed_out, unknown
    #[arg(long, value_name = "STATUS", value_delimiter = ',', value_parser = parse_status)]
    pub status: Vec<Status>,
    /// Only items that changed within this long before now, e.g. 30m, 1h, 2days
    #[arg(long, value_name = "DUR", value_parser = parse_since)]
    pub since: Option<Duration>,
    /// One JSON object per line (the objects of `report --format jsonl`)
    #[arg(long)]
    pub json: bool,
}

fn parse_status(s: &str) -> Result<Status, String> {
    Status::parse(s.trim()).ok_or_else(|| {
        let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown status `{s}`; expected one of {}", names.join(", "))
    })
}

fn parse_since(s: &str) -> Result<Duration, String> {
    parse_setting_duration("--since", s.trim())
}

pub fn run(args: &LsArgs) -> anyhow::Result<Exit> {
    let conn = state::open_ro(&args.dir)?;
    let cutoff = args
        .since
        .map(|d| state::now_ms().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let listed = state::for_each_item(&conn, args.json, |r| {
        let r = crate::report::as_on_disk(r, &args.dir);
        if !args.status.is_empty() && !args.status.contains(&r.status()) {
            return Ok(());
        }
        if let Some(cutoff) = cutoff {
            let changed = r.updated_at.max(r.finished_at).unwrap_or(i64::MIN);
            if changed < cutoff {
                return Ok(());
            }
        }
        if args.json {
            serde_json::to_writer(&mut out, &Row::new(&r))?;
            out.write_all(b"\n")?;
        } else {
            writeln!(out, "{}\t{}\t{}", r.id, r.status(), reason(&r))?;
        }
        Ok::<(), anyhow::Error>(())
    });
    closed_pipe_is_fine(listed.and_then(|()| Ok(out.flush()?)))?;
    Ok(Exit::Success)
}

/// Why an item is where it is, on one line: `[code] message` for a problem,
/// the files of a downloaded item.
fn reason(r: &ItemRecord) -> String {
    let text = if r.status() == Status::Downloaded {
        r.videos
            .iter()
            .filter_map(|v| v.path.as_deref())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        let code = r.error_code.map(|c| format!("[{c}] ")).unwrap_or_default();
        format!("{code}{}", r.error_message.as_deref().unwrap_or(""))
    };
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}
