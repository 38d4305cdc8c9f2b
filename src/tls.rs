//! TLS for the Web API and Socket Mode: one rustls configuration, built once
//! and only when an `https://` or `wss://` URL needs it, shared by the HTTP
//! client and every WebSocket connection.
//!
//! Reading the CA store is the slowest part of a start (rustls-native-certs
//! opens every file in /etc/ssl/certs); where Debian's single bundle exists,
//! that one file is read instead, unless `$SSL_CERT_FILE`/`$SSL_CERT_DIR` say
//! otherwise.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Debian's (and Ubuntu's) bundle of every trusted CA.
const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn config(roots: RootCertStore) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // No ALPN here: the HTTP client sets its own (h2, http/1.1) on its copy,
    // and a WebSocket handshake must stay on HTTP/1.1.
    let c = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(c)
}

fn load_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let overridden =
        std::env::var_os("SSL_CERT_FILE").is_some() || std::env::var_os("SSL_CERT_DIR").is_some();
    let certs: Vec<CertificateDer<'static>> = if !overridden && Path::new(BUNDLE).exists() {
        match CertificateDer::pem_file_iter(BUNDLE) {
            Ok(iter) => iter.filter_map(Result::ok).collect(),
            Err(e) => {
                tracing::warn!("cannot read {BUNDLE}: {e}");
                Vec::new()
            }
        }
    } else {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!("while loading CA certificates: {e}");
        }
        found.certs
    };
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        tracing::warn!(
            "no CA certificates found: https will fail; install the ca-certificates package"
        );
    }
    roots
}

/// The verifying configuration, loaded on first use.
pub(crate) fn verified() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG.get_or_init(|| config(load_roots())).clone()
}

/// A configuration for clients that will only ever speak plain http (a local
/// fake): no CA is trusted, so it can never complete a TLS handshake.
pub(crate) fn plain_only() -> Arc<ClientConfig> {
    config(RootCertStore::empty())
}

/// The configuration for a base URL.
pub(crate) fn for_url(url: &str) -> Arc<ClientConfig> {
    if url.starts_with("https://") || url.starts_with("wss://") {
        verified()
    } else {
        plain_only()
    }
}
