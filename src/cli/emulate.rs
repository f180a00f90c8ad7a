//! `vidbatch emulate`: serve the Kling API emulator until Ctrl-C. The first
//! stdout line is exactly the base URL (flushed), so scripts can read it;
//! everything else goes to stderr.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;

use super::Exit;
use crate::emulator::{self, EmulatorConfig, ProcessingAfter};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Prints the official-style base URL on its first stdout line; the gateway style is served under {base}/v1/ai/{endpoint}/kling/videos/... . Counters: GET {base}/__emulator/stats; request log: GET {base}/__emulator/requests."
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
    /// Video URLs expire this long after the query that returned them (403 after; query again for a fresh one).
    #[arg(long, value_parser = parse_duration)]
    pub url_ttl: Option<Duration>,
    /// After this many accepted creates, every create gets 429/1102 (resource pack depleted).
    #[arg(long)]
    pub balance_exhausted_after: Option<u64>,
    /// Pad each MP4 to this size (e.g. 5MB, 512KiB, 1000000); 0 = natural size (a few KB).
    #[arg(long, default_value = "0", value_parser = parse_size)]
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

/// Decimal (KB, MB, GB) and binary (KiB, MiB, GiB) units; bare numbers are bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("invalid size '{s}'"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => return Err(format!("unknown size unit '{other}' in '{s}'")),
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("size '{s}' out of range"));
    }
    Ok(bytes as u64)
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
            url_ttl: o.url_ttl,
            balance_exhausted_after_creates: o.balance_exhausted_after,
            video_pad_bytes: o.video_size,
            record_requests: !o.no_request_log,
        }
    }
}

pub fn run(args: &EmulateArgs) -> anyhow::Result<Exit> {
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
        eprintln!("Kling API emulator listening on {}", handle.base_url());
        eprintln!("  gateway root: {}", handle.gateway_base_url());
        for line in summary {
            eprintln!("  {line}");
        }
        eprintln!("  stats: {}/__emulator/stats", handle.base_url());
        eprintln!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")?;
        eprintln!("stopping");
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
    fn sizes() {
        assert_eq!(parse_size("5MB"), Ok(5_000_000));
        assert_eq!(parse_size("512KiB"), Ok(524_288));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("1.5 MB"), Ok(1_500_000));
        assert!(parse_size("5XB").is_err());
        assert!(parse_size("MB").is_err());
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
