//! Requests per second and CPU per request of the API client and the simulator together,
//! on loopback, in one process (so the CPU figure covers both ends of each request).
//!
//! Run: `cargo bench --bench client`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use orchestrate::cursor::model::{AgentId, LaunchRequest, Prompt, Source};
use orchestrate::cursor::{ApiKey, Client, ClientConfig, QuotaConfig};
use orchestrate::sim::{DEFAULT_KEY, SimConfig, Simulator};

/// User plus system CPU time of this process, from /proc/self/stat (Linux).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ is 100 on Linux
}

async fn measure(
    client: &Client,
    ids: &[AgentId],
    tasks: usize,
    length: Duration,
) -> (f64, Option<Duration>, Duration) {
    let done = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let cpu_before = cpu_time();
    let start = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|worker| {
            let (client, ids, done, latencies) = (
                client.clone(),
                ids.to_vec(),
                done.clone(),
                latencies.clone(),
            );
            tokio::spawn(async move {
                let mut n = worker;
                let mut mine = Vec::new();
                while start.elapsed() < length {
                    let sent = Instant::now();
                    client
                        .agent(&ids[n % ids.len()])
                        .await
                        .expect("the simulator answers");
                    mine.push(sent.elapsed());
                    n += tasks;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                latencies.lock().unwrap().extend(mine);
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = start.elapsed();
    let requests = done.load(Ordering::Relaxed);
    let cpu = cpu_time().zip(cpu_before).map(|(after, before)| {
        after.saturating_sub(before) / u32::try_from(requests).unwrap_or(u32::MAX)
    });
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let requests = f64::from(u32::try_from(requests).unwrap_or(u32::MAX));
    (requests / elapsed.as_secs_f64(), cpu, p99)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let mut config = ClientConfig::new(&sim.url(), ApiKey::new(DEFAULT_KEY)).unwrap();
        config.quotas = QuotaConfig::default()
            .with_overrides("calls=1000000/s,calls_burst=100000,launches=1000000/s,launches_burst=100000")
            .unwrap();
        let client = Client::new(config).unwrap();
        let mut ids = Vec::new();
        for n in 0..100 {
            let request = LaunchRequest {
                prompt: Prompt::text(format!("Task {n}")),
                model: None,
                source: Source { repository: "https://github.com/acme/api".into(), git_ref: None },
                target: None,
                webhook: None,
            };
            ids.push(client.launch(&request).await.unwrap().id);
        }
        println!("GET /v0/agents/{{id}} against the simulator on loopback, client and simulator in one process:");
        for tasks in [1, 8, 32] {
            let (rps, cpu, p99) = measure(&client, &ids, tasks, Duration::from_secs(3)).await;
            let cpu = cpu.map_or_else(|| "n/a".to_owned(), |c| format!("{:.0} µs", c.as_secs_f64() * 1e6));
            println!(
                "  {tasks:>2} concurrent: {rps:>8.0} requests/s, CPU per request {cpu}, p99 latency {:.2} ms",
                p99.as_secs_f64() * 1e3
            );
        }
        sim.shutdown().await;
    });
}
