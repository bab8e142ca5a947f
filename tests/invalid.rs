//! Bad input: each fixture is one kind of mistake, and its snapshot is what the user sees.
//! None may panic, hang (the command has a timeout) or use unbounded memory (each runs under
//! a 1 GiB address-space limit).

use std::fmt::Write as _;
use std::path::Path;

use crate::support::{repo_root, text};

/// Runs `validate FILE` in `dir` under a memory limit; returns (exit code, stderr).
fn validate_limited(dir: &Path, file: &str) -> (i32, String) {
    let base = crate::support::command();
    let binary = std::path::PathBuf::from(base.get_program());
    // The same cleared environment, with `sh` in front to set the limit.
    let mut sh = assert_cmd::Command::from_std({
        let mut command = std::process::Command::new("sh");
        command
            .env_clear()
            .envs(base.get_envs().filter_map(|(k, v)| Some((k, v?))));
        command
    });
    let output = sh
        .args(["-c", "ulimit -v 1048576 && exec \"$0\" validate \"$1\""])
        .arg(binary)
        .arg(file)
        .current_dir(dir)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("runs");
    (output.status.code().unwrap_or(-1), text(&output.stderr))
}

#[test]
fn each_fixture_reports_its_problem() {
    insta::glob!("fixtures/invalid/*.yaml", |path| {
        let dir = path.parent().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let (code, stderr) = validate_limited(dir, name);
        assert_eq!(code, 2, "{name} must be rejected with exit 2:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{name} panicked:\n{stderr}");
        assert!(!stderr.contains("internal error"), "{name}:\n{stderr}");
        insta::assert_snapshot!(stderr);
    });
}

#[test]
fn there_is_a_fixture_for_every_kind_of_error() {
    let count = std::fs::read_dir(repo_root().join("tests/fixtures/invalid"))
        .unwrap()
        .count();
    assert!(count >= 25, "only {count} fixtures");
}

/// A 10 MB file is generated rather than committed; it is refused before it is parsed.
#[test]
fn a_ten_megabyte_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("version: 1\nname: huge\nfleets:\n  all:\n");
    let mut n = 0;
    while yaml.len() < 10_000_000 {
        let _ = writeln!(yaml, "    - https://github.com/acme/service-{n:07}");
        n += 1;
    }
    std::fs::write(dir.path().join("huge.yaml"), yaml).unwrap();
    let (code, stderr) = validate_limited(dir.path(), "huge.yaml");
    assert_eq!(code, 2);
    insta::assert_snapshot!(stderr);
}

/// An environment value over the API's 4096 bytes is refused with its length (generated: a
/// snapshot of a 4 kB line reads badly).
#[test]
fn an_env_value_over_4096_bytes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "version: 1\nname: huge-env\napi:\n  version: v1\ntasks:\n  bump:\n    repo: https://github.com/acme/api\n    prompt: Bump.\n    env_vars:\n      OK: {}\n      HUGE: {}\n",
        "x".repeat(4096),
        "x".repeat(4097)
    );
    std::fs::write(dir.path().join("huge-env.yaml"), yaml).unwrap();
    let (code, stderr) = validate_limited(dir.path(), "huge-env.yaml");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("huge-env.yaml:11:13: the value of `HUGE` is 4097 bytes; the API"),
        "{stderr}"
    );
    assert!(stderr.contains("1 problem"), "{stderr}");
}

/// Every problem of a file is reported in one run, not one per run.
#[test]
fn all_problems_of_a_file_come_at_once() {
    let (code, stderr) = validate_limited(
        &repo_root().join("tests/fixtures/invalid"),
        "unknown-keys.yaml",
    );
    assert_eq!(code, 2);
    for key in ["concurency", "auto_create_pull_request", "promt", "when"] {
        assert!(
            stderr.contains(&format!("unknown key `{key}`")),
            "{key} missing:\n{stderr}"
        );
    }
    assert!(stderr.contains("4 problems"), "{stderr}");
}
