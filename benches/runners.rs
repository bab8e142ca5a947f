//! Several runners on one run: three executions, each with a PostgreSQL connection and an
//! API client of its own (as three machines would have), share one 1,000-agent fleet
//! through leases, against one simulator. Wall time against the bound, what keeps them
//! honest (duplicates, live agents at most, quota violations), and where an instance's time
//! goes, step by step.
//!
//! Run: `cargo bench --bench runners` (needs Debian's `postgresql` package; the bench
//! starts a throwaway cluster with fsync on). `RUNNERS=1` runs the same fleet with one
//! runner on the same database, for comparison; `RUNNERS_API=v0` on v0 (v1, the default
//! API, otherwise).
//!
//! The bound: no server limit, so every wave of `concurrency` agents takes its prompt and
//! its follow-up back to back, `ceil(agents / concurrency) * 2 * work`: 20 s here, the bound
//! of the one-runner fleet of `benches/fleet.rs`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestrate::cursor::{ApiKey, Client, ClientConfig};
use orchestrate::exec::{Backend, ExecConfig, Execution, Progress, Recall, V0, V1};
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

/// The steps of an instance's life whose times are summed up: from one event to the next.
const STEPS: [(&str, &str); 4] = [
    ("launch_intent", "launched"),
    ("launched", "follow_up_intent"),
    ("follow_up_intent", "follow_up_sent"),
    ("follow_up_sent", "succeeded"),
];

/// When each instance's events were told: (instance, event) to seconds from the start.
type Timeline = Arc<Mutex<HashMap<(String, &'static str), f64>>>;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
    let api: String = env("RUNNERS_API", "v1".to_owned());
    runtime.block_on(async {
        match api.as_str() {
            "v0" => bench(&cluster.database(), "v0", V0::new).await,
            "v1" => bench(&cluster.database(), "v1", V1::new).await,
            other => panic!("RUNNERS_API is v0 or v1, not {other}"),
        }
    });
}

async fn bench<B: Backend + 'static>(url: &str, api: &str, backend: fn(Client) -> B) {
    let runners: usize = env("RUNNERS", 3);
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
        "version: 1\nname: fleet\napi:\n  version: {api}\nconcurrency: {CONCURRENCY}\nfleets:\n  all:\n{repos}tasks:\n  bump:\n    fleet: all\n    prompt: Bump {{{{ repo.name }}}}.\n    follow_ups:\n      - prompt: Open the pull request.\n"
    );
    let workflow = spec::parse(&SourceFile::new("fleet.yaml", yaml)).unwrap();
    let plan = Arc::new(Plan::build(&workflow, &Options::default()).unwrap());
    let run = plan.run.to_string();
    let records = orchestrate::apply::merge(&plan, &[]).records;

    let mut stores = Vec::new();
    for _ in 0..runners {
        let store = StoreHandle::open(&Location::parse(url)).unwrap();
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
    let timeline = Timeline::default();
    let start = Instant::now();
    let executions: Vec<_> = stores
        .iter()
        .map(|store| {
            let config = ClientConfig::new(&sim.url(), ApiKey::new(DEFAULT_KEY)).unwrap();
            let timeline = timeline.clone();
            Execution::new(
                plan.clone(),
                records.clone(),
                store.clone(),
                Arc::new(backend(Client::new(config).unwrap())),
                ExecConfig {
                    lease: Some(LEASE),
                    ..ExecConfig::default()
                },
                CancellationToken::new(),
                Arc::new(move |progress: &Progress| {
                    if let Progress::Instance { key, event } = progress {
                        let at = start.elapsed().as_secs_f64();
                        timeline
                            .lock()
                            .unwrap()
                            .insert((key.clone(), event.kind()), at);
                    }
                }),
                Recall::new(),
            )
        })
        .collect();
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
        "{runners} runner(s), {AGENTS} agents with one follow-up each, {WORK} s + {WORK} s, {CONCURRENCY} at once, {api}, state in PostgreSQL (loopback, fsync on)"
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
    let timeline = std::mem::take(&mut *timeline.lock().unwrap());
    println!(
        "  a place under the cap, freed, is taken again after: {}",
        refill(&timeline)
    );
    for (from, to) in STEPS {
        println!("  {from} -> {to}: {}", step(&timeline, from, to));
    }
    sim.shutdown().await;
}

/// How long a place under the cap stays empty: the k-th launch takes the place the
/// (k - cap)-th settled instance gave back.
fn refill(timeline: &HashMap<(String, &'static str), f64>) -> String {
    let times = |kind: &str| {
        let mut times: Vec<f64> = timeline
            .iter()
            .filter(|((_, k), _)| *k == kind)
            .map(|(_, at)| *at)
            .collect();
        times.sort_by(f64::total_cmp);
        times
    };
    let (launches, ends) = (times("launch_intent"), times("succeeded"));
    let cap = CONCURRENCY as usize;
    summary(
        launches
            .iter()
            .skip(cap)
            .zip(&ends)
            .map(|(launch, end)| launch - end)
            .collect(),
    )
}

/// The time from `from` to `to` over every instance: mean, median, 90th percentile, most.
fn step(timeline: &HashMap<(String, &'static str), f64>, from: &str, to: &str) -> String {
    let mut by_key: BTreeMap<&str, (Option<f64>, Option<f64>)> = BTreeMap::new();
    for ((key, kind), at) in timeline {
        let entry = by_key.entry(key).or_default();
        if *kind == from {
            entry.0 = Some(*at);
        } else if *kind == to {
            entry.1 = Some(*at);
        }
    }
    summary(
        by_key
            .values()
            .filter_map(|(a, b)| Some(b.as_ref()? - a.as_ref()?))
            .collect(),
    )
}

/// Mean, median, 90th percentile and most of `times`.
fn summary(mut times: Vec<f64>) -> String {
    if times.is_empty() {
        return "never seen".to_owned();
    }
    times.sort_by(f64::total_cmp);
    let n = times.len();
    #[allow(clippy::cast_precision_loss)] // a thousand
    let mean = times.iter().sum::<f64>() / n as f64;
    format!(
        "mean {mean:.3} s, median {:.3} s, 90th percentile {:.3} s, most {:.3} s",
        times[n / 2],
        times[n * 9 / 10],
        times[n - 1]
    )
}
