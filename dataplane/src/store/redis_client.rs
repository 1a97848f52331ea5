//! One way to make a Redis client, so every Redis the dataplane talks to
//! (cache signals, FalkorDB) takes TLS the same way: `rediss://` URLs use
//! rustls with the system roots, or with the PEM CA in `ca_file` when the
//! server's certificate comes from a private CA.

use crate::ports::StoreError;
use std::path::Path;

/// A client for `url`; nothing is connected yet.
pub fn redis_client(url: &str, ca_file: &Path, service: &'static str) -> Result<redis::Client, StoreError> {
    pika_common::tls::install_default_provider();
    if ca_file.as_os_str().is_empty() {
        return redis::Client::open(url).map_err(|e| StoreError::unavailable(service, e));
    }
    let root_cert = std::fs::read(ca_file).map_err(|e| {
        StoreError::unavailable(
            service,
            format!("cannot read the CA file {}: {e}", ca_file.display()),
        )
    })?;
    redis::Client::build_with_tls(
        url,
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        },
    )
    .map_err(|e| StoreError::unavailable(service, e))
}
