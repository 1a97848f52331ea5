//! Two limits. Per client address, before auth, for requests whose key is not
//! already known to be live: guesses, missing and unknown keys, so a flood of
//! them cannot reach the key lookup (and the dataplane) at full speed, while
//! known keys behind one ingress address are not throttled together. Per key,
//! after auth (so it counts authenticated keys, not guesses) and before the
//! cache (so a cache hit is counted like any request, exactly once).

use crate::auth::Caller;
use crate::errors::Refusal;
use crate::state::State;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State as Extract};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use pika_common::keys::presented_key;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

pub type KeyLimiter = DefaultKeyedRateLimiter<String>;
pub type AddressLimiter = DefaultKeyedRateLimiter<IpAddr>;

/// A keyed limiter allowing `per_second` on average and bursts of `burst`
/// (per key or per address); None when `per_second` is 0 (no limit).
pub fn limiter<K: Clone + Eq + std::hash::Hash>(
    per_second: u32,
    burst: u32,
) -> Option<DefaultKeyedRateLimiter<K>> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
    Some(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)))
}

/// The client's address: the first `X-Forwarded-For` hop when the sidecar is
/// told to trust it (behind an ingress), else the peer.
fn client_address(req: &Request, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for
        && let Some(ip) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    {
        return Some(ip);
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

pub async fn limit_unknown_keys(Extract(state): Extract<State>, req: Request, next: Next) -> Response<Body> {
    let Some(limiter) = &state.limits.per_address else {
        return next.run(req).await;
    };
    let known = match presented_key(req.headers()) {
        Some(key) => state.grants.holds_live(key).await,
        None => false,
    };
    if !known
        && let Some(ip) = client_address(&req, state.limits.trust_forwarded_for)
        && limiter.check_key(&ip).is_err()
    {
        return Refusal::RateLimited.into_response();
    }
    next.run(req).await
}

pub async fn limit(Extract(state): Extract<State>, req: Request, next: Next) -> Response<Body> {
    if let (Some(limiter), Some(caller)) = (&state.limits.per_key, req.extensions().get::<Caller>())
        && limiter.check_key(&caller.key_id).is_err()
    {
        return Refusal::RateLimited.into_response();
    }
    next.run(req).await
}
