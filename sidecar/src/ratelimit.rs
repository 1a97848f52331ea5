//! Per-key rate limit, after auth (so it counts authenticated keys, not
//! guesses) and before the cache (so a cache hit is counted like any request,
//! exactly once).

use crate::auth::Caller;
use crate::errors::Refusal;
use crate::state::State;
use axum::body::Body;
use axum::extract::{Request, State as Extract};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
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
        return Refusal::RateLimited.into_response();
    }
    next.run(req).await
}
