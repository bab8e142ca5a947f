//! Fleets against the simulator, with orchestrate's *default* settings: wall time against
//! the bound the agents' durations and the *server's* quota set, 429 answers, API calls per
//! agent, live agents at most, time in the store.
//!
//! Run: `cargo bench --bench fleet`.
//!
//! The scenarios (DESIGN.md section 6, issue 14), each agent working a fixed time:
//! - no server limit, 200 agents at concurrency 50, agents 2.5 s: 4 waves, 10 s;
//! - a server quota of 30 calls a minute, 50 agents at concurrency 10, agents 2.5 s;
//! - a server quota that halves (30 a minute, then 15 from second 20), 40 agents at 10;
//! - 1,000 agents with one follow-up each, agents 1 s + 1 s, on v0 and v1, 100 and 400 at once.
//!
//! The bound of each is a greedy schedule ([`bound`]): every launch and follow-up as soon as a
//! slot and the server's quota allow, and the fewest calls that see the agents end: on v0 one
//! list page each time agents end; on v1 a stream per prompt and a usage read per agent.
//! The naive per-agent poller runs the first fleets again as the comparison.

// Counts shown as ratios to people: precision far beyond what is printed.
#![allow(clippy::cast_precision_loss)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrate::cursor::AgentId;
use orchestrate::cursor::{ApiKey, Client, ClientConfig, Rate};
use orchestrate::exec::{AgentView, Backend, ExecConfig, Execution, LaunchSpec, Statuses, V0, V1};
use orchestrate::plan::{Options, Plan};
use orchestrate::sim::{DEFAULT_KEY, SimConfig, Simulator};
use orchestrate::spec::{self, SourceFile};
use orchestrate::state::{InstanceRecord, StoreHandle, Write};
use tokio_util::sync::CancellationToken;

/// The server's window: its quotas count calls in the last minute.
const WINDOW: f64 = 60.0;

/// A fleet to run: agents, their work, the server's quota over time.
#[derive(Clone)]
struct Scenario {
    agents: usize,
    concurrency: u32,
    /// Seconds of work per prompt.
    work: f64,
    follow_ups: usize,
    /// The server's calls per minute from each second on (`None`: no limit).
    quota: Vec<(f64, Option<u32>)>,
    /// The limit the server named to an earlier run, as the state remembers it.
    remembered: Option<u32>,
}

impl Scenario {
    fn quota_at(&self, t: f64) -> Option<u32> {
        self.quota
            .iter()
            .rev()
            .find(|(from, _)| *from <= t)
            .and_then(|(_, q)| *q)
    }

    fn prompts(&self) -> f64 {
        (self.agents * (1 + self.follow_ups)) as f64
    }
}

/// The greedy bound: launches and follow-ups go as soon as a slot and the quota allow. On v0
/// one call (a list page) reads all the agents that ended; on v1 each prompt costs its create
/// and its stream, and each agent that ends its usage read. Returns seconds.
fn bound(scenario: &Scenario, runner: Runner) -> f64 {
    let v1 = runner == Runner::V1;
    let per_prompt = if v1 { 2 } else { 1 };
    let mut calls: Vec<f64> = Vec::new();
    // The earliest time from `t` at which one more call keeps the quota.
    let room = |calls: &[f64], t: f64| -> f64 {
        let mut t = t;
        loop {
            let Some(limit) = scenario.quota_at(t) else {
                return t;
            };
            let in_window: Vec<f64> = calls.iter().copied().filter(|c| *c > t - WINDOW).collect();
            if in_window.len() < limit as usize {
                return t;
            }
            // The call that must leave the window first.
            let mut sorted = in_window;
            sorted.sort_by(f64::total_cmp);
            let leaves = sorted[sorted.len() - limit as usize] + WINDOW;
            // A change of limit may come sooner.
            let change = scenario
                .quota
                .iter()
                .map(|(from, _)| *from)
                .filter(|from| *from > t)
                .fold(f64::INFINITY, f64::min);
            t = leaves.min(change).max(t + 1e-9);
        }
    };
    let mut pending = scenario.agents;
    // (ends at, follow-ups left)
    let mut running: Vec<(f64, usize)> = Vec::new();
    let mut t = 0.0;
    loop {
        while pending > 0 && running.len() < scenario.concurrency as usize {
            for _ in 0..per_prompt {
                t = room(&calls, t);
                calls.push(t);
            }
            running.push((t + scenario.work, scenario.follow_ups));
            pending -= 1;
        }
        if running.is_empty() {
            return t;
        }
        let next = running.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
        t = next.max(t);
        if !v1 {
            t = room(&calls, t);
            calls.push(t);
        }
        let mut still = Vec::new();
        for (ends, left) in running {
            if ends > t {
                still.push((ends, left));
            } else if left > 0 {
                for _ in 0..per_prompt {
                    t = room(&calls, t);
                    calls.push(t);
                }
                still.push((t + scenario.work, left - 1));
            } else if v1 {
                t = room(&calls, t);
                calls.push(t);
            }
        }
        running = still;
    }
}

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
    fn pace(&self) -> Option<orchestrate::cursor::Pace> {
        self.inner.pace()
    }

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
    debug_assert_eq!(plan.run.as_str(), run);
    let execution = Execution::new(
        plan,
        records,
        store.clone(),
        backend,
        config,
        CancellationToken::new(),
        Arc::new(|_: &orchestrate::exec::Progress| {}),
        orchestrate::exec::Recall::new(),
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
    agents: usize,
    wall: Duration,
    succeeded: usize,
    throttled: u64,
    peak_working: u64,
    duplicates: u64,
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
        println!(
            "    succeeded:        {} of {}",
            self.succeeded, self.agents
        );
        println!(
            "    wall time:        {wall:.2} s, {:.3}x the bound",
            wall / bound
        );
    }

    /// 429s, violations, duplicates, live agents and store time.
    fn print_costs(&self) {
        println!(
            "    429 answers:      {} (the server's quota); documented-quota violations: {}; duplicate launches: {}",
            self.throttled, self.violations, self.duplicates
        );
        println!("    live agents:      {} at most", self.peak_working);
        println!(
            "    store time:       {:.3} s in writes and flushes",
            self.store.as_secs_f64()
        );
    }
}

async fn fleet(scenario: &Scenario, runner: Runner) -> Figures {
    // Speed 60: a simulated minute of work is one real second.
    let work = Duration::from_secs_f64(scenario.work * 60.0);
    let sim_config = SimConfig {
        speed: 60.0,
        creating: Duration::ZERO,
        agent_duration: (work, work),
        calls_quota: scenario
            .quota_at(0.0)
            .map(|n| Rate::new(n, Duration::from_secs(60))),
        ..SimConfig::default()
    };
    let sim = Arc::new(
        Simulator::start(sim_config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap(),
    );
    // The server's limit changes when the scenario says.
    let changes = {
        let sim = sim.clone();
        let quota = scenario.quota.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            for (from, limit) in quota.into_iter().filter(|(from, _)| *from > 0.0) {
                tokio::time::sleep_until((start + Duration::from_secs_f64(from)).into()).await;
                sim.set_calls_quota(limit.map(|n| Rate::new(n, Duration::from_secs(60))));
            }
        })
    };
    // orchestrate's defaults: no client quota but the documented ones.
    let config = ClientConfig::new(&sim.url(), ApiKey::new(DEFAULT_KEY)).unwrap();
    let client = Client::new(config).unwrap();
    if let Some(limit) = scenario.remembered {
        client.quotas().remember_limit(limit);
    }

    let repos: String = (0..scenario.agents)
        .map(|n| format!("    - https://github.com/acme/svc-{n:04}"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let follow_ups = if scenario.follow_ups > 0 {
        "    follow_ups:\n      - prompt: Open the pull request.\n"
    } else {
        ""
    };
    let concurrency = scenario.concurrency;
    let version = if runner == Runner::V1 { "v1" } else { "v0" };
    let yaml = format!(
        "version: 1\nname: fleet\napi:\n  version: {version}\nconcurrency: {concurrency}\nfleets:\n  all:\n{repos}tasks:\n  bump:\n    fleet: all\n    prompt: Bump {{{{ repo.name }}}}.\n{follow_ups}"
    );
    let workflow = spec::parse(&SourceFile::new("fleet.yaml", yaml)).unwrap();
    let plan = Arc::new(Plan::build(&workflow, &Options::default()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = StoreHandle::open(&dir.path().into()).unwrap();
    let run = plan.run.to_string();
    let records = orchestrate::apply::merge(&plan, &[]).records;
    store
        .write(
            records
                .iter()
                .map(|r| Write::Instance(run.clone(), r.clone()))
                .collect(),
        )
        .await
        .unwrap();
    let exec_config = ExecConfig::default();
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
    changes.abort();
    assert!(halt.is_none());
    let succeeded = succeeded
        .iter()
        .filter(|r| r.state == orchestrate::state::InstanceState::Succeeded)
        .count();
    let stats = sim.stats();
    let calls = |route: &str| stats.calls.get(route).copied().unwrap_or(0);
    let figures = Figures {
        agents: scenario.agents,
        wall,
        succeeded,
        throttled: stats.total_throttled(),
        peak_working: stats.peak_working,
        duplicates: stats
            .launches
            .values()
            .filter(|n| **n > 1)
            .map(|n| n - 1)
            .sum(),
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
    Arc::into_inner(sim)
        .expect("the only simulator handle")
        .shutdown()
        .await;
    figures
}

/// One row: the scenario's bound, wall time and costs.
fn report(name: &str, scenario: &Scenario, runner: Runner, f: &Figures) {
    let bound = bound(scenario, runner);
    println!("  {name} (bound {bound:.1} s):");
    f.print_outcome(bound);
    println!(
        "    API calls:        {} = {:.2} per agent, {:.2} per prompt ({} list pages, {} single reads, {} streams)",
        f.calls,
        f.calls as f64 / scenario.agents as f64,
        f.calls as f64 / scenario.prompts(),
        f.lists,
        f.singles,
        f.streams
    );
    f.print_costs();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    // FLEET_APIS=v0,naive runs those runners only.
    let apis = std::env::var("FLEET_APIS").ok();
    let runs = |api: &str| {
        apis.as_deref()
            .is_none_or(|a| a.split(',').any(|x| x == api))
    };
    // The bound is checked against the schedule worked out by hand: 28 launches and 3 reads
    // fit the first minute; the other 22 go from second 60 in three waves of 2.5 s.
    let by_hand = Scenario {
        agents: 50,
        concurrency: 10,
        work: 2.5,
        follow_ups: 0,
        quota: vec![(0.0, Some(30))],
        remembered: None,
    };
    assert!(
        (bound(&by_hand, Runner::V0) - 67.5).abs() < 1e-6,
        "{}",
        bound(&by_hand, Runner::V0)
    );
    runtime.block_on(async {
        println!(
            "Default settings; agents work a fixed time; the server's quota over a sliding minute."
        );
        let scenarios = [
            (
                "no-limit: 200 agents, 50 at once, 2.5 s each, no server limit",
                Scenario {
                    agents: 200,
                    concurrency: 50,
                    work: 2.5,
                    follow_ups: 0,
                    quota: vec![(0.0, None)],
                    remembered: None,
                },
                true,
            ),
            (
                "quota: 50 agents, 10 at once, 2.5 s each, server quota 30 calls/min",
                by_hand.clone(),
                true,
            ),
            (
                "quota, a later run: the same, remembering the limit the server named to the first",
                Scenario {
                    remembered: Some(30),
                    ..by_hand.clone()
                },
                false,
            ),
            (
                "halving: 40 agents, 10 at once, 2.5 s each, server quota 30/min, 15/min from 20 s",
                Scenario {
                    agents: 40,
                    concurrency: 10,
                    work: 2.5,
                    follow_ups: 0,
                    quota: vec![(0.0, Some(30)), (20.0, Some(15))],
                    remembered: None,
                },
                false,
            ),
        ];
        for (name, scenario, naive) in &scenarios {
            if !wanted(name) {
                continue;
            }
            for (runner, api) in [(Runner::V0, "v0"), (Runner::V1, "v1")] {
                if runs(api) {
                    let figures = fleet(scenario, runner).await;
                    report(&format!("{name}, {api}"), scenario, runner, &figures);
                }
            }
            if *naive && runs("naive") {
                let figures = fleet(scenario, Runner::Naive).await;
                report(
                    &format!("{name}, naive poller"),
                    scenario,
                    Runner::V0,
                    &figures,
                );
            }
        }
        let thousand = |concurrency| Scenario {
            agents: 1_000,
            concurrency,
            work: 1.0,
            follow_ups: 1,
            quota: vec![(0.0, None)],
            remembered: None,
        };
        let name = "fleet: 1,000 agents, one follow-up each, 1 s + 1 s, no server limit";
        if wanted(name) {
            for concurrency in [100, 400] {
                let scenario = thousand(concurrency);
                for (runner, api) in [(Runner::V0, "v0"), (Runner::V1, "v1")] {
                    let figures = fleet(&scenario, runner).await;
                    report(
                        &format!("{name}, {concurrency} at once, {api}"),
                        &scenario,
                        runner,
                        &figures,
                    );
                }
            }
            let scenario = thousand(100);
            let figures = fleet(&scenario, Runner::Naive).await;
            report(
                &format!("{name}, 100 at once, naive poller"),
                &scenario,
                Runner::V0,
                &figures,
            );
        }
        if let Some(rss) = peak_rss_mib() {
            println!(
                "peak RSS: {rss:.1} MiB (client, executor, store and simulator in one process)"
            );
        }
    });
}
