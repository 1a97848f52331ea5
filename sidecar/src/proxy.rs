//! The innermost service: forwards a request to the dataplane.
//!
//! Bodies stream both ways (an export or a long `?wait=true` extract is never
//! buffered here); hop-by-hop headers are dropped as HTTP requires. Search
//! misses use [`Upstream::send_buffered`], since their answer is cached.

use crate::errors::Refusal;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, Request, Response, Uri, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    #[error("upstream address {0} is not an http://host:port URL")]
    BadUpstream(String),
    #[error("dataplane unreachable: {0}")]
    Unreachable(String),
    #[error("dataplane did not answer within {0:?}")]
    Timeout(Duration),
    #[error("dataplane answer unreadable: {0}")]
    Body(String),
}

/// A buffered answer of the dataplane.
#[derive(Debug, Clone)]
pub struct Buffered {
    pub status: http::StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Buffered {
    pub fn into_response(self) -> Response<Body> {
        let mut resp = Response::new(Body::from(self.body));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        resp
    }
}

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// Headers only the sidecar may set towards the dataplane: a client that sent
/// its own query vector could otherwise have a wrong answer cached for everyone
/// asking the same question.
const SIDECAR_ONLY: &[&str] = &["x-pika-query-embedding", "x-pika-embedding-model"];

fn strip_sidecar_only(headers: &mut HeaderMap) {
    for name in SIDECAR_ONLY {
        headers.remove(*name);
    }
}

/// The dataplane behind this sidecar.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    authority: http::uri::Authority,
    timeout: Duration,
}

impl Upstream {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, ProxyError> {
        let uri: Uri = url.parse().map_err(|_| ProxyError::BadUpstream(url.into()))?;
        if uri.scheme_str() != Some("http") {
            return Err(ProxyError::BadUpstream(url.into()));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| ProxyError::BadUpstream(url.into()))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Upstream {
            client,
            authority,
            timeout,
        })
    }

    fn target(&self, uri: &Uri) -> Uri {
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .unwrap_or_default()
    }

    async fn send(&self, mut req: Request<Body>) -> Result<Response<hyper::body::Incoming>, ProxyError> {
        *req.uri_mut() = self.target(req.uri());
        strip_hop_by_hop(req.headers_mut());
        if let Ok(host) = self.authority.as_str().parse() {
            req.headers_mut().insert(header::HOST, host);
        }
        tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| ProxyError::Timeout(self.timeout))?
            .map_err(|e| ProxyError::Unreachable(e.to_string()))
    }

    /// Forwards as is, streaming; an unreachable dataplane is a 503 envelope.
    pub async fn forward(&self, mut req: Request<Body>) -> Response<Body> {
        strip_sidecar_only(req.headers_mut());
        match self.send(req).await {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Body::new(body))
            }
            Err(e) => {
                tracing::warn!(error = %e, "dataplane unavailable");
                Refusal::Upstream(e).into_response()
            }
        }
    }

    /// Sends a request with a body already in memory and reads the whole answer.
    pub async fn send_buffered(
        &self,
        method: &http::Method,
        uri: &Uri,
        headers: &HeaderMap,
        extra: &[(HeaderName, String)],
        body: Bytes,
    ) -> Result<Buffered, ProxyError> {
        let mut req = Request::new(Body::from(body));
        *req.method_mut() = method.clone();
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = headers.clone();
        req.headers_mut().remove(header::CONTENT_LENGTH);
        strip_sidecar_only(req.headers_mut());
        for (name, value) in extra {
            if let Ok(v) = value.parse() {
                req.headers_mut().insert(name.clone(), v);
            }
        }
        let resp = self.send(req).await?;
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = tokio::time::timeout(self.timeout, body.collect())
            .await
            .map_err(|_| ProxyError::Timeout(self.timeout))?
            .map_err(|e| ProxyError::Body(e.to_string()))?
            .to_bytes();
        parts.headers.remove(header::CONTENT_LENGTH);
        // Shared with coalesced requests: each gets its own id from the outer layer.
        parts.headers.remove("x-request-id");
        Ok(Buffered {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// A request of the sidecar's own to the dataplane (not a client's),
    /// presenting `key` as the bearer.
    pub async fn call(
        &self,
        method: http::Method,
        path: &'static str,
        key: Option<&str>,
        body: Bytes,
    ) -> Result<Buffered, ProxyError> {
        let mut headers = HeaderMap::new();
        if let Some(k) = key
            && let Ok(v) = format!("Bearer {k}").parse()
        {
            headers.insert(header::AUTHORIZATION, v);
        }
        if !body.is_empty() {
            headers.insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
        }
        self.send_buffered(&method, &Uri::from_static(path), &headers, &[], body)
            .await
    }

    /// POSTs a JSON body of the sidecar's own; returns the status.
    pub async fn post_json(
        &self,
        path: &'static str,
        key: Option<&str>,
        body: Bytes,
    ) -> Result<http::StatusCode, ProxyError> {
        Ok(self.call(http::Method::POST, path, key, body).await?.status)
    }

    /// `GET /health/live` of the dataplane, for the sidecar's own health.
    pub async fn live(&self) -> Result<Duration, ProxyError> {
        let started = std::time::Instant::now();
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = Uri::from_static("/health/live");
        let resp = self.send(req).await?;
        if resp.status().is_success() {
            Ok(started.elapsed())
        } else {
            Err(ProxyError::Unreachable(format!(
                "health answered {}",
                resp.status()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_supplied_query_vectors_and_hop_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert("x-pika-query-embedding", "AAAA".parse().expect("value"));
        h.insert("x-pika-embedding-model", "forged".parse().expect("value"));
        h.insert("connection", "keep-alive".parse().expect("value"));
        h.insert("authorization", "Bearer k".parse().expect("value"));
        strip_sidecar_only(&mut h);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("authorization"));
    }
}
