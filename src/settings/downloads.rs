//! What bounds downloads: the pool (`--download-concurrency N|auto`,
//! `limits.download_concurrency`) and each video's limits (`--max-video-size`,
//! `--download-timeout`, `--download-min-speed`).
//!
//! The pool is `auto` unless a number is given: a fast provider can finish
//! tasks far quicker than a fixed handful of downloads drains them (halfway
//! through a 100k-item run, tens of thousands of finished videos once waited
//! for a pool of 16), so the pool grows with the videos waiting, up to a
//! ceiling that keeps connections and write buffers bounded. A number is a
//! hard bound, never exceeded and never grown.

use super::{Overrides, SettingsError, err};
use crate::manifest::validate;

/// Downloads an `auto` pool runs when nothing waits.
pub const AUTO_DOWNLOADS_START: usize = 8;
/// Most downloads an `auto` pool runs at once.
pub const AUTO_DOWNLOADS_CEILING: usize = 64;
/// Largest explicit pool.
const MAX_DOWNLOADS: usize = 1000;

/// How many videos download at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadPool {
    /// Exactly this many at most (`--download-concurrency N`).
    Fixed(usize),
    /// `start`, plus one for every video waiting for a download, at most
    /// `ceiling`: the pool is larger only while a backlog stands.
    Auto { start: usize, ceiling: usize },
}

impl Default for DownloadPool {
    fn default() -> Self {
        DownloadPool::Auto {
            start: AUTO_DOWNLOADS_START,
            ceiling: AUTO_DOWNLOADS_CEILING,
        }
    }
}

impl DownloadPool {
    /// Downloads that may run while `waiting` videos wait for one.
    pub fn bound(&self, waiting: usize) -> usize {
        match *self {
            DownloadPool::Fixed(n) => n.max(1),
            DownloadPool::Auto { start, ceiling } => {
                start.saturating_add(waiting).min(ceiling).max(start.max(1))
            }
        }
    }

    /// The pool's size when nothing waits (what other per-video work, such
    /// as uploads, runs in parallel).
    pub fn base(&self) -> usize {
        match *self {
            DownloadPool::Fixed(n) => n.max(1),
            DownloadPool::Auto { start, .. } => start.max(1),
        }
    }
}

/// `--download-concurrency` (a number or `auto`) > `limits.download_concurrency`
/// (a number) > `auto`.
pub(super) fn pool(cli: &Overrides, manifest: Option<u32>) -> Result<DownloadPool, SettingsError> {
    let (source, written) = match (&cli.download_concurrency, manifest) {
        (Some(s), _) => ("--download-concurrency", s.trim().to_owned()),
        (None, Some(n)) => ("manifest limits.download_concurrency", n.to_string()),
        (None, None) => return Ok(DownloadPool::default()),
    };
    if written.eq_ignore_ascii_case("auto") {
        return Ok(DownloadPool::default());
    }
    match written.parse::<usize>() {
        Ok(n) if (1..=MAX_DOWNLOADS).contains(&n) => Ok(DownloadPool::Fixed(n)),
        Ok(n) => Err(err(
            source,
            format!("{n} is out of range 1..={MAX_DOWNLOADS}"),
        )),
        Err(_) => Err(err(
            source,
            format!("`{written}` is not a number of downloads (1..={MAX_DOWNLOADS}) or `auto`"),
        )),
    }
}

/// Each video's bounds: command line (and environment) > defaults.
pub(super) fn limits(cli: &Overrides) -> Result<crate::download::Limits, SettingsError> {
    use crate::download::{Limits, MinSpeed, parse_size};
    let mut limits = Limits::default();
    if let Some(s) = &cli.max_video_size {
        limits.max_video_bytes = match parse_size(s) {
            Ok(0) => return Err(err("--max-video-size", "must be larger than zero")),
            Ok(n) => n,
            Err(m) => return Err(err("--max-video-size", m)),
        };
    }
    if let Some(s) = &cli.download_timeout {
        limits.deadline = validate::parse_setting_duration("download-timeout", s.trim())
            .map_err(|m| err("--download-timeout", m))?;
    }
    if let Some(s) = &cli.download_min_speed {
        limits.min_speed = MinSpeed::parse(s).map_err(|m| err("--download-min-speed", m))?;
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(flag: Option<&str>, manifest: Option<u32>) -> Result<DownloadPool, SettingsError> {
        let cli = Overrides {
            download_concurrency: flag.map(str::to_owned),
            ..Overrides::default()
        };
        pool(&cli, manifest)
    }

    #[test]
    fn the_pool_is_auto_unless_a_number_is_given() {
        assert_eq!(given(None, None).ok(), Some(DownloadPool::default()));
        assert_eq!(
            given(Some("auto"), Some(4)).ok(),
            Some(DownloadPool::default())
        );
        assert_eq!(
            given(Some(" 12 "), Some(4)).ok(),
            Some(DownloadPool::Fixed(12))
        );
        assert_eq!(given(None, Some(4)).ok(), Some(DownloadPool::Fixed(4)));
    }

    #[test]
    fn a_bad_pool_names_where_it_was_written() {
        let e = given(Some("lots"), None).unwrap_err();
        assert_eq!(e.source_name, "--download-concurrency");
        assert!(
            e.message.contains("`lots` is not a number of downloads"),
            "{e}"
        );
        let e = given(Some("0"), None).unwrap_err();
        assert_eq!(e.message, "0 is out of range 1..=1000");
        let e = given(None, Some(5000)).unwrap_err();
        assert_eq!(e.source_name, "manifest limits.download_concurrency");
    }

    #[test]
    fn an_auto_pool_grows_with_the_videos_waiting_up_to_its_ceiling() {
        let auto = DownloadPool::default();
        assert_eq!(auto.bound(0), AUTO_DOWNLOADS_START);
        assert_eq!(auto.bound(10), AUTO_DOWNLOADS_START + 10);
        assert_eq!(auto.bound(100_000), AUTO_DOWNLOADS_CEILING);
        assert_eq!(
            DownloadPool::Fixed(3).bound(100_000),
            3,
            "a number is a hard bound"
        );
        assert_eq!(auto.base(), AUTO_DOWNLOADS_START);
    }
}
