//! The controller's error type. Each variant has a short `metric_label`, the
//! `reason` of `pika_operator_reconcile_failures_total`.

use crate::render::RenderError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("cannot render: {0}")]
    Render(#[from] RenderError),
    #[error("cannot encode: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the MemoryService has no namespace")]
    NotNamespaced,
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(_)) => "api_error",
            Error::Kube(_) => "api_unreachable",
            Error::Finalizer(inner) => match inner.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.metric_label(),
                F::AddFinalizer(_) | F::RemoveFinalizer(_) => "finalizer",
                F::UnnamedObject | F::InvalidFinalizer => "invalid_object",
            },
            Error::Render(_) => "render",
            Error::Encode(_) => "encode",
            Error::NotNamespaced => "invalid_object",
        }
    }
}
