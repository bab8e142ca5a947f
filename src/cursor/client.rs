//! The typed client of the Cursor Cloud Agents API: transport, quotas, retries, and the v0
//! endpoints (v1's are in `v1.rs`).

use super::outage::{Outage, OutageClock};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{Level, debug, trace};
use url::Url;

use super::model::{
    Agent, AgentId, AgentPage, Conversation, FollowUpRequest, IdResponse, LaunchRequest, Me,
    Models, Prompt, Repositories,
};
use super::{
    ApiError, ApiKey, AuthScheme, CallKind, ClientConfig, ConfigError, Outcome, Permit, Quotas,
    RateHeaders, RetryPolicy, rate_headers,
};

/// Sent with every request, so the API's operators can tell orchestrate's traffic apart.
pub const USER_AGENT: &str = concat!("orchestrate/", env!("CARGO_PKG_VERSION"));

/// The most agents `GET /v0/agents` returns in one page.
pub const MAX_PAGE: u32 = 100;

/// A client of the API: quotas kept, retries done, errors typed. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base: Url,
    key: ApiKey,
    auth: AuthScheme,
    request_timeout: Duration,
    repositories_timeout: Duration,
    quotas: Quotas,
    retry: RetryPolicy,
    outage: OutageClock,
}

/// One call: what to send and how it may be retried.
pub(super) struct Call<'a, B> {
    pub(super) method: Method,
    pub(super) path: &'a str,
    pub(super) query: &'a [(&'a str, String)],
    pub(super) body: Option<&'a B>,
    pub(super) kind: CallKind,
    /// Whether sending it twice does no harm (reads, stop, delete). A launch or a follow-up
    /// is only sent again when the API surely did not act on it.
    pub(super) idempotent: bool,
}

impl Client {
    /// A client for `config`.
    pub fn new(config: ClientConfig) -> Result<Self, ConfigError> {
        Self::resuming(config, None)
    }

    /// A client that knows when an earlier process last called `GET /v0/repositories`.
    pub fn resuming(
        config: ClientConfig,
        last_repositories_call: Option<SystemTime>,
    ) -> Result<Self, ConfigError> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| ConfigError::Http(e.to_string()))?;
        let quotas = config.quotas.hardened(is_loopback(&config.base_url));
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base: config.base_url,
                key: config.api_key,
                auth: config.auth,
                request_timeout: config.request_timeout,
                repositories_timeout: config.repositories_timeout,
                quotas: Quotas::new(quotas, last_repositories_call),
                retry: config.retry,
                outage: OutageClock::default(),
            }),
        })
    }

    /// The quotas this client keeps (for the last repositories call time, and waits).
    pub fn quotas(&self) -> &Quotas {
        &self.inner.quotas
    }

    /// The API root.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// How long the API has been out of reach, if its last call reached nobody (or met a
    /// 5xx) after every retry.
    pub fn outage(&self) -> Option<Outage> {
        self.inner
            .outage
            .outage(self.inner.base.as_str(), Instant::now())
    }

    /// `GET /v0/agents`: one page of agents, newest first.
    pub async fn list_agents(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<AgentPage, ApiError> {
        let mut query = Vec::new();
        if let Some(limit) = limit {
            query.push(("limit", limit.clamp(1, MAX_PAGE).to_string()));
        }
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_owned()));
        }
        self.get("v0/agents", &query, CallKind::Read).await
    }

    /// `GET /v0/agents/{id}`.
    pub async fn agent(&self, id: &AgentId) -> Result<Agent, ApiError> {
        self.get(
            &format!("v0/agents/{}", segment(&id.0)),
            &[],
            CallKind::Read,
        )
        .await
    }

    /// `GET /v0/agents/{id}/conversation`.
    pub async fn conversation(&self, id: &AgentId) -> Result<Conversation, ApiError> {
        self.get(
            &format!("v0/agents/{}/conversation", segment(&id.0)),
            &[],
            CallKind::Read,
        )
        .await
    }

    /// `POST /v0/agents`. Retried only when the API surely did not act on it; after any
    /// other failure the agent may exist, and the caller must find out before launching
    /// again.
    pub async fn launch(&self, request: &LaunchRequest) -> Result<Agent, ApiError> {
        self.call(Call {
            method: Method::POST,
            path: "v0/agents",
            query: &[],
            body: Some(request),
            kind: CallKind::Launch,
            idempotent: false,
        })
        .await
    }

    /// `POST /v0/agents/{id}/followup`. A 409 (the agent is busy) is waited out and retried.
    pub async fn follow_up(&self, id: &AgentId, prompt: Prompt) -> Result<IdResponse, ApiError> {
        self.call(Call {
            method: Method::POST,
            path: &format!("v0/agents/{}/followup", segment(&id.0)),
            query: &[],
            body: Some(&FollowUpRequest { prompt }),
            kind: CallKind::Change,
            idempotent: false,
        })
        .await
    }

    /// `POST /v0/agents/{id}/stop`.
    pub async fn stop(&self, id: &AgentId) -> Result<IdResponse, ApiError> {
        self.call::<(), _>(Call {
            method: Method::POST,
            path: &format!("v0/agents/{}/stop", segment(&id.0)),
            query: &[],
            body: None,
            kind: CallKind::Change,
            idempotent: true,
        })
        .await
    }

    /// `DELETE /v0/agents/{id}`.
    pub async fn delete(&self, id: &AgentId) -> Result<IdResponse, ApiError> {
        self.call::<(), _>(Call {
            method: Method::DELETE,
            path: &format!("v0/agents/{}", segment(&id.0)),
            query: &[],
            body: None,
            kind: CallKind::Change,
            idempotent: true,
        })
        .await
    }

    /// `GET /v0/me`.
    pub async fn me(&self) -> Result<Me, ApiError> {
        self.get("v0/me", &[], CallKind::Read).await
    }

    /// `GET /v0/models`.
    pub async fn models(&self) -> Result<Models, ApiError> {
        self.get("v0/models", &[], CallKind::Read).await
    }

    /// `GET /v0/repositories`, within its 1 per minute and 30 per hour limits (this waits).
    pub async fn repositories(&self) -> Result<Repositories, ApiError> {
        let answer = self
            .get("v0/repositories", &[], CallKind::Repositories)
            .await;
        self.inner.quotas.repositories_answered();
        answer
    }

    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        kind: CallKind,
    ) -> Result<T, ApiError> {
        self.call::<(), _>(Call {
            method: Method::GET,
            path,
            query,
            body: None,
            kind,
            idempotent: true,
        })
        .await
    }

    pub(super) async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        call: Call<'_, B>,
    ) -> Result<T, ApiError> {
        let inner = &self.inner;
        // Time spent on the call itself, not waiting for quotas: a tight quota is not a
        // failing API, and must not use up the retries' time.
        let mut spent = Duration::ZERO;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let permit = inner.quotas.acquire(call.kind).await;
            let sent = Instant::now();
            let result = self.send_once(&call, permit).await;
            spent += sent.elapsed();
            inner
                .outage
                .note(result.as_ref().map(|_| ()), Instant::now());
            let elapsed_ms = sent.elapsed().as_millis();
            let error = match result {
                Ok(value) => {
                    debug!(method = %call.method, path = call.path, attempt, elapsed_ms, "ok");
                    return Ok(value);
                }
                Err(error) => error,
            };
            let may_retry =
                error.is_retryable() && (call.idempotent || error.surely_not_processed());
            // A 429 is waited out by the hold it put on its quota, which every call shares.
            let retry_after = match error {
                ApiError::RateLimited { .. } => Some(Duration::ZERO),
                _ => error.retry_after(),
            };
            let delay = may_retry
                .then(|| inner.retry.delay(attempt, spent, retry_after))
                .flatten();
            let Some(delay) = delay else {
                debug!(method = %call.method, path = call.path, attempt, elapsed_ms, %error, "failed");
                return Err(error);
            };
            debug!(
                method = %call.method,
                path = call.path,
                attempt,
                retry_in_ms = delay.as_millis(),
                %error,
                "retrying"
            );
            tokio::time::sleep(delay).await;
            spent += delay;
        }
    }

    async fn send_once<B: Serialize, T: DeserializeOwned>(
        &self,
        call: &Call<'_, B>,
        permit: Permit<'_>,
    ) -> Result<T, ApiError> {
        let inner = &self.inner;
        let timeout = match call.kind {
            CallKind::Repositories => inner.repositories_timeout,
            _ => inner.request_timeout,
        };
        let mut request = self
            .request(call.method.clone(), call.path)?
            .timeout(timeout);
        if !call.query.is_empty() {
            request = request.query(call.query);
        }
        if let Some(body) = call.body {
            request = request.json(body);
            if tracing::enabled!(Level::TRACE) {
                trace!(method = %call.method, path = call.path, body = %redacted(body), "request");
            }
        }
        let (response, headers) = send(request, permit).await?;
        let status = response.status();
        let body = response.bytes().await.map_err(network_error)?;
        trace!(
            method = %call.method,
            path = call.path,
            status = status.as_u16(),
            body = %truncated(&String::from_utf8_lossy(&body)),
            "response"
        );
        if !status.is_success() {
            return Err(ApiError::from_status(
                status.as_u16(),
                retry_after(status, headers),
                &String::from_utf8_lossy(&body),
            ));
        }
        let body = if body.is_empty() && status == StatusCode::NO_CONTENT {
            &b"null"[..]
        } else {
            &body[..]
        };
        serde_json::from_slice(body).map_err(|e| ApiError::Decode {
            message: e.to_string(),
        })
    }
}

/// Keys whose values `-vv` never prints: the agents' environment and webhook secrets.
const SECRET_KEYS: [&str; 6] = [
    "env_vars", "envVars", "secret", "apiKey", "token", "password",
];

/// A request body for `-vv`, with the values of [`SECRET_KEYS`] replaced.
fn redacted<B: Serialize>(body: &B) -> String {
    fn redact(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    if SECRET_KEYS.contains(&key.as_str()) {
                        *value = serde_json::Value::String("[redacted]".into());
                    } else {
                        redact(value);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(body).unwrap_or_default();
    redact(&mut value);
    truncated(&value.to_string())
}

/// At most 2,000 characters of a body: enough to see what the API said.
fn truncated(text: &str) -> String {
    const MAX: usize = 2000;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}... ({} bytes)", &text[..at], text.len()),
        None => text.to_owned(),
    }
}

impl Client {
    /// A request to `path` below the API root, with the key; no timeout of its own.
    pub(super) fn request(
        &self,
        method: Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, ApiError> {
        let inner = &self.inner;
        let url = inner.base.join(path).map_err(|e| ApiError::Decode {
            message: e.to_string(),
        })?;
        let request = inner.http.request(method, url);
        Ok(match inner.auth {
            AuthScheme::Basic => request.basic_auth(inner.key.expose(), Some("")),
            AuthScheme::Bearer => request.bearer_auth(inner.key.expose()),
        })
    }

    /// Waits for the quota of a call of `kind`; the permit is settled with its answer.
    pub(super) async fn acquire(&self, kind: CallKind) -> Permit<'_> {
        self.inner.quotas.acquire(kind).await
    }
}

/// Whether `url` is on this machine (the simulator): only there may the documented
/// repositories limit be loosened.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

/// Sends `request` on the place `permit` holds, and settles it with what the answer says of
/// the rate: a 429, the `X-RateLimit-*` headers, or that nothing reached the server.
pub(super) async fn send(
    request: reqwest::RequestBuilder,
    permit: Permit<'_>,
) -> Result<(reqwest::Response, RateHeaders), ApiError> {
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            let error = network_error(error);
            if error.surely_not_processed() {
                permit.settle(Outcome::NotSent);
            }
            return Err(error);
        }
    };
    let headers = rate_headers(response.headers());
    permit.settle(if response.status() == StatusCode::TOO_MANY_REQUESTS {
        Outcome::Throttled(headers)
    } else {
        Outcome::Counted(headers)
    });
    Ok((response, headers))
}

/// How long a refused call should wait: `Retry-After`, or for a 429 the window's reset.
pub(super) fn retry_after(status: StatusCode, headers: RateHeaders) -> Option<Duration> {
    headers.retry_after.or_else(|| {
        (status == StatusCode::TOO_MANY_REQUESTS)
            .then_some(headers.reset)
            .flatten()
    })
}

/// An agent id as one path segment, whatever it holds.
pub(super) fn segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

pub(super) fn network_error(error: reqwest::Error) -> ApiError {
    // reqwest's message never holds headers, so the key cannot leak through it.
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    ApiError::Network {
        sent: !error.is_connect(),
        message,
    }
}
