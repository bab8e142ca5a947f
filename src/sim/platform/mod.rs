//! The simulator's LiteLLM Agent Platform mode: `POST /session` (runtime `cursor`), the
//! normalized event stream as server-sent events, the event list, and events sent to a
//! session (a follow-up or an interrupt). Sessions are agents of the same simulated world.

use crate::sim::model::Stats;
use std::time::{Duration, SystemTime};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng as _;
use serde::Deserialize;
use serde_json::json;

mod view;

use super::http::{Shared, async_stream, error, lock};
use super::model::{NewAgent, Origin, Refusal};
use crate::cursor::model::{AgentId, Source};
use crate::spec::RepoUrl;

/// Events per page of `GET /v1/sessions/{id}/events`.
const PAGE: usize = 100;

/// How often an open stream looks for new events, in real time.
const TICK: Duration = Duration::from_millis(5);

/// The platform routes (behind the same gate as the Cursor API's).
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/session", post(create_session))
        .route(
            "/v1/sessions/{id}/events",
            get(list_events).post(send_events),
        )
        .route("/v1/sessions/{id}/events/stream", get(stream))
}

fn invalid(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "validation_error", message)
}

fn refused(state: &Shared, refusal: Refusal) -> Response {
    let (status, code, message) = refusal.answer();
    lock(state).count_error(code);
    error(status, code, message)
}

#[derive(Debug, Deserialize)]
struct CreateSession {
    runtime: String,
    agent_id: String,
    #[serde(default)]
    prompt: String,
    environment: Environment,
}

#[derive(Debug, Deserialize)]
struct Environment {
    repository: String,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    #[serde(default)]
    auto_create_pr: bool,
}

async fn create_session(
    State(state): State<Shared>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return invalid("the body is not JSON");
    };
    let request: CreateSession = match serde_json::from_value(body.clone()) {
        Ok(request) => request,
        Err(e) => return invalid(e.to_string()),
    };
    if request.runtime != "cursor" {
        return invalid(format!(
            "runtime `{}` is not this platform's",
            request.runtime
        ));
    }
    if request.prompt.trim().is_empty() {
        return invalid("prompt is required to start a session");
    }
    if request.environment.repository.parse::<RepoUrl>().is_err() {
        return invalid("environment.repository is not a GitHub repository URL");
    }
    let now = SystemTime::now();
    let mut s = lock(&state);
    let agents = &s.config.platform_agents;
    if !agents.is_empty() && !agents.contains(&request.agent_id) {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("agent {} not found", request.agent_id),
        );
    }
    let new = NewAgent {
        api: Origin::Platform,
        id: None,
        name: None,
        source: Source {
            repository: request.environment.repository,
            git_ref: request.environment.git_ref,
        },
        branch: None,
        auto_create_pr: request.environment.auto_create_pr,
        open_as_cursor_github_app: false,
        skip_reviewer_request: false,
        existing_pr: None,
        prompt: request.prompt,
        model: None,
        webhook: None,
        body,
    };
    match s.create(new, now) {
        Ok(id) => (
            StatusCode::CREATED,
            Json(json!({
                "id": id,
                "runtime": "cursor",
                "agent_id": request.agent_id,
                "status": "running",
                "created_at": httpdate::fmt_http_date(now),
            })),
        )
            .into_response(),
        Err(refusal) => {
            drop(s);
            refused(&state, refusal)
        }
    }
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    page: Option<String>,
}

async fn list_events(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    let s = lock(&state);
    let Some(agent) = s.agent(&AgentId(id)) else {
        drop(s);
        return refused(&state, Refusal::NotFound);
    };
    let events = agent.platform_events(SystemTime::now());
    let start: usize = query.page.and_then(|p| p.parse().ok()).unwrap_or(0);
    let data: Vec<_> = events.iter().skip(start).take(PAGE).cloned().collect();
    let next_page = (start + PAGE < events.len()).then(|| (start + PAGE).to_string());
    Json(json!({ "data": data, "next_page": next_page })).into_response()
}

#[derive(Debug, Deserialize)]
struct SendEvents {
    events: Vec<serde_json::Value>,
}

async fn send_events(
    State(state): State<Shared>,
    Path(id): Path<String>,
    body: Result<Json<SendEvents>, JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return invalid("the body must be {\"events\": [...]}");
    };
    let id = AgentId(id);
    let now = SystemTime::now();
    let mut s = lock(&state);
    if s.agent(&id).is_none() {
        drop(s);
        return refused(&state, Refusal::NotFound);
    }
    for event in &body.events {
        match event.get("type").and_then(serde_json::Value::as_str) {
            Some("user.message") => {
                let text: String = event["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|b| b.get("text").and_then(serde_json::Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n");
                if text.trim().is_empty() {
                    return invalid("a user.message needs text content");
                }
                if let Err(refusal) = s.platform_follow_up(&id, text, now) {
                    drop(s);
                    return refused(&state, refusal);
                }
            }
            // Stopping a session that is not working changes nothing.
            Some("user.interrupt") => {
                let _ = s.stop(&id, now);
            }
            other => return invalid(format!("unsupported event type {other:?}")),
        }
    }
    Json(json!({ "data": body.events })).into_response()
}

/// The position after `Last-Event-ID` (`evt_000012` → 12), or the start.
fn resume_from(headers: &HeaderMap) -> usize {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start_matches("evt_").parse().ok())
        .unwrap_or(0)
}

async fn stream(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let id = AgentId(id);
    let mut sent = resume_from(&headers);
    let (drop_chance, shutdown) = {
        let mut s = lock(&state);
        if s.agent(&id).is_none() {
            drop(s);
            return refused(&state, Refusal::NotFound);
        }
        if headers.contains_key("last-event-id") {
            s.stats.stream_resumes += 1;
        }
        (s.config.faults.stream_drop, s.shutdown.clone())
    };
    let events = async_stream(move |yield_event| {
        let state = state.clone();
        let id = id.clone();
        let shutdown = shutdown.clone();
        async move {
            loop {
                let fresh = {
                    let s = lock(&state);
                    let Some(agent) = s.agent(&id) else { return };
                    agent.platform_events(SystemTime::now())
                };
                for event in fresh.into_iter().skip(sent) {
                    sent += 1;
                    lock(&state).stats.stream_events += 1;
                    let kind = event["type"].as_str().unwrap_or_default().to_owned();
                    let id = event["id"].as_str().unwrap_or_default().to_owned();
                    if yield_event
                        .send(Event::default().id(id).event(kind).data(event.to_string()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    // A stream that breaks mid-session: the client reconnects from its last id.
                    let broken = drop_chance > 0.0 && {
                        let mut s = lock(&state);
                        let broken = s.rng.random_bool(drop_chance);
                        if broken {
                            Stats::bump(&mut s.stats.faults, "stream_drop");
                        }
                        broken
                    };
                    if broken {
                        return;
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = yield_event.closed() => return,
                    () = tokio::time::sleep(TICK) => {}
                }
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(5)))
        .into_response()
}
