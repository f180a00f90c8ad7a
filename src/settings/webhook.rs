//! `--webhook-url` / `--webhook-listen`: let the provider tell us when a
//! task changes instead of waiting for the next poll.
//!
//! The provider POSTs to the public address the user gives (their host, a
//! port forward, or a tunnel such as cloudflared or ngrok pointing at the
//! listen address). A random path segment, new each run, is appended, so
//! only the provider (which is told it in each create) can reach the
//! handler; even then a callback only makes the engine query the task now —
//! polling stays the source of truth and goes on as before, so an address
//! the provider cannot reach costs nothing but the flag.

use std::net::SocketAddr;

use super::{SettingsError, err};

/// Where vidbatch listens when `--webhook-listen` is not given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";

/// A run's callback address. `Debug` leaves the secret path segment out.
#[derive(Clone)]
pub struct Webhook {
    /// The public address as given, without a trailing slash.
    public_url: String,
    /// Where the listener binds.
    pub listen: SocketAddr,
    /// The path segment that makes a POST ours (random, this run only).
    token: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("public_url", &self.public_url)
            .field("listen", &self.listen)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Webhook {
    /// What each create carries: the public address and this run's token.
    pub fn callback_url(&self) -> String {
        format!("{}/{}", self.public_url, self.token)
    }

    /// The public address as given (safe to print).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The path segment a callback's path must end with.
    pub fn token(&self) -> &str {
        &self.token
    }
}

/// The webhook the flags ask for; `None` without `--webhook-url`.
pub fn resolve(url: Option<&str>, listen: Option<&str>) -> Result<Option<Webhook>, SettingsError> {
    let Some(url) = url.map(str::trim) else {
        return match listen {
            Some(_) => Err(err(
                "--webhook-listen",
                "only means something with --webhook-url (the address the provider calls)",
            )),
            None => Ok(None),
        };
    };
    let public_url = checked_url(url).map_err(|m| err("--webhook-url", m))?;
    let listen_src = listen.unwrap_or(DEFAULT_LISTEN).trim();
    let listen = listen_address(listen_src).ok_or_else(|| {
        err(
            "--webhook-listen",
            format!(
                "`{listen_src}` is not an address to listen on, e.g. 127.0.0.1:8787, localhost:8787 or 0.0.0.0:8787"
            ),
        )
    })?;
    Ok(Some(Webhook {
        public_url,
        listen,
        token: uuid::Uuid::new_v4().simple().to_string(),
    }))
}

/// `IP:PORT`, or `localhost:PORT` (resolved here, not by the network).
fn listen_address(s: &str) -> Option<SocketAddr> {
    if let Ok(addr) = s.parse() {
        return Some(addr);
    }
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if !host.eq_ignore_ascii_case("localhost") {
        return None;
    }
    Some(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// An absolute http(s) address with a host and nothing after its path: the
/// token is appended as one more path segment.
fn checked_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| match url.contains("://") {
            true => format!("`{url}` is not an address the provider can call: {e}"),
            false => format!(
                "`{url}` is not an address the provider can call: give it whole, e.g. https://hooks.example.com/vidbatch"
            ),
        })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "`{url}`: only http:// and https:// addresses can be called"
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{url}` has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("the address must not carry a user name or password".into());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "`{url}`: give the address without `?…` or `#…` (a path segment is added to it)"
        ));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(url: &str) -> Result<Option<Webhook>, SettingsError> {
        resolve(Some(url), None)
    }

    #[test]
    fn a_callback_address_is_the_public_one_plus_a_fresh_secret_segment() {
        let w = hook("https://hooks.example.com/vidbatch/")
            .unwrap()
            .unwrap();
        let url = w.callback_url();
        assert!(
            url.starts_with("https://hooks.example.com/vidbatch/"),
            "{url}"
        );
        assert_eq!(w.token().len(), 32);
        assert!(url.ends_with(w.token()));
        assert_eq!(w.listen, DEFAULT_LISTEN.parse().unwrap());
        let again = hook("https://hooks.example.com/vidbatch").unwrap().unwrap();
        assert_ne!(again.token(), w.token(), "a new token every run");
        assert!(
            !format!("{w:?}").contains(w.token()),
            "Debug hides the token"
        );
    }

    #[test]
    fn the_listen_address_can_be_chosen() {
        let w = resolve(Some("http://203.0.113.5:9000"), Some("0.0.0.0:9000"))
            .unwrap()
            .unwrap();
        assert_eq!(w.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(w.public_url(), "http://203.0.113.5:9000");
        let local = resolve(Some("http://h"), Some("localhost:8788"));
        assert_eq!(
            local.unwrap().unwrap().listen,
            "127.0.0.1:8788".parse().unwrap()
        );
        let v6 = resolve(Some("http://h"), Some("[::1]:8788"));
        assert_eq!(v6.unwrap().unwrap().listen, "[::1]:8788".parse().unwrap());
    }

    #[test]
    fn bad_addresses_say_which_flag_and_why() {
        for (url, says) in [
            ("hooks.example.com", "not an address"),
            ("ftp://example.com/x", "only http"),
            ("https://user:pw@example.com/x", "user name"),
            ("https://example.com/x?a=1", "without"),
        ] {
            let e = hook(url).unwrap_err();
            assert_eq!(e.source_name, "--webhook-url");
            assert!(e.message.contains(says), "{url}: {}", e.message);
        }
        let e = resolve(Some("https://example.com"), Some("8787")).unwrap_err();
        assert_eq!(e.source_name, "--webhook-listen");
        let e = resolve(None, Some("127.0.0.1:1")).unwrap_err();
        assert!(e.message.contains("--webhook-url"));
        assert_eq!(resolve(None, None).unwrap().map(|w| w.listen), None);
    }
}
