//! TLS for our HTTP servers (rustls, ring as the crypto provider): the
//! certificate and key come from PEM files, as Kubernetes mounts a
//! `kubernetes.io/tls` Secret, and are re-read when those files change, so
//! a certificate renewed by cert-manager is served without a restart. A
//! renewal that fails to parse keeps the certificate already served and
//! says so in the log.
//!
//! TLS 1.3 is preferred (rustls offers it first); `min_version = "1.3"`
//! refuses TLS 1.2 clients. ALPN offers `h2` and `http/1.1`.

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use tokio_rustls::TlsAcceptor;

/// `[tls]` of a server: off while `cert_file` is empty.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain (leaf first), e.g. `tls.crt` of a TLS Secret.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1), e.g. `tls.key`.
    pub key_file: PathBuf,
    /// Oldest protocol accepted: `1.2` (default) or `1.3`.
    pub min_version: TlsVersion,
    /// How often the files are checked for a renewed certificate (ms); 0
    /// means 30 s.
    pub reload_every_ms: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tls: {path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("tls: {path} holds no usable PEM private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("tls: the key does not belong to the certificate: {0}")]
    Mismatch(String),
    #[error("tls: key_file is required with cert_file")]
    MissingKey,
    #[error("tls: {0}")]
    Config(#[from] rustls::Error),
}

/// Makes ring the process's rustls provider. Clients built by other crates
/// (Redis, RabbitMQ) ask rustls for the process default; with more than one
/// provider compiled in (lapin brings aws-lc-rs) there is none unless it is
/// installed. Idempotent; the first provider installed wins.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl ServerTlsConfig {
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }

    /// The acceptor for this configuration; `None` when TLS is off. Fails
    /// when the files cannot be read or do not make a certificate and key.
    pub fn acceptor(&self) -> Result<Option<TlsAcceptor>, TlsError> {
        if !self.enabled() {
            return Ok(None);
        }
        if self.key_file.as_os_str().is_empty() {
            return Err(TlsError::MissingKey);
        }
        install_default_provider();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let every = match self.reload_every_ms {
            0 => Duration::from_secs(30),
            ms => Duration::from_millis(ms),
        };
        let resolver = ReloadingCert::load(
            self.cert_file.clone(),
            self.key_file.clone(),
            provider.clone(),
            every,
        )?;
        let versions: &[&rustls::SupportedProtocolVersion] = match self.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(TlsAcceptor::from(Arc::new(config))))
    }
}

/// The served certificate, re-read when its files change.
#[derive(Debug)]
struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    every: Duration,
    state: Mutex<Served>,
}

#[derive(Debug)]
struct Served {
    key: Arc<CertifiedKey>,
    /// Modification times of the two files when `key` was read.
    stamp: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

impl ReloadingCert {
    fn load(
        cert_file: PathBuf,
        key_file: PathBuf,
        provider: Arc<CryptoProvider>,
        every: Duration,
    ) -> Result<ReloadingCert, TlsError> {
        let stamp = stamps(&cert_file, &key_file);
        let key = certified_key(&cert_file, &key_file, &provider)?;
        Ok(ReloadingCert {
            cert_file,
            key_file,
            provider,
            every,
            state: Mutex::new(Served {
                key,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let mut served = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if served.checked.elapsed() >= self.every {
            served.checked = Instant::now();
            let stamp = stamps(&self.cert_file, &self.key_file);
            if stamp != served.stamp {
                match certified_key(&self.cert_file, &self.key_file, &self.provider) {
                    Ok(key) => {
                        tracing::info!(cert = %self.cert_file.display(), "tls: serving the renewed certificate");
                        served.key = key;
                        served.stamp = stamp;
                    }
                    // Half-written renewal, or a bad one: keep serving the old
                    // certificate and try again at the next check.
                    Err(e) => tracing::warn!(error = %e, "tls: renewed certificate not loaded"),
                }
            }
        }
        served.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn stamps(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (modified(cert), modified(key))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certified_key(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_pem = read(cert_file)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_file.to_path_buf(),
        });
    }
    let key_pem = read(key_file)?;
    let bad_key = |reason: String| TlsError::BadKey {
        path: key_file.to_path_buf(),
        reason,
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad_key(e.to_string()))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad_key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // Unknown: the provider cannot derive the public key; the handshake
        // itself will tell.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => return Err(TlsError::Mismatch(e.to_string())),
    }
    Ok(Arc::new(certified))
}
