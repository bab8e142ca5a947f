//! `apply` end to end: the real binary against the simulator on loopback.
//!
//! The suite runs on both API versions: each test takes the version, and `on_both_apis!`
//! makes it two tests, `name::v0` and `name::v1`. Tests of what only one version has say so.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orchestrate::sim::{DEFAULT_KEY, SimConfig, Simulator, Stats};
use orchestrate::spec::ApiVersion;
use rand::Rng;

use crate::support::{repo_root, text};

/// Runs the async test function `$name(api)` once per backend, as `$name::v0`, `$name::v1`
/// and `$name::platform` (the LiteLLM Agent Platform). A test that needs what the platform
/// lacks names the reason, and its platform variant is ignored with it.
macro_rules! on_every_backend {
    ($name:ident) => {
        on_every_backend!($name, platform: );
    };
    ($name:ident, platform: $($reason:literal)?) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn v0() {
                super::$name(crate::apply::Target::V0).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn v1() {
                super::$name(crate::apply::Target::V1).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            $(#[ignore = $reason])?
            async fn platform() {
                super::$name(crate::apply::Target::Platform).await;
            }
        }
    };
}

/// Runs the async test function `$name(api)` on both Cursor API versions only.
macro_rules! on_both_apis {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn v0() {
                super::$name(crate::apply::Target::V0).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn v1() {
                super::$name(crate::apply::Target::V1).await;
            }
        }
    };
}

/// What the binary is told to run agents on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Cursor API v0.
    V0,
    /// Cursor API v1.
    V1,
    /// The LiteLLM Agent Platform (its `cursor` runtime).
    Platform,
}

impl Target {
    /// The Cursor API version, if on the Cursor API.
    pub(crate) fn version(self) -> Option<ApiVersion> {
        match self {
            Target::V0 => Some(ApiVersion::V0),
            Target::V1 => Some(ApiVersion::V1),
            Target::Platform => None,
        }
    }
}

/// The platform agent the tests' sessions run.
pub(crate) const PLATFORM_AGENT: &str = "agent-orchestrate-tests";

/// A simulator, and what the binary is told to run agents on against it.
pub(crate) struct Sim {
    sim: crate::support::StrictSim,
    pub(crate) api: Target,
}

impl Deref for Sim {
    type Target = Simulator;

    fn deref(&self) -> &Simulator {
        &self.sim
    }
}

impl Sim {
    pub(crate) async fn shutdown(self) {
        self.sim.shutdown().await;
    }

    /// The route of a launch, as the simulator counts calls.
    fn launch_route(&self) -> &'static str {
        match self.api {
            Target::V0 => "POST /v0/agents",
            Target::V1 => "POST /v1/agents",
            Target::Platform => "POST /session",
        }
    }

    /// The route that stops an agent's work.
    fn stop_route(&self) -> &'static str {
        match self.api {
            Target::V0 => "POST /v0/agents/{id}/stop",
            Target::V1 => "POST /v1/agents/{id}/runs/{run}/cancel",
            Target::Platform => "POST /v1/sessions/{id}/events",
        }
    }
}

/// Quotas out of the way of a test (the simulator counts any violation anyway).
const QUOTAS: &str =
    "calls=60000/min,calls_burst=500,launches=60000/min,launches_burst=500,repositories=1000/s";

/// A simulator whose agents take `work` of real time, for a binary told to use `api`.
pub(crate) async fn simulator(api: Target, work: (u64, u64), faults: &str) -> Sim {
    simulator_with(api, work, faults, |_| {}).await
}

/// [`simulator`], with some of its settings changed first.
pub(crate) async fn simulator_with(
    api: Target,
    work: (u64, u64),
    faults: &str,
    change: impl FnOnce(&mut SimConfig),
) -> Sim {
    simulator_at(api, work, faults, change, "127.0.0.1:0".parse().unwrap()).await
}

/// [`simulator_with`] at `address`.
pub(crate) async fn simulator_at(
    api: Target,
    work: (u64, u64),
    faults: &str,
    change: impl FnOnce(&mut SimConfig),
    address: std::net::SocketAddr,
) -> Sim {
    let mut config = SimConfig {
        speed: 1000.0,
        creating: Duration::from_secs(5),
        agent_duration: (Duration::from_secs(work.0), Duration::from_secs(work.1)),
        faults: faults.parse().unwrap(),
        repositories_quota: vec!["1000/s".parse().unwrap()],
        platform_agents: vec![PLATFORM_AGENT.to_owned()],
        ..SimConfig::default()
    };
    change(&mut config);
    let sim = crate::support::simulator_at(config, address).await;
    Sim { sim, api }
}

/// `orchestrate` against `sim` with a private state, fast polling and quick retries.
pub(crate) fn orchestrate(sim: &Sim, state: &Path) -> Command {
    let mut command = crate::support::command();
    command
        .current_dir(repo_root())
        .env("CURSOR_API_BASE_URL", sim.url())
        .env("CURSOR_API_KEY", DEFAULT_KEY)
        .env("ORCHESTRATE_QUOTAS", QUOTAS)
        .env("ORCHESTRATE_STATE", state)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    match sim.api.version() {
        Some(version) => {
            command.env("CURSOR_API_VERSION", version.as_str());
        }
        // The examples run unchanged: the environment picks the platform and its agent.
        None => {
            command
                .env("LAP_MASTER_KEY", DEFAULT_KEY)
                .env("ORCHESTRATE_BACKEND", "litellm-agent-platform")
                .env("LAP_URL", sim.url())
                .env("LAP_AGENT_ID", PLATFORM_AGENT);
        }
    }
    command
}

pub(crate) const FAST: [&str; 6] = [
    "--poll-interval",
    "15ms",
    "--retry-backoff",
    "30ms",
    "--follow-up-grace",
    "150ms",
];

/// Starts `apply FILE --yes` in the background, its output discarded.
fn spawn_apply(sim: &Sim, state: &Path, file: &Path) -> Child {
    let mut command = orchestrate(sim, state);
    command
        .arg("apply")
        .arg(file)
        .arg("--yes")
        .args(FAST)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command.spawn().unwrap()
}

/// Waits (at most 3 s) until the simulator has made `count` agents.
async fn wait_for_agents(sim: &Sim, count: u64) {
    for _ in 0..300 {
        if sim.stats().agents >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `apply FILE --yes` to its end in a blocking thread; returns (exit code, stderr).
pub(crate) async fn apply(
    sim: &Sim,
    state: &Path,
    file: &Path,
    extra: &[&str],
) -> (Option<i32>, String) {
    let mut command = orchestrate(sim, state);
    command
        .arg("apply")
        .arg(file)
        .arg("--yes")
        .args(FAST)
        .args(extra);
    tokio::task::spawn_blocking(move || {
        let output = command.output().unwrap();
        (output.status.code(), text(&output.stderr))
    })
    .await
    .unwrap()
}

pub(crate) async fn status_json(sim: &Sim, state: &Path) -> serde_json::Value {
    let mut command = orchestrate(sim, state);
    command.args(["status", "--json"]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

pub(crate) fn states(status: &serde_json::Value) -> BTreeMap<String, String> {
    status["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["key"].as_str().unwrap().to_owned(),
                i["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The YAML lines of a fleet of `count` repositories named `prefix-NN`.
pub(crate) fn fleet(prefix: &str, count: usize) -> String {
    (0..count)
        .map(|n| format!("    - https://github.com/acme/{prefix}-{n:02}"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

pub(crate) fn every_launch_once(stats: &Stats) {
    for (key, count) in &stats.launches {
        assert_eq!(*count, 1, "{key} was launched {count} times");
    }
}

on_every_backend!(every_example_applies_to_completion_and_needs_reach_prompts);
async fn every_example_applies_to_completion_and_needs_reach_prompts(api: Target) {
    let examples: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples/workflows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    let mut launches = Vec::new();
    let mut applied = Vec::new();
    for example in &examples {
        // Two examples push to the same branches of the same repositories: one simulator each.
        let sim = simulator(api, (10, 20), "").await;
        let state = tempfile::tempdir().unwrap();
        let (code, stderr) = apply(&sim, state.path(), example, &[]).await;
        if api == Target::Platform && code == Some(2) {
            // Settings the platform cannot send are refused up front, each named.
            let words: Vec<&str> = stderr.split_whitespace().filter(|w| *w != "│").collect();
            let said = words.join(" ");
            assert!(
                said.contains("cannot be sent through the LiteLLM Agent Platform")
                    || said.contains("which the LiteLLM Agent Platform backend does not reach"),
                "{}:\n{stderr}",
                example.display()
            );
            assert_eq!(sim.stats().agents, 0);
            sim.shutdown().await;
            continue;
        }
        applied.push(example.file_name().unwrap().to_string_lossy().into_owned());
        assert_eq!(code, Some(0), "{}:\n{stderr}", example.display());
        let status = status_json(&sim, state.path()).await;
        assert_eq!(status["state"], "succeeded", "{}", example.display());
        assert!(states(&status).values().all(|s| s == "succeeded"));
        every_launch_once(&sim.stats());
        assert_eq!(sim.stats().total_quota_violations(), 0);
        launches.extend(sim.launches());
        sim.shutdown().await;
    }
    // The release note of the pipeline lists the pull requests its needs opened.
    let notes = launches
        .iter()
        .find(|l| l.prompt.starts_with("Write the release note"))
        .unwrap();
    for repo in ["api", "billing", "web"] {
        assert!(
            notes
                .prompt
                .contains(&format!("- {repo}: https://github.com/acme/{repo}/pull/")),
            "{}",
            notes.prompt
        );
    }
    assert!(notes.prompt.contains("(succeeded)"));
    if api == Target::Platform {
        // The examples whose settings the platform can send; it reports no branch, so
        // `needs.bump.branch` is empty there.
        applied.sort();
        assert_eq!(applied, ["pipeline.yaml", "single-repo.yaml"]);
        return;
    }
    // fix-tests is told its own repository's bump branch, not another's: on v0 the branch
    // orchestrate asked for, on v1 the one the agent reported.
    let bump_web = launches
        .iter()
        .find(|l| l.prompt.starts_with("Upgrade web to") && l.repository.ends_with("/web"))
        .unwrap();
    let fix_web = launches
        .iter()
        .find(|l| l.prompt.starts_with("The framework upgrade of web"))
        .unwrap();
    assert!(
        fix_web
            .prompt
            .contains(&format!("branch {}\n", bump_web.branch)),
        "{}\n{bump_web:?}",
        fix_web.prompt
    );
    let expected_prefix = match api {
        Target::V0 => "orchestrate/framework-upgrade/default/bump",
        Target::V1 => "cursor/",
        Target::Platform => unreachable!("returned above"),
    };
    assert!(bump_web.branch.starts_with(expected_prefix), "{bump_web:?}");
    // The discover fleet resolved to the simulator's acme/go-* repositories.
    assert!(
        launches
            .iter()
            .any(|l| l.repository == "https://github.com/acme/go-search")
    );
}

on_every_backend!(killed_at_any_moment_no_agent_is_launched_twice_and_nothing_is_lost);
/// 50 instances, each with follow-ups, killed at 30+ random moments and at the worst ones
/// (right after a launch or a follow-up call answered, before the answer was stored), then
/// applied to the end: every instance launched once, every follow-up sent once.
async fn killed_at_any_moment_no_agent_is_launched_twice_and_nothing_is_lost(api: Target) {
    let sim = simulator(api, (40, 120), "").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.yaml");
    let repos = fleet("svc", 25);
    std::fs::write(
        &file,
        format!(
            "version: 1\nname: crash\nconcurrency: 12\nfleets:\n  all:\n{repos}tasks:\n  bump:\n    fleet: all\n    prompt: Bump {{{{ repo.name }}}}.\n    follow_ups:\n      - prompt: Update the changelog.\n      - prompt: Open the PR.\n        if: \"agent.status == 'FINISHED'\"\n  fix:\n    fleet: all\n    needs: [bump]\n    prompt: Fix {{{{ repo.name }}}} after {{{{ needs.bump.branch }}}}.\n    follow_ups:\n      - prompt: Run the tests again.\n"
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut kills = 0;
    // The worst moments, deterministically.
    for point in ["launch:3", "follow_up:2", "launch:1", "follow_up:1"] {
        let mut command = orchestrate(&sim, &state);
        command
            .arg("apply")
            .arg(&file)
            .arg("--yes")
            .args(FAST)
            .env("ORCHESTRATE_CRASH_AFTER", point);
        let status = tokio::task::spawn_blocking(move || command.output().unwrap().status)
            .await
            .unwrap();
        assert!(!status.success(), "{point}: the process was to die");
        kills += 1;
    }
    // And 30 random ones.
    let started = Instant::now();
    while kills < 34 {
        let mut command = orchestrate(&sim, &state);
        command
            .arg("apply")
            .arg(&file)
            .arg("--yes")
            .args(FAST)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child: Child = command.spawn().unwrap();
        let wait = rand::rng().random_range(20..250);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        kills += 1;
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the kills took too long"
        );
    }
    let (code, stderr) = apply(&sim, &state, &file, &[]).await;
    if api == Target::Platform {
        // The platform cannot look a session up: a launch a kill cut off (intent written, its
        // answer never stored) is never sent again on its own, and no session is made twice.
        assert_eq!(code, Some(1), "{stderr}");
        every_launch_once(&sim.stats());
        let status = status_json(&sim, &state).await;
        let mut unknown = 0;
        for instance in status["instances"].as_array().unwrap() {
            match instance["state"].as_str().unwrap() {
                "succeeded" => {}
                "failed" => {
                    let error = instance["error"].as_str().unwrap_or_default();
                    assert!(error.starts_with("launch outcome unknown"), "{instance}");
                    unknown += 1;
                }
                "blocked" => assert!(instance["key"].as_str().unwrap().starts_with("fix")),
                _ => panic!("{instance}"),
            }
        }
        // At least the deterministic crash right after a launch answered.
        assert!(unknown >= 1);
        // The user checked the platform and relaunches them: everything ends.
        let mut retry = orchestrate(&sim, &state);
        retry.args(["retry", "--failed", "--yes", "--poll-interval", "15ms"]);
        let output = tokio::task::spawn_blocking(move || retry.output().unwrap())
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let status = status_json(&sim, &state).await;
        assert_eq!(status["counts"], serde_json::json!({"succeeded": 50}));
        // Only a cut-off launch that did reach the platform has a second session.
        let seen = sim.stats();
        let twice = seen.launches.values().filter(|n| **n == 2).count();
        assert!(seen.launches.values().all(|n| *n <= 2));
        assert!(twice <= unknown, "{twice} > {unknown}");
        assert_eq!(seen.agents, 50 + twice as u64);
        // Follow-ups cut off by a kill were found in the session's events, not sent again.
        let mut follow_ups: Vec<u64> = seen.follow_ups.values().copied().collect();
        follow_ups.sort_unstable();
        assert_eq!(follow_ups, [vec![1; 25], vec![2; 25]].concat());
        sim.shutdown().await;
        return;
    }
    assert_eq!(code, Some(0), "{stderr}");

    let seen = sim.stats();
    every_launch_once(&seen);
    assert_eq!(seen.launches.len(), 50, "every instance launched");
    assert_eq!(seen.agents, 50, "no agent made twice");
    if api == Target::V1 {
        // The crash right after the third launch left an intent without an agent: the resend
        // was refused as a duplicate, and the existing agent adopted.
        assert!(
            seen.errors.get("agent_id_conflict").copied().unwrap_or(0) >= 1,
            "{:?}",
            seen.errors
        );
    }
    let mut follow_ups: Vec<u64> = seen.follow_ups.values().copied().collect();
    follow_ups.sort_unstable();
    assert_eq!(
        follow_ups,
        [vec![1; 25], vec![2; 25]].concat(),
        "each follow-up sent exactly once"
    );
    let status = status_json(&sim, &state).await;
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["counts"], serde_json::json!({"succeeded": 50}));
    sim.shutdown().await;
}

on_every_backend!(
    under_injected_faults_the_run_completes_with_its_retries_and_within_quotas,
    platform: "a launch whose answer is lost (an injected 5xx or drop on POST /session) cannot be found again on the platform, so it fails rather than being recovered; platform::broken_event_streams_resume_and_agent_errors_are_retried covers the platform's faults"
);
async fn under_injected_faults_the_run_completes_with_its_retries_and_within_quotas(api: Target) {
    let sim = simulator(
        api,
        (10, 30),
        "5xx=0.08,429=0.01:1,drop=0.05,error=0.1,seed=9",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("faults.yaml");
    // 30 instances, 60 agent phases: some ERROR is all but sure (0.9^60 is 0.2%).
    let repos = fleet("lib", 30);
    std::fs::write(&file, format!("version: 1\nname: faults\nconcurrency: 8\ndefaults:\n  retries: 6\nfleets:\n  all:\n{repos}tasks:\n  lint:\n    fleet: all\n    prompt: Lint {{{{ repo.name }}}}.\n    follow_ups:\n      - prompt: Open the PR.\n")).unwrap();
    let state = dir.path().join("state");
    let (code, stderr) = apply(&sim, &state, &file, &[]).await;
    let status = status_json(&sim, &state).await;
    let seen = sim.stats();
    assert!(
        seen.faults.get("agent_error").copied().unwrap_or(0) > 0,
        "some agents failed: {:?}",
        seen.faults
    );
    assert!(
        seen.faults.get("5xx").copied().unwrap_or(0) > 0
            && seen.faults.get("drop").copied().unwrap_or(0) > 0
    );
    let instances = status["instances"].as_array().unwrap();
    assert!(
        instances
            .iter()
            .any(|i| i["attempts"].as_u64().unwrap() > 1),
        "some instance was relaunched"
    );
    for instance in instances {
        assert!(instance["attempts"].as_u64().unwrap() <= 7, "{instance}");
        assert!(
            ["succeeded", "failed"].contains(&instance["state"].as_str().unwrap()),
            "{instance}"
        );
    }
    // A relaunch has its own branch, so even with retries no branch got two agents.
    every_launch_once(&seen);
    assert_eq!(seen.total_quota_violations(), 0);
    // An attempt fails when its prompt or its follow-up ends in ERROR (1 - 0.9^2 = 19%);
    // seven attempts all failing for one of 30 instances has odds of about 3 in 10,000.
    assert_eq!(code, Some(0), "{stderr}\n{status:#}");
    sim.shutdown().await;
}

on_every_backend!(editing_one_prompt_relaunches_only_that_task_and_its_dependents);
async fn editing_one_prompt_relaunches_only_that_task_and_its_dependents(api: Target) {
    let sim = simulator(api, (10, 20), "").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pipeline.yaml");
    let original =
        std::fs::read_to_string(repo_root().join("examples/workflows/pipeline.yaml")).unwrap();
    std::fs::write(&file, &original).unwrap();
    let state = dir.path().join("state");
    assert_eq!(apply(&sim, &state, &file, &[]).await.0, Some(0));
    assert_eq!(sim.stats().agents, 7);

    std::fs::write(
        &file,
        original.replace(
            "run the test suite and fix",
            "run the whole test suite and fix",
        ),
    )
    .unwrap();
    let mut plan = orchestrate(&sim, &state);
    plan.args(["plan", "--format", "json"]).arg(&file);
    let output = tokio::task::spawn_blocking(move || plan.output().unwrap())
        .await
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let actions: BTreeMap<String, String> = plan["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["key"].as_str().unwrap().to_owned(),
                i["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (key, action) in &actions {
        let expected = if key.starts_with("bump") {
            "keep"
        } else {
            "relaunch"
        };
        assert_eq!(action, expected, "{key}");
    }

    let (code, stderr) = apply(&sim, &state, &file, &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let seen = sim.stats();
    assert_eq!(
        seen.agents,
        7 + 4,
        "three fix-tests and the release note, nothing else"
    );
    every_launch_once(&seen);
    // Applying again changes nothing.
    assert_eq!(apply(&sim, &state, &file, &[]).await.0, Some(0));
    assert_eq!(sim.stats().agents, 11);
    sim.shutdown().await;
}

on_every_backend!(a_second_apply_on_the_same_state_is_refused_and_changes_nothing);
async fn a_second_apply_on_the_same_state_is_refused_and_changes_nothing(api: Target) {
    let sim = simulator(api, (2000, 3000), "").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = repo_root().join("examples/workflows/pipeline.yaml");
    let mut first = spawn_apply(&sim, &state, &file);
    wait_for_agents(&sim, 3).await;
    let before = sim.stats();
    let (code, stderr) = apply(&sim, &state, &file, &[]).await;
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(&format!(
            "the state in {} is in use by another orchestrate (pid {}",
            state.display(),
            first.id()
        )),
        "{stderr}"
    );
    let after = sim.stats();
    assert_eq!(
        (after.agents, after.launches),
        (before.agents, before.launches),
        "the second apply launched nothing"
    );
    let _ = first.kill();
    let _ = first.wait();
    sim.shutdown().await;
}

on_every_backend!(a_timeout_stops_the_agent_and_cancel_stops_every_running_one);
async fn a_timeout_stops_the_agent_and_cancel_stops_every_running_one(api: Target) {
    let sim = simulator(api, (5000, 6000), "").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slow.yaml");
    std::fs::write(&file, "version: 1\nname: slow\ntasks:\n  wait:\n    repo: https://github.com/acme/api\n    prompt: Take your time.\n    timeout: 300ms\n").unwrap();
    let state = dir.path().join("state");
    let (code, stderr) = apply(&sim, &state, &file, &[]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        states(&status_json(&sim, &state).await)["wait[acme/api]"],
        "timed_out"
    );
    assert_eq!(sim.stats().calls[sim.stop_route()], 1);

    // cancel: an apply dies with three agents working; cancel stops all three.
    let state = dir.path().join("state-2");
    let pipeline = repo_root().join("examples/workflows/pipeline.yaml");
    let mut running = spawn_apply(&sim, &state, &pipeline);
    wait_for_agents(&sim, sim.stats().agents + 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = running.kill();
    let _ = running.wait();
    let mut cancel = orchestrate(&sim, &state);
    cancel.arg("cancel");
    let output = tokio::task::spawn_blocking(move || cancel.output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("3 agent(s) stopped, 4 instance(s) skipped"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(sim.stats().calls[sim.stop_route()], 1 + 3);
    let status = status_json(&sim, &state).await;
    assert_eq!(status["state"], "cancelled");
    let by_state = states(&status);
    assert_eq!(by_state.values().filter(|s| *s == "cancelled").count(), 3);
    assert_eq!(by_state.values().filter(|s| *s == "skipped").count(), 4);
    sim.shutdown().await;
}

on_every_backend!(ctrl_c_stops_launching_and_says_how_to_resume);
async fn ctrl_c_stops_launching_and_says_how_to_resume(api: Target) {
    // Agents work 1 s: time enough to interrupt before the first one finishes.
    let sim = simulator(api, (1000, 1200), "").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = repo_root().join("examples/workflows/pipeline.yaml");
    let mut command = orchestrate(&sim, &state);
    command
        .arg("apply")
        .arg(&file)
        .arg("--yes")
        .args(FAST)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().unwrap();
    for _ in 0..300 {
        if sim.stats().agents == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("continue with: orchestrate apply"),
        "{stderr}"
    );
    assert_eq!(sim.stats().agents, 3, "nothing launched after Ctrl-C");
    // Applying again continues the same agents to the end.
    let (code, stderr) = apply(&sim, &state, &file, &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(sim.stats().agents, 7);
    every_launch_once(&sim.stats());
    sim.shutdown().await;
}

/// A calls quota the server named to one run paces the next run against the same API from
/// its first call, instead of costing another 429 to find.
#[tokio::test]
async fn a_limit_named_to_one_run_paces_the_next_from_its_first_call() {
    let four_a_minute = |c: &mut SimConfig| c.calls_quota = Some("4/min".parse().unwrap());
    let sim = simulator_with(Target::V0, (5000, 5000), "", four_a_minute).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = repo_root().join("examples/workflows/pipeline.yaml");
    let first = spawn_apply(&sim, &state, &file);
    for _ in 0..500 {
        if sim.stats().total_throttled() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        sim.stats().total_throttled(),
        1,
        "the first run learns the limit"
    );
    Command::new("kill")
        .args(["-INT", &first.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || first.wait_with_output().unwrap().status)
        .await
        .unwrap();
    assert_eq!(status.code(), Some(3));
    let address = sim.addr();
    sim.shutdown().await;

    // A fresh server where the first was: its window is empty, its limit the same.
    let sim = simulator_at(Target::V0, (5000, 5000), "", four_a_minute, address).await;
    let mut second = orchestrate(&sim, &state);
    second
        .args(["apply", "--run", "second", "--yes"])
        .arg(&file)
        .args(FAST)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut second = second.spawn().unwrap();
    wait_for_agents(&sim, 3).await;
    // Unpaced, reads every 15 ms would have met the limit within a few dozen milliseconds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = sim.stats();
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(stats.agents, 3, "the first wave went at once");
    assert_eq!(stats.total_throttled(), 0, "{:?}", stats.throttled);
    assert!(stats.calls.values().sum::<u64>() <= 4, "{:?}", stats.calls);
    sim.shutdown().await;
}

on_every_backend!(a_failed_need_blocks_its_dependents_and_retry_relaunches_them);
/// A need that fails blocks `all_succeeded` dependents but not `always` ones; `retry
/// --failed` relaunches it and re-runs what depended on it.
async fn a_failed_need_blocks_its_dependents_and_retry_relaunches_them(api: Target) {
    let sim = simulator(api, (10, 20), "error=1.0").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chain.yaml");
    std::fs::write(
        &file,
        "version: 1\nname: chain\ntasks:\n  bump:\n    repo: https://github.com/acme/api\n    prompt: Bump.\n  fix:\n    repo: https://github.com/acme/api\n    needs: [bump]\n    prompt: Fix after {{ needs.bump[0].branch }}.\n  report:\n    repo: https://github.com/acme/docs\n    needs: [bump]\n    if: always\n    prompt: \"Report: bump is {% for b in needs.bump %}{{ b.state }}{% endfor %}.\"\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let (code, stderr) = apply(&sim, &state, &file, &[]).await;
    assert_eq!(code, Some(1), "{stderr}");
    let first = states(&status_json(&sim, &state).await);
    assert_eq!(first["bump[acme/api]"], "failed");
    assert_eq!(first["fix[acme/api]"], "blocked");
    // `report` ran even so (its agent failed too: every agent fails in this simulator).
    assert!(
        sim.launches()
            .iter()
            .any(|l| l.prompt == "Report: bump is failed.")
    );

    sim.set_faults(orchestrate::sim::Faults::default());
    let mut retry = orchestrate(&sim, &state);
    retry.args(["retry", "--failed", "--yes", "--poll-interval", "15ms"]);
    let output = tokio::task::spawn_blocking(move || retry.output().unwrap())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let after = states(&status_json(&sim, &state).await);
    assert!(after.values().all(|s| s == "succeeded"), "{after:?}");
    assert!(
        sim.launches()
            .iter()
            .any(|l| l.prompt == "Report: bump is succeeded.")
    );
    // The retry is recorded with its reason.
    assert!(
        text(&output.stderr).contains("run chain/default"),
        "{}",
        text(&output.stderr)
    );
    sim.shutdown().await;
}

#[test]
fn simulate_runs_a_whole_workflow_without_a_key() {
    let state = tempfile::tempdir().unwrap();
    let output = crate::support::orchestrate()
        .args([
            "apply",
            "--simulate",
            "examples/workflows/fleet-fanout.yaml",
            "--state",
        ])
        .arg(state.path())
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("simulating the Cursor API"), "{stderr}");
    assert!(
        stderr.contains("run lint-fix/default: 4 succeeded"),
        "{stderr}"
    );
}

#[test]
fn without_a_key_apply_explains_both_ways_forward() {
    let state = tempfile::tempdir().unwrap();
    let output = crate::support::orchestrate()
        .args([
            "apply",
            "examples/workflows/single-repo.yaml",
            "--yes",
            "--state",
        ])
        .arg(state.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    insta::assert_snapshot!(text(&output.stderr));
}

on_every_backend!(without_a_terminal_apply_wants_yes);
async fn without_a_terminal_apply_wants_yes(api: Target) {
    let sim = simulator(api, (10, 20), "").await;
    let state = tempfile::tempdir().unwrap();
    let mut command = orchestrate(&sim, state.path());
    command.args(["apply", "examples/workflows/single-repo.yaml"]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("refusing to launch 1 agent(s) without --yes"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(sim.stats().agents, 0);
    sim.shutdown().await;
}

on_every_backend!(a_failing_canary_stops_the_rest_of_the_rollout);
/// A canary that fails stops the rest of its fleet: they are blocked, never launched.
async fn a_failing_canary_stops_the_rest_of_the_rollout(api: Target) {
    let sim = simulator(api, (10, 20), "error=1.0").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("canary.yaml");
    let repos = fleet("svc", 6);
    std::fs::write(&file, format!("version: 1\nname: canary\nfleets:\n  all:\n{repos}tasks:\n  bump:\n    fleet: all\n    rollout:\n      canary: 2\n    prompt: Bump {{{{ repo.name }}}}.\n")).unwrap();
    let state = dir.path().join("state");
    let (code, stderr) = apply(&sim, &state, &file, &[]).await;
    assert_eq!(code, Some(1), "{stderr}");
    let states = states(&status_json(&sim, &state).await);
    assert_eq!(states["bump[acme/svc-00]"], "failed");
    assert_eq!(states["bump[acme/svc-01]"], "failed");
    assert_eq!(states.values().filter(|s| *s == "blocked").count(), 4);
    assert_eq!(sim.stats().agents, 2, "only the canaries were launched");

    // With healthy agents the canaries succeed and the rest follow.
    let sim = simulator(api, (10, 20), "").await;
    let state = dir.path().join("state-2");
    assert_eq!(apply(&sim, &state, &file, &[]).await.0, Some(0));
    assert_eq!(sim.stats().agents, 6);
    sim.shutdown().await;
}

on_every_backend!(max_agents_refuses_a_run_that_would_launch_more);
async fn max_agents_refuses_a_run_that_would_launch_more(api: Target) {
    let sim = simulator(api, (10, 20), "").await;
    let state = tempfile::tempdir().unwrap();
    let file = repo_root().join("examples/workflows/pipeline.yaml");
    let (code, stderr) = apply(&sim, state.path(), &file, &["--max-agents", "5"]).await;
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("would launch 7 agent(s), more than --max-agents 5; nothing was launched"),
        "{stderr}"
    );
    assert_eq!(sim.stats().agents, 0);
    assert_eq!(
        apply(&sim, state.path(), &file, &["--max-agents", "7"])
            .await
            .0,
        Some(0)
    );
    sim.shutdown().await;
}

on_every_backend!(status_works_while_an_apply_runs);
/// While an apply holds the state, `status` answers from the snapshot it writes.
async fn status_works_while_an_apply_runs(api: Target) {
    let sim = simulator(api, (3000, 4000), "").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut running = spawn_apply(
        &sim,
        &state,
        &repo_root().join("examples/workflows/pipeline.yaml"),
    );
    wait_for_agents(&sim, 3).await;
    let mut answer = None;
    for _ in 0..50 {
        let mut status = orchestrate(&sim, &state);
        status.args(["status", "--json"]);
        let output = tokio::task::spawn_blocking(move || status.output().unwrap())
            .await
            .unwrap();
        if output.status.success() {
            let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            if states(&json).values().filter(|s| *s == "running").count() == 3 {
                answer = Some((json, text(&output.stderr)));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (json, stderr) = answer.expect("status answered while the apply ran");
    assert!(stderr.contains("an apply is running (pid "), "{stderr}");
    assert_eq!(json["run"], "framework-upgrade/default");
    assert_eq!(json["state"], "running");
    let _ = running.kill();
    let _ = running.wait();
    sim.shutdown().await;
}

on_every_backend!(a_long_429_storm_delays_launches_and_fails_nothing);
/// A launch throttled for longer than the client retries is launched later, never failed:
/// a 429 storm costs time, not paid work.
async fn a_long_429_storm_delays_launches_and_fails_nothing(api: Target) {
    let sim = simulator(api, (10, 20), "429=1.0:1").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = repo_root().join("examples/workflows/single-repo.yaml");
    let mut command = orchestrate(&sim, &state);
    command.arg("apply").arg(&file).arg("--yes").args(FAST);
    let run = tokio::task::spawn_blocking(move || command.output().unwrap());
    // Every launch is refused until the client gave up at least once (6 attempts, 1 s each).
    for _ in 0..200 {
        if sim
            .stats()
            .calls
            .get(sim.launch_route())
            .copied()
            .unwrap_or(0)
            > 6
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.set_faults(orchestrate::sim::Faults::default());
    let output = run.await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(sim.stats().agents, 1);
    sim.shutdown().await;
}

/// An agent stopped from outside reports a status orchestrate does not know (the simulator is
/// told to say STOPPED, outside the published enum); once it stops changing, the attempt
/// ends instead of waiting forever. v0 only: v1 documents CANCELLED, which orchestrate knows.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_status_that_stops_changing_ends_the_attempt() {
    let sim = simulator_with(Target::V0, (3000, 4000), "", |config| {
        config.stopped_status = orchestrate::cursor::AgentStatus::Unknown("STOPPED".into());
    })
    .await;
    sim.sim.expect_violation("\"STOPPED\" is not one of");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut command = orchestrate(&sim, &state);
    command
        .arg("apply")
        .arg(repo_root().join("examples/workflows/single-repo.yaml"))
        .arg("--yes")
        .args(FAST);
    let run = tokio::task::spawn_blocking(move || command.output().unwrap());
    let client = orchestrate::cursor::Client::new(
        orchestrate::cursor::ClientConfig::new(
            &sim.url(),
            orchestrate::cursor::ApiKey::new(DEFAULT_KEY),
        )
        .unwrap(),
    )
    .unwrap();
    let mut stopped = false;
    for _ in 0..300 {
        if let Some(agent) = client
            .list_agents(Some(1), None)
            .await
            .unwrap()
            .agents
            .first()
        {
            client.stop(&agent.id).await.unwrap();
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(stopped);
    let output = run.await.unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "reports `STOPPED`, a status orchestrate does not know, and it stopped changing"
        ),
        "{stderr}"
    );
    sim.shutdown().await;
}

on_every_backend!(
    a_usage_limit_pauses_the_run_and_it_resumes_once_raised,
    platform: "the Agent Platform has no spending-ceiling error (usage_limit_exceeded is Cursor API v1's)"
);
/// v1's spending ceiling: the run stops launching, says why, exits 3 (resumable), and
/// completes once the limit is raised, with no agent made twice. v0 documents no such limit:
/// there the same workflow simply completes.
async fn a_usage_limit_pauses_the_run_and_it_resumes_once_raised(api: Target) {
    let sim = simulator(api, (200, 300), "usage_limit=3").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("limited.yaml");
    let repos = fleet("svc", 6);
    std::fs::write(&file, format!("version: 1\nname: limited\nconcurrency: 6\nfleets:\n  all:\n{repos}tasks:\n  bump:\n    fleet: all\n    prompt: Bump {{{{ repo.name }}}}.\n    follow_ups:\n      - prompt: Update the changelog.\n")).unwrap();
    let state = dir.path().join("state");
    let (code, stderr) = apply(&sim, &state, &file, &[]).await;
    if api == Target::V0 {
        assert_eq!(code, Some(0), "{stderr}");
        sim.shutdown().await;
        return;
    }
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("the API's usage limit is reached")
            && stderr.contains("once it is raised, continue with: orchestrate apply"),
        "{stderr}"
    );
    assert_eq!(sim.stats().agents, 3, "nothing launched past the limit");
    let status = status_json(&sim, &state).await;
    assert_eq!(status["state"], "interrupted");

    sim.set_faults(orchestrate::sim::Faults::default());
    let (code, stderr) = apply(&sim, &state, &file, &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let seen = sim.stats();
    assert_eq!(seen.agents, 6);
    every_launch_once(&seen);
    let mut follow_ups: Vec<u64> = seen.follow_ups.values().copied().collect();
    follow_ups.sort_unstable();
    assert_eq!(follow_ups, vec![1; 6], "each follow-up sent once");
    assert_eq!(
        states(&status_json(&sim, &state).await)
            .values()
            .filter(|s| *s == "succeeded")
            .count(),
        6
    );
    sim.shutdown().await;
}

/// What a v1 run reports (result, duration, branches per repository, tokens) reaches
/// `status`, the report, and `artifacts` downloads the agent's files. v1 only: v0 has no
/// runs, usage or artifacts.
#[tokio::test(flavor = "multi_thread")]
async fn v1_outputs_reach_status_and_reports_and_artifacts_download() {
    let sim = simulator(Target::V1, (10, 20), "").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = repo_root().join("examples/workflows/single-repo.yaml");
    let (code, stderr) = apply(&sim, &state, &file, &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let status = status_json(&sim, &state).await;
    assert_eq!(status["api"], "v1");
    let readme = &status["instances"][0];
    let prompt = &sim.launches()[0].prompt;
    assert_eq!(
        readme["tokens"].as_u64(),
        Some(1000 + 10 * prompt.len() as u64),
        "{readme}"
    );
    assert!(readme["run_duration_ms"].as_u64().unwrap() > 0, "{readme}");
    assert_eq!(readme["branches"][0]["repository"], "github.com/acme/api");
    assert!(
        readme["branches"][0]["branch"]
            .as_str()
            .unwrap()
            .starts_with("cursor/")
    );
    assert!(
        readme["summary"]
            .as_str()
            .unwrap()
            .starts_with("Done: Write a README.md")
    );

    let run = |args: &[&str]| {
        let mut command = orchestrate(&sim, &state);
        command.args(args);
        command.output().unwrap()
    };
    let report = run(&["report", "--format", "markdown"]);
    assert!(text(&report.stdout).contains("| Tokens |"));

    let listed = run(&["artifacts", "add-readme/default", "readme[acme/api]"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(text(&listed.stdout).starts_with("runs/1/summary.md\t"));
    let out = dir.path().join("artifacts");
    let downloaded = run(&[
        "artifacts",
        "add-readme/default",
        "readme[acme/api]",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(downloaded.status.success(), "{}", text(&downloaded.stderr));
    let summary = std::fs::read_to_string(out.join("runs/1/summary.md")).unwrap();
    assert!(summary.starts_with("# Write a README.md"), "{summary}");

    let unknown = run(&["artifacts", "add-readme/default", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("has no instance `nope`; it has: readme[acme/api]"));
    sim.shutdown().await;
}

/// v1 statuses come from the runs' event streams: each prompt costs its launch (or follow-up)
/// and one stream, the result comes with the stream's `result` event, and no status is read
/// from the agent list or an agent's `updatedAt`. With usage, one more call per agent.
#[tokio::test(flavor = "multi_thread")]
async fn v1_statuses_come_from_run_streams_at_most_three_calls_per_prompt() {
    let sim = simulator(Target::V1, (20, 40), "").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1\nname: streams\nconcurrency: 12\nfleets:\n  all:\n{}tasks:\n  bump:\n    fleet: all\n    prompt: Bump {{{{ repo.name }}}}.\n    follow_ups:\n      - prompt: Update the changelog.\n",
            fleet("svc", 12)
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let (code, stderr) = apply(&sim, &state, &file, &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let stats = sim.stats();
    let calls = |route: &str| stats.calls.get(route).copied().unwrap_or(0);
    assert_eq!(calls("POST /v1/agents"), 12);
    assert_eq!(calls("POST /v1/agents/{id}/runs"), 12);
    let streams = calls("GET /v1/agents/{id}/runs/{run}/stream");
    assert!((24..=30).contains(&streams), "{:?}", stats.calls);
    // A run is read by GET only when its stream could not tell: a couple of times here, up
    // to 7 on a loaded machine (seen in CI); the total below is the goal.
    assert!(
        calls("GET /v1/agents/{id}/runs/{run}") <= 12,
        "{:?}",
        stats.calls
    );
    assert_eq!(calls("GET /v1/agents"), 0, "{:?}", stats.calls);
    let total: u64 = stats.calls.values().sum();
    let prompts = 24;
    assert!(
        total <= 3 * prompts,
        "{total} calls for {prompts} prompts: {:?}",
        stats.calls
    );
    // The outputs came with the streams' results.
    let status = status_json(&sim, &state).await;
    for instance in status["instances"].as_array().unwrap() {
        assert!(
            instance["summary"]
                .as_str()
                .unwrap()
                .starts_with("Done: Update the changelog"),
            "{instance}"
        );
        assert!(
            instance["pr_url"].is_string() || instance["branches"].is_array(),
            "{instance}"
        );
    }
    sim.shutdown().await;
}

/// Run streams that break after an event are reconnected from `Last-Event-ID`: the fleet
/// finishes with every launch and follow-up made once and every result kept.
#[tokio::test(flavor = "multi_thread")]
async fn broken_run_streams_resume_and_nothing_is_lost() {
    let sim = simulator(Target::V1, (20, 40), "stream_drop=0.5,seed=11").await;
    let dir = tempfile::tempdir().unwrap();
    let file = repo_root().join("examples/workflows/fleet-fanout.yaml");
    let state = dir.path().join("state");
    let (code, stderr) = apply(&sim, &state, &file, &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let stats = sim.stats();
    assert!(stats.faults["stream_drop"] > 0, "{:?}", stats.faults);
    assert!(stats.stream_resumes > 0, "{stats:?}");
    every_launch_once(&stats);
    let status = status_json(&sim, &state).await;
    assert!(
        states(&status).values().all(|s| s == "succeeded"),
        "{status}"
    );
    for instance in status["instances"].as_array().unwrap() {
        assert!(
            instance["summary"].as_str().unwrap().starts_with("Done: "),
            "{instance}"
        );
    }
    sim.shutdown().await;
}

/// Where the API does not offer usage (403 `feature_unavailable`), the run succeeds without
/// token counts and says so once, not once per agent and not never.
#[tokio::test(flavor = "multi_thread")]
async fn unavailable_usage_is_said_once_and_fails_nothing() {
    let sim = simulator_with(Target::V1, (10, 20), "", |config| {
        config.usage_available = false;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = repo_root().join("examples/workflows/fleet-fanout.yaml");
    let (code, stderr) = apply(&sim, &state, &file, &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stderr
            .matches("token usage is not reported for this run")
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("feature_unavailable") || stderr.contains("Usage is not available"),
        "{stderr}"
    );
    assert!(sim.stats().calls["GET /v1/agents/{id}/usage"] > 1);
    let status = status_json(&sim, &state).await;
    assert!(status["instances"][0]["tokens"].is_null(), "{status}");
    sim.shutdown().await;
}

/// A v1 task with `env_vars` cannot send an `agentId`: a launch lost in a crash is found
/// again by its unique name, and nothing is launched twice. v1 only: v0 has no `env_vars`.
#[tokio::test(flavor = "multi_thread")]
async fn with_env_vars_a_crashed_launch_is_found_by_name() {
    let sim = simulator(Target::V1, (40, 80), "").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env.yaml");
    let repos = fleet("svc", 8);
    std::fs::write(&file, format!("version: 1\nname: env\nconcurrency: 4\nfleets:\n  all:\n{repos}tasks:\n  bump:\n    fleet: all\n    prompt: Bump {{{{ repo.name }}}}.\n    env_vars:\n      NPM_TOKEN: \"${{NPM_TOKEN}}\"\n")).unwrap();
    let state = dir.path().join("state");
    for point in ["launch:2", "launch:1", "launch:3"] {
        let mut command = orchestrate(&sim, &state);
        command
            .arg("apply")
            .arg(&file)
            .arg("--yes")
            .args(FAST)
            .env("NPM_TOKEN", "not-for-logs")
            .env("ORCHESTRATE_CRASH_AFTER", point);
        let status = tokio::task::spawn_blocking(move || command.output().unwrap().status)
            .await
            .unwrap();
        // Launches in flight when a process dies may have made every agent already, so only
        // the first kill is sure to come.
        assert!(
            point != "launch:2" || !status.success(),
            "the process was to die"
        );
    }
    // Without the variable, nothing is launched, and the error names it.
    let (code, stderr) = apply(&sim, &state, &file, &[]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("env_vars.NPM_TOKEN is `${NPM_TOKEN}`, and NPM_TOKEN is not set"),
        "{stderr}"
    );
    let mut last = orchestrate(&sim, &state);
    last.arg("apply")
        .arg(&file)
        .arg("--yes")
        .args(FAST)
        .env("NPM_TOKEN", "not-for-logs");
    let output = tokio::task::spawn_blocking(move || last.output().unwrap())
        .await
        .unwrap();
    let (code, stderr) = (output.status.code(), text(&output.stderr));
    assert_eq!(code, Some(0), "{stderr}");
    let seen = sim.stats();
    every_launch_once(&seen);
    assert_eq!(seen.agents, 8);
    assert!(!seen.errors.contains_key("agent_id_conflict"));
    for launch in sim.launches() {
        assert!(launch.body.get("agentId").is_none(), "{}", launch.body);
        assert_eq!(launch.body["envVars"]["NPM_TOKEN"], "***");
    }
    // The value reached the API, and nowhere in the state.
    for entry in walk(&state) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("not-for-logs"),
            "{}",
            entry.display()
        );
    }
    assert!(!stderr.contains("not-for-logs"));
    sim.shutdown().await;
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
