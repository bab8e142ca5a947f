//! Several runners on one run (`apply --join`), their state in one PostgreSQL database:
//! each instance claimed by one runner through a lease, taken over when its runner dies,
//! and the concurrency cap held across all of them. Each test says so and returns where no
//! PostgreSQL binaries exist (see `pg`).

use std::fmt::Write as _;
use std::process::Child;
use std::time::Duration;

use rand::Rng;

use crate::pg::shared;
use crate::scenario::{Backend, Ran, Scenario, every_launch_once, signal};

/// A fleet of `repos` repositories, each asked one prompt and one follow-up, `cap` at once.
fn fleet(repos: usize, cap: u32) -> String {
    let mut text = format!("version: 1\nname: shared\nconcurrency: {cap}\nfleets:\n  all:\n");
    for n in 0..repos {
        writeln!(text, "    - https://github.com/acme/svc-{n}").unwrap();
    }
    text.push_str(
        "tasks:\n  bump:\n    fleet: all\n    auto_create_pr: true\n    prompt: Bump the dependencies of {{ repo.name }}.\n    follow_ups:\n      - prompt: Add a changelog entry.\n",
    );
    text
}

/// The flags of a runner that joins the run, with a short lease so that takeovers come
/// quickly.
const JOIN: [&str; 3] = ["--join", "--lease", "2s"];

fn join(s: &Scenario, file: &std::path::Path) -> Child {
    s.spawn_watched(file, &JOIN)
}

async fn ended_ok(child: Child, who: &str) -> Ran {
    let ran = Scenario::ended(child).await;
    assert_eq!(ran.code, Some(0), "{who}: {}", ran.stderr);
    ran
}

/// Asserts what every shared run must end with: each of its `repos` instances launched
/// once and succeeded, never more than `cap` agents working at once, and every lease
/// given back (one left behind would hold a place under the cap for as long as its runner
/// renews it).
async fn kept(s: &Scenario, repos: usize, cap: u32) -> orchestrate::sim::Stats {
    let url = s.database().expect("a shared run's state is in PostgreSQL");
    let cluster = shared().expect("checked by the test");
    assert_eq!(
        cluster.sql(url, "SELECT count(*) FROM orchestrate.leases"),
        "0",
        "leases left behind: {}",
        cluster.sql(
            url,
            "SELECT string_agg(key || ' ' || runner, ', ') FROM orchestrate.leases"
        )
    );
    let stats = s.stats();
    every_launch_once(&stats);
    assert_eq!(stats.launches.len(), repos, "one agent per instance");
    assert!(
        stats.peak_working <= u64::from(cap),
        "{} agents worked at once over a cap of {cap}",
        stats.peak_working
    );
    let status = s.status().await;
    assert_eq!(status["state"], "succeeded");
    let states = status.states();
    assert_eq!(states.len(), repos);
    assert!(
        states.values().all(|state| state == "succeeded"),
        "{states:?}"
    );
    stats
}

/// Three runners share a 300-instance run with follow-ups; one of them is killed (SIGKILL)
/// at random moments and started again. No agent is launched twice, no result is lost,
/// every follow-up is sent once, the agents working at once never exceed the run's cap
/// across all runners, and no quota is exceeded.
#[tokio::test(flavor = "multi_thread")]
async fn three_runners_share_a_run_and_its_cap_while_one_is_killed_and_restarted() {
    let Some(cluster) = shared() else { return };
    let (repos, cap) = (300, 12);
    let s = Scenario::on(Backend::V1)
        .in_database(cluster.database())
        .work(300, 900)
        .start()
        .await;
    let file = s.write("shared.yaml", &fleet(repos, cap));
    let steady = [join(&s, &file), join(&s, &file)];
    let mut rng = rand::rng();
    let mut kills = 0;
    let mut victim = join(&s, &file);
    // Killed at random moments while there is work left, started again each time.
    while s.stats().agents < u64::try_from(repos).unwrap() && kills < 12 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        if victim.try_wait().unwrap().is_some() {
            break;
        }
        signal(&victim, "KILL");
        victim.wait().unwrap();
        kills += 1;
        victim = join(&s, &file);
    }
    assert!(kills > 0, "the run ended before any runner was killed");
    let [first, second] = steady;
    ended_ok(first, "first runner").await;
    ended_ok(second, "second runner").await;
    ended_ok(victim, "the restarted runner").await;

    let stats = kept(&s, repos, cap).await;
    assert!(
        stats.follow_ups.values().all(|&n| n == 1) && stats.follow_ups.len() == repos,
        "every follow-up sent once: {:?}",
        stats.follow_ups
    );
    assert_eq!(
        stats.total_quota_violations(),
        0,
        "{:?}",
        stats.quota_violations
    );
    let with_pr = s
        .status()
        .await
        .instances()
        .iter()
        .filter(|i| i["pr_url"].as_str().is_some())
        .count();
    assert_eq!(with_pr, repos, "every result kept");
    s.shutdown().await;
}

/// A lone apply and joined runners exclude each other: a run applied alone cannot be
/// joined, and a joined run cannot be applied alone; `--join` needs a database.
#[tokio::test(flavor = "multi_thread")]
async fn a_lone_apply_and_joined_runners_exclude_each_other() {
    let Some(cluster) = shared() else { return };
    let s = Scenario::on(Backend::V0)
        .in_database(cluster.database())
        .work(3000, 4000)
        .start()
        .await;
    let file = Scenario::example("pipeline");
    let joined = join(&s, &file);
    s.wait_for_agents(1).await;
    let alone = s.apply(&file, &[]).await;
    assert_ne!(alone.code, Some(0), "{}", alone.stderr);
    assert!(
        alone
            .stderr
            .contains("is being applied by another orchestrate"),
        "{}",
        alone.stderr
    );
    ended_ok(joined, "the joined runner").await;
    every_launch_once(&s.stats());

    let in_a_directory = Scenario::on(Backend::V0).start().await;
    let refused = in_a_directory.apply(&file, &JOIN).await;
    assert_ne!(refused.code, Some(0));
    assert!(
        refused
            .stderr
            .contains("several runners can share a run only through a database"),
        "{}",
        refused.stderr
    );
    in_a_directory.shutdown().await;
    s.shutdown().await;
}

/// A runner cut off from the database stops launching within its lease: while it cannot
/// reach the database, nothing more is launched once its lease is over; a second runner
/// takes its instances over and finishes the run, and when the first one reaches the
/// database again it overwrites none of what the second recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_runner_cut_off_from_the_database_stops_launching_within_its_lease() {
    let Some(cluster) = shared() else { return };
    let url = cluster.database();
    let relay = crate::pg::Relay::to(cluster).await;
    let (repos, cap) = (40, 6);
    let s = Scenario::on(Backend::V0)
        .in_database(url.clone())
        .work(1500, 2500)
        .start()
        .await;
    let file = s.write("shared.yaml", &fleet(repos, cap));
    let lease = Duration::from_secs(2);
    let mut cut_off = s.apply_command(&file, &JOIN);
    cut_off
        .env("ORCHESTRATE_STATE", relay.url(&url))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let cut_off = cut_off.spawn().unwrap();
    s.wait_for_agents(u64::from(cap)).await;
    relay.cut();
    tokio::time::sleep(lease).await;
    let launched = s.stats().launches.values().sum::<u64>();
    tokio::time::sleep(lease * 3).await;
    assert_eq!(
        s.stats().launches.values().sum::<u64>(),
        launched,
        "a runner cut off launched after its lease"
    );
    assert!(
        launched < u64::try_from(repos).unwrap(),
        "all launched before the cut"
    );

    let other = join(&s, &file);
    let other = ended_ok(other, "the runner that took over").await;
    assert!(other.stderr.contains("took over"), "{}", other.stderr);
    relay.restore();
    ended_ok(cut_off, "the runner cut off").await;

    kept(&s, repos, cap).await;
    s.shutdown().await;
}

/// A calls ceiling holds for every runner on the database together, not for each: three
/// runners polling at once, each with a ceiling under the server's quota, are never
/// throttled, where three ceilings kept apart would add up to more than it allows.
#[tokio::test(flavor = "multi_thread")]
async fn a_calls_ceiling_holds_for_all_runners_together() {
    let Some(cluster) = shared() else { return };
    let fifty_in_ten_seconds = |c: &mut orchestrate::sim::SimConfig| {
        c.calls_quota = Some("50/10s".parse().unwrap());
    };
    let s = Scenario::on(Backend::V0)
        .in_database(cluster.database())
        .work(2000, 3000)
        .config(fifty_in_ten_seconds)
        .start()
        .await;
    let file = s.write("three.yaml", &fleet(3, 3));
    // At most 5 + 40 calls in any 10 seconds across all three: under the server's 50; kept
    // apart, three ceilings would allow 135.
    let runners: Vec<Child> = ["a", "b", "c"]
        .into_iter()
        .map(|run| {
            let mut command = s.apply_command(&file, &["--run", run]);
            command
                .env("ORCHESTRATE_QUOTAS", "calls=4/s,calls_burst=5")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    for (runner, name) in runners.into_iter().zip(["a", "b", "c"]) {
        ended_ok(runner, name).await;
    }
    let stats = s.stats();
    assert_eq!(stats.total_throttled(), 0, "{:?}", stats.throttled);
    every_launch_once(&stats);
    assert_eq!(stats.launches.len(), 9);
    s.shutdown().await;
}

/// `cancel` reaches every runner of a shared run: each stops launching and ends, and
/// nothing is launched after it.
#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_every_runner_of_a_shared_run() {
    let Some(cluster) = shared() else { return };
    let s = Scenario::on(Backend::V0)
        .in_database(cluster.database())
        .work(5000, 5000)
        .start()
        .await;
    let file = s.write("shared.yaml", &fleet(12, 4));
    let runners = [join(&s, &file), join(&s, &file)];
    s.wait_for_agents(4).await;
    let cancel = s.run(&["cancel"]).await;
    assert_eq!(cancel.code, Some(0), "{}", cancel.stderr);
    for runner in runners {
        let ended = Scenario::ended(runner).await;
        assert_eq!(ended.code, Some(1), "{}", ended.stderr);
        assert!(
            ended
                .stderr
                .contains("cancel requested by another orchestrate"),
            "{}",
            ended.stderr
        );
    }
    assert_eq!(s.stats().agents, 4, "nothing launched after the cancel");
    let status = s.status().await;
    assert_eq!(status["state"], "cancelled", "{:?}", status.states());
    s.shutdown().await;
}

/// The database restarted under runners sharing a run: they wait, take their locks and
/// leases back, and finish it, every agent launched once.
#[tokio::test(flavor = "multi_thread")]
async fn runners_wait_for_a_restarted_database_and_finish_the_run() {
    // A cluster of its own: its restart must not cut off the other tests'.
    let Some(cluster) = crate::pg::Cluster::start(false) else {
        return;
    };
    let (repos, cap) = (20, 6);
    let s = Scenario::on(Backend::V1)
        .in_database(cluster.database())
        .work(1500, 2500)
        .start()
        .await;
    let file = s.write("shared.yaml", &fleet(repos, cap));
    let runners = [join(&s, &file), join(&s, &file)];
    s.wait_for_agents(u64::from(cap)).await;
    cluster.server_stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.server_start();
    for (runner, name) in runners.into_iter().zip(["first", "second"]) {
        ended_ok(runner, name).await;
    }
    kept(&s, repos, cap).await;
    s.shutdown().await;
}
