//! The simulator's HTTP surface: the gate every request passes (auth, quotas, faults), what
//! every API's handlers share, and `/__sim/*` for tests. Each API's endpoints are in its own
//! folder (`v0/`, `v1/`, `platform/`), which use this; `mod.rs` assembles them.

use crate::sim::model::Stats;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use rand::Rng;
use serde_json::json;

use super::model::{Refusal, SimState};

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

pub(super) fn refusal(refusal: Refusal) -> Response {
    let (status, code, message) = refusal.answer();
    error(status, code, message)
}

/// The routes tests read the simulator's memory through: `/__sim/*`.
pub(super) fn test_routes() -> Router<Shared> {
    Router::new()
        .route("/__sim/stats", get(stats))
        .route("/__sim/launches", get(launches))
        .route("/__sim/violations", get(violations))
}

/// The answer to a path no API has.
pub(super) async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "No such endpoint")
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
pub(super) async fn gate(State(state): State<Shared>, request: Request, next: Next) -> Response {
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
        Stats::bump(&mut s.stats.calls, name.clone());
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
            Stats::bump(&mut s.stats.faults, "429");
            Fate::Burst
        } else if let Err(refusal) = s.admit(repositories, now) {
            // Past the documented repositories limit is a client's fault; past the general
            // quota is how a client learns it.
            let counter = if refusal.documented {
                &mut s.stats.quota_violations
            } else {
                &mut s.stats.throttled
            };
            Stats::bump(counter, name.clone());
            Fate::Quota {
                wait: refusal.wait,
                limit: refusal.limit,
            }
        } else if repositories
            && faults.repositories_error > 0.0
            && s.rng.random_bool(faults.repositories_error)
        {
            Stats::bump(&mut s.stats.faults, "repos_5xx");
            Fate::ServerError(503)
        } else if faults.server_error > 0.0 && s.rng.random_bool(faults.server_error) {
            Stats::bump(&mut s.stats.faults, "5xx");
            Fate::ServerError([500, 502, 503][s.rng.random_range(0..3)])
        } else if faults.drop > 0.0 && s.rng.random_bool(faults.drop) {
            Stats::bump(&mut s.stats.faults, "drop");
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

async fn stats(State(state): State<Shared>) -> Response {
    Json(lock(&state).stats.clone()).into_response()
}

async fn violations(State(state): State<Shared>) -> Response {
    Json(lock(&state).violations.clone()).into_response()
}

async fn launches(State(state): State<Shared>) -> Response {
    Json(lock(&state).launches.clone()).into_response()
}

/// A stream of SSE events that `produce` sends into, ending when it returns.
pub(super) fn async_stream<F, Fut>(
    produce: F,
) -> impl futures_util::Stream<Item = Result<Event, Infallible>> + Send + 'static
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(produce(sender));
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (Ok(event), receiver))
    })
}
