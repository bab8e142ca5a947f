//! The simulator's HTTP API: the gate every request passes (auth, quotas, faults), the v0
//! endpoints, and `/__sim/*` for tests. v1's endpoints are in `routes_v1.rs`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use rand::Rng;
use serde::Deserialize;
use serde_json::json;

use super::state::{Refusal, SimState};
use crate::cursor::model::{
    AgentId, AgentPage, Conversation, FollowUpRequest, IdResponse, LaunchRequest, Me, Models,
    Repositories,
};
use crate::spec::RepoUrl;

/// The shared state handlers see.
pub type Shared = Arc<Mutex<SimState>>;

pub(super) fn lock(state: &Shared) -> std::sync::MutexGuard<'_, SimState> {
    // A handler that panicked leaves counters at worst a step behind: keep serving.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An error answer as both published files have it: `{"error": {"code", "message"}}`.
pub(super) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message.into() } })),
    )
        .into_response()
}

impl Refusal {
    /// The documented status, code and message of the refusal.
    pub(super) fn answer(&self) -> (StatusCode, &'static str, String) {
        let (status, code, message) = match self {
            Refusal::NotFound => (StatusCode::NOT_FOUND, "agent_not_found", "Agent not found"),
            Refusal::RunNotFound => (StatusCode::NOT_FOUND, "run_not_found", "Run not found"),
            Refusal::Busy => (
                StatusCode::CONFLICT,
                "agent_busy",
                "Agent is busy; try again when its run has finished",
            ),
            Refusal::Archived => (StatusCode::CONFLICT, "agent_archived", "Agent is archived"),
            Refusal::IdConflict => (
                StatusCode::CONFLICT,
                "agent_id_conflict",
                "An agent with this id already exists",
            ),
            Refusal::NotCancellable => (
                StatusCode::CONFLICT,
                "run_not_cancellable",
                "The run has already ended",
            ),
            Refusal::UsageLimit => (
                StatusCode::BAD_REQUEST,
                "usage_limit_exceeded",
                "Usage limit exceeded: raise the spending limit to launch more agents",
            ),
            Refusal::NotAllowed(why) => (StatusCode::CONFLICT, "invalid_state", why.as_str()),
        };
        (status, code, message.to_owned())
    }
}

fn refusal(refusal: Refusal) -> Response {
    let (status, code, message) = refusal.answer();
    error(status, code, message)
}

/// The router of a simulator over `state`.
pub fn router(state: Shared) -> Router {
    let strict = lock(&state).config.contract.is_some();
    let router = Router::new()
        .route("/v0/agents", get(list_agents).post(launch))
        .route("/v0/agents/{id}", get(agent).delete(delete))
        .route("/v0/agents/{id}/conversation", get(conversation))
        .route("/v0/agents/{id}/followup", post(follow_up))
        .route("/v0/agents/{id}/stop", post(stop))
        .route("/v0/me", get(me))
        .route("/v0/models", get(models))
        .route("/v0/repositories", get(repositories))
        .merge(super::routes_v1::routes())
        .merge(super::routes_platform::routes())
        .route("/__sim/stats", get(stats))
        .route("/__sim/launches", get(launches))
        .route("/__sim/violations", get(violations))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "No such endpoint") })
        .layer(middleware::from_fn_with_state(state.clone(), gate));
    // Outermost, so that the gate's own answers (401, 429, faults) are checked too.
    let router = if strict {
        router.layer(middleware::from_fn_with_state(
            state.clone(),
            super::checked::check,
        ))
    } else {
        router
    };
    router.with_state(state)
}

/// Whether the `Authorization` header carries `key`, as Basic (key as user name) or Bearer.
fn authorized(headers: &HeaderMap, key: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    if let Some(token) = value.strip_prefix("Bearer ") {
        return token.trim() == key;
    }
    if let Some(encoded) = value.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .unwrap_or_default();
        let decoded = String::from_utf8_lossy(&decoded);
        return decoded
            .split_once(':')
            .map_or(decoded.as_ref(), |(user, _)| user)
            == key;
    }
    false
}

/// What the gate decided for a request.
enum Fate {
    Answer,
    Burst,
    Quota { wait: Duration, limit: u32 },
    ServerError(u16),
    Drop,
}

/// Before every API request: count it, then latency, auth, quotas and injected faults.
async fn gate(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    if route.starts_with("/__sim/") {
        return next.run(request).await;
    }
    let name = format!("{} {route}", request.method());
    let repositories = route.ends_with("/repositories");
    let mutation = request.method() != Method::GET;
    let (latency, key) = {
        let mut s = lock(&state);
        *s.stats.calls.entry(name.clone()).or_default() += 1;
        let latency = s.config.faults.latency.map(|(low, high)| {
            if low >= high {
                low
            } else {
                s.rng.random_range(low..=high)
            }
        });
        let slow = if repositories {
            s.config.repositories_latency
        } else {
            Duration::ZERO
        };
        (latency.unwrap_or_default() + slow, s.config.api_key.clone())
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if !authorized(request.headers(), &key) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "Invalid API key");
    }
    let fate = {
        let mut s = lock(&state);
        let now = SystemTime::now();
        let faults = s.config.faults.clone();
        let bursting = s.burst_left > 0
            || (faults.rate_limit_burst > 0.0 && s.rng.random_bool(faults.rate_limit_burst));
        if bursting {
            s.burst_left = if s.burst_left > 0 {
                s.burst_left - 1
            } else {
                faults.burst_length.saturating_sub(1)
            };
            *s.stats.faults.entry("429".into()).or_default() += 1;
            Fate::Burst
        } else if let Err(refusal) = s.admit(repositories, now) {
            // Past the documented repositories limit is a client's fault; past the general
            // quota is how a client learns it.
            let counter = if refusal.documented {
                &mut s.stats.quota_violations
            } else {
                &mut s.stats.throttled
            };
            *counter.entry(name.clone()).or_default() += 1;
            Fate::Quota {
                wait: refusal.wait,
                limit: refusal.limit,
            }
        } else if repositories
            && faults.repositories_error > 0.0
            && s.rng.random_bool(faults.repositories_error)
        {
            *s.stats.faults.entry("repos_5xx".into()).or_default() += 1;
            Fate::ServerError(503)
        } else if faults.server_error > 0.0 && s.rng.random_bool(faults.server_error) {
            *s.stats.faults.entry("5xx".into()).or_default() += 1;
            Fate::ServerError([500, 502, 503][s.rng.random_range(0..3)])
        } else if faults.drop > 0.0 && s.rng.random_bool(faults.drop) {
            *s.stats.faults.entry("drop".into()).or_default() += 1;
            Fate::Drop
        } else {
            Fate::Answer
        }
    };
    match fate {
        Fate::Answer => next.run(request).await,
        Fate::Burst => rate_limited(
            Duration::from_secs(1),
            BURST_LIMIT,
            "Too many requests (injected burst)",
        ),
        Fate::Quota { wait, limit } => rate_limited(wait, limit, "Rate limit exceeded"),
        Fate::ServerError(status) => error(
            StatusCode::from_u16(status).expect("a valid status"),
            "internal_error",
            "Injected server error",
        ),
        Fate::Drop => {
            // A lost response: a launch or follow-up takes effect, then the connection dies.
            if mutation {
                let _ = next.run(request).await;
            }
            dropped_connection()
        }
    }
}

/// The limit an injected 429 burst names: a refusal below it, as when another client spends
/// the team's quota.
const BURST_LIMIT: u32 = 100_000;

/// A 429 with `Retry-After` and the `X-RateLimit-*` headers v1 documents.
fn rate_limited(wait: Duration, limit: u32, message: &str) -> Response {
    let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
        message,
    );
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, seconds.into());
    headers.insert("x-ratelimit-limit", limit.into());
    headers.insert("x-ratelimit-remaining", 0.into());
    headers.insert("x-ratelimit-reset", seconds.into());
    response
}

/// A response whose body fails before its first byte: hyper closes the connection, and the
/// client sees it dropped.
pub(super) fn dropped_connection() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<axum::body::Bytes, _>(std::io::Error::other("connection dropped by the simulator"))
    });
    Response::builder()
        .status(StatusCode::OK)
        .body(Body::from_stream(failing))
        .expect("a valid response")
}

#[allow(clippy::result_large_err)] // an axum Response, returned as it is
/// The body of a request that carries a prompt, or the API's 400 when it is malformed or the
/// prompt is empty.
pub(super) fn with_prompt<T>(
    body: Result<Json<T>, JsonRejection>,
    prompt: impl Fn(&T) -> &crate::cursor::model::Prompt,
) -> Result<T, Response> {
    let Json(request) = body.map_err(|rejection| {
        error(
            StatusCode::BAD_REQUEST,
            "validation_error",
            rejection.body_text(),
        )
    })?;
    if prompt(&request).text.trim().is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "validation_error",
            "prompt.text is required",
        ));
    }
    Ok(request)
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

async fn stats(State(state): State<Shared>) -> Response {
    Json(lock(&state).stats.clone()).into_response()
}

async fn violations(State(state): State<Shared>) -> Response {
    Json(lock(&state).violations.clone()).into_response()
}

async fn launches(State(state): State<Shared>) -> Response {
    Json(lock(&state).launches.clone()).into_response()
}
