//! What only a shared PostgreSQL state has: schema migrations, locks per run that a dead
//! holder lets go of, a server restarted under an apply, and runs moved between stores.
//! Each test says so and returns where no PostgreSQL binaries exist (see `pg`).

use std::time::Duration;

use crate::pg::{Cluster, shared};
use crate::scenario::{Backend, Scenario, every_launch_once};

/// The shared cluster, or the test returns (having said why on stderr).
macro_rules! cluster_or_skip {
    () => {
        match shared() {
            Some(cluster) => cluster,
            None => return,
        }
    };
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schema_is_migrated_once_and_a_newer_one_is_refused() {
    let cluster = cluster_or_skip!();
    let url = cluster.database();
    let s = Scenario::on(Backend::V1)
        .in_database(url.clone())
        .start()
        .await;
    let file = Scenario::example("single-repo");
    assert_eq!(s.apply(&file, &[]).await.code, Some(0));
    assert_eq!(s.apply(&file, &[]).await.code, Some(0), "opened again");
    assert_eq!(
        cluster.sql(
            &url,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM orchestrate.schema_migrations"
        ),
        (1..=orchestrate::state::SCHEMA_VERSION)
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(","),
        "each migration applied once"
    );

    cluster.sql(
        &url,
        "INSERT INTO orchestrate.schema_migrations (version, release) VALUES (99, 'the future')",
    );
    let refused = s.run(&["runs"]).await;
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    let message = refused.stderr.replace(&url, "URL");
    insta::assert_snapshot!(message, @"error: the database URL has schema version 99, and this orchestrate knows up to 2; upgrade orchestrate (it never downgrades a schema)");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runs_proceed_at_once_in_one_database() {
    let cluster = cluster_or_skip!();
    let s = Scenario::on(Backend::V0)
        .in_database(cluster.database())
        .work(300, 500)
        .start()
        .await;
    let file = Scenario::example("fleet-fanout");
    let nightly = s.spawn_watched(&file, &["--run", "nightly"]);
    let by_hand = s.spawn_watched(&file, &["--run", "by-hand"]);
    let (nightly, by_hand) = (
        Scenario::ended(nightly).await,
        Scenario::ended(by_hand).await,
    );
    assert_eq!(nightly.code, Some(0), "{}", nightly.stderr);
    assert_eq!(by_hand.code, Some(0), "{}", by_hand.stderr);
    let runs = s.run(&["runs", "-o", "json"]).await;
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    let states: Vec<(&str, &str)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    assert!(
        states.contains(&("lint-fix/nightly", "succeeded")),
        "{states:?}"
    );
    assert!(
        states.contains(&("lint-fix/by-hand", "succeeded")),
        "{states:?}"
    );
    every_launch_once(&s.stats());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_holder_lets_go_of_its_run_which_shows_interrupted_and_resumes() {
    let cluster = cluster_or_skip!();
    let s = Scenario::on(Backend::V1)
        .in_database(cluster.database())
        .work(2000, 3000)
        .start()
        .await;
    let file = Scenario::example("pipeline");
    let mut first = s.spawn_apply(&file);
    s.wait_for_agents(3).await;
    first.kill().unwrap();
    first.wait().unwrap();

    let runs = s.run(&["runs"]).await;
    assert_eq!(runs.code, Some(0), "{}", runs.stderr);
    assert!(runs.stdout.contains("interrupted"), "{}", runs.stdout);
    let again = s.apply(&file, &[]).await;
    assert_eq!(
        again.code,
        Some(0),
        "the lock went with its holder: {}",
        again.stderr
    );
    every_launch_once(&s.stats());
    assert_eq!(s.status().await["state"], "succeeded");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_restarted_under_a_running_apply_is_waited_for() {
    // A cluster of its own: its restart must not cut off the other tests'.
    let Some(cluster) = Cluster::start(false) else {
        return;
    };
    let s = Scenario::on(Backend::V0)
        .in_database(cluster.database())
        .work(1500, 2500)
        .start()
        .await;
    let file = Scenario::example("pipeline");
    let running = s.spawn_watched(&file, &[]);
    s.wait_for_agents(3).await;
    cluster.server_stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.server_start();
    let ran = Scenario::ended(running).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stderr.contains("succeeded"), "{}", ran.stderr);
    every_launch_once(&s.stats());
    let status = s.status().await;
    assert_eq!(status["state"], "succeeded");
    assert_eq!(
        usize::try_from(s.stats().agents).unwrap(),
        status.instances().len()
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_moves_between_stores_with_export_and_import() {
    let cluster = cluster_or_skip!();
    let mut s = Scenario::on(Backend::V1).start().await;
    let file = Scenario::example("pipeline");
    assert_eq!(s.apply(&file, &[]).await.code, Some(0));
    let before = s.status().await;
    let exported = s
        .run(&["state", "export", "framework-upgrade/default"])
        .await;
    assert_eq!(exported.code, Some(0), "{}", exported.stderr);
    let export = s.write("run.json", &exported.stdout);

    let url = cluster.database();
    s.use_location(&url);
    let imported = s.run(&["state", "import", export.to_str().unwrap()]).await;
    assert_eq!(imported.code, Some(0), "{}", imported.stderr);
    assert!(
        imported
            .stderr
            .contains("imported run framework-upgrade/default"),
        "{}",
        imported.stderr
    );
    assert_eq!(
        s.status().await.instances(),
        before.instances(),
        "the same records"
    );
    let twice = s.run(&["state", "import", export.to_str().unwrap()]).await;
    assert_eq!(twice.code, Some(2), "never overwritten: {}", twice.stderr);
    assert!(
        twice.stderr.contains("runs rm framework-upgrade/default"),
        "{}",
        twice.stderr
    );

    // Applied again from the database, the moved run has nothing to launch.
    let again = s.apply(&file, &[]).await;
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(again.stderr.contains("0 to launch"), "{}", again.stderr);
    every_launch_once(&s.stats());

    // And back into a directory, from stdin.
    let back = s.run(&["state", "export"]).await;
    s.use_location(s.path("back").to_str().unwrap());
    let mut import = s.command();
    import
        .args(["state", "import", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = import.spawn().unwrap();
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(back.stdout.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(s.status().await.instances(), before.instances());
    s.shutdown().await;
}
