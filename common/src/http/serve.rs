//! Serving a router with the connection timeouts axum's `serve` lacks: a
//! header-read timeout on HTTP/1 (a client that opens a connection and sends
//! its headers slowly, or not at all, is cut off instead of holding the
//! connection for ever: slowloris), which also closes idle keep-alive
//! connections; HTTP/2 keep-alive pings that close connections whose peer
//! went away, and a bound on streams per connection; TLS (rustls) when an
//! acceptor is given, with the handshake under the same deadline as the
//! headers and done off the accept loop, so a slow handshake holds up no one
//! else; and graceful shutdown that stops accepting, lets requests in flight
//! finish and closes every connection. Each request carries the peer's
//! `ConnectInfo<SocketAddr>` (per-address rate limits read it).

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How a server treats its connections.
#[derive(Clone)]
pub struct ServeOptions {
    /// Headers (and, with TLS, the handshake before them) must arrive
    /// within this; idle HTTP/1 keep-alive connections close after it too.
    pub header_read_timeout: Duration,
    /// HTTPS when set.
    pub tls: Option<TlsAcceptor>,
    /// After shutdown begins, how long requests in flight may take; then
    /// the remaining connections are closed.
    pub drain_timeout: Duration,
}

impl ServeOptions {
    pub fn plain(header_read_timeout: Duration) -> ServeOptions {
        ServeOptions {
            header_read_timeout,
            tls: None,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Requests in flight on one HTTP/2 connection at most (hyper's default is
/// unbounded in the server): one client cannot open thousands of streams.
const H2_MAX_STREAMS: u32 = 256;

/// Serves `app` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let app = app.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                match options.tls.clone() {
                    None => {
                        tokio::spawn(serve_connection(builder, watcher, stream, peer, app));
                    }
                    Some(acceptor) => {
                        let deadline = options.header_read_timeout;
                        tokio::spawn(async move {
                            match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => serve_connection(builder, watcher, tls, peer, app).await,
                                Ok(Err(e)) => tracing::debug!(error = %e, %peer, "tls handshake failed"),
                                Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                            }
                        });
                    }
                }
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(options.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            deadline = ?options.drain_timeout,
            "requests still in flight at the drain deadline; their connections are closed"
        );
    }
}

async fn serve_connection<S>(
    builder: Arc<Builder<TokioExecutor>>,
    watcher: hyper_util::server::graceful::Watcher,
    stream: S,
    peer: SocketAddr,
    app: Router,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().route("/", get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            app,
            ServeOptions::plain(Duration::from_millis(300)),
            async {
                let _ = stopped.await;
            },
        ));
        // A complete request is answered.
        let mut ok = tokio::net::TcpStream::connect(addr).await.expect("connect");
        ok.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        ok.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // Headers that never end: the server closes the connection.
        let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
            .await
            .expect("write");
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the connection was not closed within 5 s");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let _ = stop.send(());
        server.await.expect("server stops");
    }
}
