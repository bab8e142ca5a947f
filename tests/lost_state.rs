//! A run whose state is gone (deleted, pruned, a fresh CI runner, a state that cannot be
//! opened) is rebuilt from the API: its launches are found and adopted, never launched again,
//! and a changed prompt gets a new agent, never the old one's answer. The Agent Platform
//! cannot list sessions, so none of this applies there (see `Backend::recalls`).

use std::time::{Duration, Instant};

use rand::Rng;

use crate::scenario::{Backend, Scenario, every_launch_once, follow_ups};

on_both_apis!(a_lost_state_adopts_the_same_launch_and_a_changed_prompt_gets_a_new_agent);
/// A launch is its run, instance, attempt and spec. A state lost after the run ended is
/// rebuilt by adopting the same launch's agent (said so, nothing launched again); once the
/// prompt changes, the same loss gives the new prompt a new agent, never the old one's answer.
async fn a_lost_state_adopts_the_same_launch_and_a_changed_prompt_gets_a_new_agent(
    backend: Backend,
) {
    let mut s = Scenario::on(backend).start().await;
    let workflow = |prompt: &str| {
        format!(
            "version: 1\nname: readme\ntasks:\n  readme:\n    repo: https://github.com/acme/api\n    prompt: {prompt}\n    auto_create_pr: true\n"
        )
    };
    let file = s.write("readme.yaml", &workflow("Write a README."));
    let first = s.apply(&file, &[]).await;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let pr = s.status().await.instances()[0]["pr_url"].clone();

    s.use_state("lost");
    let plan = s
        .run(&["plan", file.to_str().unwrap(), "--run", "default"])
        .await;
    assert_eq!(plan.code, Some(0), "{}", plan.stderr);
    assert!(
        plan.stdout.contains("< readme[acme/api] (adopt)"),
        "{}",
        plan.stdout
    );
    let again = s.apply(&file, &[]).await;
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(again.stderr.contains("1 to adopt"), "{}", again.stderr);
    assert!(
        again.stderr.contains("adopted   readme[acme/api]"),
        "{}",
        again.stderr
    );
    assert!(!again.stderr.contains("launched  "), "{}", again.stderr);
    assert_eq!(s.stats().agents, 1, "the same launch is not launched twice");
    assert_eq!(s.status().await.instances()[0]["pr_url"], pr);

    s.write("readme.yaml", &workflow("Write a README with a diagram."));
    s.use_state("lost-again");
    let edited = s.apply(&file, &[]).await;
    assert_eq!(edited.code, Some(0), "{}", edited.stderr);
    assert!(
        edited.stderr.contains("launched  readme[acme/api]"),
        "{}",
        edited.stderr
    );
    assert_eq!(s.stats().agents, 2, "a changed prompt is a new launch");
    let launches = s.launches();
    assert_eq!(
        launches.last().unwrap().prompt,
        "Write a README with a diagram."
    );
    assert_ne!(
        s.status().await.instances()[0]["pr_url"],
        pr,
        "the new agent's answer"
    );
    s.shutdown().await;
}

on_both_apis!(a_lost_state_does_not_send_an_adopted_agent_its_follow_ups_again);
/// An agent adopted after a lost state had its follow-ups already: they are confirmed from
/// its conversation (v1: its runs), not sent again.
async fn a_lost_state_does_not_send_an_adopted_agent_its_follow_ups_again(backend: Backend) {
    let mut s = Scenario::on(backend).start().await;
    let file = s.write(
        "followed.yaml",
        "version: 1\nname: followed\ntasks:\n  fix:\n    repo: https://github.com/acme/api\n    prompt: Fix the tests.\n    follow_ups:\n      - prompt: Open the pull request.\n      - prompt: Write the changelog.\n",
    );
    let first = s.apply(&file, &[]).await;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert_eq!(follow_ups(&s.stats()), [2]);

    s.use_state("lost");
    let again = s.apply(&file, &[]).await;
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(
        again.stderr.contains("adopted   fix[acme/api]"),
        "{}",
        again.stderr
    );
    assert_eq!(s.stats().agents, 1);
    assert_eq!(follow_ups(&s.stats()), [2], "no follow-up sent twice");
    assert_eq!(s.status().await["state"], "succeeded");
    s.shutdown().await;
}

on_both_apis!(state_deleted_at_random_moments_no_agent_is_launched_twice_and_nothing_is_lost);
/// 50 instances with follow-ups, killed at 25 random moments, the state deleted after most
/// kills (a CI cache miss, `rm -rf .orchestrate`), applied again each time and at last on a
/// state of its own: every instance launched once, every follow-up sent once, every result
/// there.
async fn state_deleted_at_random_moments_no_agent_is_launched_twice_and_nothing_is_lost(
    backend: Backend,
) {
    let mut s = Scenario::on(backend).work(40, 120).start().await;
    let file = Scenario::fixture("crash");
    let started = Instant::now();
    let mut lost = 0;
    for round in 0..25 {
        let mut child = s.spawn_apply(&file);
        let wait = rand::rng().random_range(50..400);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if rand::rng().random_bool(0.7) {
            s.use_state(&format!("state-{round}"));
            lost += 1;
        }
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "the kills took too long"
        );
    }
    s.use_state("last");
    let ran = s.apply(&file, &[]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let seen = s.stats();
    every_launch_once(&seen);
    assert_eq!(seen.launches.len(), 50, "every instance launched");
    assert_eq!(seen.agents, 50, "no agent made twice ({lost} states lost)");
    let once = [vec![1; 25], vec![2; 25]].concat();
    assert_eq!(follow_ups(&seen), once, "each follow-up sent exactly once");
    let status = s.status().await;
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["counts"], serde_json::json!({"succeeded": 50}));
    for instance in status.instances() {
        assert!(instance["agent_id"].is_string(), "{instance}");
        assert!(
            instance["summary"].is_string(),
            "no result lost: {instance}"
        );
    }
    s.shutdown().await;
}

on_both_apis!(a_state_sled_cannot_open_is_moved_aside_and_the_run_rebuilt, sled only: "it tears sled's own files");
/// sled can leave files it refuses to reopen after a kill (here: a truncated snapshot file,
/// the one seen in the wild). Read-only commands say what is wrong; `apply` moves the
/// database aside, keeping it, starts a new one and finishes the run through recall: every
/// launch once, every follow-up once, every result there.
async fn a_state_sled_cannot_open_is_moved_aside_and_the_run_rebuilt(backend: Backend) {
    let s = Scenario::on(backend).work(40, 120).start().await;
    let file = Scenario::fixture("crash");
    let mut child = s.spawn_apply(&file);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    // Reopening recovers the log and writes a snapshot: the file a kill can leave torn.
    let _ = s.run(&["runs"]).await;
    let db = s.state().join("db");
    let snapshots: Vec<_> = std::fs::read_dir(&db)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snap.")
        })
        .collect();
    assert!(!snapshots.is_empty(), "no snapshot in {}", db.display());
    for snapshot in &snapshots {
        std::fs::OpenOptions::new()
            .write(true)
            .open(snapshot)
            .unwrap()
            .set_len(5)
            .unwrap();
    }

    let runs = s.run(&["runs"]).await;
    assert_ne!(runs.code, Some(0));
    assert!(
        runs.stderr
            .contains("cannot be opened (Read corrupted data")
            && runs.stderr.contains("`orchestrate apply` moves it aside"),
        "{}",
        runs.stderr
    );
    let ran = s.apply(&file, &[]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("could not be opened; it was moved to "),
        "{}",
        ran.stderr
    );
    let kept: Vec<_> = std::fs::read_dir(s.state())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("db.broken-"))
        .collect();
    assert_eq!(kept.len(), 1, "the broken database is kept");
    let seen = s.stats();
    every_launch_once(&seen);
    assert_eq!(seen.agents, 50, "no agent made twice");
    let once = [vec![1; 25], vec![2; 25]].concat();
    assert_eq!(follow_ups(&seen), once, "each follow-up sent exactly once");
    let status = s.status().await;
    assert_eq!(status["counts"], serde_json::json!({"succeeded": 50}));
    for instance in status.instances() {
        assert!(
            instance["summary"].is_string(),
            "no result lost: {instance}"
        );
    }
    s.shutdown().await;
}

on_both_apis!(a_pruned_run_applied_again_adopts_its_agents);
/// `runs prune` forgets a finished run; applying it again finds its agents in the API and
/// adopts them: nothing is launched twice and its results come back.
async fn a_pruned_run_applied_again_adopts_its_agents(backend: Backend) {
    let s = Scenario::on(backend).start().await;
    let file = s.write(
        "pair.yaml",
        "version: 1\nname: pair\nfleets:\n  both:\n    - repo: https://github.com/acme/api\n    - repo: https://github.com/acme/web\ntasks:\n  fix:\n    fleet: both\n    prompt: Fix the tests.\n    auto_create_pr: true\n    follow_ups:\n      - prompt: Write the changelog.\n",
    );
    let first = s.apply(&file, &[]).await;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let pull_requests = |status: crate::scenario::Status| -> Vec<serde_json::Value> {
        status
            .instances()
            .iter()
            .map(|i| i["pr_url"].clone())
            .collect()
    };
    let prs = pull_requests(s.status().await);

    let pruned = s.run(&["runs", "prune", "--older-than", "0s"]).await;
    assert_eq!(pruned.code, Some(0), "{}", pruned.stderr);
    let listed = s.run(&["runs", "-o", "json"]).await;
    assert_eq!(listed.stdout.trim(), "[]", "pruned: {}", listed.stdout);

    let again = s.apply(&file, &[]).await;
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(again.stderr.contains("2 to adopt"), "{}", again.stderr);
    assert_eq!(s.stats().agents, 2, "no agent launched twice");
    assert_eq!(follow_ups(&s.stats()), [1, 1], "no follow-up sent twice");
    let back = pull_requests(s.status().await);
    assert_eq!(back, prs, "every result is back");
    s.shutdown().await;
}
