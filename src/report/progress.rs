//! Live progress, driven only by [`RunEvent`]s.
//!
//! On a terminal: an indicatif bar on stderr (items done of total, ETA,
//! counts per state, "waiting for a slot" when the account is full). Not a
//! terminal (CI logs, pipes): a plain line every few seconds and on notable
//! events. `--quiet`: nothing. No colours are used, so NO_COLOR holds.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{mpsc, oneshot};

use crate::events::RunEvent;
use crate::state::Status;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bar,
    Plain,
    Quiet,
}

impl Mode {
    /// Bar on a terminal, plain lines otherwise, nothing with `--quiet`.
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Plain
        }
    }
}

/// Counts kept from the event stream.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub total: u64,
    pub counts: BTreeMap<Status, u64>,
    pub waiting_for_slot: bool,
}

impl Tally {
    pub fn apply(&mut self, ev: &RunEvent) {
        match ev {
            RunEvent::Started { total, counts, .. } => {
                self.total = *total;
                self.counts = counts.iter().copied().collect();
            }
            RunEvent::Transition { from, to, .. } => {
                if let Some(n) = self.counts.get_mut(from) {
                    *n = n.saturating_sub(1);
                }
                *self.counts.entry(*to).or_insert(0) += 1;
            }
            RunEvent::WaitingForSlot { .. } => self.waiting_for_slot = true,
            RunEvent::SlotAvailable => self.waiting_for_slot = false,
            _ => {}
        }
    }

    pub fn get(&self, s: Status) -> u64 {
        self.counts.get(&s).copied().unwrap_or(0)
    }

    /// Items that reached an end for this run.
    pub fn done(&self) -> u64 {
        self.get(Status::Downloaded) + self.get(Status::Failed) + self.get(Status::TimedOut)
    }

    /// "submitted 3 · processing 5 · downloaded 10 · failed 1".
    pub fn line(&self) -> String {
        let mut parts: Vec<String> = Status::ALL
            .iter()
            .filter(|s| **s != Status::Pending || self.get(**s) > 0)
            .filter(|s| self.get(**s) > 0)
            .map(|s| format!("{} {}", s.as_str().replace('_', " "), self.get(*s)))
            .collect();
        if self.waiting_for_slot {
            parts.push("waiting for a slot (account concurrency full)".into());
        }
        parts.join(" · ")
    }
}

/// Consume events until the engine drops its sender or `done` fires (then
/// whatever is already queued is still shown).
pub async fn report(
    mode: Mode,
    mut rx: mpsc::UnboundedReceiver<RunEvent>,
    mut done: oneshot::Receiver<()>,
) -> Tally {
    let mut tally = Tally::default();
    let bar = (mode == Mode::Bar).then(|| {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(8));
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} ETA {eta} {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    });
    let mut last_line = Instant::now();
    let plain_every = Duration::from_secs(5);
    let mut finishing = false;
    loop {
        let ev = if finishing {
            match rx.try_recv() {
                Ok(ev) => ev,
                Err(_) => break,
            }
        } else {
            tokio::select! {
                ev = rx.recv() => match ev { Some(ev) => ev, None => break },
                _ = &mut done => { finishing = true; continue; }
            }
        };
        tally.apply(&ev);
        let notable = match &ev {
            RunEvent::Started {
                total,
                batch_dir,
                concurrency,
                ..
            } => {
                let msg = format!(
                    "batch {} — {total} items, up to {concurrency} in flight",
                    batch_dir.display()
                );
                emit(mode, bar.as_ref(), &msg);
                false
            }
            RunEvent::ItemFailed { id, code, message } => {
                let code = code.map(|c| format!(" [{c}]")).unwrap_or_default();
                emit(
                    mode,
                    bar.as_ref(),
                    &format!("failed: {id}{code}: {message}"),
                );
                false
            }
            RunEvent::ItemWarning { id, message } => {
                emit(mode, bar.as_ref(), &format!("warning: {id}: {message}"));
                false
            }
            RunEvent::WaitingForSlot { in_flight, limit } => {
                if mode == Mode::Plain {
                    eprintln!(
                        "waiting for a slot: account concurrency full ({in_flight} in flight, limit now {limit})"
                    );
                }
                true
            }
            RunEvent::Aborting { reason } => {
                emit(
                    mode,
                    bar.as_ref(),
                    &format!("stopping submissions: {reason}"),
                );
                true
            }
            RunEvent::Interrupted => {
                emit(
                    mode,
                    bar.as_ref(),
                    "interrupted: saving state (press Ctrl-C again to quit at once)",
                );
                true
            }
            RunEvent::Backoff { .. } | RunEvent::Transition { .. } | RunEvent::SlotAvailable => {
                false
            }
        };
        if let Some(bar) = &bar {
            bar.set_length(tally.total);
            bar.set_position(tally.done());
            bar.set_message(tally.line());
        } else if mode == Mode::Plain && (notable || last_line.elapsed() >= plain_every) {
            eprintln!("{}/{} done · {}", tally.done(), tally.total, tally.line());
            last_line = Instant::now();
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    tally
}

fn emit(mode: Mode, bar: Option<&ProgressBar>, msg: &str) {
    match (mode, bar) {
        (Mode::Quiet, _) => {}
        (_, Some(bar)) => bar.println(msg),
        (_, None) => eprintln!("{msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_follows_transitions() {
        let mut t = Tally::default();
        t.apply(&RunEvent::Started {
            total: 3,
            counts: vec![(Status::Pending, 2), (Status::Downloaded, 1)],
            batch_dir: "out".into(),
            concurrency: 2,
        });
        t.apply(&RunEvent::Transition {
            id: "a".into(),
            from: Status::Pending,
            to: Status::Submitting,
        });
        t.apply(&RunEvent::Transition {
            id: "a".into(),
            from: Status::Submitting,
            to: Status::Failed,
        });
        t.apply(&RunEvent::WaitingForSlot {
            in_flight: 1,
            limit: 1,
        });
        assert_eq!(t.done(), 2);
        assert_eq!(
            t.line(),
            "pending 1 · downloaded 1 · failed 1 · waiting for a slot (account concurrency full)"
        );
    }
}
