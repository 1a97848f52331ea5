//! The Mem0 REST API over PIKA's memory (DESIGN.md §13), so that Mem0's own
//! clients work by changing `host`: their paths (each served with and
//! without the trailing `/`, never redirected: httpx does not follow
//! redirects), their `Token` auth scheme (accepted by every route), their
//! shapes (`wire`), and their error body `{"detail": "..."}` (the layer
//! below rewrites our envelope; status codes are the same).
//!
//! Memories are our facts and episodes; an add is an extraction job
//! (`async_mode`, Mem0's default, answers PENDING with the job id as
//! `event_id`). Same keys, tenancy, validation limits, audit and shedding
//! as the native API: these routes sit inside the same middleware stack.

mod handlers;
pub mod schema;
mod wire;

use crate::app::AppState;
use crate::domain::Permission;
use crate::http::auth;
use axum::Router;
use axum::routing::{MethodRouter, delete, get, post, put};

/// The Mem0 routes, for merging into the main router.
pub fn router(state: AppState) -> Router<AppState> {
    let with = |p: Permission, route: MethodRouter<AppState>| {
        route.layer(axum::middleware::from_fn_with_state(
            (state.clone(), p),
            auth::require,
        ))
    };
    use handlers as h;
    let routes: Vec<(&str, MethodRouter<AppState>)> = vec![
        ("/v1/ping", with(Permission::Search, get(h::ping))),
        ("/v3/memories/add", with(Permission::Extract, post(h::add_v3))),
        (
            "/v3/memories/search",
            with(Permission::Search, post(h::search_v3)),
        ),
        (
            "/v2/memories/search",
            with(Permission::Search, post(h::search_bare)),
        ),
        (
            "/v1/memories/search",
            with(Permission::Search, post(h::search_bare)),
        ),
        ("/v3/memories", with(Permission::Search, post(h::list_v3))),
        ("/v2/memories", with(Permission::Search, post(h::list_v2))),
        (
            "/v1/memories",
            with(Permission::Search, get(h::list_v1))
                .merge(with(Permission::Extract, post(h::add_v1)))
                .merge(with(Permission::Admin, delete(h::delete_all))),
        ),
        (
            "/v1/memories/{id}",
            with(Permission::Search, get(h::get_memory))
                .merge(with(Permission::Extract, put(h::update_memory)))
                .merge(with(Permission::Admin, delete(h::delete_memory))),
        ),
        (
            "/v1/batch",
            with(Permission::Extract, put(h::batch_update))
                .merge(with(Permission::Admin, delete(h::batch_delete))),
        ),
        ("/v1/entities", with(Permission::Search, get(h::entities))),
        (
            "/v2/entities/{kind}/{name}",
            with(Permission::Admin, delete(h::delete_entity)),
        ),
        ("/v1/feedback", with(Permission::Search, post(h::feedback))),
        (
            "/v1/memories/{id}/history",
            with(Permission::Search, get(h::history)),
        ),
    ];
    let mut router = Router::new();
    for (path, route) in routes {
        router = router
            .route(&format!("{path}/"), route.clone())
            .route(path, route);
    }
    router.layer(axum::middleware::map_response(
        pika_common::http::mem0::detail_errors,
    ))
}
