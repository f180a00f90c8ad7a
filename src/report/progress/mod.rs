//! Live progress, driven only by [`RunEvent`]s.
//!
//! One pure renderer, [`render`]`(tally, width)`, makes the status line for
//! any width from 60 columns: detail is dropped as the line narrows (elapsed
//! time, the in-flight breakdown, the bar), never the counts that matter
//! (done, failed, in flight, waiting) nor the ETA while the counts fit. On a
//! terminal the line is redrawn in place on stderr (indicatif) at the
//! terminal's width; not a terminal (CI logs, pipes): the same line at width
//! 120, every few seconds and on notable events. `--quiet`: nothing. No
//! colours are used, so NO_COLOR holds. The ETA is [`eta::Eta`]'s.

pub mod eta;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{mpsc, oneshot};

use crate::events::RunEvent;
use crate::state::{Status, now_ms};

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

/// Width of the plain (non-terminal) lines.
pub const PLAIN_WIDTH: usize = 120;
/// Narrowest width the renderer plans for; below it the line is cut.
pub const MIN_WIDTH: usize = 60;

/// What the event stream has said so far, plus the derived ETA and elapsed time.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub total: u64,
    pub counts: BTreeMap<Status, u64>,
    /// The provider said the account is full (1303) and no slot came back yet.
    pub waiting_for_slot: bool,
    /// Current bound on tasks in flight (lowered when the account is full).
    pub limit: usize,
    /// Time left, once a task has finished (see [`eta::Eta`]).
    pub eta: Option<Duration>,
    pub elapsed: Duration,
    started_ms: Option<i64>,
    estimator: eta::Eta,
}

impl Tally {
    /// Counts only (no clock): what each event does to the tally.
    pub fn apply(&mut self, ev: &RunEvent) {
        match ev {
            RunEvent::Started {
                total,
                counts,
                concurrency,
                ..
            } => {
                self.total = *total;
                self.counts = counts.iter().copied().collect();
                self.limit = *concurrency;
            }
            RunEvent::Transition { from, to, .. } => {
                if let Some(n) = self.counts.get_mut(from) {
                    *n = n.saturating_sub(1);
                }
                *self.counts.entry(*to).or_insert(0) += 1;
            }
            RunEvent::WaitingForSlot { limit, .. } => {
                self.waiting_for_slot = true;
                self.limit = *limit;
            }
            RunEvent::SlotAvailable => self.waiting_for_slot = false,
            _ => {}
        }
    }

    /// [`Tally::apply`] plus the ETA's view of an event that arrived at `now_ms`.
    pub fn observe(&mut self, ev: &RunEvent, now_ms: i64) {
        self.record(ev, now_ms);
        self.refresh(now_ms);
    }

    /// [`Tally::observe`] without recomputing the ETA: the reporter takes
    /// thousands of events a second and draws a few times a second, and an
    /// estimate looks at every task in flight, so it is made when drawn.
    pub fn record(&mut self, ev: &RunEvent, now_ms: i64) {
        if matches!(ev, RunEvent::Started { .. }) {
            self.started_ms = Some(now_ms);
        }
        self.apply(ev);
        self.estimator.observe(ev, now_ms);
    }

    /// Recompute the ETA and elapsed time for `now_ms`.
    pub fn refresh(&mut self, now_ms: i64) {
        self.elapsed = self
            .started_ms
            .map(|t| Duration::from_millis((now_ms - t).max(0) as u64))
            .unwrap_or_default();
        self.eta = self.estimator.estimate(
            now_ms,
            self.waiting(),
            self.get(Status::Submitting),
            self.limit,
        );
    }

    pub fn get(&self, s: Status) -> u64 {
        self.counts.get(&s).copied().unwrap_or(0)
    }

    /// Videos on disk.
    pub fn done(&self) -> u64 {
        self.get(Status::Downloaded)
    }

    /// Ended without a video (a timed-out task is polled again by the next run).
    pub fn failed(&self) -> u64 {
        self.get(Status::Failed) + self.get(Status::TimedOut)
    }

    /// Submitted and not yet on disk: being created, rendering, downloading.
    pub fn in_flight(&self) -> u64 {
        [
            Status::Submitting,
            Status::Submitted,
            Status::Processing,
            Status::Succeeded,
        ]
        .iter()
        .map(|s| self.get(*s))
        .sum()
    }

    /// Not submitted yet: waiting for a slot.
    pub fn waiting(&self) -> u64 {
        self.get(Status::Pending)
    }
}

/// The status line for a terminal `width` columns wide (never longer).
///
/// Fullest first, each step dropping the least useful detail:
/// `[bar] counts · ETA · account full · breakdown · elapsed`, then without
/// elapsed, without the breakdown, without the bar, with short labels.
pub fn render(t: &Tally, width: usize) -> String {
    let sep = " · ";
    let counts = format!(
        "{}/{} done{sep}{} failed{sep}{} in flight{sep}{} waiting",
        t.done(),
        t.total,
        t.failed(),
        t.in_flight(),
        t.waiting()
    );
    let short = format!(
        "{}/{} done {} failed {} busy {} wait",
        t.done(),
        t.total,
        t.failed(),
        t.in_flight(),
        t.waiting()
    );
    let eta = t.eta.map(|d| format!("ETA {}", human(d)));
    let (slot_long, slot_short) = if t.waiting_for_slot {
        (
            Some("account full, waiting for a slot".to_string()),
            Some("acct full".to_string()),
        )
    } else {
        (None, None)
    };
    let breakdown: Vec<String> = [
        (Status::Submitting, "submitting"),
        (Status::Submitted, "queued"),
        (Status::Processing, "rendering"),
        (Status::Succeeded, "downloading"),
    ]
    .iter()
    .filter(|(s, _)| t.get(*s) > 0)
    .map(|(s, name)| format!("{name} {}", t.get(*s)))
    .collect();
    let breakdown = (!breakdown.is_empty()).then(|| breakdown.join(", "));
    let elapsed = Some(format!("elapsed {}", human(t.elapsed)));

    let join = |parts: &[&Option<String>], head: &str| {
        let mut s = head.to_string();
        for p in parts.iter().filter_map(|p| p.as_deref()) {
            s.push_str(sep);
            s.push_str(p);
        }
        s
    };
    let layouts = [
        join(&[&eta, &slot_long, &breakdown, &elapsed], &counts),
        join(&[&eta, &slot_long, &breakdown], &counts),
        join(&[&eta, &slot_long], &counts),
        join(&[&eta, &slot_short], &counts),
        join(&[&eta, &slot_short], &short),
        join(&[&slot_short], &short),
    ];
    let finished = (t.done() + t.failed()) as f64 / t.total.max(1) as f64;
    for (i, text) in layouts.iter().enumerate() {
        let len = text.chars().count();
        // The bar goes with the richer layouts, 10 to 30 columns wide.
        if i < 3 {
            let room = width.saturating_sub(len + 3).min(30);
            if room >= 10 {
                return format!("{} {text}", bar(finished, room - 2));
            }
        }
        if len <= width {
            return text.clone();
        }
    }
    layouts[layouts.len() - 1].chars().take(width).collect()
}

/// `[=====>    ]` with `inner` columns between the brackets.
fn bar(fraction: f64, inner: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * inner as f64).round() as usize).min(inner);
    let mut s = String::with_capacity(inner + 2);
    s.push('[');
    s.push_str(&"=".repeat(filled));
    if filled < inner {
        s.push('>');
        s.push_str(&" ".repeat(inner - filled - 1));
    }
    s.push(']');
    s
}

/// `45s`, `3m20s`, `1h05m`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
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
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(8));
        bar.set_style(
            ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let width = || {
        console::Term::stderr()
            .size_checked()
            // One column spare: a line exactly as wide as the terminal wraps on some.
            .map_or(80, |(_, cols)| usize::from(cols).saturating_sub(1))
    };
    let tick_every = if mode == Mode::Plain {
        Duration::from_secs(5)
    } else {
        Duration::from_millis(500)
    };
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut started = false;
    let mut finishing = false;
    // The bar is drawn at 8 Hz at most: an event redraws it only when the
    // last drawing is older than that (or the event is notable).
    let mut drawn_at = std::time::Instant::now();
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
                _ = tick.tick() => {
                    // Time passes without events: the ETA and elapsed time still move.
                    tally.refresh(now_ms());
                    match &bar {
                        Some(bar) => bar.set_message(render(&tally, width())),
                        None if mode == Mode::Plain && started => {
                            crate::errln!("{}", render(&tally, PLAIN_WIDTH));
                        }
                        None => {}
                    }
                    continue;
                }
            }
        };
        tally.record(&ev, now_ms());
        let notable = match &ev {
            RunEvent::Started {
                total,
                batch_dir,
                concurrency,
                concurrency_auto,
                ..
            } => {
                started = true;
                let bound = if *concurrency_auto {
                    format!(
                        "in flight: as many as the account takes (found as it goes, at most {concurrency})"
                    )
                } else {
                    format!("up to {concurrency} in flight")
                };
                let msg = format!("batch {} — {total} items, {bound}", batch_dir.display());
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
                    crate::errln!(
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
            RunEvent::AccountDrained { account, reason } => {
                emit(
                    mode,
                    bar.as_ref(),
                    &format!("account `{account}` gets nothing new, the others go on: {reason}"),
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
            if notable || drawn_at.elapsed() >= Duration::from_millis(125) {
                tally.refresh(now_ms());
                bar.set_message(render(&tally, width()));
                drawn_at = std::time::Instant::now();
            }
        } else if mode == Mode::Plain && notable {
            tally.refresh(now_ms());
            crate::errln!("{}", render(&tally, PLAIN_WIDTH));
            tick.reset();
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    tally.refresh(now_ms());
    tally
}

fn emit(mode: Mode, bar: Option<&ProgressBar>, msg: &str) {
    match (mode, bar) {
        (Mode::Quiet, _) => {}
        (_, Some(bar)) => bar.println(msg),
        (_, None) => crate::errln!("{msg}"),
    }
}

#[cfg(test)]
mod tests;
