//! The soak: a fleet with every fault on and `apply` killed with SIGKILL every few hundred
//! milliseconds, applied again until it finishes. Zero duplicate launches, zero lost
//! results, no quota violation, peak memory flat from the first process to the last.
//!
//! CI runs it with 120 instances. By hand, at full size:
//! `ORCHESTRATE_SOAK_INSTANCES=2000 cargo test --release --test lib soak -- --nocapture`.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use orchestrate::sim::{DEFAULT_KEY, SimConfig};
use rand::Rng;

use crate::support::text;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak RSS of a live process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn soak_with_every_fault_and_kill_9() {
    let instances = usize::try_from(setting("ORCHESTRATE_SOAK_INSTANCES", 120)).expect("a count");
    let kill_every = Duration::from_millis(setting("ORCHESTRATE_SOAK_KILL_MS", 800));
    let config = SimConfig {
        speed: 1000.0,
        agent_duration: (Duration::from_secs(50), Duration::from_secs(250)),
        faults: "5xx=0.05,429=0.003:1,latency=0ms..5ms,drop=0.03,error=0.1,expire=0.02"
            .parse()
            .unwrap(),
        calls_quota: Some("30000/min".parse().unwrap()),
        ..SimConfig::default()
    };
    let sim = crate::support::simulator(config).await;
    let dir = tempfile::tempdir().unwrap();
    let repos: String = (0..instances)
        .map(|n| format!("    - https://github.com/acme/soak-{n:05}"))
        .collect::<Vec<_>>()
        .join("\n");
    let file = dir.path().join("soak.yaml");
    let workflow = r"version: 1
name: soak
concurrency: 60
defaults:
  retries: 6
  auto_create_pr: true
fleets:
  all:
REPOS
tasks:
  bump:
    fleet: all
    prompt: Bump {{ repo.name }}.
    follow_ups:
      - prompt: Open the pull request.
";
    std::fs::write(&file, workflow.replace("REPOS", &repos)).unwrap();
    let state = dir.path().join("state");
    let apply = || {
        let mut command = crate::support::command();
        command
            .env("CURSOR_API_KEY", DEFAULT_KEY)
            .env("CURSOR_API_BASE_URL", sim.url())
            .env(
                "ORCHESTRATE_QUOTAS",
                "calls=20000/min,calls_burst=200,launches=6000/min,launches_burst=50",
            )
            .env("ORCHESTRATE_STATE", &state)
            .args([
                "apply",
                "--yes",
                "--poll-interval",
                "20ms",
                "--retry-backoff",
                "20ms",
                "--follow-up-grace",
                "100ms",
            ])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };

    let start = Instant::now();
    let mut peaks: Vec<u64> = Vec::new();
    let mut kills = 0;
    let exit = loop {
        let mut child = apply().spawn().unwrap();
        let wait = kill_every.mul_f64(rand::rng().random_range(0.5..1.5));
        let deadline = Instant::now() + wait;
        let mut finished = None;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                finished = Some(status);
                break;
            }
            if let Some(peak) = peak_rss_kib(child.id()) {
                peaks.push(peak);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(status) = finished {
            break status;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        assert!(
            start.elapsed() < Duration::from_secs(60 + instances as u64),
            "the soak does not converge"
        );
    };
    assert!(
        matches!(exit.code(), Some(0 | 1)),
        "the last apply ended with {exit:?}"
    );

    // Every launch made once, every result kept.
    let stats = sim.stats();
    for (key, count) in &stats.launches {
        assert_eq!(*count, 1, "{key} launched {count} times");
    }
    assert_eq!(
        stats.total_quota_violations(),
        0,
        "{:?}",
        stats.quota_violations
    );
    let mut status = crate::support::command();
    status
        .env("ORCHESTRATE_STATE", &state)
        .args(["status", "--json"]);
    let output = status.output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", text(&output.stderr)));
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for instance in status["instances"].as_array().unwrap() {
        let state = instance["state"].as_str().unwrap();
        *states.entry(state.to_owned()).or_default() += 1;
        if state == "succeeded" {
            let agent = instance["agent_id"].as_str().unwrap();
            assert_eq!(
                stats.follow_ups.get(agent),
                Some(&1),
                "the follow-up of {agent} was sent once"
            );
            assert!(
                instance["pr_url"]
                    .as_str()
                    .is_some_and(|u| u.contains("/pull/")),
                "{instance}"
            );
        } else {
            assert_eq!(state, "failed", "{instance}");
        }
    }
    assert_eq!(
        states.values().sum::<usize>(),
        instances,
        "every instance recorded"
    );
    assert!(
        stats.follow_ups.values().all(|&n| n == 1),
        "no follow-up sent twice"
    );

    // Memory stays flat: the last processes peak no higher than the first ones, give or take.
    let third = peaks.len() / 3;
    let (early, late) = (
        peaks[..third.max(1)].iter().max().unwrap(),
        peaks[peaks.len() - third.max(1)..].iter().max().unwrap(),
    );
    assert!(
        *late <= early * 3 / 2 + 10 * 1024,
        "peak RSS grew from {early} KiB to {late} KiB"
    );

    let launches = stats.launches.len();
    println!(
        "soak: {instances} instances, {kills} kills, {:.0} s; {launches} agents ({} relaunches), states {states:?}; faults {:?}; 0 duplicate launches, 0 quota violations; peak RSS {} to {} KiB",
        start.elapsed().as_secs_f64(),
        launches - instances,
        stats.faults,
        early,
        late
    );
    sim.shutdown().await;
}
