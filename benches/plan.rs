//! validate + plan of a generated 10,000-instance workflow (2,000 repositories x 5 tasks,
//! each task needing the previous one on the same repository).
//!
//! Run: `cargo bench --bench plan`. Goal (DESIGN.md section 6): under 0.5 s and 150 MB peak
//! RSS. Reports the library's time in process, then the real binary's wall time and peak RSS
//! (through `/usr/bin/time`, when the machine has it).

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use orchestrate::plan::{Options, Plan};
use orchestrate::spec;

const REPOS: usize = 2_000;
const TASKS: usize = 5;
const RUNS: usize = 10;

fn workflow() -> String {
    let mut yaml = String::from("version: 1\nname: bench\nconcurrency: 50\nfleets:\n  all:\n");
    for repo in 0..REPOS {
        let _ = writeln!(yaml, "    - https://github.com/acme/service-{repo:04}");
    }
    yaml.push_str("tasks:\n");
    for task in 0..TASKS {
        let _ = writeln!(yaml, "  step-{task}:\n    fleet: all");
        if task > 0 {
            let _ = writeln!(yaml, "    needs: [step-{}]", task - 1);
        }
        let _ = writeln!(
            yaml,
            "    prompt: |\n      Step {task} on {{{{ repo.name }}}} ({{{{ repo.url }}}}) for run {{{{ run.key }}}}."
        );
        if task > 0 {
            let _ = writeln!(
                yaml,
                "      The previous step is on {{{{ needs[\"step-{}\"].branch }}}}.",
                task - 1
            );
        }
        yaml.push_str("    follow_ups:\n      - prompt: Open the pull request.\n        if: \"not agent.pr_url\"\n");
    }
    yaml
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.yaml");
    let yaml = workflow();
    std::fs::write(&path, &yaml).expect("write workflow");
    println!(
        "workflow: {REPOS} repositories x {TASKS} tasks, {} KiB",
        yaml.len() / 1024
    );

    let mut times = Vec::new();
    let mut instances = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let loaded = spec::load(&path).expect("valid");
        let plan = Plan::build(&loaded.workflow, &Options::default()).expect("plans");
        times.push(start.elapsed());
        instances = plan.instances.len();
    }
    assert_eq!(instances, REPOS * TASKS);
    println!(
        "in process, validate + plan: median {:.1} ms, min {:.1} ms over {RUNS} runs ({instances} instances)",
        median(times.clone()).as_secs_f64() * 1e3,
        times.iter().min().unwrap().as_secs_f64() * 1e3,
    );

    let binary = env!("CARGO_BIN_EXE_orchestrate");
    for args in [&["validate"][..], &["plan", "--format", "json"][..]] {
        let mut walls = Vec::new();
        let mut peak_kib = 0u64;
        for _ in 0..RUNS {
            let start = Instant::now();
            let output = if std::path::Path::new("/usr/bin/time").exists() {
                Command::new("/usr/bin/time")
                    .args(["-f", "%M"])
                    .arg(binary)
                    .args(args)
                    .arg(&path)
                    .output()
            } else {
                Command::new(binary).args(args).arg(&path).output()
            }
            .expect("runs");
            walls.push(start.elapsed());
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let stderr = String::from_utf8_lossy(&output.stderr);
            if let Some(kib) = stderr
                .lines()
                .last()
                .and_then(|l| l.trim().parse::<u64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
        }
        println!(
            "binary, `orchestrate {}`: median wall {:.1} ms, peak RSS {:.1} MiB",
            args.join(" "),
            median(walls).as_secs_f64() * 1e3,
            f64::from(u32::try_from(peak_kib).unwrap_or(u32::MAX)) / 1024.0,
        );
    }
}
