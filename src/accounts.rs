//! Account pools: the accounts file (`--accounts FILE`).
//!
//! What caps a batch is the provider *account*: Kling allows a few tasks in
//! flight per account, fal 2–40 by credit. A team with several accounts
//! names them in a small YAML file, kept apart from the manifest so one
//! manifest can run with different accounts on different machines (a shard
//! per account, say) and so the manifest never sits next to credentials:
//!
//! ```yaml
//! accounts:
//!   - name: studio-a                 # stored with every task it creates
//!     access_key_env: KLING_AK_A     # the *names* of the variables,
//!     secret_key_env: KLING_SK_A     # never the secrets themselves
//!     concurrency: 5                 # its own in-flight bound
//!     submit_rate: 2/s               # and create rate
//!   - name: studio-b
//!     api_key_env: FAL_KEY_B         # fal, or a Kling gateway: one key
//!     base_url: https://eu.example   # its own API root, if different
//! ```
//!
//! A value that looks like a secret is refused without being echoed: errors
//! name the file, line, column and field, never what was written there.

use std::path::{Path, PathBuf};

use crate::manifest::suggest::unknown_name;
use crate::manifest::yaml_tree::{self, Node, Value, describe};
use crate::provider::kling::Credentials;
use crate::settings::{Api, Rate};

/// Largest accounts file read (it names a few accounts).
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Most accounts in one pool.
pub const MAX_ACCOUNTS: usize = 1_000;
/// Longest account name.
const MAX_NAME: usize = 64;

const FIELDS: &[&str] = &[
    "name",
    "access_key_env",
    "secret_key_env",
    "api_key_env",
    "base_url",
    "concurrency",
    "submit_rate",
];

/// Fields that would hold a secret itself, and the field meant instead.
const SECRET_FIELDS: &[(&str, &str)] = &[
    ("access_key", "access_key_env"),
    ("secret_key", "secret_key_env"),
    ("api_key", "api_key_env"),
    ("key", "api_key_env"),
    ("fal_key", "api_key_env"),
    ("token", "api_key_env"),
    ("password", "api_key_env"),
];

/// One account of the pool, as the file names it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountSpec {
    pub name: String,
    pub credentials: CredentialVars,
    pub base_url: Option<String>,
    pub concurrency: Option<usize>,
    pub submit_rate: Option<Rate>,
}

/// The names of the environment variables holding an account's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialVars {
    /// Kling's official API: an access key and a secret key (JWT).
    Pair {
        access_key: String,
        secret_key: String,
    },
    /// One key: fal's `FAL_KEY`, a gateway's bearer key.
    Key(String),
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("cannot read the accounts file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} problem(s) in the accounts file {}:\n  {}\nnothing was submitted", problems.len(), path.display(), problems.join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    /// A variable the file names is unset, or the account does not fit the provider.
    #[error("account `{account}`: {message}; nothing was submitted")]
    Credentials { account: String, message: String },
    /// The batch has tasks created with accounts this run was not given.
    #[error("tasks of this batch were created with {}, which this run does not have: add {} back so they are polled with the credentials that created them; nothing was submitted", names.join(", "), if names.len() == 1 { "it" } else { "them" })]
    Missing { names: Vec<String> },
}

/// Read and check the accounts file at `path`.
pub fn load(path: &Path) -> Result<Vec<AccountSpec>, AccountsError> {
    let read_err = |source| AccountsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(AccountsError::Invalid {
            path: path.to_path_buf(),
            problems: vec![format!(
                "{}: {} bytes; an accounts file is at most {MAX_FILE_BYTES} bytes",
                path.display(),
                meta.len()
            )],
        });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    let file = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|_| AccountsError::Invalid {
        path: path.to_path_buf(),
        problems: vec![format!("{file}: not valid UTF-8 text")],
    })?;
    parse(&text, &file).map_err(|problems| AccountsError::Invalid {
        path: path.to_path_buf(),
        problems,
    })
}

/// Parse an accounts file's text; `file` prefixes every problem's location.
pub fn parse(text: &str, file: &str) -> Result<Vec<AccountSpec>, Vec<String>> {
    let at = |node: &Node, field: &str| format!("{file}:{}: {field}", node.pos);
    let doc = match yaml_tree::parse(text.strip_prefix('\u{feff}').unwrap_or(text)) {
        Ok(Some(doc)) => doc,
        Ok(None) => {
            return Err(vec![format!(
                "{file}: empty; expected `accounts:` with a list"
            )]);
        }
        Err(e) => {
            return Err(vec![format!(
                "{file}:{}: invalid YAML: {}",
                e.pos, e.message
            )]);
        }
    };
    let Value::Map(top) = &doc.value else {
        return Err(vec![format!(
            "{}: expected a mapping with `accounts:`, found {}",
            at(&doc, "").trim_end_matches(": "),
            describe(&doc)
        )]);
    };
    let mut problems = Vec::new();
    let mut list = None;
    for (k, v) in top.iter() {
        match k.as_str() {
            Some("accounts") => list = Some(v),
            Some(other) => problems.push(format!(
                "{}: {}",
                at(k, other),
                unknown_name("top-level key", other, &["accounts"])
            )),
            None => problems.push(format!("{}: keys must be strings", at(k, ""))),
        }
    }
    let Some(list) = list else {
        problems.push(format!("{file}: no `accounts:` list"));
        return Err(problems);
    };
    let Value::Seq(entries) = &list.value else {
        problems.push(format!(
            "{}: expected a list of accounts, found {}",
            at(list, "accounts"),
            describe(list)
        ));
        return Err(problems);
    };
    if entries.is_empty() {
        problems.push(format!("{}: the list is empty", at(list, "accounts")));
    }
    if entries.len() > MAX_ACCOUNTS {
        problems.push(format!(
            "{}: {} accounts; a pool has at most {MAX_ACCOUNTS}",
            at(list, "accounts"),
            entries.len()
        ));
        return Err(problems);
    }
    let mut accounts: Vec<AccountSpec> = Vec::new();
    for (i, node) in entries.iter().enumerate() {
        let label = format!("accounts[{i}]");
        if let Some(spec) = account(node, &label, file, &mut problems) {
            if let Some(twin) = accounts.iter().find(|a| a.name == spec.name) {
                problems.push(format!(
                    "{}: the name `{}` is used twice (each account needs its own: it is stored with every task it creates)",
                    at(node, &label),
                    twin.name
                ));
            }
            accounts.push(spec);
        }
    }
    if problems.is_empty() {
        Ok(accounts)
    } else {
        Err(problems)
    }
}

/// One account entry; `None` when it has problems (recorded).
fn account(
    node: &Node,
    label: &str,
    file: &str,
    problems: &mut Vec<String>,
) -> Option<AccountSpec> {
    let at = |n: &Node, field: &str| format!("{file}:{}: {label}.{field}", n.pos);
    let Value::Map(fields) = &node.value else {
        problems.push(format!(
            "{file}:{}: {label}: expected a mapping (name, credential variables, …), found {}",
            node.pos,
            describe(node)
        ));
        return None;
    };
    let before = problems.len();
    let (mut name, mut base_url, mut concurrency, mut submit_rate) = (None, None, None, None);
    let (mut access, mut secret, mut key) = (None, None, None);
    // A secret written in the file is the one problem to report about its
    // credentials ("no credentials" would only repeat it).
    let mut secret_written = false;
    for (k, v) in fields.iter() {
        let Some(field) = k.as_str() else {
            problems.push(format!("{file}:{}: {label}: keys must be strings", k.pos));
            continue;
        };
        let text = || v.as_str().map(str::trim).filter(|s| !s.is_empty());
        match field {
            "name" => match text() {
                Some(n) if valid_name(n) => name = Some(n.to_string()),
                _ => problems.push(format!(
                    "{}: an account name is 1 to {MAX_NAME} letters, digits, `.`, `_` or `-`",
                    at(v, field)
                )),
            },
            "access_key_env" | "secret_key_env" | "api_key_env" => match text() {
                Some(var) if valid_var(var) => {
                    let slot = match field {
                        "access_key_env" => &mut access,
                        "secret_key_env" => &mut secret,
                        _ => &mut key,
                    };
                    *slot = Some(var.to_string());
                }
                // Not echoed: a secret pasted here must not reach a log.
                _ => problems.push(format!(
                    "{}: expected the NAME of an environment variable (letters, digits and `_`, not starting with a digit), not its value",
                    at(v, field)
                )),
            },
            "base_url" => match text() {
                Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                    base_url = Some(u.trim_end_matches('/').to_string())
                }
                _ => problems.push(format!("{}: expected an http(s) URL", at(v, field))),
            },
            "concurrency" => match &v.value {
                Value::Number(n) if n.as_u64().is_some_and(|n| (1..=100_000).contains(&n)) => {
                    concurrency = n.as_u64().map(|n| n as usize)
                }
                _ => problems.push(format!(
                    "{}: expected a whole number of tasks from 1 to 100000, found {}",
                    at(v, field),
                    describe(v)
                )),
            },
            "submit_rate" => {
                let written = match &v.value {
                    Value::Number(n) => Some(n.to_string()),
                    Value::Str(s) => Some(s.to_string()),
                    _ => None,
                };
                match written.as_deref().map(Rate::parse) {
                    Some(Ok(rate)) => submit_rate = Some(rate),
                    Some(Err(m)) => problems.push(format!("{}: {m}", at(v, field))),
                    None => problems.push(format!(
                        "{}: expected a rate such as 2/s or 120/min, found {}",
                        at(v, field),
                        describe(v)
                    )),
                }
            }
            other => match SECRET_FIELDS.iter().find(|(s, _)| *s == other) {
                Some((_, meant)) => problems.push({
                    secret_written = true;
                    format!(
                        "{}: this would hold the secret itself; write the name of the environment variable that holds it as `{meant}` (the file then holds no secret)",
                        at(k, other)
                    )
                }),
                None => problems.push(format!(
                    "{}: {}",
                    at(k, other),
                    unknown_name("field", other, FIELDS)
                )),
            },
        }
    }
    let credentials = match (access, secret, key) {
        (Some(access_key), Some(secret_key), None) => Some(CredentialVars::Pair {
            access_key,
            secret_key,
        }),
        (None, None, Some(k)) => Some(CredentialVars::Key(k)),
        (Some(_), Some(_), Some(_)) => {
            problems.push(format!(
                "{file}:{}: {label}: give either access_key_env + secret_key_env or api_key_env, not both",
                node.pos
            ));
            None
        }
        (None, None, None) if secret_written => None,
        (None, None, None) => {
            problems.push(format!(
                "{file}:{}: {label}: no credentials: name the variables with access_key_env + secret_key_env (Kling) or api_key_env (fal, gateways)",
                node.pos
            ));
            None
        }
        _ => {
            problems.push(format!(
                "{file}:{}: {label}: access_key_env and secret_key_env go together",
                node.pos
            ));
            None
        }
    };
    if name.is_none() && problems.len() == before {
        problems.push(format!("{file}:{}: {label}: no `name`", node.pos));
    }
    if problems.len() > before {
        return None;
    }
    Some(AccountSpec {
        name: name?,
        credentials: credentials?,
        base_url,
        concurrency,
        submit_rate,
    })
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_NAME
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn valid_var(v: &str) -> bool {
    v.len() <= 256
        && v.bytes().next().is_some_and(|b| !b.is_ascii_digit())
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl AccountSpec {
    /// The account's credentials from the environment, for `api`. Errors
    /// name the variable, never a value.
    pub fn credentials(
        &self,
        api: Api,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Credentials, AccountsError> {
        let fail = |message: String| AccountsError::Credentials {
            account: self.name.clone(),
            message,
        };
        let get = |var: &str| {
            env(var)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| fail(format!("the environment variable {var} is not set")))
        };
        match (&self.credentials, api) {
            (CredentialVars::Pair { .. }, Api::Fal) => Err(fail(
                "fal takes one key: name its variable with api_key_env".into(),
            )),
            (
                CredentialVars::Pair {
                    access_key,
                    secret_key,
                },
                Api::Kling,
            ) => Ok(Credentials::Jwt {
                access_key: get(access_key)?,
                secret_key: get(secret_key)?,
            }),
            (CredentialVars::Key(var), _) => Ok(Credentials::ApiKey(get(var)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> String {
        parse(text, "acc.yaml").unwrap_err().join("\n")
    }

    #[test]
    fn a_pool_names_variables_and_limits() {
        let a = parse(
            "accounts:\n  - name: a\n    access_key_env: AK_A\n    secret_key_env: SK_A\n    concurrency: 5\n    submit_rate: 2/s\n  - name: b\n    api_key_env: KEY_B\n    base_url: https://x.example/\n",
            "acc.yaml",
        )
        .unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].concurrency, Some(5));
        assert_eq!(a[0].submit_rate.map(|r| r.per_second), Some(2.0));
        assert_eq!(a[1].credentials, CredentialVars::Key("KEY_B".into()));
        assert_eq!(a[1].base_url.as_deref(), Some("https://x.example"));
    }

    #[test]
    fn a_secret_written_in_the_file_is_refused_and_never_echoed() {
        let p = problems(
            "accounts:\n  - name: a\n    api_key: sk-live-SECRET123\n  - name: b\n    api_key_env: sk-live SECRET456\n",
        );
        assert!(p.contains("acc.yaml:3:5: accounts[0].api_key"), "{p}");
        assert!(p.contains("api_key_env"), "{p}");
        assert!(p.contains("acc.yaml:5:18: accounts[1].api_key_env"), "{p}");
        assert!(!p.contains("SECRET"), "{p}");
    }

    #[test]
    fn names_are_unique_and_typos_get_a_suggestion() {
        let p = problems(
            "accounts:\n  - name: a\n    api_key_env: K\n  - name: a\n    api_key_env: K2\n",
        );
        assert!(
            p.contains("acc.yaml:4:5: accounts[1]") && p.contains("used twice"),
            "{p}"
        );
        let p = problems("accounts:\n  - name: a\n    api_key_env: K\n    concurency: 3\n");
        assert!(p.contains("did you mean `concurrency`"), "{p}");
    }

    #[test]
    fn half_a_key_pair_or_no_credentials_is_an_error() {
        assert!(
            problems("accounts:\n  - name: a\n    access_key_env: AK\n").contains("go together")
        );
        assert!(problems("accounts:\n  - name: a\n").contains("no credentials"));
        assert!(problems("accounts: []\n").contains("empty"));
        assert!(problems("- name: a\n").contains("expected a mapping"));
    }

    #[test]
    fn credentials_come_from_the_named_variables_and_errors_name_only_the_variable() {
        let a = &parse(
            "accounts:\n  - name: a\n    access_key_env: AK_A\n    secret_key_env: SK_A\n",
            "f",
        )
        .unwrap()[0];
        let env = |k: &str| (k == "AK_A").then(|| "ak-value".to_string());
        let e = a.credentials(Api::Kling, &env).unwrap_err().to_string();
        assert!(
            e.contains("SK_A is not set") && !e.contains("ak-value"),
            "{e}"
        );
        let both = |k: &str| Some(format!("{k}-value"));
        assert!(matches!(
            a.credentials(Api::Kling, &both).unwrap(),
            Credentials::Jwt { .. }
        ));
        assert!(a.credentials(Api::Fal, &both).is_err());
    }
}
