//! The v0 endpoints: agents as their latest run, conversations, follow-ups, stop, and the
//! repositories endpoint with its documented quota.

mod view;

use std::time::SystemTime;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::http::{Shared, error, lock, refusal, with_prompt};
use super::model::Refusal;
use crate::cursor::model::{
    AgentId, AgentPage, Conversation, FollowUpRequest, IdResponse, LaunchRequest, Me, Models,
    Repositories,
};
use crate::spec::RepoUrl;

/// The v0 routes.
pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v0/agents", get(list_agents).post(launch))
        .route("/v0/agents/{id}", get(agent).delete(delete))
        .route("/v0/agents/{id}/conversation", get(conversation))
        .route("/v0/agents/{id}/followup", post(follow_up))
        .route("/v0/agents/{id}/stop", post(stop))
        .route("/v0/me", get(me))
        .route("/v0/models", get(models))
        .route("/v0/repositories", get(repositories))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

async fn list_agents(State(state): State<Shared>, Query(query): Query<ListQuery>) -> Response {
    let limit = match query.limit.as_deref().map(str::parse::<usize>) {
        None => 20,
        Some(Ok(n @ 1..=100)) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "validation_error",
                "limit must be a number from 1 to 100",
            );
        }
    };
    let s = lock(&state);
    let cursor = query.cursor.map(AgentId);
    let (agents, next_cursor) = s.page(limit, cursor.as_ref(), SystemTime::now());
    Json(AgentPage {
        agents,
        next_cursor,
    })
    .into_response()
}

async fn launch(
    State(state): State<Shared>,
    body: Result<Json<LaunchRequest>, JsonRejection>,
) -> Response {
    let request = match with_prompt(body, |r| &r.prompt) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    if request.prompt.images.len() > 5 {
        return error(
            StatusCode::BAD_REQUEST,
            "validation_error",
            "prompt.images holds at most 5 images",
        );
    }
    if request.source.repository.parse::<RepoUrl>().is_err() {
        return error(
            StatusCode::BAD_REQUEST,
            "validation_error",
            "source.repository must be a GitHub repository URL",
        );
    }
    if let Some(secret) = request.webhook.as_ref().and_then(|w| w.secret.as_ref()) {
        if !(32..=256).contains(&secret.expose().len()) {
            return error(
                StatusCode::BAD_REQUEST,
                "validation_error",
                "webhook.secret must be 32 to 256 characters",
            );
        }
    }
    let mut s = lock(&state);
    if let Some(model) = &request.model {
        if !s.config.models.contains(model) {
            return error(
                StatusCode::BAD_REQUEST,
                "validation_error",
                format!("model `{model}` is not available"),
            );
        }
    }
    (
        StatusCode::CREATED,
        Json(s.launch(request, SystemTime::now())),
    )
        .into_response()
}

async fn agent(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let s = lock(&state);
    match s.agent(&AgentId(id)) {
        Some(agent) => Json(agent.view(SystemTime::now())).into_response(),
        None => refusal(Refusal::NotFound),
    }
}

async fn conversation(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let s = lock(&state);
    let id = AgentId(id);
    match s.agent(&id) {
        Some(agent) => Json(Conversation {
            messages: agent.messages(SystemTime::now()),
            id,
        })
        .into_response(),
        None => refusal(Refusal::NotFound),
    }
}

async fn follow_up(
    State(state): State<Shared>,
    Path(id): Path<String>,
    body: Result<Json<FollowUpRequest>, JsonRejection>,
) -> Response {
    let request = match with_prompt(body, |r| &r.prompt) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let id = AgentId(id);
    let mut s = lock(&state);
    match s.follow_up(&id, request.prompt.text, SystemTime::now()) {
        Ok(()) => Json(IdResponse { id }).into_response(),
        Err(why) => refusal(why),
    }
}

async fn stop(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let id = AgentId(id);
    match lock(&state).stop(&id, SystemTime::now()) {
        Ok(()) => Json(IdResponse { id }).into_response(),
        Err(why) => refusal(why),
    }
}

async fn delete(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let id = AgentId(id);
    match lock(&state).delete(&id) {
        Ok(()) => Json(IdResponse { id }).into_response(),
        Err(why) => refusal(why),
    }
}

async fn me() -> Json<Me> {
    Json(Me {
        api_key_name: "orchestrate simulator".into(),
        created_at: Some("2026-01-01T00:00:00Z".into()),
        user_email: Some("simulator@example.com".into()),
    })
}

async fn models(State(state): State<Shared>) -> Json<Models> {
    Json(Models {
        models: lock(&state).config.models.clone(),
    })
}

async fn repositories(State(state): State<Shared>) -> Json<Repositories> {
    Json(Repositories {
        repositories: lock(&state).config.repositories.clone(),
    })
}
