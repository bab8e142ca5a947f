//! Store time per transition, sled next to PostgreSQL: 1,000 instances each taken through
//! the four transitions of a launch (launching, running, following up, succeeded), every
//! one a durable write with its event, sent by 100 tasks at once as the executor sends them.
//!
//! Run: `cargo bench --bench store` (PostgreSQL needs Debian's `postgresql` package; the
//! bench starts a throwaway cluster with fsync on, as a real server runs).

use std::time::Instant;

use orchestrate::state::{Event, InstanceRecord, InstanceState, Location, StoreHandle, Write};

#[path = "../tests/pg.rs"]
#[allow(dead_code)]
mod pg;

const INSTANCES: usize = 1_000;
/// Writers at once (`STORE_WRITERS` to change it).
fn at_once() -> usize {
    std::env::var("STORE_WRITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}
const STEPS: [InstanceState; 4] = [
    InstanceState::Launching,
    InstanceState::Running,
    InstanceState::FollowingUp,
    InstanceState::Succeeded,
];

async fn transitions(store: &StoreHandle) -> (f64, f64) {
    let run = "bench/default".to_owned();
    let start = Instant::now();
    let mut tasks = Vec::new();
    let at_once = at_once();
    for lane in 0..at_once {
        let (store, run) = (store.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            for n in (lane..INSTANCES).step_by(at_once) {
                let key = format!("bump[acme/svc-{n:04}]");
                let mut record =
                    InstanceRecord::pending(&key, "bump", "https://github.com/acme/x", "b", "h");
                for state in STEPS {
                    record.state = state;
                    store
                        .write(vec![
                            Write::Instance(run.clone(), record.clone()),
                            Write::Event(run.clone(), Event::instance(&key, state.as_str(), "")),
                        ])
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let wall = start.elapsed().as_secs_f64();
    let busy = store.busy().await.as_secs_f64();
    let count = f64::from(u32::try_from(INSTANCES * STEPS.len()).expect("a few thousand"));
    (busy / count * 1e6, wall / count * 1e6)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{INSTANCES} instances x {} transitions, {} writers at once",
        STEPS.len(),
        at_once()
    );
    println!("| store | store time per transition | wall time per transition |");
    println!("| --- | --- | --- |");
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sled = StoreHandle::open(&Location::from(dir.path())).unwrap();
        let (busy, wall) = transitions(&sled).await;
        println!("| sled (a directory) | {busy:.0} µs | {wall:.0} µs |");
        sled.close().await;
    });
    let Some(cluster) = pg::Cluster::start(true) else {
        println!("| PostgreSQL | skipped: no server binaries | |");
        return;
    };
    runtime.block_on(async {
        let url = cluster.database();
        let store = StoreHandle::open(&Location::parse(&url)).unwrap();
        let (busy, wall) = transitions(&store).await;
        println!("| PostgreSQL (loopback, fsync on) | {busy:.0} µs | {wall:.0} µs |");
        store.close().await;
    });
}
