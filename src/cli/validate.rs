//! `orchestrate validate FILE...`.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::workflow::load_and_plan;
use super::{Error, Exit, Output};
use crate::plan::Options;
use crate::spec::{Invalid, LoadError};

/// `validate -o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Each problem with its source lines, for people.
    Text,
    /// One JSON document: every file, valid or not, with its problems.
    Json,
    /// `::error file=,line=,col=::` workflow commands, which GitHub Actions shows on the
    /// lines of the pull request, as well as the text.
    Github,
}

impl Format {
    /// The format asked for, else `github` under GitHub Actions, else `text`.
    fn chosen(asked: Option<Format>) -> Format {
        asked.unwrap_or_else(|| {
            if std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true") {
                Format::Github
            } else {
                Format::Text
            }
        })
    }
}

/// What `validate -o json` prints for one file (a stable format: add fields, never remove).
#[derive(Debug, Serialize)]
struct FileReport {
    file: String,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tasks: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instances: Option<usize>,
    problems: Vec<Problem>,
}

/// One problem of a file.
#[derive(Debug, Serialize)]
struct Problem {
    line: Option<usize>,
    column: Option<usize>,
    message: String,
    help: Option<String>,
}

impl Problem {
    fn of(invalid: &Invalid) -> Vec<Problem> {
        invalid
            .located()
            .map(|located| Problem {
                line: located.location().map(|(line, _)| line),
                column: located.location().map(|(_, column)| column),
                message: located.message().to_owned(),
                help: located.hint().map(str::to_owned),
            })
            .collect()
    }
}

/// Validates each file and plans it (a workflow that cannot be planned is not valid).
pub fn run(out: &Output, files: &[PathBuf], asked: Option<Format>) -> Result<Exit, Error> {
    let format = Format::chosen(asked);
    let mut errors = Vec::new();
    let mut reports = Vec::new();
    for file in files {
        let name = file.display().to_string();
        match load_and_plan(file, &Options::default()) {
            Ok((loaded, plan)) => {
                let tasks = loaded.workflow.tasks.len();
                let instances = plan.instances.len();
                let deferred = match plan.deferred() {
                    0 => String::new(),
                    n => format!(", {n} on discover fleets"),
                };
                if format != Format::Json {
                    out.status(&format!(
                        "{name}: valid ({tasks} task{}, {instances} instance{}{deferred})",
                        plural(tasks),
                        plural(instances),
                    ));
                }
                reports.push(FileReport {
                    file: name,
                    valid: true,
                    tasks: Some(tasks),
                    instances: Some(instances),
                    problems: Vec::new(),
                });
            }
            // The valid ones are said first, then the problems of the others.
            Err(error) => {
                reports.push(FileReport {
                    file: name,
                    valid: false,
                    tasks: None,
                    instances: None,
                    problems: problems(&error),
                });
                errors.push(error);
            }
        }
    }
    match format {
        Format::Json => {
            out.stdout(&format!(
                "{}\n",
                serde_json::to_string_pretty(&reports).expect("plain data")
            ));
            return Ok(if errors.is_empty() {
                Exit::Success
            } else {
                Exit::Invalid
            });
        }
        Format::Github => {
            for report in &reports {
                for problem in &report.problems {
                    out.stdout(&annotation(&report.file, problem));
                }
            }
        }
        Format::Text => {}
    }
    match errors.len() {
        0 => Ok(Exit::Success),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Many(errors)),
    }
}

fn problems(error: &Error) -> Vec<Problem> {
    match error {
        Error::Invalid(invalid) | Error::Load(LoadError::Invalid(invalid)) => Problem::of(invalid),
        other => vec![Problem {
            line: None,
            column: None,
            message: other.to_string(),
            help: None,
        }],
    }
}

/// A GitHub Actions `::error` workflow command; `%`, CR, LF (and `,` `:` in properties) are
/// escaped as the runner's toolkit does, so a message cannot end the command early.
fn annotation(file: &str, problem: &Problem) -> String {
    let data = |text: &str| {
        text.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let property = |text: &str| data(text).replace(':', "%3A").replace(',', "%2C");
    let mut properties = format!("file={}", property(file));
    if let (Some(line), Some(column)) = (problem.line, problem.column) {
        let _ = write!(properties, ",line={line},col={column}");
    }
    let message = match &problem.help {
        Some(help) => format!("{}\n{help}", problem.message),
        None => problem.message.clone(),
    };
    format!("::error {properties}::{}\n", data(&message))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_escape_what_would_end_them() {
        let problem = Problem {
            line: Some(4),
            column: Some(12),
            message: "`90%` is not a duration:\nbad".into(),
            help: Some("write 90m".into()),
        };
        assert_eq!(
            annotation("dir:a,b.yaml", &problem),
            "::error file=dir%3Aa%2Cb.yaml,line=4,col=12::`90%25` is not a duration:%0Abad%0Awrite 90m\n"
        );
    }
}
