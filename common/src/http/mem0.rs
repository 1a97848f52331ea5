//! Mem0's error body, `{"detail": "..."}`, for the Mem0-compatible routes
//! (DESIGN.md §13): Mem0's clients read `detail` to word their exceptions.
//! Both servers use it: the dataplane on its Mem0 router, the sidecar on
//! the errors it answers itself (a refused key, a shed request) for Mem0
//! paths, so a client sees one error shape whichever process answered.

use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::middleware::Next;
use axum::response::Response;

/// The paths Mem0's clients call (`/v1/ping/`, `/v{1,2,3}/memories…`,
/// `/v1/entities/`, `/v1/batch/`, `/v2/entities/…`, `/v1/feedback/`).
pub fn is_mem0_path(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    p == "/v1/ping"
        || [
            "/v1/memories",
            "/v2/memories",
            "/v3/memories",
            "/v1/entities",
            "/v2/entities",
            "/v1/batch",
            "/v1/feedback",
        ]
        .iter()
        .any(|prefix| p == *prefix || p.starts_with(&format!("{prefix}/")))
}

/// Middleware: on Mem0 paths, error envelopes become `{"detail": ...}`.
pub async fn mem0_errors(req: Request, next: Next) -> Response {
    let mem0 = is_mem0_path(req.uri().path());
    let resp = next.run(req).await;
    if mem0 { detail_errors(resp).await } else { resp }
}

/// Our error envelope as Mem0's `{"detail": message}`, same status and
/// headers (`Retry-After`, `X-Request-Id`); `code` and `trace_id` go along.
/// Other bodies pass unchanged.
pub async fn detail_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // Envelopes are small; a larger body is not one of ours.
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let rewritten = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .filter(|v| v["status"] == "error")
        .map(|v| {
            serde_json::json!({
                "detail": v["error"]["message"],
                "code": v["error"]["code"],
                "trace_id": v["error"]["trace_id"],
            })
        });
    match rewritten {
        Some(v) => {
            parts.headers.remove(CONTENT_LENGTH);
            parts
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Response::from_parts(parts, Body::from(v.to_string()))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem0_paths_are_recognised_with_and_without_the_slash() {
        for p in [
            "/v1/ping/",
            "/v1/ping",
            "/v3/memories/add/",
            "/v1/memories/abc/history/",
            "/v2/memories",
            "/v1/entities/",
        ] {
            assert!(is_mem0_path(p), "{p}");
        }
        for p in ["/v1/search_facts", "/v1/memoriesx", "/health", "/v1/facts/x"] {
            assert!(!is_mem0_path(p), "{p}");
        }
    }

    #[tokio::test]
    async fn an_envelope_becomes_detail_and_other_bodies_pass() {
        let envelope = serde_json::json!({"status": "error", "error": {"code": "NOT_FOUND", "message": "fact x not found", "trace_id": "t1"}});
        let resp = Response::builder()
            .status(404)
            .header("retry-after", "1")
            .body(Body::from(envelope.to_string()))
            .expect("response");
        let out = detail_errors(resp).await;
        assert_eq!(out.status(), 404);
        assert_eq!(out.headers()["retry-after"], "1");
        let bytes = axum::body::to_bytes(out.into_body(), 1 << 16)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["detail"], "fact x not found");
        assert_eq!(v["code"], "NOT_FOUND");
        let plain = Response::builder()
            .status(502)
            .body(Body::from("upstream"))
            .expect("response");
        let bytes = axum::body::to_bytes(detail_errors(plain).await.into_body(), 1 << 16)
            .await
            .expect("body");
        assert_eq!(&bytes[..], b"upstream");
    }
}
