//! A Redis server that speaks only TLS, for the tests of `rediss://`: the
//! machine's own `redis-server` (built with TLS) started on a free port with
//! a certificate from [`crate::pki::TestPki`], plain-text port off. Stopped
//! when dropped.

use crate::pki::TestPki;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TlsRedis {
    child: Child,
    pub port: u16,
}

impl TlsRedis {
    /// None (and a SKIPPED line) without `redis-server` outside CI; in CI a
    /// missing or failing server fails the test.
    pub fn start(pki: &TestPki) -> Option<TlsRedis> {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let spawned = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--tls-port")
            .arg(port.to_string())
            .arg("--tls-cert-file")
            .arg(pki.cert_file())
            .arg("--tls-key-file")
            .arg(pki.key_file())
            .arg("--tls-ca-cert-file")
            .arg(pki.ca_file())
            .args(["--tls-auth-clients", "no", "--dir"])
            .arg(pki.dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) if !in_ci => {
                eprintln!("SKIPPED: cannot start redis-server for the TLS tests: {e}");
                return None;
            }
            Err(e) => panic!("redis-server (with TLS) is needed in CI: {e}"),
        };
        let mut server = TlsRedis { child, port };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                assert!(
                    !in_ci,
                    "redis-server with TLS exited at once ({status}): built without TLS?"
                );
                eprintln!("SKIPPED: redis-server exited at once ({status}): built without TLS?");
                return None;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    /// `rediss://localhost:PORT` (the certificate names `localhost`).
    pub fn url(&self) -> String {
        format!("rediss://localhost:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
