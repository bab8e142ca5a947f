//! Real-world runs: reports, GitHub Actions outputs, nightly history, discover fleets.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use orchestrate::sim::{DEFAULT_KEY, SimConfig};

use crate::support::{repo_root, text};

async fn simulator(repositories_quota: &str, faults: &str) -> crate::support::StrictSim {
    let config = SimConfig {
        speed: 1000.0,
        agent_duration: (Duration::from_secs(10), Duration::from_secs(20)),
        repositories_quota: repositories_quota
            .parse::<orchestrate::cursor::Rates>()
            .unwrap()
            .0,
        faults: faults.parse().unwrap(),
        ..SimConfig::default()
    };
    crate::support::simulator(config).await
}

fn orchestrate(sim: &crate::support::StrictSim, state: &Path, quotas: &str) -> Command {
    let mut command = crate::support::command();
    command
        .current_dir(repo_root())
        .env("CURSOR_API_BASE_URL", sim.url())
        .env("CURSOR_API_KEY", DEFAULT_KEY)
        .env("ORCHESTRATE_QUOTAS", quotas)
        .env("ORCHESTRATE_STATE", state)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

const QUOTAS: &str = "calls=60000/min,calls_burst=500,launches=60000/min,launches_burst=500";

async fn run(mut command: Command) -> (Option<i32>, String, String) {
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

/// Under GitHub Actions, `apply` appends the Markdown report to the step summary, writes
/// outputs, and annotates failed instances; `report` prints the same in three formats.
#[tokio::test(flavor = "multi_thread")]
async fn github_actions_get_a_summary_outputs_and_annotations() {
    let sim = simulator("1000/s", "").await;
    let dir = tempfile::tempdir().unwrap();
    let (summary, outputs) = (dir.path().join("summary.md"), dir.path().join("outputs"));
    std::fs::write(&summary, "# earlier step\n").unwrap();
    let state = dir.path().join("state");
    let mut apply = orchestrate(&sim, &state, &format!("{QUOTAS},repositories=1000/s"));
    apply
        .args([
            "apply",
            "examples/workflows/pipeline.yaml",
            "--yes",
            "--poll-interval",
            "15ms",
        ])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &outputs);
    let (code, _, stderr) = run(apply).await;
    assert_eq!(code, Some(0), "{stderr}");

    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(
        summary
            .starts_with("# earlier step\n## orchestrate: `framework-upgrade/default` succeeded"),
        "{summary}"
    );
    assert!(
        summary.contains(
            "| `bump[acme/api]` | acme/api | ✅ succeeded | `cursor/upgrade-api-to-the-next-"
        ),
        "{summary}"
    );
    assert_eq!(summary.matches("✅ succeeded").count(), 7);

    let outputs = std::fs::read_to_string(&outputs).unwrap();
    assert!(
        outputs.starts_with("run=framework-upgrade/default\nstate=succeeded\n"),
        "{outputs}"
    );
    assert!(outputs.contains("succeeded=7\n") && outputs.contains("failed=0\n"));
    let urls = outputs
        .split("pr_urls<<ORCHESTRATE_EOF\n")
        .nth(1)
        .unwrap()
        .split("\nORCHESTRATE_EOF")
        .next()
        .unwrap();
    assert_eq!(urls.lines().count(), 7);
    assert!(
        urls.lines()
            .all(|u| u.starts_with("https://github.com/acme/"))
    );

    // A failing run: one `::error::` annotation per failed instance, on stdout.
    sim.set_faults("error=1.0".parse().unwrap());
    let mut failing = orchestrate(&sim, &state, &format!("{QUOTAS},repositories=1000/s"));
    failing
        .args([
            "apply",
            "examples/workflows/single-repo.yaml",
            "--yes",
            "--poll-interval",
            "15ms",
        ])
        .env("GITHUB_ACTIONS", "true");
    let (code, stdout, _) = run(failing).await;
    assert_eq!(code, Some(1));
    assert_eq!(
        stdout.trim(),
        "::error title=orchestrate readme[acme/api]::readme[acme/api] failed: the agent ended in ERROR"
    );

    // `report` in its three formats, for the latest run and by name.
    let mut junit = orchestrate(&sim, &state, QUOTAS);
    junit.args(["report", "framework-upgrade/default", "--format", "junit"]);
    let (code, xml, _) = run(junit).await;
    assert_eq!(code, Some(0));
    assert!(
        xml.contains(
            "<testsuite name=\"framework-upgrade/default\" tests=\"7\" failures=\"0\" skipped=\"0\""
        ),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 7);
    let mut latest = orchestrate(&sim, &state, QUOTAS);
    latest.args(["report", "--format", "json"]);
    let (_, json, _) = run(latest).await;
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["run"], "add-readme/default");
    assert_eq!(report["instances"][0]["state"], "failed");
    assert_eq!(
        report["instances"][0]["repo"],
        "https://github.com/acme/api"
    );
    sim.shutdown().await;
}

/// A nightly sweep makes one run per day; history lists them; prune removes old ones.
#[tokio::test(flavor = "multi_thread")]
async fn nightly_runs_make_history_and_prune_keeps_the_recent() {
    let sim = simulator("1000/s", "").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for day in ["1790000000", "1790086400"] {
        let mut apply = orchestrate(&sim, &state, &format!("{QUOTAS},repositories=1000/s"));
        apply
            .args([
                "apply",
                "examples/workflows/nightly-sweep.yaml",
                "--yes",
                "--poll-interval",
                "15ms",
            ])
            .env("SOURCE_DATE_EPOCH", day);
        let (code, _, stderr) = run(apply).await;
        assert_eq!(code, Some(0), "{stderr}");
    }
    let mut runs = orchestrate(&sim, &state, QUOTAS);
    runs.args(["runs", "--json"]);
    let (_, json, _) = run(runs).await;
    let runs: serde_json::Value = serde_json::from_str(&json).unwrap();
    let ids: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["nightly-deps/2026-09-22", "nightly-deps/2026-09-21"]);
    assert_eq!(
        runs[0]["counts"]["succeeded"], 5,
        "four go-* repositories and the digest"
    );

    // Both runs ended moments ago: a 30-day prune keeps them, a zero-second one does not.
    let mut keep = orchestrate(&sim, &state, QUOTAS);
    keep.args(["runs", "prune", "--older-than", "30d"]);
    let (_, _, stderr) = run(keep).await;
    assert!(stderr.contains("pruned 0 run(s), 2 kept"), "{stderr}");
    let mut prune = orchestrate(&sim, &state, QUOTAS);
    prune.args(["runs", "prune", "--older-than", "0s"]);
    let (code, stdout, _) = run(prune).await;
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("removed nightly-deps/2026-09-21 (succeeded"),
        "{stdout}"
    );
    let mut after = orchestrate(&sim, &state, QUOTAS);
    after.args(["runs", "--json"]);
    assert_eq!(run(after).await.1.trim(), "[]");
    sim.shutdown().await;
}

/// Two processes resolve a discover fleet: the second uses the cache; a forced refresh waits
/// out the quota the first one left, known from the state; the simulator, enforcing the
/// same window (scaled to 1 per 10 s), counts no violation.
#[tokio::test(flavor = "multi_thread")]
async fn the_discover_cache_and_quota_hold_across_processes() {
    // A 10 s window: the third process surely comes inside it, however slow the machine.
    let sim = simulator("1/10s", "").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let quotas = format!("{QUOTAS},repositories=1/10s");
    let apply = |extra: &[&str]| {
        let mut command = orchestrate(&sim, &state, &quotas);
        command
            .args([
                "apply",
                "examples/workflows/nightly-sweep.yaml",
                "--yes",
                "--poll-interval",
                "15ms",
            ])
            .args(extra);
        command
    };
    let (code, _, stderr) = run(apply(&[])).await;
    assert_eq!(code, Some(0), "{stderr}");
    let first_call_done = std::time::Instant::now();
    let (code, _, stderr) = run(apply(&[])).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        sim.stats().calls["GET /v1/repositories"],
        1,
        "the second process used the cache"
    );

    let inside_window = first_call_done.elapsed() < Duration::from_secs(8);
    let (code, _, stderr) = run(apply(&["--refresh-repos"])).await;
    assert_eq!(code, Some(0), "{stderr}");
    // On a loaded machine the first two applies may outlast the window; then no wait is due.
    if inside_window {
        assert!(stderr.contains("for the repositories quota"), "{stderr}");
    }
    let seen = sim.stats();
    assert_eq!(seen.calls["GET /v1/repositories"], 2);
    assert_eq!(seen.total_quota_violations(), 0);

    // When the endpoint fails, the cache is used and its age said.
    sim.set_faults("5xx=1.0".parse().unwrap());
    let mut status = orchestrate(&sim, &state, &quotas);
    status.args([
        "plan",
        "examples/workflows/nightly-sweep.yaml",
        "--format",
        "json",
    ]);
    let (_, plan, _) = run(status).await;
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert!(
        plan["instances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["key"] == "bump[acme/go-search]"),
        "plan resolves discover fleets from the cache"
    );
    sim.shutdown().await;
}

/// When the repositories endpoint fails, a stale cached list is used, and `apply` says how
/// old it is.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_repositories_endpoint_falls_back_to_the_cache() {
    let sim = simulator("1000/s", "").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("sweep.yaml");
    let workflow =
        std::fs::read_to_string(repo_root().join("examples/workflows/nightly-sweep.yaml")).unwrap();
    std::fs::write(&file, workflow.replace("max_age: 1h", "max_age: 1s")).unwrap();
    let apply = |run_key: &str| {
        let mut command = orchestrate(&sim, &state, &format!("{QUOTAS},repositories=1000/s"));
        command.arg("apply").arg(&file).args([
            "--yes",
            "--poll-interval",
            "15ms",
            "--run",
            run_key,
        ]);
        command
    };
    assert_eq!(run(apply("first")).await.0, Some(0));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sim.set_faults("repos_5xx=1.0".parse().unwrap());
    let (code, _, stderr) = run(apply("second")).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: cannot list repositories")
            && stderr.contains("using the cached list from ")
            && stderr.contains("s ago"),
        "{stderr}"
    );
    assert!(sim.stats().faults["repos_5xx"] >= 1);
    sim.shutdown().await;
}
