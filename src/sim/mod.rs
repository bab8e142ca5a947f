//! A simulator of the Cursor Cloud Agents API, v0 and v1, and of the LiteLLM Agent Platform's
//! `cursor` runtime: a real HTTP server on loopback.
//!
//! Each prompt is a run that moves CREATING -> RUNNING -> FINISHED (or ERROR / EXPIRED) on a
//! clock that can be sped up; follow-ups start a new run of the same agent (v0 shows an agent
//! as its latest run); quotas are enforced over real time
//! with 429 and `Retry-After`, and every refusal is counted as a violation; faults are
//! injected on demand; `/__sim/stats` and `/__sim/launches` let tests see what it saw.

mod checked;
mod faults;
mod http;
mod model;
mod platform;
mod v0;
mod v1;
mod webhooks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use faults::{Faults, FaultsError};
pub use model::{Launch, Stats};
pub use webhooks::signature;

use crate::contract::{Contract, Violation};
use crate::cursor::Rate;
use crate::cursor::model::Repository;

/// The router of a simulator over `state`: every API's routes behind the gate.
fn router(state: http::Shared) -> axum::Router {
    use axum::middleware::from_fn_with_state;
    let strict = http::lock(&state).config.contract.is_some();
    let router = axum::Router::new()
        .merge(v0::routes())
        .merge(v1::routes())
        .merge(platform::routes())
        .merge(http::test_routes())
        .fallback(http::not_found)
        .layer(from_fn_with_state(state.clone(), http::gate));
    // Outermost, so that the gate's own answers (401, 429, faults) are checked too.
    let router = if strict {
        router.layer(from_fn_with_state(state.clone(), checked::check))
    } else {
        router
    };
    router.with_state(state)
}

/// The key the simulator accepts unless told otherwise.
pub const DEFAULT_KEY: &str = "sim-key";

/// How a simulator behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The only key it accepts.
    pub api_key: String,
    /// How much faster than real time agents work.
    pub speed: f64,
    /// How long an agent is CREATING, in simulated time.
    pub creating: Duration,
    /// How long an agent works on a prompt, in simulated time, drawn from this range.
    pub agent_duration: (Duration, Duration),
    /// Faults to inject.
    pub faults: Faults,
    /// A quota on all calls, over real time; `None`: unlimited.
    pub calls_quota: Option<Rate>,
    /// The quotas of `GET /v0/repositories`, over real time (documented: 1/min and 30/h).
    pub repositories_quota: Vec<Rate>,
    /// Extra latency of `GET /v0/repositories` (it can take tens of seconds for real).
    pub repositories_latency: Duration,
    /// What `GET /v0/repositories` answers.
    pub repositories: Vec<Repository>,
    /// What `GET /v0/models` answers; a launch with another model is refused.
    pub models: Vec<String>,
    /// A path the API is served under, as behind a proxy (`/cursor`); empty: the root.
    pub path_prefix: String,
    /// The Agent Platform agents a session may run; empty: any.
    pub platform_agents: Vec<String>,
    /// What a v0 agent shows after a stop: undocumented, so EXPIRED (in the published enum)
    /// unless a test wants a status clients do not know.
    pub stopped_status: crate::cursor::AgentStatus,
    /// How long a v1 run's event stream can be read after the run ended, in simulated time;
    /// later it answers 410 `stream_expired`.
    pub stream_retention: Duration,
    /// Whether `GET /v1/agents/{id}/usage` is offered; without, it answers 403
    /// `feature_unavailable`, as the published file allows.
    pub usage_available: bool,
    /// Cursor's published API, when every exchange is to be checked against it (strict).
    pub contract: Option<Arc<Contract>>,
}

impl Default for SimConfig {
    fn default() -> Self {
        let repositories = [
            "api",
            "web",
            "billing",
            "worker",
            "integration",
            "platform-docs",
            "platform-reports",
            "docs",
            "go-auth",
            "go-billing",
            "go-gateway",
            "go-search",
        ]
        .iter()
        .map(|name| Repository {
            owner: "acme".into(),
            name: (*name).into(),
            repository: format!("https://github.com/acme/{name}"),
        })
        .collect();
        Self {
            api_key: DEFAULT_KEY.to_owned(),
            speed: 1.0,
            creating: Duration::from_secs(5),
            agent_duration: (Duration::from_secs(30), Duration::from_secs(180)),
            faults: Faults::default(),
            calls_quota: None,
            repositories_quota: vec![
                Rate::new(1, Duration::from_secs(60)),
                Rate::new(30, Duration::from_secs(3600)),
            ],
            repositories_latency: Duration::ZERO,
            repositories,
            models: [
                "claude-4-sonnet",
                "claude-4-sonnet-thinking",
                "claude-4-opus-thinking",
                "o3",
                "gpt-5",
            ]
            .iter()
            .map(|m| (*m).to_owned())
            .collect(),
            path_prefix: String::new(),
            platform_agents: Vec::new(),
            stopped_status: crate::cursor::AgentStatus::Expired,
            stream_retention: Duration::from_secs(600),
            usage_available: true,
            contract: None,
        }
    }
}

/// A running simulator.
pub struct Simulator {
    addr: SocketAddr,
    state: http::Shared,
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Starts a simulator on `addr` (port 0 picks a free port).
    pub async fn start(config: SimConfig, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let prefix = config.path_prefix.trim_end_matches('/').to_owned();
        let sim_state = model::SimState::new(config);
        let stop = sim_state.shutdown.clone();
        let state = Arc::new(Mutex::new(sim_state));
        tokio::spawn(webhooks::deliver(state.clone(), stop.clone()));
        let app = match prefix.as_str() {
            "" => router(state.clone()),
            prefix => axum::Router::new().nest(prefix, router(state.clone())),
        };
        let shutdown = stop.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        });
        Ok(Self {
            addr,
            state,
            stop,
            server,
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its counters now.
    pub fn stats(&self) -> Stats {
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Stats {
            peak_working: state.peak_working(),
            ..state.stats.clone()
        }
    }

    /// The launches it received, through either API, in order (secrets masked).
    pub fn launches(&self) -> Vec<Launch> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .launches
            .clone()
    }

    /// What broke the published API so far (always empty when not strict).
    pub fn violations(&self) -> Vec<Violation> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .violations
            .clone()
    }

    /// Changes the faults it injects from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .config
            .faults = faults;
    }

    /// Changes the quota on all calls from now on (a server whose limit changes mid-run).
    pub fn set_calls_quota(&self, quota: Option<Rate>) {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .config
            .calls_quota = quota;
    }

    /// Stops it and waits until it has.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.server.await;
    }

    /// Runs until Ctrl-C.
    pub async fn run_until_ctrl_c(self) -> std::io::Result<()> {
        let _ = tokio::signal::ctrl_c().await;
        self.shutdown().await;
        Ok(())
    }
}
