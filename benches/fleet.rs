//! A 1,000-agent fleet against the simulator: wall time against the bound the quotas and
//! agent durations set, API calls per agent, time spent in the store, peak RSS.
//!
//! Run: `cargo bench --bench fleet`.
//!
//! The fleet: 1,000 repositories, one task with one follow-up, launches limited to 100 per
//! second (burst 5), every agent working exactly 1 s of real time on its prompt and 1 s on
//! its follow-up (a simulated minute each). Two runs:
//! - 100 agents at once: each slot is held at least 2 s, so slots allow 50 launches a second
//!   and bind first: 1,000 x 2 s / 100 = 20 s.
//! - 400 at once: the launch quota binds: 1,000 / 100 = 10 s of launches, then the last agent
//!   works 2 s: 12 s.
//!
//! Status reads start every 50 ms and back off to 500 ms: the same ratio to an agent's work
//! as the default 10 s to agents that work for minutes.

// Counts shown as ratios to people: precision far beyond what is printed.
#![allow(clippy::cast_precision_loss)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrate::cursor::AgentId;
use orchestrate::cursor::{ApiKey, Client, ClientConfig, QuotaConfig};
use orchestrate::exec::{
    AgentView, Backend, ExecConfig, Execution, LaunchSpec, PollConfig, Statuses, V0, V1,
};
use orchestrate::plan::{Options, Plan};
use orchestrate::sim::{DEFAULT_KEY, SimConfig, Simulator};
use orchestrate::spec::{self, SourceFile};
use orchestrate::state::{InstanceRecord, StoreHandle, Write};
use tokio_util::sync::CancellationToken;

const AGENTS: usize = 1_000;

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The naive approach, for comparison: one `GET /v0/agents/{id}` per agent per interval.
struct Naive {
    inner: V0,
    client: Client,
}

impl Backend for Naive {
    async fn launch(&self, spec: &LaunchSpec) -> Result<AgentView, orchestrate::cursor::ApiError> {
        self.inner.launch(spec).await
    }

    async fn find_launched(
        &self,
        spec: &LaunchSpec,
    ) -> Result<Option<AgentView>, orchestrate::cursor::ApiError> {
        self.inner.find_launched(spec).await
    }

    async fn statuses(
        &self,
        ids: &[AgentId],
        _: std::time::SystemTime,
    ) -> Result<Statuses, orchestrate::cursor::ApiError> {
        let mut statuses = Statuses::new();
        for id in ids {
            statuses.insert(id.clone(), self.client.agent(id).await.map(AgentView::from));
        }
        Ok(statuses)
    }

    async fn follow_up(
        &self,
        id: &AgentId,
        text: &str,
    ) -> Result<(), orchestrate::cursor::ApiError> {
        self.inner.follow_up(id, text).await
    }

    async fn follow_up_received(
        &self,
        id: &AgentId,
        text: &str,
        sent: u32,
    ) -> Result<bool, orchestrate::cursor::ApiError> {
        self.inner.follow_up_received(id, text, sent).await
    }

    async fn stop(&self, id: &AgentId) -> Result<(), orchestrate::cursor::ApiError> {
        self.inner.stop(id).await
    }

    async fn tokens(&self, id: &AgentId) -> Result<Option<u64>, orchestrate::cursor::ApiError> {
        self.inner.tokens(id).await
    }
}

/// Runs the fleet with `backend`; the halt, if any, and the records at the end.
async fn run_with<B: Backend>(
    backend: Arc<B>,
    plan: Arc<Plan>,
    run: String,
    records: Vec<InstanceRecord>,
    store: &StoreHandle,
    config: ExecConfig,
) -> (Option<orchestrate::exec::Halt>, Vec<InstanceRecord>) {
    let execution = Execution::new(
        plan,
        run,
        records,
        store.clone(),
        backend,
        config,
        CancellationToken::new(),
        Arc::new(|_| {}),
    );
    let halt = execution.execute().await;
    (halt, execution.records())
}

/// What runs the fleet.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Runner {
    /// orchestrate on v0: list pages for statuses.
    V0,
    /// orchestrate on v1: run streams for statuses.
    V1,
    /// v0, one `GET` per agent per interval.
    Naive,
}

struct Figures {
    wall: Duration,
    succeeded: usize,
    calls: u64,
    lists: u64,
    singles: u64,
    streams: u64,
    violations: u64,
    store: Duration,
}

impl Figures {
    /// How many succeeded and how long it took against `bound` seconds.
    fn print_outcome(&self, bound: f64) {
        let wall = self.wall.as_secs_f64();
        println!("    succeeded:        {} of {AGENTS}", self.succeeded);
        println!(
            "    wall time:        {wall:.2} s, {:.3}x the bound",
            wall / bound
        );
    }

    /// Quota violations and store time.
    fn print_costs(&self) {
        println!("    quota violations: {}", self.violations);
        println!(
            "    store time:       {:.3} s in writes and flushes",
            self.store.as_secs_f64()
        );
    }
}

async fn fleet(concurrency: u32, runner: Runner, calls_per_minute: u32) -> Figures {
    // Speed 60: a simulated minute of work is one real second.
    let sim_config = SimConfig {
        speed: 60.0,
        creating: Duration::ZERO,
        agent_duration: (Duration::from_secs(60), Duration::from_secs(60)),
        ..SimConfig::default()
    };
    let sim = Simulator::start(sim_config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut config = ClientConfig::new(&sim.url(), ApiKey::new(DEFAULT_KEY)).unwrap();
    config.quotas = QuotaConfig::default()
        .with_overrides(&format!(
            "calls={calls_per_minute}/min,calls_burst=100,launches=100/s,launches_burst=5"
        ))
        .unwrap();
    let client = Client::new(config).unwrap();

    let repos: String = (0..AGENTS)
        .map(|n| format!("    - https://github.com/acme/svc-{n:04}"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let version = if runner == Runner::V1 { "v1" } else { "v0" };
    let yaml = format!(
        "version: 1\nname: fleet\napi:\n  version: {version}\nconcurrency: {concurrency}\nfleets:\n  all:\n{repos}tasks:\n  bump:\n    fleet: all\n    prompt: Bump {{{{ repo.name }}}}.\n    follow_ups:\n      - prompt: Open the pull request.\n"
    );
    let workflow = spec::parse(&SourceFile::new("fleet.yaml", yaml)).unwrap();
    let plan = Arc::new(Plan::build(&workflow, &Options::default()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = StoreHandle::open(dir.path()).unwrap();
    let run = plan.run.to_string();
    let records: Vec<InstanceRecord> = plan
        .instances
        .iter()
        .map(|i| {
            let repo = i.repo.as_ref().unwrap().to_string();
            InstanceRecord::pending(
                i.key.as_str(),
                i.task.as_str(),
                &repo,
                &i.branch,
                &i.spec_hash(),
            )
        })
        .collect();
    store
        .write(
            records
                .iter()
                .map(|r| Write::Instance(run.clone(), r.clone()))
                .collect(),
        )
        .await
        .unwrap();
    let exec_config = ExecConfig {
        poll: PollConfig {
            min: Duration::from_millis(50),
            max: Duration::from_millis(500),
        },
        relaunch_backoff: Duration::from_secs(1),
        follow_up_grace: Duration::from_millis(500),
        webhook: None,
    };
    let start = Instant::now();
    let (halt, succeeded) = match runner {
        Runner::Naive => {
            let naive = Naive {
                inner: V0::new(client.clone()),
                client,
            };
            run_with(
                Arc::new(naive),
                plan.clone(),
                run,
                records,
                &store,
                exec_config,
            )
            .await
        }
        Runner::V0 => {
            let backend = Arc::new(V0::new(client));
            run_with(backend, plan.clone(), run, records, &store, exec_config).await
        }
        Runner::V1 => {
            let backend = Arc::new(V1::new(client));
            run_with(backend, plan.clone(), run, records, &store, exec_config).await
        }
    };
    let wall = start.elapsed();
    assert!(halt.is_none());
    let succeeded = succeeded
        .iter()
        .filter(|r| r.state == orchestrate::state::InstanceState::Succeeded)
        .count();
    let stats = sim.stats();
    let calls = |route: &str| stats.calls.get(route).copied().unwrap_or(0);
    let figures = Figures {
        wall,
        succeeded,
        calls: stats.calls.values().sum(),
        lists: calls("GET /v0/agents") + calls("GET /v1/agents"),
        singles: calls("GET /v0/agents/{id}")
            + calls("GET /v0/agents/{id}/conversation")
            + calls("GET /v1/agents/{id}")
            + calls("GET /v1/agents/{id}/runs/{run}")
            + calls("GET /v1/agents/{id}/runs"),
        streams: calls("GET /v1/agents/{id}/runs/{run}/stream"),
        violations: stats.total_quota_violations(),
        store: store.busy().await,
    };
    sim.shutdown().await;
    figures
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("1,000-agent fleet, one follow-up each, launches 100/s, agents 1 s + 1 s:");
        let mut compared = Vec::new();
        for (concurrency, bound, binds) in [(100, 20.0, "slots"), (400, 12.0, "launch quota")] {
            let f = fleet(concurrency, Runner::V0, 12_000).await;
            let agents = AGENTS as f64;
            println!("  {concurrency} at once (bound {bound:.0} s, set by the {binds}):");
            f.print_outcome(bound);
            println!(
                "    API calls:        {} = {:.2} per agent (launch 1, follow-up 1, status reads {:.3}: {} list pages, {} single reads)",
                f.calls,
                f.calls as f64 / agents,
                (f.lists + f.singles) as f64 / agents,
                f.lists,
                f.singles
            );
            f.print_costs();
            compared.push(f);
        }
        // v1 makes more calls per agent (a stream per prompt, a usage read): with the same
        // 200 calls/s the calls quota binds; with it lifted, the slots and launches do.
        println!("API v1, the same fleet (statuses from run streams):");
        for (concurrency, per_minute) in [(100, 12_000), (400, 12_000), (100, 60_000), (400, 60_000)] {
            let f = fleet(concurrency, Runner::V1, per_minute).await;
            let prompts = 2.0 * AGENTS as f64;
            let (work, binds) = if concurrency == 100 { (20.0, "slots") } else { (12.0, "launch quota") };
            let quota = f.calls as f64 / (f64::from(per_minute) / 60.0);
            let (bound, binds) = if quota > work { (quota, "calls quota") } else { (work, binds) };
            println!("  {concurrency} at once, calls {per_minute}/min (bound {bound:.1} s, set by the {binds}):");
            f.print_outcome(bound);
            println!(
                "    API calls:        {} = {:.2} per prompt ({} streams, {} reads, {} list pages; usage 1 per agent)",
                f.calls,
                f.calls as f64 / prompts,
                f.streams,
                f.singles,
                f.lists
            );
            f.print_costs();
        }
        // The same fleet (100 at once) read the naive way, in the same process and run.
        let naive = fleet(100, Runner::Naive, 12_000).await;
        let batched = &compared[0];
        println!("  naive polling (one GET per agent per interval), 100 at once:");
        println!("    wall time:        {:.2} s ({:.2}x orchestrate's {:.2} s)", naive.wall.as_secs_f64(), naive.wall.as_secs_f64() / batched.wall.as_secs_f64(), batched.wall.as_secs_f64());
        println!(
            "    API calls:        {} ({:.1}x orchestrate's {}); status reads per agent {:.2} against {:.3}",
            naive.calls,
            naive.calls as f64 / batched.calls as f64,
            batched.calls,
            (naive.lists + naive.singles) as f64 / AGENTS as f64,
            (batched.lists + batched.singles) as f64 / AGENTS as f64
        );
        println!("    quota violations: {}", naive.violations);
        if let Some(rss) = peak_rss_mib() {
            println!("  peak RSS: {rss:.1} MiB (client, executor, store and simulator in one process)");
        }
    });
}
