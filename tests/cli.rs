//! The command line itself: formats, several files, usage errors and exit codes.

use crate::support::{orchestrate, text};

#[test]
fn plan_as_dot_and_mermaid() {
    for format in ["dot", "mermaid"] {
        let output = orchestrate()
            .args([
                "plan",
                "--format",
                format,
                "examples/workflows/pipeline.yaml",
            ])
            .output()
            .unwrap();
        assert!(output.status.success());
        insta::assert_snapshot!(format!("pipeline_{format}"), text(&output.stdout));
    }
}

#[test]
fn validate_reports_each_file_and_fails_if_any_is_invalid() {
    let output = orchestrate()
        .args([
            "validate",
            "examples/workflows/single-repo.yaml",
            "tests/fixtures/invalid/cycle.yaml",
            "examples/workflows/pipeline.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("single-repo.yaml: valid (1 task, 1 instance)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("pipeline.yaml: valid (3 tasks, 7 instances)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cycle.yaml:10:13: tasks depend on each other in a cycle"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let output = orchestrate()
        .args(["validate", "nope.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!(text(&output.stderr), @"error: cannot read nope.yaml: No such file or directory (os error 2)");
}

#[test]
fn run_key_can_be_given_and_is_checked() {
    let output = orchestrate()
        .args([
            "plan",
            "--run",
            "2026-01-01",
            "--format",
            "json",
            "examples/workflows/dependency-sweep.yaml",
        ])
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["run"], "dependency-sweep/2026-01-01");
    assert_eq!(plan["instances"][0]["branch"], "deps/2026-01-01/api");

    let output = orchestrate()
        .args([
            "plan",
            "--run",
            "a/b",
            "examples/workflows/nightly-sweep.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).starts_with("error: --run: run key `a/b`"));
}

#[test]
fn global_flags_go_before_or_after_the_command() {
    for args in [
        [
            "--color",
            "never",
            "validate",
            "examples/workflows/single-repo.yaml",
        ],
        [
            "validate",
            "examples/workflows/single-repo.yaml",
            "--color",
            "never",
        ],
    ] {
        orchestrate().args(args).assert().success();
    }
}

#[test]
fn usage_errors_exit_2() {
    let output = orchestrate().args(["plan"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = orchestrate()
        .args(["plan", "--format", "yaml", "x.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn help_lists_the_commands() {
    // The help shows the environment's values: the state directory's is the test's own.
    let output = orchestrate()
        .env_remove("ORCHESTRATE_STATE")
        .arg("--help")
        .output()
        .unwrap();
    insta::assert_snapshot!(text(&output.stdout));
}

/// The file names of `examples/github-actions/`.
fn github_actions_examples() -> Vec<String> {
    let dir = crate::support::repo_root().join("examples/github-actions");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            std::path::Path::new(n)
                .extension()
                .is_some_and(|e| e == "yml")
        })
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    names
}

/// The GitHub Actions examples are valid YAML, and every `orchestrate` command line in them
/// parses (checked with `--help` appended, which clap answers only for valid commands).
#[test]
fn github_actions_examples_use_real_commands() {
    let dir = crate::support::repo_root().join("examples/github-actions");
    for name in &github_actions_examples() {
        let source = std::fs::read_to_string(dir.join(name)).unwrap();
        let yaml: serde_yaml::Value = serde_yaml::from_str(&source).unwrap();
        assert!(yaml["jobs"].is_mapping(), "{name}");
        for line in source
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("orchestrate "))
        {
            assert_parses(line, name);
        }
    }
}

#[test]
fn state_goes_before_or_after_the_command_and_only_where_it_is_used() {
    let dir = crate::support::fresh_state();
    let dir = dir.to_str().unwrap();
    for args in [
        vec!["--state", dir, "status"],
        vec!["status", "--state", dir],
    ] {
        let output = orchestrate()
            .env_remove("ORCHESTRATE_STATE")
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(&format!("no state in {dir}")),
            "{args:?}: {stderr}"
        );
    }
    // The command's own flag wins over one before it, which wins over the environment.
    let output = orchestrate()
        .env("ORCHESTRATE_STATE", "/from/env")
        .args(["--state", "/before", "runs", "--state", dir])
        .output()
        .unwrap();
    assert!(text(&output.stderr).contains(&format!("no state in {dir}")));
    let output = orchestrate()
        .env("ORCHESTRATE_STATE", "/from/env")
        .args(["runs"])
        .output()
        .unwrap();
    assert!(text(&output.stderr).contains("no state in /from/env"));
    for command in ["schema", "sim", "validate", "me"] {
        let output = orchestrate()
            .args([command, "--state", dir, "--help"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{command}");
        assert!(
            text(&output.stderr).contains("unexpected argument '--state'"),
            "{command}: {}",
            text(&output.stderr)
        );
    }
}

#[test]
fn completions_and_the_man_page_cover_every_command() {
    for (shell, marker) in [
        ("bash", "_orchestrate()"),
        ("zsh", "#compdef orchestrate"),
        ("fish", "complete -c orchestrate"),
    ] {
        let output = orchestrate().args(["completions", shell]).output().unwrap();
        assert!(output.status.success(), "{shell}");
        let script = text(&output.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("detailed-exitcode"), "{shell}");
    }
    let output = orchestrate().arg("man").output().unwrap();
    let page = text(&output.stdout);
    assert!(page.contains(".TH orchestrate 1"), "{page}");
    for needed in ["CURSOR_API_KEY", "Exit codes:", "retry", "GLOBAL OPTIONS"] {
        assert!(page.contains(needed), "the man page lacks {needed}");
    }
}

#[test]
fn one_output_flag_everywhere_and_the_old_spellings_still_work() {
    let plan = |flag: &str| {
        let output = orchestrate()
            .args(["plan", flag, "json", "examples/workflows/pipeline.yaml"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{flag}: {}", text(&output.stderr));
        text(&output.stdout)
    };
    assert_eq!(plan("-o"), plan("--format"));
    assert_eq!(plan("--output"), plan("--format"));
    for args in [
        ["status", "-o", "json"],
        ["status", "--json", ""],
        ["runs", "--output", "json"],
        ["report", "-o", "junit"],
    ] {
        let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
        let output = orchestrate().args(&args).output().unwrap();
        // No state yet: the flags parse, and the command says there is nothing to show.
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            text(&output.stderr).contains("no state in"),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
    let help = text(
        &orchestrate()
            .args(["status", "--help"])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(help.contains("-o, --output <FORMAT>"), "{help}");
    assert!(
        !help.contains("--json"),
        "the old spelling is hidden: {help}"
    );
}

#[test]
fn validate_speaks_json_and_github_annotations() {
    let files = [
        "examples/workflows/single-repo.yaml",
        "tests/fixtures/invalid/bare-number-duration.yaml",
    ];
    let output = orchestrate()
        .args(["validate", "-o", "json"])
        .args(files)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(text(&output.stderr), "", "JSON alone: nothing on stderr");
    insta::assert_snapshot!("validate_json", text(&output.stdout));
    // Under GitHub Actions the annotations come by themselves, with the text on stderr.
    let output = orchestrate()
        .env("GITHUB_ACTIONS", "true")
        .arg("validate")
        .args(files)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!(text(&output.stdout), @"::error file=tests/fixtures/invalid/bare-number-duration.yaml,line=4,col=12::`defaults.timeout` is a duration: `10` needs a unit%0Awrite `10m` for minutes, or `10s`, `10h`");
    assert!(text(&output.stderr).contains("help: write `10m` for minutes"));
}

#[test]
fn plan_detailed_exitcode_says_whether_apply_would_change_anything() {
    let output = orchestrate()
        .args([
            "plan",
            "--detailed-exitcode",
            "examples/workflows/single-repo.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "a new run launches: changes");
    // An error is 1, so that 2 means only "changes".
    let output = orchestrate()
        .args([
            "plan",
            "--detailed-exitcode",
            "tests/fixtures/invalid/cycle.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn an_age_without_a_unit_suggests_days() {
    let output = orchestrate()
        .args(["runs", "prune", "--older-than", "30"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    insta::assert_snapshot!(text(&output.stderr).lines().next().unwrap_or_default(), @"error: invalid value '30' for '--older-than <DURATION>': `30` is not a duration: a number needs a unit; write `30d` for days, or `30h`");
}

/// The examples call the composite action with inputs it has (its required ones given) and
/// read outputs it has; its own `orchestrate` lines parse.
#[test]
fn github_actions_examples_use_the_action_as_it_is() {
    let root = crate::support::repo_root();
    let action: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("action.yml")).unwrap()).unwrap();
    assert_eq!(action["runs"]["using"], "composite");
    let names = |key: &str| -> Vec<String> {
        action[key]
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect()
    };
    let (inputs, outputs) = (names("inputs"), names("outputs"));
    let required: Vec<&String> = inputs
        .iter()
        .filter(|i| action["inputs"][i.as_str()]["required"] == true)
        .collect();
    assert!(required.iter().any(|r| *r == "workflow"));
    let mut uses = 0;
    for name in &github_actions_examples() {
        let source =
            std::fs::read_to_string(root.join("examples/github-actions").join(name)).unwrap();
        let yaml: serde_yaml::Value = serde_yaml::from_str(&source).unwrap();
        for (_, job) in yaml["jobs"].as_mapping().unwrap() {
            for step in job["steps"].as_sequence().unwrap() {
                let Some(used) = step["uses"].as_str() else {
                    continue;
                };
                if !used.contains("/orchestrate@") {
                    continue;
                }
                uses += 1;
                let with = step["with"].as_mapping().unwrap();
                let given: Vec<&str> = with.keys().map(|k| k.as_str().unwrap()).collect();
                for key in &given {
                    assert!(inputs.iter().any(|i| i == key), "{name}: no input `{key}`");
                }
                for key in &required {
                    assert!(given.contains(&key.as_str()), "{name}: `{key}` is required");
                }
                let id = step["id"].as_str().unwrap();
                let prefix = format!("steps.{id}.outputs.");
                for (at, _) in source.match_indices(&prefix) {
                    let rest = &source[at + prefix.len()..];
                    let output: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
                        .collect();
                    assert!(outputs.contains(&output), "{name}: no output `{output}`");
                }
            }
        }
    }
    assert_eq!(
        uses,
        github_actions_examples().len(),
        "each example uses the action"
    );
    let script = std::fs::read_to_string(root.join("action.yml")).unwrap();
    for line in script
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("orchestrate "))
    {
        assert_parses(line, "action.yml");
    }
}

/// The README's workflows are valid (the ones that start with `version:`), and each
/// `orchestrate ...` line of its shell blocks parses: the documentation cannot rot unseen.
#[test]
fn the_readme_workflows_validate_and_its_commands_parse() {
    let readme = std::fs::read_to_string(crate::support::repo_root().join("README.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut workflows, mut commands) = (0, 0);
    for block in readme.split("```").skip(1).step_by(2) {
        let (lang, body) = block.split_once('\n').unwrap_or((block, ""));
        match lang.trim() {
            "yaml" if body.lines().any(|l| l.starts_with("version: 1")) => {
                workflows += 1;
                let file = dir.path().join(format!("readme-{workflows}.yaml"));
                std::fs::write(&file, body).unwrap();
                let output = orchestrate().arg("validate").arg(&file).output().unwrap();
                assert!(
                    output.status.success(),
                    "README workflow {workflows}:\n{body}\n{}",
                    text(&output.stderr)
                );
            }
            "sh" => {
                for line in body
                    .lines()
                    .map(str::trim)
                    .filter(|l| l.starts_with("orchestrate "))
                {
                    commands += 1;
                    assert_parses(line, "README");
                }
            }
            _ => {}
        }
    }
    assert!(
        workflows >= 2 && commands >= 6,
        "{workflows} workflows, {commands} commands"
    );
}

/// Global options are not offered where they do nothing (`schema`, `completions`, `man`),
/// yet still accepted there, so a script that passes `-q` everywhere keeps working.
#[test]
fn global_options_are_not_offered_where_they_do_nothing() {
    for command in ["schema", "completions", "man"] {
        let help = text(
            &orchestrate()
                .args([command, "--help"])
                .output()
                .unwrap()
                .stdout,
        );
        for option in ["--color", "--verbose", "--quiet", "--state"] {
            assert!(
                !help.contains(option),
                "`{command} --help` offers {option}:\n{help}"
            );
        }
    }
    let plain = orchestrate().arg("schema").output().unwrap();
    let flagged = orchestrate()
        .args(["schema", "-q", "--color", "always"])
        .output()
        .unwrap();
    assert!(flagged.status.success());
    assert_eq!(plain.stdout, flagged.stdout);
    // Where they do something, they are offered.
    let help = text(
        &orchestrate()
            .args(["plan", "--help"])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(
        help.contains("Global options:") && help.contains("--color <WHEN>"),
        "{help}"
    );
}

/// Checks that the `orchestrate ...` command line `line` (from `whence`) parses: its words
/// up to the first variable, quote, redirection or comment, with `--help` appended, which
/// clap answers only for a valid command. A flag whose value was cut is checked without it.
fn assert_parses(line: &str, whence: &str) {
    let mut words: Vec<&str> = line
        .split_whitespace()
        .skip(1)
        .take_while(|w| !w.starts_with(['$', '"', '#']) && !matches!(*w, "\\" | ">" | "||"))
        .collect();
    if words.last().is_some_and(|w| w.starts_with("--")) {
        words.pop();
    }
    let output = orchestrate().args(&words).arg("--help").output().unwrap();
    assert!(
        output.status.success(),
        "{whence}: `{line}`: {}",
        text(&output.stderr)
    );
}
