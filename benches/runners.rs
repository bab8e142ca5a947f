//! Several runners on one run: three executions, each with a PostgreSQL connection and an
//! API client of its own (as three machines would have), share one 1,000-agent fleet
//! through leases, against one simulator. Wall time against the bound, and what keeps
//! them honest: duplicates, live agents at most, quota violations.
//!
//! Run: `cargo bench --bench runners` (needs Debian's `postgresql` package; the bench
//! starts a throwaway cluster with fsync on). `RUNNERS=1` runs the same fleet with one
//! runner on the same database, for comparison.
//!
//! The bound: no server limit, so every wave of `concurrency` agents takes its prompt and
//! its follow-up back to back, `ceil(agents / concurrency) * 2 * work`: 20 s here, the bound
//! of the one-runner fleet of `benches/fleet.rs`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrate::cursor::{ApiKey, Client, ClientConfig};
use orchestrate::exec::{ExecConfig, Execution, Progress, Recall, V0};
use orchestrate::plan::{Options, Plan};
use orchestrate::sim::{DEFAULT_KEY, SimConfig, Simulator};
use orchestrate::spec::{self, SourceFile};
use orchestrate::state::{InstanceState, Location, StoreHandle, Write};
use tokio_util::sync::CancellationToken;

#[path = "../tests/pg.rs"]
#[allow(dead_code)]
mod pg;

const AGENTS: usize = 1_000;
const CONCURRENCY: u32 = 100;
/// Seconds of work per prompt.
const WORK: f64 = 1.0;
const LEASE: Duration = Duration::from_secs(30);

fn runners() -> usize {
    std::env::var("RUNNERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

fn main() {
    let Some(cluster) = pg::Cluster::start(true) else {
        println!("skipped: no PostgreSQL server binaries");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = cluster.database();
        let runners = runners();
        // Speed 60: a simulated minute of work is one real second.
        let work = Duration::from_secs_f64(WORK * 60.0);
        let sim = Simulator::start(
            SimConfig {
                speed: 60.0,
                creating: Duration::ZERO,
                agent_duration: (work, work),
                ..SimConfig::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let mut repos = String::new();
        for n in 0..AGENTS {
            writeln!(repos, "    - https://github.com/acme/svc-{n:04}").unwrap();
        }
        let yaml = format!(
            "version: 1\nname: fleet\napi:\n  version: v0\nconcurrency: {CONCURRENCY}\nfleets:\n  all:\n{repos}tasks:\n  bump:\n    fleet: all\n    prompt: Bump {{{{ repo.name }}}}.\n    follow_ups:\n      - prompt: Open the pull request.\n"
        );
        let workflow = spec::parse(&SourceFile::new("fleet.yaml", yaml)).unwrap();
        let plan = Arc::new(Plan::build(&workflow, &Options::default()).unwrap());
        let run = plan.run.to_string();
        let records = orchestrate::apply::merge(&plan, &[]).records;

        let mut stores = Vec::new();
        for _ in 0..runners {
            let store = StoreHandle::open(&Location::parse(&url)).unwrap();
            store.join_run(&run, LEASE).await.unwrap();
            stores.push(store);
        }
        stores[0]
            .write(
                records
                    .iter()
                    .map(|r| Write::Instance(run.clone(), r.clone()))
                    .collect(),
            )
            .await
            .unwrap();
        let timeline: Arc<std::sync::Mutex<Vec<(f64, usize, &'static str, String)>>> = Arc::default();
        let t0 = Instant::now();
        let executions: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(runner, store)| {
                let timeline = timeline.clone();
                let config = ClientConfig::new(&sim.url(), ApiKey::new(DEFAULT_KEY)).unwrap();
                Execution::new(
                    plan.clone(),
                    records.clone(),
                    store.clone(),
                    Arc::new(V0::new(Client::new(config).unwrap())),
                    ExecConfig {
                        lease: Some(LEASE),
                        ..ExecConfig::default()
                    },
                    CancellationToken::new(),
                    Arc::new(move |p: &Progress| {
                        if let Progress::Instance { event, key } = p {
                            timeline.lock().unwrap().push((t0.elapsed().as_secs_f64(), runner, event.kind(), key.clone()));
                        }
                    }),
                    Recall::new(),
                )
            })
            .collect();
        let start = Instant::now();
        let halts = futures_util::future::join_all(executions.iter().map(Execution::execute)).await;
        let wall = start.elapsed().as_secs_f64();
        assert!(halts.iter().all(Option::is_none), "{halts:?}");

        let succeeded = executions[0]
            .records()
            .iter()
            .filter(|r| r.state == InstanceState::Succeeded)
            .count();
        let stats = sim.stats();
        let duplicates: u64 = stats.launches.values().map(|n| n.saturating_sub(1)).sum();
        let waves = AGENTS.div_ceil(CONCURRENCY as usize);
        #[allow(clippy::cast_precision_loss)] // a handful of waves
        let bound = waves as f64 * 2.0 * WORK;
        let mut busy = Duration::ZERO;
        for store in &stores {
            busy += store.busy().await;
        }
        println!(
            "{runners} runner(s), {AGENTS} agents with one follow-up each, {WORK} s + {WORK} s, {CONCURRENCY} at once, v0, state in PostgreSQL (loopback, fsync on)"
        );
        println!("  succeeded:        {succeeded} of {AGENTS}");
        println!(
            "  wall time:        {wall:.2} s, {:.3}x the bound of {bound:.1} s",
            wall / bound
        );
        println!(
            "  live agents:      {} at most (cap {CONCURRENCY}); duplicate launches: {duplicates}; documented-quota violations: {}",
            stats.peak_working,
            stats.total_quota_violations()
        );
        println!(
            "  API calls:        {} ({} launches, {} follow-ups)",
            stats.calls.values().sum::<u64>(),
            stats.launches.values().sum::<u64>(),
            stats.follow_ups.values().sum::<u64>()
        );
        println!(
            "  store time:       {:.2} s across the runners",
            busy.as_secs_f64()
        );
        let timeline = timeline.lock().unwrap();
        let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
        for (_, _, k, _) in timeline.iter() { *kinds.entry(k).or_default() += 1; }
        println!("  events: {kinds:?}");
        let start = timeline.iter().map(|t| t.0).fold(f64::MAX, f64::min);
        println!("  first event at {start:.2}");
        let mut live = 0i64;
        let mut bucket = 0.0;
        let mut per = vec![0i64; runners];
        let mut line = String::new();
        let mut sorted: Vec<_> = timeline.iter().map(|(a,b,c,_)| (*a,*b,*c)).collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (t, r, k) in sorted {
            while t >= bucket + 1.0 { write!(line, " [{bucket:.0}s live {live} {per:?}]").unwrap(); bucket += 1.0; }
            match k { "launch_intent" => { live += 1; per[r] += 1; } "succeeded" | "failed" => { live -= 1; per[r] -= 1; } _ => {} }
        }
        println!("  timeline:{line}");
        let mut at: std::collections::HashMap<(&str, &str), f64> = Default::default();
        for (t, _, k, key) in timeline.iter() { at.insert((key.as_str(), *k), *t); }
        let steps = [("launch_intent","launched"),("launched","follow_up_intent"),("follow_up_intent","follow_up_sent"),("follow_up_sent","succeeded")];
        for (a, b) in steps {
            let mut d: Vec<f64> = timeline.iter().filter(|x| x.2 == a).filter_map(|x| Some(at.get(&(x.3.as_str(), b))? - x.0)).collect();
            d.sort_by(f64::total_cmp);
            let n = d.len();
            println!("  {a} -> {b}: mean {:.3} p50 {:.3} p90 {:.3} max {:.3}", d.iter().sum::<f64>()/n as f64, d[n/2], d[n*9/10], d[n-1]);
        }
        sim.shutdown().await;
    });
}
