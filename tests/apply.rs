//! `apply` end to end: the real binary against the simulator on loopback, on every backend
//! (`on_every_backend!` makes `name::v0`, `name::v1`, `name::platform`). Tests of what only
//! one backend has say so.

use std::time::{Duration, Instant};

use rand::Rng;

use crate::scenario::{Backend, Scenario, every_launch_once, follow_ups, signal};
use crate::support::{repo_root, text};

on_every_backend!(every_example_applies_to_completion_and_needs_reach_prompts);
async fn every_example_applies_to_completion_and_needs_reach_prompts(backend: Backend) {
    let mut launches = Vec::new();
    let mut applied = Vec::new();
    for example in std::fs::read_dir(repo_root().join("examples/workflows")).unwrap() {
        let example = example.unwrap().path();
        // Two examples push to the same branches of the same repositories: one simulator each.
        let s = Scenario::on(backend).start().await;
        let ran = s.apply(&example, &[]).await;
        if !backend.sends_every_setting() && ran.code == Some(2) {
            // Settings the platform cannot send are refused up front, each named.
            let said: Vec<&str> = ran
                .stderr
                .split_whitespace()
                .filter(|w| *w != "│")
                .collect();
            let said = said.join(" ");
            assert!(
                said.contains("cannot be sent through the LiteLLM Agent Platform")
                    || said.contains("which the LiteLLM Agent Platform backend does not reach"),
                "{}:\n{}",
                example.display(),
                ran.stderr
            );
            assert_eq!(s.stats().agents, 0);
            s.shutdown().await;
            continue;
        }
        applied.push(example.file_name().unwrap().to_string_lossy().into_owned());
        assert_eq!(ran.code, Some(0), "{}:\n{}", example.display(), ran.stderr);
        let status = s.status().await;
        assert_eq!(status["state"], "succeeded", "{}", example.display());
        assert_eq!(status.count("succeeded"), status.instances().len());
        every_launch_once(&s.stats());
        assert_eq!(s.stats().total_quota_violations(), 0);
        launches.extend(s.launches());
        s.shutdown().await;
    }
    // The release note of the pipeline lists the pull requests its needs opened.
    let notes = launches
        .iter()
        .find(|l| l.prompt.starts_with("Write the release note"))
        .unwrap();
    for repo in ["api", "billing", "web"] {
        let line = format!("- {repo}: https://github.com/acme/{repo}/pull/");
        assert!(notes.prompt.contains(&line), "{}", notes.prompt);
    }
    assert!(notes.prompt.contains("(succeeded)"));
    let expected_prefix = match backend {
        Backend::V0 => "orchestrate/framework-upgrade/default/bump",
        Backend::V1 => "cursor/",
        Backend::Platform => {
            // The examples whose settings the platform can send; it reports no branch, so
            // `needs.bump.branch` is empty there.
            applied.sort();
            assert_eq!(applied, ["pipeline.yaml", "single-repo.yaml"]);
            return;
        }
    };
    // fix-tests is told its own repository's bump branch, not another's: on v0 the branch
    // orchestrate asked for, on v1 the one the agent reported.
    let find = |start: &str| launches.iter().find(|l| l.prompt.starts_with(start));
    let bump_web = find("Upgrade web to").unwrap();
    let fix_web = find("The framework upgrade of web").unwrap();
    assert_eq!(bump_web.repository, "https://github.com/acme/web");
    let told = format!("branch {}\n", bump_web.branch);
    assert!(
        fix_web.prompt.contains(&told),
        "{}\n{bump_web:?}",
        fix_web.prompt
    );
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
async fn killed_at_any_moment_no_agent_is_launched_twice_and_nothing_is_lost(backend: Backend) {
    let s = Scenario::on(backend).work(40, 120).start().await;
    let file = Scenario::fixture("crash");
    // The worst moments, deterministically.
    for point in ["launch:3", "follow_up:2", "launch:1", "follow_up:1"] {
        let mut command = s.apply_command(&file, &[]);
        command.env("ORCHESTRATE_CRASH_AFTER", point);
        assert_ne!(
            Scenario::finish(command).await.code,
            Some(0),
            "{point}: the process was to die"
        );
    }
    // And 30 random ones.
    let started = Instant::now();
    for _ in 0..30 {
        let mut child = s.spawn_apply(&file);
        let wait = rand::rng().random_range(20..250);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the kills took too long"
        );
    }
    let ran = s.apply(&file, &[]).await;
    let mut unknown = 0;
    if backend.finds_lost_launches() {
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    } else {
        // A launch a kill cut off (intent written, its answer never stored) is never sent
        // again on its own, and no session is made twice; the user checks, then retries.
        assert_eq!(ran.code, Some(1), "{}", ran.stderr);
        every_launch_once(&s.stats());
        for instance in s.status().await.instances() {
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
        let retry = s
            .run(&["retry", "--failed", "--yes", "--poll-interval", "15ms"])
            .await;
        assert_eq!(retry.code, Some(0), "{}", retry.stderr);
    }
    let seen = s.stats();
    // Only a cut-off launch that did reach the platform has a second session.
    let twice = seen.launches.values().filter(|n| **n == 2).count();
    assert!(seen.launches.values().all(|n| *n <= 2));
    assert!(twice <= unknown, "{twice} > {unknown}");
    assert_eq!(seen.launches.len(), 50, "every instance launched");
    assert_eq!(seen.agents, 50 + twice as u64, "no agent made twice");
    if backend.refuses_resent_launches() {
        // The crash right after the third launch left an intent without an agent: the agent
        // was read by the launch's id and adopted; an id is one launch, so none has two.
        assert_eq!(twice, 0, "{:?}", seen.launches);
    }
    let once = [vec![1; 25], vec![2; 25]].concat();
    assert_eq!(follow_ups(&seen), once, "each follow-up sent exactly once");
    let status = s.status().await;
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["counts"], serde_json::json!({"succeeded": 50}));
    s.shutdown().await;
}

on_every_backend!(
    under_injected_faults_the_run_completes_with_its_retries_and_within_quotas,
    platform: "a launch whose answer is lost (an injected 5xx or drop on POST /session) cannot be found again on the platform, so it fails rather than being recovered; platform::broken_event_streams_resume_and_agent_errors_are_retried covers the platform's faults"
);
async fn under_injected_faults_the_run_completes_with_its_retries_and_within_quotas(
    backend: Backend,
) {
    let faults = "5xx=0.08,429=0.01:1,drop=0.05,error=0.1,seed=9";
    let s = Scenario::on(backend)
        .work(10, 30)
        .faults(faults)
        .start()
        .await;
    let ran = s.apply(&Scenario::fixture("faults"), &[]).await;
    let status = s.status().await;
    let seen = s.stats();
    let faults = |kind: &str| seen.faults.get(kind).copied().unwrap_or(0);
    assert!(
        faults("agent_error") > 0,
        "some agents failed: {:?}",
        seen.faults
    );
    assert!(faults("5xx") > 0 && faults("drop") > 0, "{:?}", seen.faults);
    let attempts = |i: &serde_json::Value| i["attempts"].as_u64().unwrap();
    assert!(
        status.instances().iter().any(|i| attempts(i) > 1),
        "some instance was relaunched"
    );
    for instance in status.instances() {
        assert!(attempts(instance) <= 7, "{instance}");
        let state = instance["state"].as_str().unwrap();
        assert!(["succeeded", "failed"].contains(&state), "{instance}");
    }
    // A relaunch has its own branch, so even with retries no branch got two agents.
    every_launch_once(&seen);
    assert_eq!(seen.total_quota_violations(), 0);
    // An attempt fails when its prompt or its follow-up ends in ERROR (1 - 0.9^2 = 19%);
    // seven attempts all failing for one of 30 instances has odds of about 3 in 10,000.
    assert_eq!(ran.code, Some(0), "{}\n{status}", ran.stderr);
    s.shutdown().await;
}

on_every_backend!(editing_one_prompt_relaunches_only_that_task_and_its_dependents);
async fn editing_one_prompt_relaunches_only_that_task_and_its_dependents(backend: Backend) {
    let s = Scenario::on(backend).start().await;
    let original = std::fs::read_to_string(Scenario::example("pipeline")).unwrap();
    let file = s.write("pipeline.yaml", &original);
    assert_eq!(s.apply(&file, &[]).await.code, Some(0));
    assert_eq!(s.stats().agents, 7);

    let edited = original.replace(
        "run the test suite and fix",
        "run the whole test suite and fix",
    );
    s.write("pipeline.yaml", &edited);
    let plan = s
        .run(&["plan", "--format", "json", file.to_str().unwrap()])
        .await;
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    for instance in plan["instances"].as_array().unwrap() {
        let key = instance["key"].as_str().unwrap();
        let (action, reason) = if key.starts_with("bump") {
            ("keep", serde_json::Value::Null)
        } else if key.starts_with("fix") {
            ("relaunch", "spec_changed".into())
        } else {
            ("relaunch", "need_relaunched".into())
        };
        assert_eq!(instance["action"], action, "{key}");
        assert_eq!(instance["relaunch"], reason, "{key}");
    }
    // The text says why each relaunches, and shows what changed.
    let plan = s.run(&["plan", file.to_str().unwrap()]).await;
    let explained: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|l| {
            l.starts_with("  ~") || l.contains(" | ") && (l.contains("- |") || l.contains("+ |"))
        })
        .collect();
    // Every backend explains it in the same words.
    insta::allow_duplicates! {
        insta::assert_snapshot!(explained.join("\n"), @r"
          ~ fix-tests[acme/api] (relaunch: its prompt changed; a new agent and a new PR)
              - | (<pr_url of bump[acme/api]>). Start from that branch, run the test suite and fix
              + | (<pr_url of bump[acme/api]>). Start from that branch, run the whole test suite and fix
          ~ fix-tests[acme/billing] (relaunch: its prompt changed; a new agent and a new PR)
              - | (<pr_url of bump[acme/billing]>). Start from that branch, run the test suite and fix
              + | (<pr_url of bump[acme/billing]>). Start from that branch, run the whole test suite and fix
          ~ fix-tests[acme/web] (relaunch: its prompt changed; a new agent and a new PR)
              - | (<pr_url of bump[acme/web]>). Start from that branch, run the test suite and fix
              + | (<pr_url of bump[acme/web]>). Start from that branch, run the whole test suite and fix
          ~ release-notes[acme/platform-docs] (relaunch: its needs fix-tests[acme/api], fix-tests[acme/billing], fix-tests[acme/web] are relaunched; a new agent and a new PR)
        ");
    }
    let detailed = s
        .run(&["plan", "--detailed-exitcode", file.to_str().unwrap()])
        .await;
    assert_eq!(detailed.code, Some(2), "changes to apply");

    let ran = s.apply(&file, &[]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(
        s.stats().agents,
        7 + 4,
        "three fix-tests and the release note, nothing else"
    );
    every_launch_once(&s.stats());
    // Applying again changes nothing, and the plan says so.
    let detailed = s
        .run(&["plan", "--detailed-exitcode", file.to_str().unwrap()])
        .await;
    assert_eq!(detailed.code, Some(0), "{}", detailed.stdout);
    assert_eq!(s.apply(&file, &[]).await.code, Some(0));
    assert_eq!(s.stats().agents, 11);
    s.shutdown().await;
}

on_every_backend!(a_second_apply_on_the_same_state_is_refused_and_changes_nothing);
async fn a_second_apply_on_the_same_state_is_refused_and_changes_nothing(backend: Backend) {
    let s = Scenario::on(backend).work(2000, 3000).start().await;
    let file = Scenario::example("pipeline");
    let mut first = s.spawn_apply(&file);
    s.wait_for_agents(3).await;
    let before = s.stats();
    let ran = s.apply(&file, &[]).await;
    assert_eq!(ran.code, Some(2));
    let holder = match s.database() {
        Some(_) => format!(
            "is being applied by another orchestrate (host {}, pid {}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap()
                .trim(),
            first.id()
        ),
        None => format!(
            "the state in {} is in use by another orchestrate (pid {}",
            s.state().display(),
            first.id()
        ),
    };
    assert!(ran.stderr.contains(&holder), "{}", ran.stderr);
    let after = s.stats();
    let launched = |stats: &orchestrate::sim::Stats| (stats.agents, stats.launches.clone());
    assert_eq!(
        launched(&after),
        launched(&before),
        "the second apply launched nothing"
    );
    let _ = first.kill();
    let _ = first.wait();
    s.shutdown().await;
}

on_every_backend!(a_timeout_stops_the_agent_and_cancel_stops_every_running_one);
async fn a_timeout_stops_the_agent_and_cancel_stops_every_running_one(backend: Backend) {
    let mut s = Scenario::on(backend).work(5000, 6000).start().await;
    let ran = s.apply(&Scenario::fixture("slow"), &[]).await;
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert_eq!(s.status().await.states()["wait[acme/api]"], "timed_out");
    assert_eq!(s.stats().calls[backend.stop_route()], 1);

    // cancel: an apply dies with three agents working; cancel stops all three.
    s.use_state("state-2");
    let file = Scenario::example("pipeline");
    let mut running = s.spawn_apply(&file);
    s.wait_for_agents(s.stats().agents + 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = running.kill();
    let _ = running.wait();
    let cancel = s.run(&["cancel"]).await;
    assert_eq!(cancel.code, Some(0), "{}", cancel.stderr);
    assert!(
        cancel
            .stderr
            .contains("3 agent(s) stopped, 4 instance(s) skipped"),
        "{}",
        cancel.stderr
    );
    assert_eq!(s.stats().calls[backend.stop_route()], 1 + 3);
    let status = s.status().await;
    assert_eq!(status["state"], "cancelled");
    assert_eq!((status.count("cancelled"), status.count("skipped")), (3, 4));

    // Cancelled means resumable: `plan` says why each one relaunches, never "keep", and
    // apply relaunches the three as new attempts and runs the four it skipped.
    let plan = s.run(&["plan", &file.display().to_string()]).await;
    assert_eq!(
        plan.stdout.matches("relaunch: it was cancelled").count(),
        3,
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains("(keep)"), "{}", plan.stdout);
    let agents = s.stats().agents;
    let resumed = s.apply(&file, &[]).await;
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    // 3 new attempts and 4 first ones: one agent more would be a duplicate.
    assert_eq!(s.stats().agents, agents + 7);
    assert_eq!(s.status().await.count("succeeded"), 7);
    s.shutdown().await;
}

on_every_backend!(ctrl_c_stops_launching_and_says_how_to_resume);
async fn ctrl_c_stops_launching_and_says_how_to_resume(backend: Backend) {
    a_stop_signal_interrupts_and_the_hint_resumes(backend, "INT", "interrupting").await;
}

on_every_backend!(sigterm_stops_launching_and_says_how_to_resume);
async fn sigterm_stops_launching_and_says_how_to_resume(backend: Backend) {
    a_stop_signal_interrupts_and_the_hint_resumes(backend, "TERM", "SIGTERM").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_is_a_stop_too() {
    a_stop_signal_interrupts_and_the_hint_resumes(Backend::V0, "HUP", "SIGHUP").await;
}

/// The signal `name` sent while three agents work stops the launches with exit 3 and a message that
/// names it; the printed hint, run as it is (its own `--state`, no environment for it),
/// continues the same run to the end with no agent launched twice.
async fn a_stop_signal_interrupts_and_the_hint_resumes(backend: Backend, name: &str, said: &str) {
    // Agents work 1 s: time enough to interrupt before the first one finishes.
    let s = Scenario::on(backend).work(1000, 1200).start().await;
    let file = Scenario::example("pipeline");
    let child = s.spawn_watched(&file, &[]);
    s.wait_until(|stats| stats.agents == 3).await;
    signal(&child, name);
    let ended = Scenario::ended(child).await;
    let stderr = ended.stderr;
    assert_eq!(ended.code, Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("{said}: no new agents are launched")),
        "{stderr}"
    );
    assert!(!stderr.contains("press Ctrl-C again"), "{stderr}");
    assert_eq!(s.stats().agents, 3, "nothing launched after the signal");
    assert_eq!(s.status().await["state"], "interrupted");
    let resumed = s.follow_hint(&stderr, "continue with: ").await;
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    assert_eq!(s.stats().agents, 7);
    every_launch_once(&s.stats());
    assert_eq!(s.status().await["state"], "succeeded");
    s.shutdown().await;
}

/// A calls quota the server named to one run paces the next run against the same API from
/// its first call, instead of costing another 429 to find.
#[tokio::test]
async fn a_limit_named_to_one_run_paces_the_next_from_its_first_call() {
    // Room for the preflight, the recall sweep and the first wave of 3 launches.
    let five_a_minute = |c: &mut orchestrate::sim::SimConfig| {
        c.calls_quota = Some("5/min".parse().unwrap());
    };
    let s = Scenario::on(Backend::V0)
        .work(5000, 5000)
        .config(five_a_minute)
        .start()
        .await;
    let file = Scenario::example("pipeline");
    let first = s.spawn_apply(&file);
    s.wait_until(|stats| stats.total_throttled() > 0).await;
    assert_eq!(
        s.stats().total_throttled(),
        1,
        "the first run learns the limit"
    );
    signal(&first, "INT");
    let code = tokio::task::spawn_blocking(move || first.wait_with_output().unwrap().status)
        .await
        .unwrap()
        .code();
    assert_eq!(code, Some(3));
    // A fresh server where the first was: its window is empty, its limit the same.
    let fresh = Scenario::on(Backend::V0)
        .work(5000, 5000)
        .config(five_a_minute);
    let s = s.restart(fresh).await;
    let mut second = s.apply_command(&file, &["--run", "second"]);
    second
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut second = second.spawn().unwrap();
    s.wait_for_agents(3).await;
    // Unpaced, reads every 15 ms would have met the limit within a few dozen milliseconds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = s.stats();
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(stats.agents, 3, "the first wave went at once");
    assert_eq!(stats.total_throttled(), 0, "{:?}", stats.throttled);
    assert!(stats.calls.values().sum::<u64>() <= 5, "{:?}", stats.calls);
    s.shutdown().await;
}

on_every_backend!(a_failed_need_blocks_its_dependents_and_retry_relaunches_them);
/// A need that fails blocks `all_succeeded` dependents but not `always` ones; `retry
/// --failed` relaunches it and re-runs what depended on it.
async fn a_failed_need_blocks_its_dependents_and_retry_relaunches_them(backend: Backend) {
    let s = Scenario::on(backend).faults("error=1.0").start().await;
    let ran = s.apply(&Scenario::fixture("chain"), &[]).await;
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let first = s.status().await.states();
    assert_eq!(
        (
            first["bump[acme/api]"].as_str(),
            first["fix[acme/api]"].as_str()
        ),
        ("failed", "blocked")
    );
    // `report` ran even so (its agent failed too: every agent fails in this simulator).
    let reported = |state: &str| {
        let prompt = format!("Report: bump is {state}.");
        s.launches().iter().any(|l| l.prompt == prompt)
    };
    assert!(reported("failed"));

    s.set_faults(orchestrate::sim::Faults::default());
    let retry = s
        .run(&["retry", "--failed", "--yes", "--poll-interval", "15ms"])
        .await;
    assert_eq!(retry.code, Some(0), "{}", retry.stderr);
    assert_eq!(s.status().await.count("succeeded"), 3);
    assert!(reported("succeeded"));
    assert!(
        retry.stderr.contains("run chain/default"),
        "{}",
        retry.stderr
    );
    s.shutdown().await;
}

#[test]
fn simulate_runs_a_whole_workflow_without_a_key() {
    let output = crate::support::orchestrate()
        .args([
            "apply",
            "--simulate",
            "examples/workflows/fleet-fanout.yaml",
        ])
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("simulating the Cursor API"), "{stderr}");
    assert!(
        stderr.contains("run sim:lint-fix/default: 4 succeeded"),
        "{stderr}"
    );
}

/// The README's `apply --simulate` leaves a run that neither blocks, shadows nor passes for
/// the real one; `runs` marks it and `runs rm` removes it alone.
#[tokio::test(flavor = "multi_thread")]
async fn simulated_runs_are_apart_from_real_ones() {
    let s = Scenario::on(Backend::V0).start().await;
    let file = Scenario::example("single-repo");
    let simulated = s.apply(&file, &["--simulate"]).await;
    assert_eq!(simulated.code, Some(0), "{}", simulated.stderr);
    assert_eq!(
        s.stats().agents,
        0,
        "the simulated run used its own simulator"
    );

    let plan = s.run(&["plan", &file.display().to_string()]).await;
    assert!(!plan.stdout.contains("(keep)"), "{}", plan.stdout);
    let real = s.apply(&file, &[]).await;
    assert_eq!(real.code, Some(0), "{}", real.stderr);
    assert_eq!(s.stats().agents, 1, "the real run launched its agent");

    let runs = s.run(&["runs"]).await;
    let marked: Vec<&str> = runs
        .stdout
        .lines()
        .filter(|l| l.contains("(simulated)"))
        .collect();
    assert_eq!(marked.len(), 1, "{}", runs.stdout);
    assert!(marked[0].starts_with("sim:"), "{}", runs.stdout);
    let id = marked[0].split('\t').next().unwrap();
    let removed = s.run(&["runs", "rm", id]).await;
    assert_eq!(removed.code, Some(0), "{}", removed.stderr);
    let listed = s.run(&["runs", "--json"]).await;
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["simulated"], false);
    assert_eq!(listed[0]["state"], "succeeded");
    s.shutdown().await;
}

/// `runs rm` refuses a run whose agents may still work (their results would be lost) unless
/// forced, and says how to stop them.
#[tokio::test(flavor = "multi_thread")]
async fn runs_rm_keeps_a_run_with_live_agents_unless_forced() {
    let s = Scenario::on(Backend::V0).work(5000, 5000).start().await;
    let mut running = s.spawn_apply(&Scenario::example("single-repo"));
    s.wait_for_agents(1).await;
    let _ = running.kill();
    let _ = running.wait();
    let id = s.status().await["run"].as_str().unwrap().to_owned();
    let refused = s.run(&["runs", "rm", &id]).await;
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("may still work"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains(&format!("cancel {id}")),
        "{}",
        refused.stderr
    );
    let forced = s.run(&["runs", "rm", &id, "--force"]).await;
    assert_eq!(forced.code, Some(0), "{}", forced.stderr);
    let left = s.run(&["runs", "--json"]).await;
    assert_eq!(left.stdout.trim(), "[]");
    s.shutdown().await;
}

#[test]
fn without_a_key_apply_explains_both_ways_forward() {
    let state = crate::support::fresh_state();
    let output = crate::support::orchestrate()
        .env("ORCHESTRATE_STATE", &state)
        .args(["apply", "examples/workflows/single-repo.yaml", "--yes"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    let stderr = text(&output.stderr).replace(&state.display().to_string(), "[STATE]");
    insta::assert_snapshot!(stderr);
}

on_every_backend!(without_a_terminal_apply_wants_yes);
async fn without_a_terminal_apply_wants_yes(backend: Backend) {
    let s = Scenario::on(backend).start().await;
    let ran = s
        .run(&["apply", "examples/workflows/single-repo.yaml"])
        .await;
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr
            .contains("refusing to launch 1 agent(s) without --yes"),
        "{}",
        ran.stderr
    );
    assert_eq!(s.stats().agents, 0);
    let confirmed = s.follow_hint(&ran.stderr, "then run `").await;
    assert_eq!(confirmed.code, Some(0), "{}", confirmed.stderr);
    assert_eq!(s.stats().agents, 1);
    s.shutdown().await;
}

on_every_backend!(a_failing_canary_stops_the_rest_of_the_rollout);
/// A canary that fails stops the rest of its fleet: they are blocked, never launched.
async fn a_failing_canary_stops_the_rest_of_the_rollout(backend: Backend) {
    let file = Scenario::fixture("canary");
    let s = Scenario::on(backend).faults("error=1.0").start().await;
    let ran = s.apply(&file, &[]).await;
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let status = s.status().await;
    assert_eq!(status.states()["bump[acme/svc-00]"], "failed");
    assert_eq!(status.states()["bump[acme/svc-01]"], "failed");
    assert_eq!(status.count("blocked"), 4);
    assert_eq!(s.stats().agents, 2, "only the canaries were launched");
    s.shutdown().await;

    // With healthy agents the canaries succeed and the rest follow.
    let s = Scenario::on(backend).start().await;
    assert_eq!(s.apply(&file, &[]).await.code, Some(0));
    assert_eq!(s.stats().agents, 6);
    s.shutdown().await;
}

on_every_backend!(max_agents_refuses_a_run_that_would_launch_more);
async fn max_agents_refuses_a_run_that_would_launch_more(backend: Backend) {
    let s = Scenario::on(backend).start().await;
    let file = Scenario::example("pipeline");
    let ran = s.apply(&file, &["--max-agents", "5"]).await;
    assert_eq!(ran.code, Some(2));
    let refusal = "would launch 7 agent(s), more than --max-agents 5; nothing was launched";
    assert!(ran.stderr.contains(refusal), "{}", ran.stderr);
    assert_eq!(s.stats().agents, 0);
    assert_eq!(s.apply(&file, &["--max-agents", "7"]).await.code, Some(0));
    s.shutdown().await;
}

on_every_backend!(status_works_while_an_apply_runs);
/// While an apply holds the state, `status` answers from the snapshot it writes (sled), or
/// from the database, which the apply writes as it goes (PostgreSQL), and says who applies.
async fn status_works_while_an_apply_runs(backend: Backend) {
    let s = Scenario::on(backend).work(3000, 4000).start().await;
    let mut running = s.spawn_apply(&Scenario::example("pipeline"));
    s.wait_for_agents(3).await;
    let mut answer = None;
    for _ in 0..50 {
        let ran = s.run(&["status", "--json"]).await;
        if ran.code == Some(0) {
            let status = crate::scenario::Status(serde_json::from_str(&ran.stdout).unwrap());
            if status.count("running") == 3 {
                answer = Some((status, ran.stderr));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, stderr) = answer.expect("status answered while the apply ran");
    assert!(stderr.contains("an apply is running ("), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", running.id())),
        "{stderr}"
    );
    assert_eq!(status["run"], "framework-upgrade/default");
    assert_eq!(status["state"], "running");
    let _ = running.kill();
    let _ = running.wait();
    s.shutdown().await;
}

on_every_backend!(a_long_429_storm_delays_launches_and_fails_nothing);
/// A launch throttled for longer than the client retries is launched later, never failed:
/// a 429 storm costs time, not paid work.
async fn a_long_429_storm_delays_launches_and_fails_nothing(backend: Backend) {
    let s = Scenario::on(backend).faults("429=1.0:1").start().await;
    let run = Scenario::finish(s.apply_command(&Scenario::example("single-repo"), &[]));
    let run = tokio::spawn(run);
    // Every launch is refused until the client gave up at least once (6 attempts, 1 s each).
    let launches = |stats: &orchestrate::sim::Stats| {
        stats
            .calls
            .get(backend.launch_route())
            .copied()
            .unwrap_or(0)
    };
    for _ in 0..200 {
        if launches(&s.stats()) > 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.set_faults(orchestrate::sim::Faults::default());
    let ran = run.await.unwrap();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(s.stats().agents, 1);
    s.shutdown().await;
}

/// An agent stopped from outside reports a status orchestrate does not know (the simulator is
/// told to say STOPPED, outside the published enum); once it stops changing, the attempt
/// ends instead of waiting forever. v0 only: v1 documents CANCELLED, which orchestrate knows.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_status_that_stops_changing_ends_the_attempt() {
    let stopped = orchestrate::cursor::AgentStatus::Unknown("STOPPED".into());
    let s = Scenario::on(Backend::V0)
        .work(3000, 4000)
        .config(move |config| config.stopped_status = stopped)
        .start()
        .await;
    s.expect_violation("\"STOPPED\" is not one of");
    let run = tokio::spawn(Scenario::finish(
        s.apply_command(&Scenario::example("single-repo"), &[]),
    ));
    let key = orchestrate::cursor::ApiKey::new(orchestrate::sim::DEFAULT_KEY);
    let config = orchestrate::cursor::ClientConfig::new(&s.url(), key).unwrap();
    let client = orchestrate::cursor::Client::new(config).unwrap();
    s.wait_for_agents(1).await;
    let listed = client.list_agents(Some(1), None).await.unwrap();
    client.stop(&listed.agents[0].id).await.unwrap();
    let ran = run.await.unwrap();
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let said = "reports `STOPPED`, a status orchestrate does not know, and it stopped changing";
    assert!(ran.stderr.contains(said), "{}", ran.stderr);
    s.shutdown().await;
}

on_every_backend!(
    a_usage_limit_pauses_the_run_and_it_resumes_once_raised,
    platform: "the Agent Platform has no spending-ceiling error (usage_limit_exceeded is Cursor API v1's)"
);
/// v1's spending ceiling: the run stops launching, says why, exits 3 (resumable), and
/// completes once the limit is raised, with no agent made twice. v0 documents no such limit:
/// there the same workflow simply completes.
async fn a_usage_limit_pauses_the_run_and_it_resumes_once_raised(backend: Backend) {
    let s = Scenario::on(backend)
        .work(200, 300)
        .faults("usage_limit=3")
        .start()
        .await;
    let file = Scenario::fixture("limited");
    let ran = s.apply(&file, &[]).await;
    if !backend.has_usage_limit() {
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        s.shutdown().await;
        return;
    }
    assert_eq!(ran.code, Some(3), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("the API's usage limit is reached"),
        "{}",
        ran.stderr
    );
    assert_eq!(s.stats().agents, 3, "nothing launched past the limit");
    assert_eq!(s.status().await["state"], "interrupted");

    s.set_faults(orchestrate::sim::Faults::default());
    let ran = s
        .follow_hint(&ran.stderr, "once it is raised, continue with: ")
        .await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let seen = s.stats();
    assert_eq!(seen.agents, 6);
    every_launch_once(&seen);
    assert_eq!(follow_ups(&seen), vec![1; 6], "each follow-up sent once");
    assert_eq!(s.status().await.count("succeeded"), 6);
    s.shutdown().await;
}

on_every_backend!(an_unreachable_api_ends_the_apply_with_exit_4);
/// A URL nobody listens on: v0 and v1 find it out by their first read, before anything is
/// written; the Agent Platform, which has no cheap read, by its deferred launches within the
/// outage budget. Either way: exit 4, the URL and the cause said, every deferral a line.
async fn an_unreachable_api_ends_the_apply_with_exit_4(backend: Backend) {
    let s = Scenario::on(backend).start().await;
    let nobody = "http://127.0.0.1:9";
    let mut command = s.apply_command(
        &Scenario::example("single-repo"),
        &["--outage-budget", "2s"],
    );
    command
        .env("CURSOR_API_BASE_URL", nobody)
        .env("LAP_URL", nobody);
    let ran = Scenario::finish(command).await;
    assert_eq!(ran.code, Some(4), "{}", ran.stderr);
    assert!(
        ran.stderr.contains(&format!("cannot reach {nobody}/")),
        "{}",
        ran.stderr
    );
    if backend.version().is_some() {
        let runs = s.run(&["runs", "--json"]).await;
        assert_eq!(
            runs.stdout.trim(),
            "[]",
            "the preflight comes before any write"
        );
    } else {
        assert!(ran.stderr.contains("deferred  "), "{}", ran.stderr);
        assert_eq!(s.status().await["state"], "interrupted");
    }
    assert_eq!(s.stats().agents, 0);
    s.shutdown().await;
}

on_every_backend!(
    an_api_failing_mid_run_stops_it_within_the_budget_and_it_resumes,
    platform: "the Agent Platform cannot look a session up: a launch answered 5xx fails its instance instead of risking a second one"
);
/// Every call answered 503 while three agents work: apply gives up after its outage budget
/// with exit 4 and a hint that, once the API is back, continues the run to the end with no
/// agent launched twice.
async fn an_api_failing_mid_run_stops_it_within_the_budget_and_it_resumes(backend: Backend) {
    let s = Scenario::on(backend).work(1500, 1500).start().await;
    let file = Scenario::example("pipeline");
    let child = s.spawn_watched(&file, &["--outage-budget", "2s"]);
    s.wait_until(|stats| stats.agents == 3).await;
    s.set_faults("5xx=1".parse().unwrap());
    let ended = Scenario::ended(child).await;
    let stderr = ended.stderr;
    assert_eq!(ended.code, Some(4), "{stderr}");
    assert!(
        stderr.contains("cannot reach http://127.0.0.1:"),
        "{stderr}"
    );
    assert_eq!(s.stats().agents, 3);

    s.set_faults(orchestrate::sim::Faults::default());
    let resumed = s
        .follow_hint(&stderr, "the run can be continued once this is fixed: ")
        .await;
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    assert_eq!(s.stats().agents, 7);
    every_launch_once(&s.stats());
    s.shutdown().await;
}

/// While an apply holds the state, `runs` and `report` answer from its live snapshot, as
/// `status` does; once its process is killed, its run shows as interrupted and prune takes it.
#[tokio::test(flavor = "multi_thread")]
async fn runs_and_report_answer_during_an_apply_and_a_dead_run_shows_interrupted() {
    let s = Scenario::on(Backend::V0).work(5000, 5000).start().await;
    let mut running = s.spawn_apply(&Scenario::example("single-repo"));
    s.wait_for_agents(1).await;
    // The snapshot comes within its 2 s period.
    let mut listed = s.run(&["runs", "--json"]).await;
    for _ in 0..50 {
        if listed.code == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        listed = s.run(&["runs", "--json"]).await;
    }
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    assert!(
        listed.stderr.contains("an apply is running"),
        "{}",
        listed.stderr
    );
    let runs: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(runs[0]["state"], "running", "{runs}");
    let id = runs[0]["id"].as_str().unwrap().to_owned();
    let report = s.run(&["report", "--format", "json"]).await;
    assert_eq!(report.code, Some(0), "{}", report.stderr);
    assert!(
        report.stdout.contains(&format!("\"run\": \"{id}\"")),
        "{}",
        report.stdout
    );

    let _ = running.kill();
    let _ = running.wait();
    assert_eq!(s.status().await["state"], "interrupted");
    let pruned = s.run(&["runs", "prune", "--older-than", "0s"]).await;
    assert_eq!(pruned.code, Some(0), "{}", pruned.stderr);
    assert!(
        pruned
            .stdout
            .contains(&format!("removed {id} (interrupted")),
        "{}",
        pruned.stdout
    );
    s.shutdown().await;
}

on_every_backend!(cancel_from_another_terminal_stops_a_running_apply);
/// `cancel` while `apply` holds the state asks that apply, which stops its agents, records
/// them cancelled and exits; `cancel` waits for it and says what was recorded.
async fn cancel_from_another_terminal_stops_a_running_apply(backend: Backend) {
    let s = Scenario::on(backend).work(5000, 5000).start().await;
    let child = s.spawn_watched(&Scenario::example("pipeline"), &[]);
    s.wait_for_agents(3).await;
    // The request names the run from the apply's snapshot, written every 2 s.
    let mut cancel = s.run(&["cancel"]).await;
    for _ in 0..30 {
        if cancel.code == Some(0) || !cancel.stderr.contains("no snapshot") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel = s.run(&["cancel"]).await;
    }
    assert_eq!(cancel.code, Some(0), "{}", cancel.stderr);
    assert!(
        cancel.stderr.contains("asked the running apply"),
        "{}",
        cancel.stderr
    );
    assert!(
        cancel.stderr.contains("cancelled: 3 cancelled, 4 skipped"),
        "{}",
        cancel.stderr
    );
    let ended = Scenario::ended(child).await;
    let stderr = ended.stderr;
    assert_eq!(ended.code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cancel requested by another orchestrate"),
        "{stderr}"
    );
    assert_eq!(s.stats().calls[backend.stop_route()], 3);
    assert_eq!(s.stats().agents, 3, "nothing launched after the cancel");
    s.shutdown().await;
}

/// `status --watch` follows a run while an apply works on it and stops when it ends;
/// `--state-is` keeps the instances in the states named.
#[tokio::test(flavor = "multi_thread")]
async fn status_watches_a_run_to_its_end_and_filters_by_state() {
    let s = Scenario::on(Backend::V1).work(1500, 2500).start().await;
    let file = Scenario::example("pipeline");
    let running = s.spawn_watched(&file, &[]);
    s.wait_for_agents(1).await;
    // Piped, each reading follows the last; the last one is the settled run.
    let watched = s.run(&["status", "--watch"]).await;
    assert_eq!(watched.code, Some(0), "{}", watched.stderr);
    let readings: Vec<&str> = watched
        .stdout
        .lines()
        .filter(|l| l.starts_with("run "))
        .collect();
    assert!(readings.len() >= 2, "{}", watched.stdout);
    assert!(readings[0].contains("(running)"), "{readings:?}");
    assert!(
        readings.last().unwrap().contains("(succeeded)"),
        "{readings:?}"
    );
    assert_eq!(Scenario::ended(running).await.code, Some(0));

    let only = s
        .run(&["status", "-o", "json", "--state-is", "succeeded,failed"])
        .await;
    let only: serde_json::Value = serde_json::from_str(&only.stdout).unwrap();
    assert_eq!(only["instances"].as_array().unwrap().len(), 7);
    let none = s
        .run(&["status", "-o", "json", "--state-is", "failed"])
        .await;
    let none: serde_json::Value = serde_json::from_str(&none.stdout).unwrap();
    assert_eq!(none["instances"].as_array().unwrap().len(), 0);
    let typo = s.run(&["status", "--state-is", "sucess"]).await;
    assert_eq!(typo.code, Some(2));
    insta::assert_snapshot!(typo.stderr.lines().next().unwrap_or_default(), @"error: invalid value 'sucess' for '--state-is <STATES>': `sucess` is not a state; did you mean `succeeded`? states: pending, blocked, launching, running, following_up, succeeded, failed, timed_out, cancelled, skipped");
    // Piped, the table is whole tab-separated rows, by wave, then task order, then key.
    let table = s.run(&["status"]).await;
    let keys = table_keys(&table.stdout);
    assert_eq!(
        keys,
        [
            "bump[acme/api]",
            "bump[acme/billing]",
            "bump[acme/web]",
            "fix-tests[acme/api]",
            "fix-tests[acme/billing]",
            "fix-tests[acme/web]",
            "release-notes[acme/platform-docs]"
        ]
    );
    s.shutdown().await;
}

/// In a terminal, an apply that would launch agents asks first, the plan and the question
/// both on the terminal even with stdout redirected; the count it asks about is the count it
/// launches, interrupted runs included; declining launches nothing and exits 3.
#[tokio::test(flavor = "multi_thread")]
async fn a_terminal_is_asked_about_every_agent_it_launches() {
    let s = Scenario::on(Backend::V1).work(200, 400).start().await;
    let file = Scenario::example("pipeline");
    // Killed after its second launch: the other instances have no agent yet.
    let mut crashed = s.apply_command(&file, &["--max-concurrency", "1"]);
    crashed.env("ORCHESTRATE_CRASH_AFTER", "launch:2");
    assert_ne!(Scenario::finish(crashed).await.code, Some(0));
    let launched = s.stats().agents;
    assert!((2..7).contains(&launched), "{launched}");
    let rest = 7 - launched;

    let asked = |answer: &'static str| {
        let mut command = s.command();
        command
            .arg("apply")
            .arg(&file)
            .args(["--poll-interval", "20ms"]);
        let redirected = s.path("stdout.txt");
        async move { Scenario::in_terminal(&command, answer, Some(&redirected)).await }
    };
    let declined = asked("n\n").await;
    assert_eq!(declined.code, Some(3), "{}", declined.stdout);
    assert!(
        declined.stdout.contains("+ fix-tests[acme/api]"),
        "the plan is shown: {}",
        declined.stdout
    );
    let question = declined
        .stdout
        .lines()
        .find(|l| l.contains("agent(s)? [y/N]"))
        .unwrap_or_else(|| panic!("{}", declined.stdout));
    assert!(
        question.starts_with(&format!("Launch {rest} agent(s)? [y/N]")),
        "{question}"
    );
    assert!(
        declined
            .stdout
            .contains("not confirmed: nothing was launched; to launch, run `orchestrate --state"),
        "{}",
        declined.stdout
    );
    assert_eq!(s.stats().agents, launched, "declining launched nothing");

    let accepted = asked("y\n").await;
    assert_eq!(accepted.code, Some(0), "{}", accepted.stdout);
    assert!(
        accepted
            .stdout
            .contains(&format!("Launch {rest} agent(s)? [y/N]"))
    );
    assert_eq!(
        s.stats().agents,
        launched + rest,
        "as many launched as asked about"
    );
    every_launch_once(&s.stats());
    s.shutdown().await;
}

/// Without a terminal, event lines carry their time, and a heartbeat says every
/// `--heartbeat` how far the run is and which agents still work.
#[tokio::test(flavor = "multi_thread")]
async fn an_unattended_apply_stamps_its_lines_and_beats() {
    let s = Scenario::on(Backend::V1).work(1500, 2000).start().await;
    let ran = s
        .apply(&Scenario::example("single-repo"), &["--heartbeat", "300ms"])
        .await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let stamped = |line: &str| {
        let b = line.as_bytes();
        b.len() > 11 && b[0] == b'[' && b[3] == b':' && b[6] == b':' && b[9] == b']'
    };
    let launched = ran.stderr.lines().find(|l| l.contains("launched")).unwrap();
    assert!(stamped(launched), "{launched}");
    let beat = ran
        .stderr
        .lines()
        .find(|l| l.contains("still running:"))
        .unwrap_or_else(|| panic!("no heartbeat in:\n{}", ran.stderr));
    assert!(stamped(beat), "{beat}");
    assert!(
        beat.contains("0/1 settled (1 running)")
            && beat.contains("still running: readme[acme/api] ["),
        "{beat}"
    );
    // `0s` turns it off.
    let quiet = s
        .apply(
            &Scenario::example("single-repo"),
            &["--run", "again", "--heartbeat", "0s"],
        )
        .await;
    assert_eq!(quiet.code, Some(0), "{}", quiet.stderr);
    assert!(!quiet.stderr.contains("still running:"), "{}", quiet.stderr);
    s.shutdown().await;
}

/// A need that opened no pull request has no `pr_url`: a prompt that prints it fails to
/// launch, saying so and how to print something else, rather than sending "Review ." to a
/// paid agent; `or` gives the words to print instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_output_is_never_printed_as_nothing() {
    let s = Scenario::on(Backend::V1).start().await;
    let file = s.write(
        "missing.yaml",
        "version: 1\nname: missing\ntasks:\n  bump:\n    repo: https://github.com/acme/api\n    prompt: Bump.\n\
         \n  review:\n    repo: https://github.com/acme/api\n    needs: [bump]\n    prompt: \"Review {{ needs.bump[0].pr_url }}.\"\n\
         \n  note:\n    repo: https://github.com/acme/api\n    needs: [bump]\n    prompt: \"Review {{ needs.bump[0].pr_url or 'the branch' }}.\"\n",
    );
    let ran = s.apply(&file, &[]).await;
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let status = s.status().await;
    assert_eq!(status.count("succeeded"), 2, "{status}");
    let review = status
        .instances()
        .iter()
        .find(|i| i["key"] == "review[acme/api]")
        .unwrap();
    assert_eq!(review["state"], "failed");
    // Its error is recorded, for `status` and the report, and said once as it happens.
    let why = review["error"].as_str().unwrap_or_default();
    insta::assert_snapshot!(why, @"cannot render the prompt: a value is missing, and would print as nothing: `needs.bump[0].pr_url` (template line 1); if it may be missing, say what to print instead: `{{ needs.bump[0].pr_url or 'none' }}`");
    assert_eq!(
        ran.stderr.matches("would print as nothing").count(),
        1,
        "{}",
        ran.stderr
    );
    let prompts: Vec<String> = s
        .launches()
        .iter()
        .map(|l| {
            l.body["prompt"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(
        prompts.contains(&"Review the branch.".to_owned()),
        "{prompts:?}"
    );
    assert_eq!(
        prompts.len(),
        2,
        "the review was never launched: {prompts:?}"
    );
    s.shutdown().await;
}

/// `retry` in a terminal asks about every agent it will launch: the failed instance, its
/// blocked dependent (never launched) and the dependent that ran on the failure.
#[tokio::test(flavor = "multi_thread")]
async fn retry_asks_about_as_many_agents_as_it_launches() {
    let s = Scenario::on(Backend::V1).faults("error=1.0").start().await;
    assert_eq!(
        s.apply(&Scenario::fixture("chain"), &[]).await.code,
        Some(1)
    );
    let before = s.stats().agents;
    s.set_faults(orchestrate::sim::Faults::default());
    let mut command = s.command();
    command.args(["retry", "--failed", "--poll-interval", "15ms"]);
    let ran = Scenario::in_terminal(&command, "y\n", None).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stdout);
    let launched = s.stats().agents - before;
    assert!(
        ran.stdout
            .contains(&format!("Launch {launched} agent(s)? [y/N]")),
        "{launched} launched:\n{}",
        ran.stdout
    );
    assert_eq!(
        launched, 3,
        "bump, fix (blocked before) and report (its need relaunched)"
    );
    s.shutdown().await;
}

/// `status` lists instances by wave, then task order in the file (as the plan does), then
/// by key with numbers read as numbers (`svc-2` before `svc-10`), not as strings sort.
#[tokio::test(flavor = "multi_thread")]
async fn status_rows_come_in_plan_order() {
    let s = Scenario::on(Backend::V1).start().await;
    let file = s.write(
        "order.yaml",
        "version: 1\nname: order\nfleets:\n  svc:\n    - https://github.com/acme/svc-10\n    - https://github.com/acme/svc-2\n    - https://github.com/acme/svc-1\n\
         tasks:\n  zeta:\n    fleet: svc\n    prompt: Z.\n  alpha:\n    repo: https://github.com/acme/docs\n    needs: [zeta]\n    prompt: A.\n  beta:\n    fleet: svc\n    prompt: B.\n",
    );
    assert_eq!(s.apply(&file, &[]).await.code, Some(0));
    let table = s.run(&["status"]).await;
    let keys = table_keys(&table.stdout);
    assert_eq!(
        keys,
        [
            "zeta[acme/svc-1]",
            "zeta[acme/svc-2]",
            "zeta[acme/svc-10]",
            "beta[acme/svc-1]",
            "beta[acme/svc-2]",
            "beta[acme/svc-10]",
            "alpha[acme/docs]",
        ]
    );
    s.shutdown().await;
}

/// The instance keys of a piped `status` table, in its order (after the run line and the
/// header).
fn table_keys(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .skip(2)
        .filter_map(|l| l.split('\t').next())
        .collect()
}
