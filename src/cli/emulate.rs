//! `vidbatch emulate`: serve the Kling API emulator (or, with `--api fal`,
//! the fal queue emulator) until Ctrl-C. The first stdout line is exactly the
//! base URL (flushed), so scripts can read it; everything else goes to stderr.
//!
//! The fal emulator reuses the Kling flags whose meaning carries over
//! (latency, jitter, seed, fail prompt, video size, request log, and the
//! create/query/download fault rates, mapped onto fal's submit/status/file
//! faults); flags that only make sense for Kling are refused with `--api fal`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;

use super::Exit;
use crate::emulator::fal::FalConfig;
use crate::emulator::{self, EmulatorConfig, ProcessingAfter};

/// Which API the emulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// Kling's task API (official and gateway styles).
    Kling,
    /// fal's queue API (queue.fal.run).
    Fal,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Prints the official-style base URL on its first stdout line; the gateway style is served under {base}/v1/ai/{endpoint}/kling/videos/... . Counters: GET {base}/__emulator/stats; request log: GET {base}/__emulator/requests. A create with callback_url gets the task object POSTed there when it turns processing and when it ends. With --api fal: submit at POST {base}/{model_id} (with ?fal_webhook=<url>, the result is POSTed there when the request ends), queue URLs under {base}/{owner}/{app}/requests/{id}; --create-1302-rate, --create-5000-rate, --ambiguous-create-rate, --query-5001-rate and --download-cut-rate become submit 429, submit 500, ambiguous submit, status 500 and cut file downloads."
)]
pub struct EmulateArgs {
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    #[command(flatten)]
    pub options: Box<EmulateOptions>,
}

/// Every other knob; boxed so `Command` stays small (clippy::large_enum_variant).
#[derive(Debug, clap::Args)]
pub struct EmulateOptions {
    /// Which API to emulate.
    #[arg(long, value_enum, default_value_t = Api::Kling)]
    pub api: Api,
    /// With --api fal: the key expected in `Authorization: Key <key>`; makes auth strict.
    #[arg(long, env = "VIDBATCH_EMULATE_FAL_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub fal_key: Option<Secret>,
    /// With --api fal: account concurrency; requests beyond it wait IN_QUEUE.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=emulator::fal::MAX_CONCURRENCY as i64))]
    pub fal_concurrency: u32,
    /// With --api fal: fraction of requests that end COMPLETED with a 422 result (charged).
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_rate)]
    pub fal_result_422_rate: f64,
    /// With --api fal: fraction of requests that end COMPLETED with a 500 runner-error result.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_rate)]
    pub fal_result_500_rate: f64,
    /// With --api fal: fraction of webhooks (to a submit's ?fal_webhook=) never sent.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_rate)]
    pub fal_webhook_drop_rate: f64,
    /// With --api fal: per-user API requests per second (fal: 10); beyond it 429. Off by default.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub fal_rate_limit: Option<u32>,
    /// Access key (JWT `iss`) for the official style; with --secret-key makes it strict.
    #[arg(long, env = "VIDBATCH_EMULATE_ACCESS_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub access_key: Option<Secret>,
    /// Secret key (JWT HS256) for the official style; with --access-key makes it strict.
    #[arg(long, env = "VIDBATCH_EMULATE_SECRET_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub secret_key: Option<Secret>,
    /// Static Bearer key for the gateway style; makes it strict.
    #[arg(long, env = "VIDBATCH_EMULATE_API_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub api_key: Option<Secret>,
    /// Time from create to the terminal status (e.g. 2s, 500ms).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub latency: Duration,
    /// Each task's latency varies uniformly by ± this much (seeded).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub jitter: Duration,
    /// When a task turns `processing`: a fraction of its latency (0.25) or a duration (300ms).
    #[arg(long, default_value = "0.25", value_parser = parse_processing_after)]
    pub processing_after: ProcessingAfter,
    /// Prompts containing this text end `failed` with a content-risk message ("" disables).
    #[arg(long, default_value = "FAIL_ME")]
    pub fail_prompt: String,
    /// Account concurrency: tasks not yet terminal allowed at once; beyond it creates get 429/1303.
    #[arg(long)]
    pub concurrency_limit: Option<usize>,
    /// Seed of every fault decision and of the jitter (same seed, same faults).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fraction of creates answered 500/5000 without creating the task.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub create_5000_rate: f64,
    /// Fraction of creates that create the task, then close the connection without answering.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub ambiguous_create_rate: f64,
    /// Fraction of creates answered 429/1302 (rate limit) without creating the task.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub create_1302_rate: f64,
    /// Fraction of single-task queries answered 503/5001.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub query_5001_rate: f64,
    /// Fraction of video downloads cut off after half the bytes (Content-Length stays full).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub download_cut_rate: f64,
    /// Fraction of video downloads answered 200 text/html with an "Access denied" page.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_rate)]
    pub fault_html_body: f64,
    /// Fraction of video downloads answered 200 application/json with an error body.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_rate)]
    pub fault_json_body: f64,
    /// Fraction of whole-file downloads that announce the full Content-Length, send half and close cleanly.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_rate)]
    pub fault_short_body: f64,
    /// Fraction of video downloads sent one byte per --trickle-interval.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_rate)]
    pub fault_trickle: f64,
    /// Pause between two bytes of a trickled download.
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_duration)]
    pub trickle_interval: Duration,
    /// Fraction of video downloads answered without Content-Length that never end (the video, then zeros).
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_rate)]
    pub fault_endless_body: f64,
    /// Fraction of creates whose task_id is 40 KiB long.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_rate)]
    pub fault_long_task_id: f64,
    /// Fraction of video downloads answered 302 to another path of this server that serves the video.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_rate)]
    pub fault_redirect_download: f64,
    /// Fraction of API calls answered 307/308 to another origin (http://127.0.0.2:PORT), not carried out.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_rate)]
    pub fault_redirect_api: f64,
    /// Fraction of task callbacks (to a create's callback_url) never sent.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_rate)]
    pub callback_drop_rate: f64,
    /// Videos in each succeeded task's result, each a distinct file and URL.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(emulator::MAX_VIDEOS_PER_TASK)))]
    pub videos_per_task: u32,
    /// Video URLs expire this long after the query that returned them (403 after; query again for a fresh one).
    #[arg(long, value_parser = parse_duration)]
    pub url_ttl: Option<Duration>,
    /// After this many accepted creates, every create gets 429/1102 (resource pack depleted).
    #[arg(long)]
    pub balance_exhausted_after: Option<u64>,
    /// Pad each MP4 to this size (e.g. 5MB, 512KiB, 1000000); 0 = natural size (a few KB).
    #[arg(long, default_value = "0", value_parser = crate::download::parse_size)]
    pub video_size: u64,
    /// Do not keep the request log (memory stays flat on long runs).
    #[arg(long)]
    pub no_request_log: bool,
}

/// A key given on the command line; `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn parse_secret(s: &str) -> Result<Secret, String> {
    if s.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(Secret(s.to_owned()))
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("invalid duration '{s}': {e}"))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("'{s}' is not a rate within [0, 1]")),
    }
}

fn parse_processing_after(s: &str) -> Result<ProcessingAfter, String> {
    if let Ok(f) = s.trim().parse::<f64>() {
        return if (0.0..=1.0).contains(&f) {
            Ok(ProcessingAfter::Fraction(f))
        } else {
            Err(format!("fraction '{s}' is not within [0, 1]"))
        };
    }
    parse_duration(s).map(ProcessingAfter::After)
}

impl EmulateArgs {
    fn config(&self) -> EmulatorConfig {
        let o = &self.options;
        EmulatorConfig {
            port: self.port,
            access_key: o.access_key.as_ref().map(|k| k.0.clone()),
            secret_key: o.secret_key.as_ref().map(|k| k.0.clone()),
            api_key: o.api_key.as_ref().map(|k| k.0.clone()),
            latency: o.latency,
            jitter: o.jitter,
            processing_after: o.processing_after,
            fail_prompt_substring: Some(o.fail_prompt.clone()).filter(|s| !s.is_empty()),
            concurrency_limit: o.concurrency_limit,
            seed: o.seed,
            create_5000_rate: o.create_5000_rate,
            create_ambiguous_rate: o.ambiguous_create_rate,
            create_1302_rate: o.create_1302_rate,
            query_5001_rate: o.query_5001_rate,
            download_cut_rate: o.download_cut_rate,
            download_html_rate: o.fault_html_body,
            download_json_rate: o.fault_json_body,
            download_short_rate: o.fault_short_body,
            download_trickle_rate: o.fault_trickle,
            trickle_interval: o.trickle_interval,
            download_endless_rate: o.fault_endless_body,
            long_task_id_rate: o.fault_long_task_id,
            redirect_download_rate: o.fault_redirect_download,
            redirect_api_rate: o.fault_redirect_api,
            callback_drop_rate: o.callback_drop_rate,
            videos_per_task: o.videos_per_task,
            url_ttl: o.url_ttl,
            balance_exhausted_after_creates: o.balance_exhausted_after,
            video_pad_bytes: o.video_size,
            record_requests: !o.no_request_log,
        }
    }
}

impl EmulateArgs {
    fn fal_config(&self) -> FalConfig {
        let o = &self.options;
        FalConfig {
            port: self.port,
            fal_key: o.fal_key.as_ref().map(|k| k.0.clone()),
            concurrency: o.fal_concurrency as usize,
            latency: o.latency,
            jitter: o.jitter,
            fail_prompt_substring: Some(o.fail_prompt.clone()).filter(|s| !s.is_empty()),
            seed: o.seed,
            submit_ambiguous_rate: o.ambiguous_create_rate,
            submit_429_rate: o.create_1302_rate,
            submit_5xx_rate: o.create_5000_rate,
            status_5xx_rate: o.query_5001_rate,
            result_422_rate: o.fal_result_422_rate,
            result_500_rate: o.fal_result_500_rate,
            download_cut_rate: o.download_cut_rate,
            webhook_drop_rate: o.fal_webhook_drop_rate,
            rate_limit_per_sec: o.fal_rate_limit,
            video_pad_bytes: o.video_size,
            record_requests: !o.no_request_log,
        }
    }

    /// Flags given for the other API than the one chosen.
    fn misplaced_flags(&self) -> Vec<&'static str> {
        let o = &self.options;
        let (kling_only, fal_only) = (
            [
                ("--access-key", o.access_key.is_some()),
                ("--secret-key", o.secret_key.is_some()),
                ("--api-key", o.api_key.is_some()),
                ("--concurrency-limit", o.concurrency_limit.is_some()),
                ("--fault-html-body", o.fault_html_body > 0.0),
                ("--fault-json-body", o.fault_json_body > 0.0),
                ("--fault-short-body", o.fault_short_body > 0.0),
                ("--fault-trickle", o.fault_trickle > 0.0),
                ("--fault-endless-body", o.fault_endless_body > 0.0),
                ("--fault-long-task-id", o.fault_long_task_id > 0.0),
                ("--fault-redirect-download", o.fault_redirect_download > 0.0),
                ("--fault-redirect-api", o.fault_redirect_api > 0.0),
                ("--callback-drop-rate", o.callback_drop_rate > 0.0),
                ("--videos-per-task", o.videos_per_task != 1),
                ("--url-ttl", o.url_ttl.is_some()),
                (
                    "--balance-exhausted-after",
                    o.balance_exhausted_after.is_some(),
                ),
            ],
            [
                ("--fal-key", o.fal_key.is_some()),
                ("--fal-concurrency", o.fal_concurrency != 2),
                ("--fal-result-422-rate", o.fal_result_422_rate > 0.0),
                ("--fal-result-500-rate", o.fal_result_500_rate > 0.0),
                ("--fal-rate-limit", o.fal_rate_limit.is_some()),
                ("--fal-webhook-drop-rate", o.fal_webhook_drop_rate > 0.0),
            ],
        );
        let other: &[(&'static str, bool)] = match o.api {
            Api::Kling => &fal_only,
            Api::Fal => &kling_only,
        };
        other
            .iter()
            .filter(|(_, set)| *set)
            .map(|(n, _)| *n)
            .collect()
    }
}

pub fn run(args: &EmulateArgs) -> anyhow::Result<Exit> {
    let misplaced = args.misplaced_flags();
    if !misplaced.is_empty() {
        let api = match args.options.api {
            Api::Kling => "kling",
            Api::Fal => "fal",
        };
        // A usage mistake, like any other bad flag: exit 2, nothing started.
        crate::errln!(
            "error: {} cannot be used with --api {api}",
            misplaced.join(", ")
        );
        return Ok(Exit::BadInput);
    }
    if args.options.api == Api::Fal {
        return run_fal(args.fal_config());
    }
    let config = args.config();
    config.validate().context("invalid emulator options")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let summary = config.auth_summary();
        let handle = emulator::start(config)
            .await
            .context("cannot start the emulator")?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", handle.base_url()).context("cannot write to stdout")?;
        out.flush().context("cannot write to stdout")?;
        drop(out);
        crate::errln!("Kling API emulator listening on {}", handle.base_url());
        crate::errln!("  gateway root: {}", handle.gateway_base_url());
        for line in summary {
            crate::errln!("  {line}");
        }
        crate::errln!("  stats: {}/__emulator/stats", handle.base_url());
        crate::errln!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")?;
        crate::errln!("stopping");
        handle.shutdown().await;
        Ok(Exit::Success)
    })
}

fn run_fal(config: FalConfig) -> anyhow::Result<Exit> {
    config.validate().context("invalid emulator options")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let summary = config.auth_summary();
        let concurrency = config.concurrency;
        let handle = emulator::fal::start(config)
            .await
            .context("cannot start the emulator")?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", handle.base_url()).context("cannot write to stdout")?;
        out.flush().context("cannot write to stdout")?;
        drop(out);
        crate::errln!("fal queue API emulator listening on {}", handle.base_url());
        crate::errln!("  submit: POST {}/{{model_id}}", handle.base_url());
        crate::errln!("  {summary}");
        crate::errln!("  concurrency: {concurrency} (requests beyond it queue)");
        crate::errln!("  webhooks: submit with ?fal_webhook=<url> to get the result POSTed there");
        crate::errln!("  stats: {}/__emulator/stats", handle.base_url());
        crate::errln!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")?;
        crate::errln!("stopping");
        handle.shutdown().await;
        Ok(Exit::Success)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_keys() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "vidbatch",
            "emulate",
            "--access-key",
            "AK-visible?",
            "--secret-key",
            "SK-visible?",
            "--api-key",
            "API-visible?",
        ]);
        let shown = format!("{cli:?}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains("visible?"), "{shown}");
    }

    #[test]
    fn documented_flag_set_maps_onto_the_config() {
        use clap::Parser;
        let line = "vidbatch emulate --latency 2s --jitter 500ms --concurrency-limit 20 --fail-prompt FAIL_ME --seed 1 --create-5000-rate 0.05 --ambiguous-create-rate 0.05 --create-1302-rate 0.0 --query-5001-rate 0.01 --download-cut-rate 0.02 --url-ttl 60s --balance-exhausted-after 100 --video-size 5MB --processing-after 300ms --no-request-log";
        let cli = crate::cli::Cli::try_parse_from(line.split(' '));
        let Ok(crate::cli::Cli {
            command: crate::cli::Command::Emulate(args),
            ..
        }) = cli
        else {
            panic!("did not parse: {cli:?}");
        };
        let c = args.config();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.latency, Duration::from_secs(2));
        assert_eq!(c.jitter, Duration::from_millis(500));
        assert_eq!(c.concurrency_limit, Some(20));
        assert_eq!(c.fail_prompt_substring.as_deref(), Some("FAIL_ME"));
        assert_eq!(c.seed, 1);
        assert_eq!((c.create_5000_rate, c.create_ambiguous_rate), (0.05, 0.05));
        assert_eq!((c.query_5001_rate, c.download_cut_rate), (0.01, 0.02));
        assert_eq!(c.url_ttl, Some(Duration::from_secs(60)));
        assert_eq!(c.balance_exhausted_after_creates, Some(100));
        assert_eq!(c.video_pad_bytes, 5_000_000);
        assert_eq!(
            c.processing_after,
            ProcessingAfter::After(Duration::from_millis(300))
        );
        assert!(!c.record_requests);
        assert!(c.access_key.is_none());
    }

    #[test]
    fn download_fault_flags_map_onto_the_config() {
        use clap::Parser;
        let line = "vidbatch emulate --fault-html-body 0.1 --fault-json-body 0.2 --fault-short-body 0.3 --fault-trickle 0.4 --trickle-interval 50ms --fault-endless-body 0.5 --fault-long-task-id 0.6 --fault-redirect-download 0.7 --fault-redirect-api 0.8 --callback-drop-rate 0.9 --videos-per-task 3";
        let cli = crate::cli::Cli::try_parse_from(line.split(' '));
        let Ok(crate::cli::Cli {
            command: crate::cli::Command::Emulate(args),
            ..
        }) = cli
        else {
            panic!("did not parse: {cli:?}");
        };
        let c = args.config();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!((c.download_html_rate, c.download_json_rate), (0.1, 0.2));
        assert_eq!((c.download_short_rate, c.download_trickle_rate), (0.3, 0.4));
        assert_eq!(c.trickle_interval, Duration::from_millis(50));
        assert_eq!((c.download_endless_rate, c.long_task_id_rate), (0.5, 0.6));
        assert_eq!((c.redirect_download_rate, c.redirect_api_rate), (0.7, 0.8));
        assert_eq!(c.callback_drop_rate, 0.9);
        assert_eq!(c.videos_per_task, 3);
        for bad in [
            "vidbatch emulate --videos-per-task 0",
            "vidbatch emulate --videos-per-task 101",
            "vidbatch emulate --fault-trickle 2",
            "vidbatch emulate --callback-drop-rate 1.5",
        ] {
            assert!(
                crate::cli::Cli::try_parse_from(bad.split(' ')).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn fal_flags_map_onto_the_fal_config() {
        use clap::Parser;
        let line = "vidbatch emulate --api fal --fal-key K --fal-concurrency 3 --latency 1s --seed 4 --ambiguous-create-rate 0.1 --create-1302-rate 0.2 --create-5000-rate 0.3 --query-5001-rate 0.4 --download-cut-rate 0.5 --fal-result-422-rate 0.6 --fal-result-500-rate 0.7 --fal-rate-limit 10 --fal-webhook-drop-rate 0.8";
        let cli = crate::cli::Cli::try_parse_from(line.split(' '));
        let Ok(crate::cli::Cli {
            command: crate::cli::Command::Emulate(args),
            ..
        }) = cli
        else {
            panic!("did not parse: {cli:?}");
        };
        assert!(args.misplaced_flags().is_empty());
        let c = args.fal_config();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.fal_key.as_deref(), Some("K"));
        assert_eq!((c.concurrency, c.seed), (3, 4));
        assert_eq!(c.latency, Duration::from_secs(1));
        assert_eq!((c.submit_ambiguous_rate, c.submit_429_rate), (0.1, 0.2));
        assert_eq!((c.submit_5xx_rate, c.status_5xx_rate), (0.3, 0.4));
        assert_eq!((c.download_cut_rate, c.result_422_rate), (0.5, 0.6));
        assert_eq!(c.result_500_rate, 0.7);
        assert_eq!(c.rate_limit_per_sec, Some(10));
        assert_eq!(c.webhook_drop_rate, 0.8);
        assert!(
            crate::cli::Cli::try_parse_from(
                "vidbatch emulate --api fal --fal-webhook-drop-rate 1.5".split(' ')
            )
            .is_err()
        );
    }

    #[test]
    fn flags_of_the_other_api_are_refused() {
        use clap::Parser;
        let parse = |line: &str| match crate::cli::Cli::try_parse_from(line.split(' ')) {
            Ok(crate::cli::Cli {
                command: crate::cli::Command::Emulate(args),
                ..
            }) => args.misplaced_flags(),
            other => panic!("did not parse: {other:?}"),
        };
        assert_eq!(
            parse("vidbatch emulate --api fal --url-ttl 1s"),
            vec!["--url-ttl"]
        );
        assert_eq!(
            parse("vidbatch emulate --fal-concurrency 4"),
            vec!["--fal-concurrency"]
        );
        assert_eq!(
            parse("vidbatch emulate --fal-webhook-drop-rate 0.5"),
            vec!["--fal-webhook-drop-rate"]
        );
        assert!(parse("vidbatch emulate --api fal --fal-webhook-drop-rate 1").is_empty());
        assert!(parse("vidbatch emulate --api kling --url-ttl 1s").is_empty());
    }

    #[test]
    fn rates_and_processing_after() {
        assert_eq!(parse_rate("0.05"), Ok(0.05));
        assert!(parse_rate("1.5").is_err());
        assert_eq!(
            parse_processing_after("0.5"),
            Ok(ProcessingAfter::Fraction(0.5))
        );
        assert_eq!(
            parse_processing_after("300ms"),
            Ok(ProcessingAfter::After(Duration::from_millis(300)))
        );
    }
}
