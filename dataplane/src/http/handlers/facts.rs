//! Reading and erasing a user's memories: facts, listings, history, export
//! and the right to be forgotten.

use super::{ApiResult, actor, invalid, ok, path_id};
use crate::app::AppState;
use crate::domain::{ConsentState, MemoryKind};
use crate::http::auth::Caller;
use crate::http::json::Params;
use crate::http::views::{self, FactView};
use crate::service::facts::PageQuery;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
pub struct PageParams {
    cursor: Option<String>,
    limit: Option<usize>,
    /// `fact` (default), `episode` or `all`.
    kind: Option<String>,
}

pub async fn list_facts(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(user_id): Path<String>,
    Params(page): Params<PageParams>,
) -> ApiResult {
    path_id("user_id", &user_id)?;
    let limit = page.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(invalid("limit", "must be from 1 to 200"));
    }
    let kind = match page.kind.as_deref() {
        None | Some("fact") => Some(MemoryKind::Fact),
        Some("episode") => Some(MemoryKind::Episode),
        Some("all") => None,
        Some(_) => return Err(invalid("kind", "must be fact, episode or all")),
    };
    let query = PageQuery {
        user_id: &user_id,
        cursor: page.cursor.as_deref(),
        limit,
        kind,
    };
    let p = state.services.facts.list(&actor(&caller), query).await?;
    Ok(ok(json!({
        "user_id": user_id,
        "facts": views::facts(p.facts),
        "next_cursor": p.next_cursor,
    })))
}

pub async fn get_fact(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(fact_id): Path<String>,
) -> ApiResult {
    let fact = state.services.facts.get(&actor(&caller), &fact_id).await?;
    Ok(ok(FactView::from(fact)))
}

pub async fn fact_history(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(fact_id): Path<String>,
) -> ApiResult {
    let (fact, history) = state.services.facts.history(&actor(&caller), &fact_id).await?;
    Ok(ok(json!({
        "fact_id": fact_id,
        "fact": FactView::from(fact),
        "history": views::history(history),
    })))
}

pub async fn delete_fact(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(fact_id): Path<String>,
) -> ApiResult {
    let deleted = state.services.facts.delete(&actor(&caller), &fact_id).await?;
    Ok(ok(
        json!({"fact_id": fact_id, "deleted": true, "removed": deleted.removed}),
    ))
}

pub async fn delete_user(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(user_id): Path<String>,
) -> ApiResult {
    path_id("user_id", &user_id)?;
    let receipt = state.services.users.delete(&actor(&caller), &user_id).await?;
    let held = receipt.metadata.facts + receipt.metadata.episodes;
    Ok(ok(
        json!({"user_id": user_id, "facts_deleted": held, "receipt": receipt}),
    ))
}

/// NDJSON, streamed as it is read (`service::export`): a header line,
/// records, then an `end` line with the counts.
pub async fn export_user(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(user_id): Path<String>,
) -> ApiResult {
    path_id("user_id", &user_id)?;
    let records = state.services.users.export(&actor(&caller), &user_id).await?;
    let header = futures::stream::once(std::future::ready(views::export_header(&user_id)));
    let lines = futures::stream::unfold(records, |mut rx| async move {
        let record = rx.recv().await?;
        Some((views::export_line(record), rx))
    });
    let body = header.chain(lines).map(Ok::<_, std::convert::Infallible>);
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentChange {
    /// `granted` or `withdrawn`.
    state: String,
    /// With `withdrawn`: erase the user now (the answer carries the receipt).
    #[serde(default)]
    erase: bool,
}

pub async fn get_consent(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(user_id): Path<String>,
) -> ApiResult {
    path_id("user_id", &user_id)?;
    let consent = state.services.users.consent(&actor(&caller), &user_id).await?;
    Ok(ok(json!({"user_id": user_id, "consent": consent})))
}

pub async fn set_consent(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(user_id): Path<String>,
    crate::http::json::Body(body): crate::http::json::Body<ConsentChange>,
) -> ApiResult {
    path_id("user_id", &user_id)?;
    let Some(consent_state) = ConsentState::parse(&body.state) else {
        return Err(invalid("state", "must be granted or withdrawn"));
    };
    let (consent, receipt) = state
        .services
        .users
        .set_consent(&actor(&caller), &user_id, consent_state, body.erase)
        .await?;
    Ok(ok(
        json!({"user_id": user_id, "consent": consent, "receipt": receipt}),
    ))
}
