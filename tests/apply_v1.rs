//! `apply` end to end on what only Cursor API v1 has: runs and their event streams, usage,
//! artifacts, `env_vars`.

use crate::scenario::{Backend, Scenario, every_launch_once};

/// What a v1 run reports (result, duration, branches per repository, tokens) reaches
/// `status`, the report, and `artifacts` downloads the agent's files. v1 only: v0 has no
/// runs, usage or artifacts.
#[tokio::test(flavor = "multi_thread")]
async fn v1_outputs_reach_status_and_reports_and_artifacts_download() {
    let s = Scenario::on(Backend::V1).start().await;
    let ran = s.apply(&Scenario::example("single-repo"), &[]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let status = s.status().await;
    assert_eq!(status["api"], "v1");
    let readme = &status.instances()[0];
    let prompt = &s.launches()[0].prompt;
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

    let report = s.run(&["report", "--format", "markdown"]).await;
    assert!(report.stdout.contains("| Tokens |"));
    let listed = s
        .run(&["artifacts", "add-readme/default", "readme[acme/api]"])
        .await;
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    assert!(listed.stdout.starts_with("runs/1/summary.md\t"));
    let out = s.path("artifacts");
    let out_dir = out.to_str().unwrap();
    let downloaded = s
        .run(&[
            "artifacts",
            "add-readme/default",
            "readme[acme/api]",
            "--out",
            out_dir,
        ])
        .await;
    assert_eq!(downloaded.code, Some(0), "{}", downloaded.stderr);
    let summary = std::fs::read_to_string(out.join("runs/1/summary.md")).unwrap();
    assert!(summary.starts_with("# Write a README.md"), "{summary}");

    let unknown = s.run(&["artifacts", "add-readme/default", "nope"]).await;
    assert_eq!(unknown.code, Some(2));
    assert!(
        unknown
            .stderr
            .contains("has no instance `nope`; it has: readme[acme/api]")
    );
    s.shutdown().await;
}

/// v1 statuses come from the runs' event streams: each prompt costs its launch (or follow-up)
/// and one stream, the result comes with the stream's `result` event, and no status is read
/// from the agent list or an agent's `updatedAt`. With usage, one more call per agent.
#[tokio::test(flavor = "multi_thread")]
async fn v1_statuses_come_from_run_streams_at_most_three_calls_per_prompt() {
    // Agents work longer than a stream takes to open: one that ended before its stream was
    // read is told by a GET, which is the fallback, not the rule this test is about.
    let s = Scenario::on(Backend::V1).work(200, 400).start().await;
    let ran = s.apply(&Scenario::fixture("streams"), &[]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let stats = s.stats();
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
    // One list sweep before the first launch: recall, looking for launches a lost state made.
    assert_eq!(calls("GET /v1/agents"), 1, "{:?}", stats.calls);
    let (total, prompts) = (stats.calls.values().sum::<u64>(), 24);
    assert!(
        total <= 3 * prompts,
        "{total} calls for {prompts} prompts: {:?}",
        stats.calls
    );
    // The outputs came with the streams' results.
    for instance in s.status().await.instances() {
        let summary = instance["summary"].as_str().unwrap();
        assert!(
            summary.starts_with("Done: Update the changelog"),
            "{instance}"
        );
        assert!(
            instance["pr_url"].is_string() || instance["branches"].is_array(),
            "{instance}"
        );
    }
    s.shutdown().await;
}

/// Run streams that break after an event are reconnected from `Last-Event-ID`: the fleet
/// finishes with every launch and follow-up made once and every result kept.
#[tokio::test(flavor = "multi_thread")]
async fn broken_run_streams_resume_and_nothing_is_lost() {
    let s = Scenario::on(Backend::V1)
        .work(20, 40)
        .faults("stream_drop=0.5,seed=11")
        .start()
        .await;
    let ran = s.apply(&Scenario::example("fleet-fanout"), &[]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let stats = s.stats();
    assert!(stats.faults["stream_drop"] > 0, "{:?}", stats.faults);
    assert!(stats.stream_resumes > 0, "{stats:?}");
    every_launch_once(&stats);
    let status = s.status().await;
    assert_eq!(
        status.count("succeeded"),
        status.instances().len(),
        "{status}"
    );
    for instance in status.instances() {
        assert!(
            instance["summary"].as_str().unwrap().starts_with("Done: "),
            "{instance}"
        );
    }
    s.shutdown().await;
}

/// Where the API does not offer usage (403 `feature_unavailable`), the run succeeds without
/// token counts and says so once, not once per agent and not never.
#[tokio::test(flavor = "multi_thread")]
async fn unavailable_usage_is_said_once_and_fails_nothing() {
    let s = Scenario::on(Backend::V1)
        .config(|c| c.usage_available = false)
        .start()
        .await;
    let ran = s.apply(&Scenario::example("fleet-fanout"), &[]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let notices = ran
        .stderr
        .matches("token usage is not reported for this run")
        .count();
    assert_eq!(notices, 1, "{}", ran.stderr);
    let why = ["feature_unavailable", "Usage is not available"];
    assert!(why.iter().any(|w| ran.stderr.contains(w)), "{}", ran.stderr);
    assert!(s.stats().calls["GET /v1/agents/{id}/usage"] > 1);
    assert!(s.status().await.instances()[0]["tokens"].is_null());
    s.shutdown().await;
}

/// A v1 task with `env_vars` cannot send an `agentId`: a launch lost in a crash is found
/// again by its unique name, and nothing is launched twice. v1 only: v0 has no `env_vars`.
#[tokio::test(flavor = "multi_thread")]
async fn with_env_vars_a_crashed_launch_is_found_by_name() {
    let s = Scenario::on(Backend::V1).work(40, 80).start().await;
    let file = Scenario::fixture("env");
    let mut traced = String::new();
    for point in ["launch:2", "launch:1", "launch:3"] {
        let mut command = s.apply_command(&file, &[]);
        command
            .env("NPM_TOKEN", "not-for-logs")
            .env("ORCHESTRATE_CRASH_AFTER", point)
            .arg("-vv");
        let ran = Scenario::finish(command).await;
        traced.push_str(&ran.stderr);
        let code = ran.code;
        // Launches in flight when a process dies may have made every agent already, so only
        // the first kill is sure to come.
        assert!(
            point != "launch:2" || code != Some(0),
            "the process was to die"
        );
    }
    // Without the variable, nothing is launched, and the error names it.
    let ran = s.apply(&file, &[]).await;
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let unset = "env_vars.NPM_TOKEN is `${NPM_TOKEN}`, and NPM_TOKEN is not set";
    assert!(ran.stderr.contains(unset), "{}", ran.stderr);
    // At the most verbose level, each call and answer is traced, the secret redacted.
    assert!(
        traced.contains(" response ") && traced.contains("status=200"),
        "{traced}"
    );
    assert!(traced.contains(r#""envVars":"[redacted]""#), "{traced}");
    assert!(!traced.contains("not-for-logs"));
    let mut last = s.apply_command(&file, &[]);
    last.env("NPM_TOKEN", "not-for-logs");
    let ran = Scenario::finish(last).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let seen = s.stats();
    every_launch_once(&seen);
    assert_eq!(seen.agents, 8);
    assert!(!seen.errors.contains_key("agent_id_conflict"));
    for launch in s.launches() {
        assert!(launch.body.get("agentId").is_none(), "{}", launch.body);
        assert_eq!(launch.body["envVars"]["NPM_TOKEN"], "***");
    }
    // The value reached the API, and nowhere in the state.
    for entry in walkdir(s.state()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("not-for-logs"),
            "{}",
            entry.display()
        );
    }
    assert!(!ran.stderr.contains("not-for-logs"));
    s.shutdown().await;
}

/// Every file under `dir`.
fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walkdir(&path));
        } else {
            files.push(path);
        }
    }
    files
}
