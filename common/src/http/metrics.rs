//! `http_requests_total{endpoint,method,status}` and
//! `http_request_duration_seconds{endpoint,method}` (DESIGN.md §9), the same
//! names and labels in every server so one dashboard reads them all.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use std::sync::Arc;
use std::time::Instant;

pub struct HttpMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
}

impl HttpMetrics {
    /// Registers both metrics in `registry`; `buckets` in seconds (the
    /// sidecar's are finer: cache hits take microseconds).
    pub fn register(
        registry: &Registry,
        help: &str,
        buckets: &[f64],
    ) -> Result<Arc<Self>, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by endpoint, method and status",
            ),
            &["endpoint", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", help).buckets(buckets.to_vec()),
            &["endpoint", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Arc::new(HttpMetrics { requests, duration }))
    }
}

/// `embedder_queue_depth{priority}`: requests waiting for a local embedding
/// model (both processes embed), set at scrape time.
pub struct EmbedderQueueMetric(prometheus::IntGaugeVec);

impl EmbedderQueueMetric {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauge = prometheus::IntGaugeVec::new(
            Opts::new(
                "embedder_queue_depth",
                "Requests waiting for the local embedding model",
            ),
            &["priority"],
        )?;
        registry.register(Box::new(gauge.clone()))?;
        Ok(EmbedderQueueMetric(gauge))
    }

    /// `waiting` as `Embedder::waiting` reports it: (queries, bulk).
    pub fn set(&self, waiting: Option<(usize, usize)>) {
        if let Some((queries, bulk)) = waiting {
            self.0.with_label_values(&["query"]).set(queries as i64);
            self.0.with_label_values(&["bulk"]).set(bulk as i64);
        }
    }
}

/// A bounded label for a request: the matched route, else one of the API's
/// route templates, else `other` (raw paths would let clients grow the
/// metric without bound).
pub fn endpoint_label(req: &Request) -> String {
    if let Some(p) = req.extensions().get::<MatchedPath>() {
        return p.as_str().to_string();
    }
    let path = req.uri().path();
    for (prefix, template) in [
        ("/v1/jobs/", "/v1/jobs/{job_id}"),
        ("/v1/users/", "/v1/users/{user_id}"),
        ("/v1/facts/", "/v1/facts/{fact_id}"),
    ] {
        if path.starts_with(prefix) {
            return template.into();
        }
    }
    match path {
        "/v1/search_facts" | "/search_facts" | "/v1/extract_facts" | "/extract_facts" => path.into(),
        _ => "other".into(),
    }
}

/// The `method` label: the standard methods by name, anything else (a
/// client may send any token as a method) as `OTHER`, so the label stays bounded.
pub fn method_label(m: &http::Method) -> &'static str {
    use http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Middleware: counts every request and observes its latency.
pub async fn record_http_metrics(
    State(metrics): State<Arc<HttpMetrics>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let endpoint = endpoint_label(&req);
    let method = method_label(req.method()).to_string();
    let resp = next.run(req).await;
    metrics
        .requests
        .with_label_values(&[endpoint.as_str(), method.as_str(), resp.status().as_str()])
        .inc();
    metrics
        .duration
        .with_label_values(&[endpoint.as_str(), method.as_str()])
        .observe(started.elapsed().as_secs_f64());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[test]
    fn raw_paths_become_templates() {
        let label =
            |p: &str| endpoint_label(&Request::builder().uri(p).body(Body::empty()).expect("request"));
        assert_eq!(label("/v1/jobs/123/status"), "/v1/jobs/{job_id}");
        assert_eq!(label("/v1/users/u1/export"), "/v1/users/{user_id}");
        assert_eq!(label("/search_facts"), "/search_facts");
        assert_eq!(label("/wp-admin/x"), "other");
    }
}
