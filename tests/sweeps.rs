//! Real-world runs: reports, GitHub Actions outputs, nightly history, discover fleets.

use std::time::Duration;

use crate::scenario::{Backend, Scenario};

/// Under GitHub Actions, `apply` appends the Markdown report to the step summary, writes
/// outputs, and annotates failed instances; `report` prints the same in three formats.
#[tokio::test(flavor = "multi_thread")]
async fn github_actions_get_a_summary_outputs_and_annotations() {
    let sim = Scenario::on(Backend::V1).start().await;
    let summary = sim.write("summary.md", "# earlier step\n");
    let outputs = sim.path("outputs");
    let mut apply = sim.apply_command(&Scenario::example("pipeline"), &[]);
    apply
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &outputs);
    let ran = Scenario::finish(apply).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);

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
    let mut failing = sim.apply_command(&Scenario::example("single-repo"), &[]);
    failing.env("GITHUB_ACTIONS", "true");
    let ran = Scenario::finish(failing).await;
    assert_eq!(ran.code, Some(1));
    assert_eq!(
        ran.stdout.trim(),
        "::error title=orchestrate readme[acme/api]::readme[acme/api] failed: the agent ended in ERROR"
    );

    // `report` in its three formats, for the latest run and by name.
    let junit = sim
        .run(&["report", "framework-upgrade/default", "--format", "junit"])
        .await;
    assert_eq!(junit.code, Some(0));
    let xml = junit.stdout;
    assert!(
        xml.contains(
            "<testsuite name=\"framework-upgrade/default\" tests=\"7\" failures=\"0\" skipped=\"0\""
        ),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 7);
    let latest = sim.run(&["report", "--format", "json"]).await;
    let report: serde_json::Value = serde_json::from_str(&latest.stdout).unwrap();
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
    let sim = Scenario::on(Backend::V1).start().await;
    for day in ["1790000000", "1790086400"] {
        let mut apply = sim.apply_command(&Scenario::example("nightly-sweep"), &[]);
        apply.env("SOURCE_DATE_EPOCH", day);
        let ran = Scenario::finish(apply).await;
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    }
    let runs = sim.run(&["runs", "--json"]).await;
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
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
    let keep = sim.run(&["runs", "prune", "--older-than", "30d"]).await;
    assert!(
        keep.stderr.contains("pruned 0 run(s), 2 kept"),
        "{}",
        keep.stderr
    );
    let prune = sim.run(&["runs", "prune", "--older-than", "0s"]).await;
    assert_eq!(prune.code, Some(0));
    let removed = "removed nightly-deps/2026-09-21 (succeeded";
    assert!(prune.stdout.contains(removed), "{}", prune.stdout);
    assert_eq!(sim.run(&["runs", "--json"]).await.stdout.trim(), "[]");
    sim.shutdown().await;
}

/// Two processes resolve a discover fleet: the second uses the cache; a forced refresh waits
/// out the quota the first one left, known from the state; the simulator, enforcing the
/// same window (scaled to 1 per 10 s), counts no violation.
#[tokio::test(flavor = "multi_thread")]
async fn the_discover_cache_and_quota_hold_across_processes() {
    // A 10 s window: the third process surely comes inside it, however slow the machine.
    let sim = Scenario::on(Backend::V1)
        .repositories("1/10s")
        .start()
        .await;
    let file = Scenario::example("nightly-sweep");
    let ran = sim.apply(&file, &[]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let first_call_done = std::time::Instant::now();
    let ran = sim.apply(&file, &[]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(
        sim.stats().calls["GET /v1/repositories"],
        1,
        "the second process used the cache"
    );

    let inside_window = first_call_done.elapsed() < Duration::from_secs(8);
    let ran = sim.apply(&file, &["--refresh-repos"]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    // On a loaded machine the first two applies may outlast the window; then no wait is due.
    if inside_window {
        let waited = ran.stderr.contains("for the repositories quota");
        assert!(waited, "{}", ran.stderr);
    }
    let seen = sim.stats();
    assert_eq!(seen.calls["GET /v1/repositories"], 2);
    assert_eq!(seen.total_quota_violations(), 0);

    // When the endpoint fails, the cache is used and its age said.
    sim.set_faults("5xx=1.0".parse().unwrap());
    let plan = sim
        .run(&[
            "plan",
            "examples/workflows/nightly-sweep.yaml",
            "--format",
            "json",
        ])
        .await;
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
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
    let sim = Scenario::on(Backend::V1).start().await;
    let workflow = std::fs::read_to_string(Scenario::example("nightly-sweep")).unwrap();
    let file = sim.write(
        "sweep.yaml",
        &workflow.replace("max_age: 1h", "max_age: 1s"),
    );
    assert_eq!(sim.apply(&file, &["--run", "first"]).await.code, Some(0));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sim.set_faults("repos_5xx=1.0".parse().unwrap());
    let ran = sim.apply(&file, &["--run", "second"]).await;
    let stderr = ran.stderr;
    assert_eq!(ran.code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: cannot list repositories")
            && stderr.contains("using the cached list from ")
            && stderr.contains("s ago"),
        "{stderr}"
    );
    assert!(sim.stats().faults["repos_5xx"] >= 1);
    sim.shutdown().await;
}
