//! HTTP pieces both servers (dataplane and sidecar) must share so a client
//! sees one API whichever process answers: the error type and its envelope,
//! the request-id middleware, and the HTTP request metrics. Behind the `http`
//! feature: the operator does not take axum through here.

mod error;
mod guards;
pub mod mem0;
mod metrics;
mod request_id;
mod serve;

pub use error::{ApiError, current_request_id};
pub use guards::{deadline, panic_response, shed_load};
pub use metrics::{EmbedderQueueMetric, HttpMetrics, endpoint_label, method_label, record_http_metrics};
pub use request_id::{REQUEST_ID_HEADER, request_id, usable_request_id};
pub use serve::{ServeOptions, serve};
