//! Run settings, resolved in one place: command line > environment >
//! manifest (`provider:` / `limits:` blocks) > built-in defaults.
//!
//! clap already folds the `VIDBATCH_*` environment variables into the flags
//! (so "CLI > environment" is clap's job); this module layers the manifest and
//! the defaults under them and parses every value, reporting bad ones as
//! [`SettingsError`] (exit 2, nothing sent). Credentials come only from the
//! environment and never appear in errors or `Debug` output.

mod downloads;
mod rate;
pub mod webhook;

pub use downloads::{AUTO_DOWNLOADS_CEILING, AUTO_DOWNLOADS_START, DownloadPool};
pub use rate::Rate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::manifest::{Manifest, validate};
use crate::provider::kling::{Credentials, Style};

/// The official global host (kling-api.md §1.1).
pub const DEFAULT_BASE_URL: &str = "https://api-singapore.klingai.com";

#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct SettingsError {
    /// Where the bad value came from: `--submit-rate`, `manifest limits.concurrency`, `environment`.
    pub source_name: String,
    pub message: String,
}

fn err(source_name: impl Into<String>, message: impl Into<String>) -> SettingsError {
    SettingsError {
        source_name: source_name.into(),
        message: message.into(),
    }
}

/// What the command line (and clap's environment fallback) said. `None`: not given.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub output: Option<PathBuf>,
    pub base_url: Option<String>,
    pub provider: Option<String>,
    /// A number, or `auto`.
    pub concurrency: Option<String>,
    /// A rate, or `auto`.
    pub submit_rate: Option<String>,
    pub poll_interval: Option<String>,
    pub task_timeout: Option<String>,
    /// A number, or `auto`.
    pub download_concurrency: Option<String>,
    pub retry_base: Option<String>,
    pub request_timeout: Option<String>,
    pub retry_failed: bool,
    /// `--resubmit-unknown`.
    pub resubmit_unknown: bool,
    /// `--batch NAME`: the batch's name (what its tasks' keys derive from).
    pub batch: Option<String>,
    /// `--new-batch`: generate (and pay for) every item again under a new name.
    pub new_batch: bool,
    /// `--max-units N`: the spend cap, in the provider's units.
    pub max_units: Option<f64>,
    pub max_video_size: Option<String>,
    pub download_timeout: Option<String>,
    pub download_min_speed: Option<String>,
    /// An accounts file was given: the usual credential variables are
    /// optional (they only finish tasks created with them earlier).
    pub pool: bool,
    /// `--webhook-url`: the public address the provider calls back.
    pub webhook_url: Option<String>,
    /// `--webhook-listen`: where vidbatch listens for those calls.
    pub webhook_listen: Option<String>,
}

/// Which API family the batch talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Kling's task API (official, or a gateway passing it through).
    Kling,
    /// fal's queue (`FAL_KEY`); many models, Kling's among them.
    Fal,
}

/// fal's public queue root.
pub const FAL_BASE_URL: &str = "https://queue.fal.run";

/// Everything `run` needs, parsed and checked.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub api: Api,
    pub batch_dir: PathBuf,
    /// The batch's name: by default the manifest's file stem, so the same
    /// manifest run from another folder, after a lost state or on another
    /// machine derives the same task keys and finds its tasks instead of
    /// paying again.
    pub batch_name: String,
    /// Given with `--batch` or made by `--new-batch` (checked against the state).
    pub batch_name_explicit: bool,
    pub new_batch: bool,
    /// Never submit an item whose estimate would take the batch's
    /// estimated-plus-charged units past this.
    pub max_units: Option<f64>,
    pub style: Style,
    pub base_url: String,
    /// The usual credential variables; `None` only with an accounts file
    /// (`Overrides::pool`) when they are not set.
    pub credentials: Option<Credentials>,
    pub engine: EngineSettings,
    pub request_timeout: Duration,
    /// Size cap, minimum throughput and deadline of each video download.
    pub download: crate::download::Limits,
    /// Where the provider calls back when a task changes; `None`: polled only.
    pub webhook: Option<webhook::Webhook>,
}

/// Highest in-flight bound `--concurrency auto` may reach.
pub const AUTO_CONCURRENCY_CEILING: usize = 500;
/// Creates per second `--submit-rate auto` starts at.
pub const AUTO_RATE_START: f64 = 20.0;
/// Creates per second `--submit-rate auto` may reach.
pub const AUTO_RATE_CEILING: f64 = 50.0;

/// The timings and bounds of the scheduler; tests shrink them through the
/// same flags a user has.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Most tasks created and not yet finished at once (the account's
    /// concurrency); with `concurrency_auto`, the ceiling of what is found.
    pub concurrency: usize,
    /// Find the account's concurrency: start low (or where an earlier run
    /// of the batch settled), grow while creates succeed, shrink on "full".
    pub concurrency_auto: bool,
    /// Creates per second; with `submit_rate_auto`, the starting rate.
    pub submit_rate: Rate,
    /// Speed up while creates succeed, halve on "too fast".
    pub submit_rate_auto: bool,
    /// First poll after this; later polls back off up to `max_poll_interval`.
    pub poll_interval: Duration,
    pub max_poll_interval: Duration,
    /// A task unfinished after this is `timed_out` (polled again next run).
    pub task_timeout: Duration,
    /// How many videos download at once (`auto`: grows with the backlog).
    pub download_pool: DownloadPool,
    /// Base of exponential backoff for transient errors (1303 waits at least 1 s
    /// unless this is set lower, which only tests do).
    pub retry_base: Duration,
    /// With this many due polls of one kind, one list sweep replaces single queries.
    pub list_threshold: usize,
    /// Start a new attempt for items that failed in an earlier run.
    pub retry_failed: bool,
    /// Send again items whose create outcome is unknown (a new paid task
    /// each, if the lost create did happen).
    pub resubmit_unknown: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            concurrency: AUTO_CONCURRENCY_CEILING,
            concurrency_auto: true,
            submit_rate: Rate {
                per_second: AUTO_RATE_START,
            },
            submit_rate_auto: true,
            poll_interval: Duration::from_secs(5),
            max_poll_interval: Duration::from_secs(30),
            task_timeout: Duration::from_secs(60 * 60),
            download_pool: DownloadPool::default(),
            retry_base: Duration::from_secs(1),
            list_threshold: 50,
            retry_failed: false,
            resubmit_unknown: false,
        }
    }
}

/// Resolve run settings. `env` reads an environment variable (injected for tests).
pub fn resolve(
    manifest: &Manifest,
    cli: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
    emulator: bool,
) -> Result<RunSettings, SettingsError> {
    let limits = &manifest.limits;
    let defaults = EngineSettings::default();

    let style_name = cli
        .provider
        .clone()
        .or_else(|| manifest.provider.style.clone());
    let (api, style) = match style_name.as_deref() {
        None | Some("kling") => (Api::Kling, Style::Official),
        Some("kling-gateway") => (Api::Kling, Style::Gateway),
        Some("fal") => (Api::Fal, Style::Official),
        Some(other) => {
            return Err(err(
                "--provider",
                format!("unknown provider `{other}`; expected kling, kling-gateway or fal"),
            ));
        }
    };

    let base_url = match cli
        .base_url
        .clone()
        .or_else(|| manifest.provider.base_url.clone())
    {
        Some(u) => u,
        None if emulator => String::new(), // filled in once the emulator listens
        None if api == Api::Fal => FAL_BASE_URL.to_string(),
        None if style == Style::Official => DEFAULT_BASE_URL.to_string(),
        None => {
            return Err(err(
                "--base-url",
                "the kling-gateway provider has no default URL; pass --base-url (e.g. https://host/v1/ai/ENDPOINT)",
            ));
        }
    };
    let base_url = base_url.trim_end_matches('/').to_string();
    if !(emulator || base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(err(
            "--base-url",
            format!("`{base_url}` is not an http(s) URL"),
        ));
    }

    let credentials = match (api, emulator) {
        // The in-process emulator is started with these very keys.
        (Api::Kling, true) => Ok(Credentials::Jwt {
            access_key: "emulator-ak".into(),
            secret_key: "emulator-sk".into(),
        }),
        (Api::Kling, false) => crate::provider::kling::credentials_from_env(style, env),
        (Api::Fal, true) => Ok(Credentials::ApiKey("emulator-fal-key".into())),
        (Api::Fal, false) => match env("FAL_KEY").filter(|k| !k.trim().is_empty()) {
            Some(key) => Ok(Credentials::ApiKey(key)),
            None => Err(
                "the fal provider needs FAL_KEY (sent as `Authorization: Key …`), or try offline with --emulator"
                    .to_string(),
            ),
        },
    };
    // With an accounts file the usual variables are optional.
    let credentials = match credentials {
        Ok(c) => Some(c),
        Err(_) if cli.pool => None,
        Err(m) => return Err(err("environment", m)),
    };

    let rate_src = |cli_val: &Option<String>, manifest_val: &Option<String>, name: &str| {
        if cli_val.is_some() {
            format!("--{name}")
        } else if manifest_val.is_some() {
            format!("manifest limits.{}", name.replace('-', "_"))
        } else {
            name.to_string()
        }
    };
    let (submit_rate, submit_rate_auto) =
        match cli.submit_rate.as_ref().or(limits.submit_rate.as_ref()) {
            Some(s) if s.trim().eq_ignore_ascii_case("auto") => (defaults.submit_rate, true),
            Some(s) => (
                Rate::parse(s).map_err(|m| {
                    err(
                        rate_src(&cli.submit_rate, &limits.submit_rate, "submit-rate"),
                        m,
                    )
                })?,
                false,
            ),
            None => (defaults.submit_rate, defaults.submit_rate_auto),
        };
    let dur =
        |cli_val: &Option<String>, manifest_val: &Option<String>, name: &str, default: Duration| {
            match cli_val.as_ref().or(manifest_val.as_ref()) {
                Some(s) => validate::parse_setting_duration(name, s.trim())
                    .map_err(|m| err(rate_src(cli_val, manifest_val, name), m)),
                None => Ok(default),
            }
        };
    // The emulator finishes tasks in seconds, not minutes: poll it sooner.
    let default_poll = if emulator {
        Duration::from_millis(500)
    } else {
        defaults.poll_interval
    };
    let poll_interval = dur(
        &cli.poll_interval,
        &limits.poll_interval,
        "poll-interval",
        default_poll,
    )?;
    let task_timeout = dur(
        &cli.task_timeout,
        &limits.task_timeout,
        "task-timeout",
        defaults.task_timeout,
    )?;
    let retry_base = dur(&cli.retry_base, &None, "retry-base", defaults.retry_base)?;
    let request_timeout = dur(
        &cli.request_timeout,
        &None,
        "request-timeout",
        Duration::from_secs(60),
    )?;
    let written = cli
        .concurrency
        .clone()
        .or(limits.concurrency.map(|c| c.to_string()));
    let (concurrency, concurrency_auto) = match written.as_deref().map(str::trim) {
        None => (defaults.concurrency, defaults.concurrency_auto),
        Some(s) if s.eq_ignore_ascii_case("auto") => (AUTO_CONCURRENCY_CEILING, true),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => (n, false),
            Ok(n) => {
                return Err(err(
                    "--concurrency",
                    format!("{n} is out of range 1..=10000"),
                ));
            }
            Err(_) => {
                return Err(err(
                    "--concurrency",
                    format!("`{s}` is not a number of tasks (1..=10000) or `auto`"),
                ));
            }
        },
    };
    let download_pool = downloads::pool(cli, limits.download_concurrency)?;

    let stem = manifest_stem(&manifest.path);
    let base_name = match &cli.batch {
        Some(name) => {
            crate::batch::check_name(name).map_err(|m| err("--batch", m))?;
            name.clone()
        }
        None => stem,
    };
    let batch_name = if cli.new_batch {
        crate::batch::new_name(&base_name)
    } else {
        base_name
    };
    let download = downloads::limits(cli)?;

    let batch_dir = match &cli.output {
        Some(dir) => dir.clone(),
        None if cli.new_batch => PathBuf::from("output").join(&batch_name),
        None => default_batch_dir(&manifest.path),
    };

    Ok(RunSettings {
        api,
        batch_dir,
        batch_name,
        batch_name_explicit: cli.batch.is_some() || cli.new_batch,
        new_batch: cli.new_batch,
        max_units: match cli.max_units {
            Some(n) if !(n.is_finite() && n >= 0.0) => {
                return Err(err(
                    "--max-units",
                    format!("{n} is not a number of units ≥ 0"),
                ));
            }
            Some(n) => Some(n),
            None => match &limits.max_units {
                Some(s) => Some(s.parse::<f64>().map_err(|_| {
                    err(
                        "manifest limits.max_units",
                        format!("`{s}` is not a number"),
                    )
                })?),
                None => None,
            },
        },
        style,
        base_url,
        credentials,
        request_timeout,
        download,
        webhook: webhook::resolve(cli.webhook_url.as_deref(), cli.webhook_listen.as_deref())?,
        engine: EngineSettings {
            concurrency,
            concurrency_auto,
            submit_rate,
            submit_rate_auto,
            poll_interval,
            max_poll_interval: defaults.max_poll_interval.max(poll_interval),
            task_timeout,
            download_pool,
            retry_base,
            list_threshold: defaults.list_threshold,
            retry_failed: cli.retry_failed,
            resubmit_unknown: cli.resubmit_unknown,
        },
    })
}

/// `output/<manifest stem>/`.
pub fn default_batch_dir(manifest: &Path) -> PathBuf {
    PathBuf::from("output").join(manifest_stem(manifest))
}

fn manifest_stem(manifest: &Path) -> String {
    manifest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "batch".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            path: PathBuf::from("manifests/example.yaml"),
            ..Manifest::default()
        }
    }

    fn env_with(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn cli_beats_manifest_beats_default() {
        let mut m = manifest();
        m.limits.concurrency = Some(7);
        m.limits.submit_rate = Some("2/s".into());
        let env = env_with(&[("KLING_ACCESS_KEY", "ak"), ("KLING_SECRET_KEY", "sk")]);
        let cli = Overrides {
            concurrency: Some("3".into()),
            ..Overrides::default()
        };
        let s = resolve(&m, &cli, &env, false).unwrap();
        assert_eq!(s.engine.concurrency, 3, "CLI wins");
        assert_eq!(
            s.engine.submit_rate.per_second, 2.0,
            "manifest beats default"
        );
        assert_eq!(s.engine.poll_interval, Duration::from_secs(5), "default");
        assert_eq!(s.base_url, DEFAULT_BASE_URL);
        assert_eq!(s.batch_dir, PathBuf::from("output/example"));
    }

    #[test]
    fn missing_credentials_say_what_to_set_without_echoing_values() {
        let e = resolve(&manifest(), &Overrides::default(), &env_with(&[]), false).unwrap_err();
        assert!(e.to_string().contains("KLING_ACCESS_KEY"), "{e}");
        let e = resolve(
            &manifest(),
            &Overrides::default(),
            &env_with(&[("KLING_ACCESS_KEY", "ak-SECRETVALUE")]),
            false,
        )
        .unwrap_err();
        assert!(!e.to_string().contains("SECRETVALUE"));
    }

    #[test]
    fn gateway_needs_a_base_url_and_an_api_key() {
        let cli = Overrides {
            provider: Some("kling-gateway".into()),
            ..Overrides::default()
        };
        let e = resolve(
            &manifest(),
            &cli,
            &env_with(&[("KLING_API_KEY", "k")]),
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("--base-url"));
        let cli = Overrides {
            base_url: Some("https://gw/v1/ai/x/".into()),
            ..cli
        };
        let s = resolve(
            &manifest(),
            &cli,
            &env_with(&[("KLING_API_KEY", "k")]),
            false,
        )
        .unwrap();
        assert_eq!(s.base_url, "https://gw/v1/ai/x", "trailing slash trimmed");
        assert!(matches!(s.credentials, Some(Credentials::ApiKey(_))));
    }

    #[test]
    fn download_limits_come_from_the_command_line() {
        let env = env_with(&[("KLING_API_KEY", "k")]);
        let s = resolve(&manifest(), &Overrides::default(), &env, false).unwrap();
        assert_eq!(s.download, crate::download::Limits::default());
        let cli = Overrides {
            max_video_size: Some("500MB".into()),
            download_timeout: Some("2m".into()),
            download_min_speed: Some("1KiB/2s".into()),
            ..Overrides::default()
        };
        let s = resolve(&manifest(), &cli, &env, false).unwrap();
        assert_eq!(s.download.max_video_bytes, 500_000_000);
        assert_eq!(s.download.deadline, Duration::from_secs(120));
        assert_eq!(s.download.min_speed.bytes, 1024);
        assert_eq!(s.download.min_speed.window, Duration::from_secs(2));
        for (cli, flag) in [
            (
                Overrides {
                    max_video_size: Some("0".into()),
                    ..Overrides::default()
                },
                "--max-video-size",
            ),
            (
                Overrides {
                    max_video_size: Some("huge".into()),
                    ..Overrides::default()
                },
                "--max-video-size",
            ),
            (
                Overrides {
                    download_timeout: Some("0s".into()),
                    ..Overrides::default()
                },
                "--download-timeout",
            ),
            (
                Overrides {
                    download_min_speed: Some("16KiB".into()),
                    ..Overrides::default()
                },
                "--download-min-speed",
            ),
        ] {
            let e = resolve(&manifest(), &cli, &env, false).unwrap_err();
            assert_eq!(e.source_name, flag, "{e}");
        }
    }

    #[test]
    fn bad_values_name_their_source() {
        let mut m = manifest();
        m.limits.poll_interval = Some("soon".into());
        let env = env_with(&[("KLING_API_KEY", "k")]);
        let e = resolve(&m, &Overrides::default(), &env, false).unwrap_err();
        assert_eq!(e.source_name, "manifest limits.poll_interval");
        let cli = Overrides {
            submit_rate: Some("fast".into()),
            ..Overrides::default()
        };
        let e = resolve(&manifest(), &cli, &env, false).unwrap_err();
        assert_eq!(e.source_name, "--submit-rate");
        let cli = Overrides {
            concurrency: Some("0".into()),
            ..Overrides::default()
        };
        assert!(resolve(&manifest(), &cli, &env, false).is_err());
    }
}
