//! The LiteLLM pass-through proxy end to end: `CURSOR_API_BASE_URL=http://HOST:4000/cursor`
//! with a virtual key as Bearer. A small proxy stands in for LiteLLM: it refuses any call
//! without the virtual key, strips `/cursor`, and forwards to the simulator with the Cursor
//! key of its own, as LiteLLM does with the credential it stores.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use orchestrate::sim::DEFAULT_KEY;

use crate::scenario::{Backend, Ran, Scenario, every_launch_once};

/// The LiteLLM virtual key the tests give orchestrate.
const VIRTUAL_KEY: &str = "sk-litellm-team-a-0123456789";

/// What the proxy saw.
#[derive(Debug, Default)]
struct Seen {
    /// Calls forwarded, as `METHOD /cursor/...`.
    forwarded: Vec<String>,
    /// Calls refused: no virtual key, or a path outside `/cursor`.
    refused: Vec<String>,
}

struct Proxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    server: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy on loopback forwarding `/cursor/...` to `upstream`.
    async fn start(upstream: String) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = (upstream, reqwest::Client::new(), seen.clone());
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, seen, server }
    }

    /// The base URL a user sets: the proxy's `/cursor`.
    fn base_url(&self) -> String {
        format!("http://{}/cursor", self.addr)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type ProxyState = (String, reqwest::Client, Arc<Mutex<Seen>>);

async fn forward(State((upstream, client, seen)): State<ProxyState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let call = format!("{} {}", parts.method, parts.uri.path());
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(rest) = parts.uri.path().strip_prefix("/cursor/") else {
        seen.lock().unwrap().refused.push(call);
        return (StatusCode::NOT_FOUND, "not a pass-through route").into_response();
    };
    if bearer != Some(VIRTUAL_KEY) {
        seen.lock().unwrap().refused.push(call);
        let body = serde_json::json!({"error": {
            "message": "Authentication Error, Invalid proxy server token passed.",
            "type": "auth_error", "code": "401"}});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    seen.lock().unwrap().forwarded.push(call);
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut upstream_request = client
        .request(parts.method, format!("{upstream}/{rest}{query}"))
        .basic_auth(DEFAULT_KEY, Some(""))
        .body(body);
    if let Some(kind) = parts.headers.get(header::CONTENT_TYPE) {
        upstream_request = upstream_request.header(header::CONTENT_TYPE, kind);
    }
    let answer = upstream_request.send().await.unwrap();
    let status = answer.status();
    // The headers orchestrate reads back: the body's type and the quota hints.
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        let name_text = name.as_str();
        if name == header::CONTENT_TYPE
            || name == header::RETRY_AFTER
            || name_text.starts_with("x-ratelimit-")
        {
            headers.insert(name.clone(), value.clone());
        }
    }
    let bytes = answer.bytes().await.unwrap();
    (status, headers, Body::from(bytes)).into_response()
}

/// `apply FILE --yes` through `proxy` with `key` as Bearer.
async fn apply_through(s: &Scenario, proxy: &Proxy, key: &str, file: &str) -> Ran {
    let mut command = s.apply_command(&Scenario::example(file), &[]);
    command
        .env("CURSOR_API_BASE_URL", proxy.base_url())
        .env("CURSOR_API_KEY", key)
        .env("CURSOR_API_AUTH", "bearer");
    Scenario::finish(command).await
}

on_both_apis!(workflows_run_through_the_litellm_pass_through_proxy);
async fn workflows_run_through_the_litellm_pass_through_proxy(backend: Backend) {
    // A pipeline with needs, a fleet with follow-ups and a canary, a discovered fleet.
    for file in ["pipeline", "fleet-fanout", "nightly-sweep"] {
        let sim = Scenario::on(backend).start().await;
        let proxy = Proxy::start(sim.url()).await;
        let ran = apply_through(&sim, &proxy, VIRTUAL_KEY, file).await;
        assert_eq!(ran.code, Some(0), "{file}:\n{}", ran.stderr);
        assert!(!ran.stderr.contains(VIRTUAL_KEY), "{}", ran.stderr);
        let status = sim.status().await;
        assert_eq!(
            status.count("succeeded"),
            status.instances().len(),
            "{status}"
        );
        every_launch_once(&sim.stats());
        {
            let seen = proxy.seen();
            assert!(seen.refused.is_empty(), "{:?}", seen.refused);
            // Every call went through the proxy, under its prefix, on the version asked for.
            let version = format!("/cursor/{}/", backend.version().unwrap().as_str());
            assert!(
                seen.forwarded.iter().all(|c| c.contains(&version)),
                "{:?}",
                seen.forwarded
            );
            let stats = sim.stats();
            assert_eq!(
                stats.calls.values().sum::<u64>(),
                seen.forwarded.len() as u64,
                "the simulator saw a call the proxy did not forward"
            );
            assert!(stats.agents > 0);
        }
        sim.shutdown().await;
    }
}

on_both_apis!(a_wrong_virtual_key_is_refused_before_anything_launches);
async fn a_wrong_virtual_key_is_refused_before_anything_launches(backend: Backend) {
    let sim = Scenario::on(backend).start().await;
    let proxy = Proxy::start(sim.url()).await;
    let ran = apply_through(&sim, &proxy, "sk-litellm-revoked", "single-repo").await;
    let stderr = ran.stderr;
    assert_eq!(ran.code, Some(4), "{stderr}");
    // The proxy's own message reaches the user.
    assert!(
        stderr.contains("the API refused the key (HTTP 401): Authentication Error"),
        "{stderr}"
    );
    assert!(!stderr.contains("sk-litellm-revoked"), "{stderr}");
    assert_eq!(sim.stats().agents, 0);
    assert!(!proxy.seen().refused.is_empty());
    sim.shutdown().await;
}
