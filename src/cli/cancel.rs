//! `vidbatch cancel DIR`: ask the provider to cancel the batch's tasks that
//! have not started yet.
//!
//! It talks to the API and base URL the batch's runs used (recorded in the
//! state), with the credentials in the environment, and never writes the
//! state: a cancelled task ends at the provider as a failure, and the run
//! that is going (or the next one) records that like any other outcome. So
//! it works while a run holds the batch. Providers without a cancel (Kling)
//! say so and nothing is sent.

use std::path::PathBuf;

use anyhow::Context;

use super::Exit;
use crate::manifest::{Kind, Manifest, ProviderBlock};
use crate::provider::{CancelOutcome, Provider};
use crate::settings::{self, Overrides};
use crate::state::{self, Status};

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// Batch folder (holds state.db), e.g. output/example
    pub dir: PathBuf,
    /// The accounts file the batch ran with (each task is cancelled with the
    /// account that created it)
    #[arg(long, env = "VIDBATCH_ACCOUNTS", value_name = "FILE")]
    pub accounts: Option<PathBuf>,
}

pub fn run(args: &CancelArgs) -> anyhow::Result<Exit> {
    let conn = state::open_ro(&args.dir)?;
    let name = state::meta(&conn, "provider")?.unwrap_or_else(|| "kling".into());
    let manifest = Manifest {
        path: state::db_path(&args.dir),
        provider: ProviderBlock {
            style: Some(name.clone()),
            base_url: state::meta(&conn, "base_url")?,
        },
        ..Manifest::default()
    };
    let pool = super::pool::load(args.accounts.as_deref())?;
    let overrides = Overrides {
        pool: pool.is_some(),
        ..Overrides::default()
    };
    let env = |k: &str| std::env::var(k).ok();
    let settings = settings::resolve(&manifest, &overrides, &env, false)?;
    let mut tasks = Vec::new();
    let mut records = Vec::new();
    state::for_each_item(&conn, false, |r| {
        if matches!(r.status(), Status::Submitted | Status::Processing)
            && let (Some(task), Some(kind)) = (r.task_id.clone(), Kind::parse(&r.kind))
        {
            tasks.push((r.id.clone(), r.account.clone(), kind, task));
            records.push(crate::state::Progress::from(r));
        }
        Ok::<(), anyhow::Error>(())
    })?;
    drop(conn);
    // Each task with the account that created it.
    let accounts = super::pool::accounts(
        &settings,
        pool.as_deref(),
        &records,
        &Default::default(),
        &env,
    )?;
    drop(records);
    let provider_of = |account: &Option<String>| {
        accounts
            .iter()
            .find(|a| &a.name == account)
            .map(|a| a.provider.clone())
    };
    let provider = accounts[0].provider.clone();
    if !provider.capabilities().cancel {
        crate::outln!(
            "{name} has no cancel: the {} task(s) already created run to the end (and are charged); nothing was sent",
            tasks.len()
        );
        return Ok(Exit::Success);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (mut cancelled, mut started, mut errors) = (0u64, 0u64, 0u64);
    runtime.block_on(async {
        for (id, account, kind, task) in &tasks {
            let Some(provider) = provider_of(account) else {
                continue;
            };
            match provider.cancel(*kind, task).await {
                Ok(CancelOutcome::Cancelled) => {
                    cancelled += 1;
                    crate::outln!("  {id}: cancelled");
                }
                Ok(CancelOutcome::TooLate) => started += 1,
                Ok(CancelOutcome::Unsupported) => {}
                Err(e) => {
                    errors += 1;
                    crate::outln!("  {id}: cancel failed: {e}");
                }
            }
        }
    });
    crate::outln!(
        "cancelled {cancelled} of {} task(s) in flight; {started} had already started (they finish and are charged; a run downloads them){}",
        tasks.len(),
        if errors > 0 {
            format!("; {errors} cancel request(s) failed")
        } else {
            String::new()
        }
    );
    crate::outln!(
        "cancelled tasks end as failed at the provider; the running batch (or the next run) records them"
    );
    Ok(if errors > 0 {
        Exit::ItemsFailed
    } else {
        Exit::Success
    })
}
