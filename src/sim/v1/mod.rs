//! The simulator's v1 endpoints: durable agents, one run per prompt, and v1's rules (one
//! active run per agent, client-chosen ids, archived agents, runs that cannot be cancelled,
//! a spending ceiling on demand).

use crate::sim::model::Stats;
use std::time::{Duration, SystemTime};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng as _;
use serde::Deserialize;
use serde_json::json;

mod view;

use super::http::{Shared, error, lock, with_prompt};
use super::model::{NewAgent, Origin, Refusal};
use crate::cursor::model::v1::{AgentRunId, CreateAgentRequest, CreateRunRequest, RunResponse};
use crate::cursor::model::{AgentId, IdResponse, Me, Source};
use crate::spec::RepoUrl;

/// The v1 routes (behind the same gate as v0's).
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/agents", get(list_agents).post(create_agent))
        .route("/v1/agents/{id}", get(agent).delete(delete))
        .route("/v1/agents/{id}/archive", post(archive))
        .route("/v1/agents/{id}/unarchive", post(unarchive))
        .route("/v1/agents/{id}/runs", get(list_runs).post(create_run))
        .route("/v1/agents/{id}/runs/{run}", get(run))
        .route("/v1/agents/{id}/runs/{run}/cancel", post(cancel))
        .route("/v1/agents/{id}/runs/{run}/stream", get(stream))
        .route("/v1/agents/{id}/usage", get(usage))
        .route("/v1/agents/{id}/artifacts", get(artifacts))
        .route("/v1/agents/{id}/artifacts/download", get(download))
        .route("/v1/me", get(me))
        .route("/v1/models", get(models))
        .route("/v1/repositories", get(repositories))
        .route("/__sim/artifacts/{id}/{*path}", get(artifact_file))
}

/// The refusal as v1 answers it, counted by code.
fn refused(state: &Shared, refusal: Refusal) -> Response {
    let (status, code, message) = refusal.answer();
    lock(state).count_error(code);
    error(status, code, message)
}

fn invalid(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "validation_error", message)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
    include_archived: Option<bool>,
    pr_url: Option<String>,
}

impl ListQuery {
    #[allow(clippy::result_large_err)] // an axum Response, returned as it is
    fn limit(&self) -> Result<usize, Response> {
        match self.limit.as_deref().map(str::parse::<usize>) {
            None => Ok(20),
            Some(Ok(n @ 1..=100)) => Ok(n),
            Some(_) => Err(invalid("limit must be a number from 1 to 100")),
        }
    }
}

fn is_agent_id(id: &str) -> bool {
    id.strip_prefix("bc-")
        .is_some_and(|uuid| uuid::Uuid::try_parse(uuid).is_ok())
}

async fn create_agent(
    State(state): State<Shared>,
    body: Result<Json<CreateAgentRequest>, JsonRejection>,
) -> Response {
    let request = match with_prompt(body, |r| &r.prompt) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    if let Err(Rejected(message)) = check_create(&request) {
        return invalid(message);
    }
    let mut body = serde_json::to_value(&request).unwrap_or_default();
    if let Some(serde_json::Value::Object(vars)) = body.get_mut("envVars") {
        for value in vars.values_mut() {
            *value = "***".into();
        }
    }
    // `repos` may be empty: an agent without a repository.
    let (repository, starting_ref, pr_url) = request.repos.first().map_or_else(
        || (String::new(), None, None),
        |r| (r.url.clone(), r.starting_ref.clone(), r.pr_url.clone()),
    );
    let now = SystemTime::now();
    let mut s = lock(&state);
    if let Some(model) = &request.model {
        if !s.config.models.contains(&model.id) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_model",
                format!("model `{}` is not available", model.id),
            );
        }
    }
    let new = NewAgent {
        api: Origin::V1,
        id: request.agent_id.clone(),
        name: request.name.clone(),
        source: Source {
            repository,
            git_ref: starting_ref,
        },
        branch: None,
        auto_create_pr: request.auto_create_pr.unwrap_or(false),
        open_as_cursor_github_app: false,
        skip_reviewer_request: request.skip_reviewer_request.unwrap_or(false),
        existing_pr: pr_url,
        prompt: request.prompt.text.clone(),
        model: request.model.as_ref().map(|m| m.id.clone()),
        webhook: None,
        body,
    };
    match s.create(new, now) {
        Ok(id) => {
            let agent = s.agent(&id).expect("just made");
            let view = agent.view_v1(now);
            let run = view.latest_run_id.clone().expect("a first run");
            let run = s.run(&id, &run, now, true).expect("just made");
            (
                StatusCode::CREATED,
                Json(json!({ "agent": view, "run": run })),
            )
                .into_response()
        }
        Err(refusal) => {
            drop(s);
            refused(&state, refusal)
        }
    }
}

/// The documented limits of a create request.
/// Why the API refuses a request: the message of its 400.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Rejected(String);

fn check_create(request: &CreateAgentRequest) -> Result<(), Rejected> {
    if request.prompt.images.len() > 5 {
        return Err(Rejected("prompt.images holds at most 5 images".into()));
    }
    if request.repos.len() > 20 {
        return Err(Rejected("repos holds at most 20 repositories".into()));
    }
    if let Some(bad) = request
        .repos
        .iter()
        .find(|r| r.url.parse::<RepoUrl>().is_err())
    {
        return Err(Rejected(format!(
            "repos[].url `{}` is not a GitHub repository URL",
            bad.url
        )));
    }
    if request
        .name
        .as_ref()
        .is_some_and(|n| n.chars().count() > 100)
    {
        return Err(Rejected("name must be at most 100 characters".into()));
    }
    if let Some(vars) = &request.env_vars {
        if vars.len() > 50 {
            return Err(Rejected("envVars holds at most 50 variables".into()));
        }
        if let Some(bad) = vars.keys().find(|k| k.starts_with("CURSOR_")) {
            return Err(Rejected(format!(
                "envVars: `{bad}` may not start with CURSOR_"
            )));
        }
        if let Some(bad) = vars.keys().find(|k| k.is_empty() || k.len() > 255) {
            return Err(Rejected(format!(
                "envVars: name `{bad}` must be 1 to 255 bytes"
            )));
        }
        if let Some((bad, _)) = vars
            .iter()
            .find(|(_, v)| v.expose().is_empty() || v.expose().len() > 4096)
        {
            return Err(Rejected(format!(
                "envVars: the value of `{bad}` must be 1 to 4096 bytes"
            )));
        }
        if request.agent_id.is_some() {
            return Err(Rejected("agentId cannot be combined with envVars".into()));
        }
    }
    if let Some(id) = &request.agent_id {
        if !is_agent_id(&id.0) {
            return Err(Rejected(format!("agentId `{id}` must look like bc-<uuid>")));
        }
    }
    if let Some(mode) = &request.mode {
        if !["agent", "plan"].contains(&mode.as_str()) {
            return Err(Rejected(format!("mode `{mode}` must be `agent` or `plan`")));
        }
    }
    Ok(())
}

async fn list_agents(State(state): State<Shared>, Query(query): Query<ListQuery>) -> Response {
    let limit = match query.limit() {
        Ok(limit) => limit,
        Err(refused) => return refused,
    };
    let cursor = query.cursor.clone().map(AgentId);
    let page = lock(&state).page_v1(
        limit,
        cursor.as_ref(),
        query.include_archived.unwrap_or(true),
        query.pr_url.as_deref(),
        SystemTime::now(),
    );
    Json(page).into_response()
}

async fn agent(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let view = lock(&state)
        .agent(&AgentId(id))
        .map(|a| a.view_v1(SystemTime::now()));
    match view {
        Some(agent) => Json(agent).into_response(),
        None => refused(&state, Refusal::NotFound),
    }
}

async fn delete(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let id = AgentId(id);
    let deleted = lock(&state).delete(&id);
    match deleted {
        Ok(()) => Json(json!({ "id": id })).into_response(),
        Err(refusal) => refused(&state, refusal),
    }
}

async fn archive(state: State<Shared>, id: Path<String>) -> Response {
    set_archived(state, id, true)
}

async fn unarchive(state: State<Shared>, id: Path<String>) -> Response {
    set_archived(state, id, false)
}

fn set_archived(State(state): State<Shared>, Path(id): Path<String>, archived: bool) -> Response {
    let result = lock(&state).set_archived(&AgentId(id), archived, SystemTime::now());
    match result {
        Ok(agent) => Json(IdResponse { id: agent.id }).into_response(),
        Err(refusal) => refused(&state, refusal),
    }
}

async fn list_runs(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    let limit = match query.limit() {
        Ok(limit) => limit,
        Err(refused) => return refused,
    };
    let cursor = query.cursor.clone().map(AgentRunId);
    let page = lock(&state).runs(&AgentId(id), limit, cursor.as_ref(), SystemTime::now());
    match page {
        Ok(page) => Json(page).into_response(),
        Err(refusal) => refused(&state, refusal),
    }
}

async fn create_run(
    State(state): State<Shared>,
    Path(id): Path<String>,
    body: Result<Json<CreateRunRequest>, JsonRejection>,
) -> Response {
    let request = match with_prompt(body, |r| &r.prompt) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let created = lock(&state).create_run(&AgentId(id), request.prompt.text, SystemTime::now());
    match created {
        Ok(run) => (StatusCode::CREATED, Json(RunResponse { run })).into_response(),
        Err(refusal) => refused(&state, refusal),
    }
}

async fn run(State(state): State<Shared>, Path((id, run)): Path<(String, String)>) -> Response {
    let found = lock(&state).run(&AgentId(id), &AgentRunId(run), SystemTime::now(), true);
    match found {
        Ok(run) => Json(run).into_response(),
        Err(refusal) => refused(&state, refusal),
    }
}

/// The longest an open run stream sleeps before it looks again (a cancel comes at any time),
/// and how long it may stay silent, in real time. It otherwise sleeps until the run's next
/// change: a thousand open streams cost little.
const STREAM_TICK: Duration = Duration::from_millis(50);
const HEARTBEAT: Duration = Duration::from_secs(10);

/// `GET .../runs/{runId}/stream`: the run's status replayed first (no id), then its numbered
/// events from after `Last-Event-ID`, heartbeats while quiet, `done` at the end; 410
/// `stream_expired` once the retention after the end has passed.
async fn stream(
    State(state): State<Shared>,
    Path((id, run)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (id, run) = (AgentId(id), AgentRunId(run));
    let now = SystemTime::now();
    let (told, retention, shutdown) = {
        let mut s = lock(&state);
        let told = s.run_stream(&id, &run, now);
        if headers.contains_key("last-event-id") {
            s.stats.stream_resumes += 1;
        }
        let retention = s.config.stream_retention.div_f64(s.config.speed.max(1e-9));
        (told, retention, s.shutdown.clone())
    };
    let told = match told {
        Ok(told) => told,
        Err(refusal) => return refused(&state, refusal),
    };
    if told.ended.is_some_and(|ended| now > ended + retention) {
        lock(&state).count_error("stream_expired");
        return error(
            StatusCode::GONE,
            "stream_expired",
            "The run's stream is no longer kept",
        );
    }
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.strip_prefix(run.0.as_str())
                .and_then(|n| n.strip_prefix(':'))
                .and_then(|n| n.parse::<u32>().ok())
        });
    let mut sent = match last {
        None => 0,
        Some(Some(n)) => n,
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_last_event_id",
                "Last-Event-ID does not belong to this run",
            );
        }
    };
    let replay = json!({ "runId": run, "status": told.status });
    let events = super::http::async_stream(move |out| async move {
        let event = |kind: &str, data: &serde_json::Value| {
            axum::response::sse::Event::default()
                .event(kind)
                .data(data.to_string())
        };
        if out.send(event("status", &replay)).await.is_err() {
            return;
        }
        let mut quiet_since = tokio::time::Instant::now();
        loop {
            let news = lock(&state).run_stream(&id, &run, SystemTime::now());
            let Ok(news) = news else { return };
            let nap = news
                .next_change
                .and_then(|at| at.duration_since(SystemTime::now()).ok())
                .map_or(STREAM_TICK, |d| d.min(STREAM_TICK));
            let from = sent;
            for (n, kind, data) in news.events.iter().filter(|(n, _, _)| *n > from) {
                sent = *n;
                quiet_since = tokio::time::Instant::now();
                lock(&state).stats.stream_events += 1;
                let numbered = event(kind, data).id(format!("{run}:{n}"));
                if out.send(numbered).await.is_err() || *kind == "done" {
                    return;
                }
                // A stream that breaks mid-run: the client reconnects from its last id.
                let mut s = lock(&state);
                let drop_chance = s.config.faults.stream_drop;
                if drop_chance > 0.0 && s.rng.random_bool(drop_chance) {
                    Stats::bump(&mut s.stats.faults, "stream_drop");
                    return;
                }
            }
            if quiet_since.elapsed() >= HEARTBEAT {
                quiet_since = tokio::time::Instant::now();
                if out.send(event("heartbeat", &json!({}))).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = out.closed() => return,
                () = tokio::time::sleep(nap) => {}
            }
        }
    });
    let seconds = retention.as_secs() + u64::from(retention.subsec_nanos() > 0);
    let mut response = axum::response::sse::Sse::new(events).into_response();
    response
        .headers_mut()
        .insert("x-cursor-stream-retention-seconds", seconds.into());
    response
}

async fn cancel(State(state): State<Shared>, Path((id, run)): Path<(String, String)>) -> Response {
    let cancelled = lock(&state).cancel_run(&AgentId(id), &AgentRunId(run), SystemTime::now());
    match cancelled {
        Ok(run) => Json(json!({ "id": run.id })).into_response(),
        Err(refusal) => refused(&state, refusal),
    }
}

async fn usage(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    if !lock(&state).config.usage_available {
        return error(
            StatusCode::FORBIDDEN,
            "feature_unavailable",
            "Usage is not available on this plan",
        );
    }
    let usage = lock(&state).usage(&AgentId(id), SystemTime::now());
    match usage {
        Ok(usage) => Json(usage).into_response(),
        Err(refusal) => refused(&state, refusal),
    }
}

async fn artifacts(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let files = lock(&state).artifacts(&AgentId(id), SystemTime::now());
    match files {
        Ok(files) => {
            let items: Vec<_> = files
                .iter()
                .map(|(path, text, updated)| {
                    json!({
                        "path": path,
                        "sizeBytes": text.len(),
                        "updatedAt": humantime::format_rfc3339_millis(*updated).to_string(),
                    })
                })
                .collect();
            Json(json!({ "items": items })).into_response()
        }
        Err(refusal) => refused(&state, refusal),
    }
}

#[derive(Debug, Deserialize)]
struct DownloadQuery {
    path: Option<String>,
}

/// A link to the simulator's own `/__sim/artifacts/...`, as a presigned URL would be: it
/// needs no key.
async fn download(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<DownloadQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(path) = query.path else {
        return invalid("path is required");
    };
    let files = lock(&state).artifacts(&AgentId(id.clone()), SystemTime::now());
    let files = match files {
        Ok(files) => files,
        Err(refusal) => return refused(&state, refusal),
    };
    if !files.iter().any(|(p, _, _)| *p == path) {
        return error(
            StatusCode::NOT_FOUND,
            "artifact_not_found",
            "No such artifact",
        );
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let prefix = lock(&state)
        .config
        .path_prefix
        .trim_end_matches('/')
        .to_owned();
    let expires = SystemTime::now() + Duration::from_secs(15 * 60);
    Json(json!({
        "url": format!("http://{host}{prefix}/__sim/artifacts/{id}/{path}"),
        "expiresAt": humantime::format_rfc3339_seconds(expires).to_string(),
    }))
    .into_response()
}

async fn artifact_file(
    State(state): State<Shared>,
    Path((id, path)): Path<(String, String)>,
) -> Response {
    let files = lock(&state)
        .artifacts(&AgentId(id), SystemTime::now())
        .unwrap_or_default();
    match files.into_iter().find(|(p, _, _)| *p == path) {
        Some((_, text, _)) => text.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn me() -> Json<Me> {
    Json(Me {
        api_key_name: "orchestrate simulator".into(),
        created_at: Some("2026-01-01T00:00:00Z".into()),
        user_email: Some("simulator@example.com".into()),
    })
}

async fn models(State(state): State<Shared>) -> Response {
    let items: Vec<_> = lock(&state)
        .config
        .models
        .iter()
        .map(|id| json!({ "id": id, "displayName": id }))
        .collect();
    Json(json!({ "items": items })).into_response()
}

async fn repositories(State(state): State<Shared>) -> Response {
    let items: Vec<_> = lock(&state)
        .config
        .repositories
        .iter()
        .map(|r| json!({ "url": r.repository }))
        .collect();
    Json(json!({ "items": items })).into_response()
}
