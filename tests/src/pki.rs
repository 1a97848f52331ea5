//! A private certificate authority for TLS tests: a CA, and server
//! certificates it signs for `localhost` and `127.0.0.1`, written as PEM
//! files the way a Kubernetes TLS Secret is mounted (`tls.crt`, `tls.key`,
//! `ca.crt`). `reissue` writes a new certificate over the old files, as
//! cert-manager does on renewal.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct TestPki {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    /// DER of the server certificate now in `tls.crt`.
    pub server_der: CertificateDer<'static>,
}

impl TestPki {
    /// A new CA and a first server certificate.
    pub fn new() -> TestPki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "PIKA test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("ca key");
        let ca = params.self_signed(&key).expect("self-signed ca");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.crt"), ca.pem()).expect("write ca.crt");
        let mut pki = TestPki {
            dir,
            issuer: Issuer::new(params, key),
            ca_der: ca.der().clone(),
            server_der: CertificateDer::from(Vec::new()),
        };
        pki.reissue();
        pki
    }

    /// Signs a new server certificate (new key) and writes it over
    /// `tls.crt` and `tls.key`.
    pub fn reissue(&mut self) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        std::fs::write(self.cert_file(), cert.pem()).expect("write tls.crt");
        std::fs::write(self.key_file(), key.serialize_pem()).expect("write tls.key");
        self.server_der = cert.der().clone();
    }

    /// Keeps the files after this value is dropped; returns their folder.
    pub fn keep(self) -> PathBuf {
        self.dir.keep()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn cert_file(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    /// A rustls client configuration that trusts only this CA, limited to
    /// `versions` (ring provider).
    pub fn client_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("add ca");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}
