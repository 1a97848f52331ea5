//! Error answers of the sidecar itself, in the dataplane's envelope
//! (`{"status":"error","error":{code,message,details,trace_id}}`), so clients
//! see one format whichever process refused them.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use pika_common::wire::{ErrorBody, ErrorCode, ErrorEnvelope};

/// The request id the outer layer assigned (or the client sent).
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

pub fn envelope(code: ErrorCode, message: impl Into<String>, trace_id: String) -> Response<Body> {
    let body = ErrorEnvelope {
        status: "error".into(),
        error: ErrorBody {
            code,
            message: message.into(),
            details: serde_json::Value::Null,
            trace_id,
        },
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
