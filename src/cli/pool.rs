//! The accounts a command talks to: the batch's one unnamed account (the
//! provider's usual credential variables), or the pool of an accounts file
//! (`--accounts`, see [`crate::accounts`]).
//!
//! Every task is stored with the account that created it, so a run must
//! have every account whose tasks are still open; one it lacks stops the
//! command before anything is sent (exit 2), never polls with another key.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use crate::accounts::{self, AccountSpec, AccountsError};
use crate::provider::CallbackUrl;
use crate::provider::fal::{FalConfig, FalProvider};
use crate::provider::kling::{Credentials, KlingConfig, KlingProvider};
use crate::provider::registry::AnyProvider;
use crate::scheduler::Account;
use crate::settings::{self, RunSettings};
use crate::state::{self, Progress, StateError, Update, WriterHandle};

/// The accounts file at `path`, when one is given.
pub(crate) fn load(path: Option<&Path>) -> Result<Option<Vec<AccountSpec>>, AccountsError> {
    path.map(accounts::load).transpose()
}

/// The run's accounts. Without a pool: the one unnamed account. With one:
/// every account of the file, plus the unnamed account when earlier runs
/// left it tasks to finish (it gets nothing new).
pub(crate) fn accounts(
    settings: &RunSettings,
    pool: Option<&[AccountSpec]>,
    records: &[Progress],
    learned: &HashMap<String, usize>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Account<AnyProvider>>, AccountsError> {
    let default = settings
        .credentials
        .as_ref()
        .map(|c| Arc::new(provider(settings, &settings.base_url, c.clone())));
    let Some(pool) = pool else {
        // Without a pool, settings insist on the usual credentials.
        let provider = default.ok_or(AccountsError::Missing {
            names: vec!["the default account".into()],
        })?;
        return Ok(vec![Account {
            learned: learned.get("").copied(),
            ..Account::only(provider, &settings.engine)
        }]);
    };
    let mut out = Vec::with_capacity(pool.len() + 1);
    for spec in pool {
        let credentials = spec.credentials(settings.api, env)?;
        let base_url = spec.base_url.as_deref().unwrap_or(&settings.base_url);
        out.push(Account {
            name: Some(spec.name.clone()),
            provider: Arc::new(provider(settings, base_url, credentials)),
            concurrency: spec.concurrency.unwrap_or(settings.engine.concurrency),
            concurrency_auto: spec.concurrency.is_none() && settings.engine.concurrency_auto,
            learned: learned.get(&spec.name).copied(),
            submit_rate: spec
                .submit_rate
                .unwrap_or(settings.engine.submit_rate)
                .per_second,
            submit_rate_auto: spec.submit_rate.is_none() && settings.engine.submit_rate_auto,
            takes_new: true,
        });
    }
    let mut missing = BTreeSet::new();
    let (mut default_wanted, mut default_needed) = (false, false);
    for r in records.iter().filter(|r| r.needs_its_account()) {
        match &r.account {
            Some(name) if !pool.iter().any(|s| *s.name == **name) => {
                missing.insert(format!("account `{name}`"));
            }
            Some(_) => {}
            // An unsettled create of no recorded account (a rebuilt state)
            // is looked up in every account, the default one too if set.
            None if r.task_id.is_none() => default_wanted = true,
            None => default_needed = true,
        }
    }
    if default_needed || default_wanted {
        match default {
            Some(provider) => out.push(Account {
                takes_new: false,
                learned: learned.get("").copied(),
                ..Account::only(provider, &settings.engine)
            }),
            None if !default_needed => {}
            None => {
                missing.insert(
                    "the default account (the provider's usual credential variables)".into(),
                );
            }
        }
    }
    if !missing.is_empty() {
        return Err(AccountsError::Missing {
            names: missing.into_iter().collect(),
        });
    }
    Ok(out)
}

/// The `meta` key of where each automatic in-flight bound settled.
const LEARNED_KEY: &str = "learned_concurrency";

/// Where earlier runs of the batch found each account's in-flight bound
/// settle (`--concurrency auto`), by account name (`""`: the unnamed one).
pub(crate) fn learned(conn: &rusqlite::Connection) -> Result<HashMap<String, usize>, StateError> {
    Ok(state::meta(conn, LEARNED_KEY)?
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default())
}

/// Store what this run learned, keeping what it did not touch.
pub(crate) fn remember(
    writer: &WriterHandle,
    mut known: HashMap<String, usize>,
    learned: &[(String, usize)],
) -> Result<(), StateError> {
    if learned.is_empty() {
        return Ok(());
    }
    known.extend(learned.iter().cloned());
    let value = serde_json::to_string(&known).unwrap_or_default();
    writer.send(Update::SetMeta {
        key: LEARNED_KEY.into(),
        value,
    })
}

/// The provider `settings` chose, at `base_url`, with `credentials`.
pub(crate) fn provider(
    settings: &RunSettings,
    base_url: &str,
    credentials: Credentials,
) -> AnyProvider {
    let callback_url = (settings.webhook.as_ref()).map(|w| CallbackUrl(w.callback_url()));
    match settings.api {
        settings::Api::Kling => AnyProvider::Kling(KlingProvider::new(KlingConfig {
            base_url: base_url.to_string(),
            style: settings.style,
            credentials,
            request_timeout: settings.request_timeout,
            callback_url: callback_url.clone(),
        })),
        settings::Api::Fal => AnyProvider::Fal(FalProvider::new(FalConfig {
            base_url: base_url.to_string(),
            key: match credentials {
                Credentials::ApiKey(k) => k,
                Credentials::Jwt { .. } => String::new(),
            },
            request_timeout: settings.request_timeout,
            default_model: None,
            callback_url,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use crate::settings::Overrides;
    use crate::state::Status;

    fn settings(env: &dyn Fn(&str) -> Option<String>) -> RunSettings {
        let cli = Overrides {
            pool: true,
            ..Overrides::default()
        };
        settings::resolve(&Manifest::default(), &cli, env, false).unwrap()
    }

    fn pool() -> Vec<AccountSpec> {
        accounts::parse(
            "accounts:\n  - name: a\n    api_key_env: KEY_A\n    concurrency: 2\n",
            "f",
        )
        .unwrap()
    }

    fn record(account: Option<&str>, status: Status, task: Option<&str>) -> Progress {
        Progress {
            status,
            account: account.map(Into::into),
            task_id: task.map(Into::into),
            ..Progress::new("x", crate::job::Kind::Text2Video)
        }
    }

    #[test]
    fn open_tasks_of_an_account_the_run_lacks_stop_it_before_anything_is_sent() {
        let env = |k: &str| (k == "KEY_A").then(|| "k".to_string());
        let s = settings(&env);
        let open = [record(Some("b"), Status::Submitted, Some("t1"))];
        let e = accounts(&s, Some(&pool()), &open, &HashMap::new(), &env)
            .err()
            .unwrap();
        assert!(e.to_string().contains("account `b`"), "{e}");
        // Done tasks need no account.
        let done = [record(Some("b"), Status::Downloaded, Some("t1"))];
        assert_eq!(
            accounts(&s, Some(&pool()), &done, &HashMap::new(), &env)
                .unwrap()
                .len(),
            1
        );
        // A task of the unnamed account needs the usual variables.
        let unnamed = [record(None, Status::Processing, Some("t2"))];
        let e = accounts(&s, Some(&pool()), &unnamed, &HashMap::new(), &env)
            .err()
            .unwrap();
        assert!(e.to_string().contains("default account"), "{e}");
    }

    #[test]
    fn the_usual_account_finishes_its_tasks_but_takes_nothing_new() {
        let env = |k: &str| {
            matches!(k, "KEY_A" | "KLING_ACCESS_KEY" | "KLING_SECRET_KEY").then(|| "k".to_string())
        };
        let s = settings(&env);
        let unnamed = [record(None, Status::Processing, Some("t2"))];
        let run = accounts(&s, Some(&pool()), &unnamed, &HashMap::new(), &env).unwrap();
        assert_eq!(run.len(), 2);
        assert_eq!((run[0].name.as_deref(), run[0].concurrency), (Some("a"), 2));
        assert!(run[0].takes_new && !run[1].takes_new && run[1].name.is_none());
    }
}
