//! The TLS setup every HTTP client of the process shares.
//!
//! reqwest builds its rustls setup per client, and each build reads the
//! platform's certificate store — a few hundred files under
//! `/etc/ssl/certs`, ~5 ms — so a run with an API client per account and a
//! download client read it once per client before its first request. Here
//! it is read once a process and handed to every client: the same roots
//! (the bundled Mozilla roots and the platform's store, which honours
//! `SSL_CERT_FILE` / `SSL_CERT_DIR` for private CAs and corporate proxies),
//! the same provider (an installed default, else ring), every TLS version
//! and ALPN `h2`, `http/1.1` — what reqwest would have built.

use std::sync::{Arc, OnceLock};

use reqwest::ClientBuilder;

/// `builder` with the shared TLS setup (reqwest's own when that cannot be
/// built, which no input can cause).
pub fn shared(builder: ClientBuilder) -> ClientBuilder {
    match config() {
        Some(config) => builder.use_preconfigured_tls(config.clone()),
        None => builder,
    }
}

/// Read the certificate store now, on a thread of its own, so that the
/// first client does not wait for it (a run calls this before it prepares
/// its state, which keeps one core busy).
pub fn warm_up() {
    std::thread::spawn(|| {
        config();
    });
}

fn config() -> &'static Option<rustls::ClientConfig> {
    static CONFIG: OnceLock<Option<rustls::ClientConfig>> = OnceLock::new();
    CONFIG.get_or_init(build)
}

fn build() -> Option<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // Stores often hold ancient or malformed certificates: skip those, as
    // reqwest does.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Some(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_gets_the_roots_read_once() {
        let config = build().expect("a TLS setup");
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(shared(reqwest::Client::builder()).build().is_ok());
        assert!(shared(reqwest::Client::builder()).build().is_ok());
    }
}
