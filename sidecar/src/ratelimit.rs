//! Per-key rate limit, after auth (so it counts authenticated keys, not
//! guesses) and before the cache (so a cache hit is counted like any request,
//! exactly once).

use crate::auth::Caller;
use crate::errors::{envelope, request_id};
use crate::state::State;
use axum::body::Body;
use axum::extract::{Request, State as Extract};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use pika_common::wire::ErrorCode;
use std::num::NonZeroU32;

pub type KeyLimiter = DefaultKeyedRateLimiter<String>;

/// A limiter allowing `per_second` on average and bursts of `burst`; None when
/// `per_second` is 0 (no limit).
pub fn limiter(per_second: u32, burst: u32) -> Option<KeyLimiter> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
    Some(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)))
}

pub async fn limit(Extract(state): Extract<State>, req: Request, next: Next) -> Response<Body> {
    if let (Some(limiter), Some(caller)) = (&state.limiter, req.extensions().get::<Caller>())
        && limiter.check_key(&caller.key_id).is_err()
    {
        let mut resp = envelope(
            ErrorCode::RateLimited,
            "rate limit exceeded for this API key",
            request_id(req.headers()),
        );
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        return resp;
    }
    next.run(req).await
}
