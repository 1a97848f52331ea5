//! TLS where data travels: our servers' HTTPS (rustls; the sidecar and the
//! dataplane share this server loop) and our clients' TLS to PostgreSQL and
//! Redis, each against a server whose certificate the client must verify.

use axum::Router;
use axum::routing::get;
use pika_common::http::{ServeOptions, serve};
use pika_common::tls::{ServerTlsConfig, TlsError, TlsVersion};
use pika_dataplane::ports::CacheSignals;
use pika_dataplane::store::{PostgresMetaStore, RedisSignals, redis_client};
use pika_tests::pki::TestPki;
use pika_tests::support::server_url;
use pika_tests::tls_redis::TlsRedis;
use rustls::ProtocolVersion;
use rustls::version::{TLS12, TLS13};
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(config: &ServerTlsConfig, header_read_timeout: Duration) -> Server {
        let acceptor = config.acceptor().expect("tls config loads").expect("tls is on");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().route("/", get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = ServeOptions {
            header_read_timeout,
            tls: Some(acceptor),
            drain_timeout: Duration::from_secs(5),
        };
        let task = tokio::spawn(serve(listener, app, options, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

fn tls_config(pki: &TestPki) -> ServerTlsConfig {
    ServerTlsConfig {
        cert_file: pki.cert_file(),
        key_file: pki.key_file(),
        ..Default::default()
    }
}

async fn handshake(
    pki: &TestPki,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
    addr: SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut config = (*pki.client_config(versions)).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    connector.connect(name, tcp).await
}

/// One HTTP/1.1 GET on the stream; what came back until the server closed.
async fn get_root<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: &mut S) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn https_answers_over_tls_13_with_the_configured_certificate() {
    let pki = TestPki::new();
    let server = Server::start(&tls_config(&pki), Duration::from_secs(5)).await;
    let mut tls = handshake(&pki, &[&TLS13, &TLS12], &[b"http/1.1"], server.addr)
        .await
        .expect("handshake with a client that trusts the CA");
    let (_, session) = tls.get_ref();
    assert_eq!(
        session.protocol_version(),
        Some(ProtocolVersion::TLSv1_3),
        "TLS 1.3 preferred"
    );
    let presented = session.peer_certificates().expect("certificate")[0].clone();
    assert_eq!(presented, pki.server_der, "the configured certificate is served");
    let answer = get_root(&mut tls).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
    // ALPN offers HTTP/2 to clients that ask for it.
    let h2 = handshake(&pki, &[&TLS13], &[b"h2", b"http/1.1"], server.addr)
        .await
        .expect("handshake");
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    server.stop().await;
}

#[tokio::test]
async fn tls_12_clients_are_refused_when_min_version_is_13() {
    let pki = TestPki::new();
    let default = Server::start(&tls_config(&pki), Duration::from_secs(5)).await;
    let mut old = handshake(&pki, &[&TLS12], &[], default.addr)
        .await
        .expect("a TLS 1.2 client is served by default");
    assert_eq!(old.get_ref().1.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    assert!(get_root(&mut old).await.starts_with("HTTP/1.1 200"));
    default.stop().await;

    let strict = ServerTlsConfig {
        min_version: TlsVersion::Tls13,
        ..tls_config(&pki)
    };
    let strict = Server::start(&strict, Duration::from_secs(5)).await;
    assert!(
        handshake(&pki, &[&TLS12], &[], strict.addr).await.is_err(),
        "min_version 1.3 must refuse TLS 1.2"
    );
    assert!(handshake(&pki, &[&TLS13], &[], strict.addr).await.is_ok());
    strict.stop().await;
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_no_http_answer() {
    let pki = TestPki::new();
    let server = Server::start(&tls_config(&pki), Duration::from_secs(5)).await;
    let mut plain = TcpStream::connect(server.addr).await.expect("connect");
    let answer = get_root(&mut plain).await;
    assert!(
        !answer.contains("HTTP/1.1 200"),
        "plain text answered: {answer:?}"
    );
    // A client that does not trust the CA fails the handshake.
    let stranger = TestPki::new();
    assert!(
        handshake(&stranger, &[&TLS13], &[], server.addr).await.is_err(),
        "a certificate from an unknown CA was accepted"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let mut pki = TestPki::new();
    let config = ServerTlsConfig {
        reload_every_ms: 50,
        ..tls_config(&pki)
    };
    let server = Server::start(&config, Duration::from_secs(5)).await;
    let first = handshake(&pki, &[&TLS13], &[], server.addr)
        .await
        .expect("handshake");
    let before = first.get_ref().1.peer_certificates().expect("cert")[0].clone();
    assert_eq!(before, pki.server_der);
    let old = pki.server_der.clone();
    pki.reissue();
    assert_ne!(old, pki.server_der);
    let started = Instant::now();
    loop {
        let tls = handshake(&pki, &[&TLS13], &[], server.addr)
            .await
            .expect("handshake");
        let served = tls.get_ref().1.peer_certificates().expect("cert")[0].clone();
        if served == pki.server_der {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the renewed certificate was not served within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A broken renewal keeps the certificate already served.
    std::fs::write(pki.cert_file(), "not a certificate").expect("write");
    tokio::time::sleep(Duration::from_millis(120)).await;
    let tls = handshake(&pki, &[&TLS13], &[], server.addr)
        .await
        .expect("still served after a bad renewal");
    assert_eq!(
        tls.get_ref().1.peer_certificates().expect("cert")[0],
        pki.server_der
    );
    server.stop().await;
}

#[test]
fn a_key_of_another_certificate_or_a_missing_file_is_refused_at_start() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let mismatched = ServerTlsConfig {
        key_file: other.key_file(),
        ..tls_config(&pki)
    };
    assert!(matches!(mismatched.acceptor(), Err(TlsError::Mismatch(_))));
    let missing = ServerTlsConfig {
        cert_file: pki.dir().join("absent.crt"),
        ..tls_config(&pki)
    };
    assert!(matches!(missing.acceptor(), Err(TlsError::Read { .. })));
    let no_key = ServerTlsConfig {
        key_file: Default::default(),
        ..tls_config(&pki)
    };
    assert!(matches!(no_key.acceptor(), Err(TlsError::MissingKey)));
    assert!(ServerTlsConfig::default().acceptor().expect("off").is_none());
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_cut_off() {
    let pki = TestPki::new();
    let server = Server::start(&tls_config(&pki), Duration::from_millis(300)).await;
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection was not closed within 5 s");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Others are served meanwhile.
    assert!(handshake(&pki, &[&TLS13], &[], server.addr).await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn cache_signals_reach_redis_over_tls_only_with_the_right_ca() {
    let pki = TestPki::new();
    let Some(redis) = TlsRedis::start(&pki) else {
        return;
    };
    let timeout = Duration::from_secs(3);
    let user = format!("tls-{}", uuid::Uuid::new_v4().simple());
    let signals = RedisSignals::from_client(
        redis_client(&redis.url(), &pki.ca_file(), "redis").expect("client"),
        timeout,
    );
    assert_eq!(signals.bump(&user).await.expect("bump over TLS"), 1);
    assert_eq!(signals.bump(&user).await.expect("bump over TLS"), 2);
    assert_eq!(signals.generation(&user).await.expect("generation"), 2);

    // The system roots do not know the private CA: refused.
    let untrusted = RedisSignals::from_client(
        redis_client(&redis.url(), Path::new(""), "redis").expect("client"),
        timeout,
    );
    assert!(
        untrusted.bump(&user).await.is_err(),
        "an unverified server was trusted"
    );
    // Plain text to the TLS port: refused.
    let plain = RedisSignals::new(&format!("redis://127.0.0.1:{}", redis.port), timeout).expect("client");
    assert!(plain.bump(&user).await.is_err());
}

/// The test database URL with `params` added.
fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

#[tokio::test]
async fn postgres_sessions_are_encrypted_and_verified_when_the_url_asks() {
    let Some(base) = server_url("PIKA_TEST_POSTGRES_URL") else {
        return;
    };
    let admin = sqlx::PgPool::connect(&base).await.expect("plain connection");
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&admin)
        .await
        .expect("show ssl");
    if ssl != "on" {
        assert!(
            std::env::var("CI").map(|v| v != "true").unwrap_or(true),
            "the test PostgreSQL has ssl off; the TLS test needs it on"
        );
        eprintln!("SKIPPED: the test PostgreSQL has ssl = {ssl}");
        return;
    }
    // The server's own certificate names `localhost`; trusting exactly it
    // makes verify-full check both the chain and the host name.
    let server_cert: String = sqlx::query_scalar("SHOW ssl_cert_file")
        .fetch_one(&admin)
        .await
        .expect("cert file");
    let local = base.replacen("127.0.0.1", "localhost", 1);
    let app = format!("pika-tls-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let schema = format!("tls_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let url = with_params(
        &local,
        &format!("sslmode=verify-full&sslrootcert={server_cert}&application_name={app}"),
    );
    let store = PostgresMetaStore::connect(&url, Some(&schema), 2)
        .await
        .expect("the store connects with verify-full");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&store.pool())
        .await
        .expect("query");
    assert_eq!(one, 1);
    let (sessions, all_tls): (i64, Option<bool>) = sqlx::query_as(
        "SELECT count(*), bool_and(s.ssl) FROM pg_stat_ssl s \
         JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.application_name = $1",
    )
    .bind(&app)
    .fetch_one(&admin)
    .await
    .expect("pg_stat_ssl");
    assert!(sessions >= 1, "no session of the store found");
    assert_eq!(all_tls, Some(true), "a session of the store is not encrypted");
    drop(store);

    // A CA that did not sign the server's certificate: no connection.
    let stranger = TestPki::new();
    let wrong = with_params(
        &local,
        &format!("sslmode=verify-full&sslrootcert={}", stranger.ca_file().display()),
    );
    assert!(
        PostgresMetaStore::connect(&wrong, Some(&schema), 1)
            .await
            .is_err(),
        "a server signed by another CA was trusted"
    );
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&admin)
        .await
        .expect("drop schema");
}
