//! Workflow files: the format's types, loading with source spans, and validation.
//!
//! Loading goes text -> YAML value with spans (`yaml`) -> shape checked against the JSON
//! Schema (`shape`) -> typed [`Workflow`] -> whole-file checks (`checks`). Every problem found
//! at a stage is reported together; a later stage runs only when the earlier ones passed,
//! because its findings would be noise about the same mistakes.

mod api;
mod checks;
mod diagnostic;
mod duration;
mod fleet;
mod ids;
mod mcp;
mod repo;
mod settings;
mod shape;
mod source;
mod task;
pub mod template;
mod workflow;
mod yaml;

use std::path::Path;

pub use api::{
    API_VERSION_VAR, Api, ApiChoiceError, ApiSettings, ApiVersion, BACKEND_VAR, BackendKind,
    PLATFORM_AGENT_VAR, PLATFORM_URL_VAR, Platform,
};
pub use diagnostic::{Diagnostic, Located, did_you_mean};
pub use duration::{
    DURATION_FORMAT, DurationError, HumanDuration, Scale, parse_age, parse_duration,
    parse_flag_duration,
};
pub use fleet::{DetailedRepo, Discover, DiscoverFleet, Fleet, FleetRepo};
pub use ids::{FleetName, TaskId, is_identifier};
pub use mcp::{McpAuth, McpServer, McpTransport};
pub use repo::{REPO_URL_FORMAT, RepoUrl, RepoUrlError};
pub use settings::{Mode, OnlyOn, Settings, param_text};
pub use source::{MAX_FILE_BYTES, ReadError, SourceFile, Span};
pub use task::{Condition, FollowUp, Rollout, Task};
pub use workflow::{DEFAULT_CONCURRENCY, FORMAT_VERSION, Workflow};
pub use yaml::{KeyPath, Spans};

use source::Unreadable;

/// The JSON Schema of the workflow format, generated from the types above.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Workflow);
    serde_json::to_value(schema).expect("a schema is plain JSON")
}

/// A workflow file with problems, and all of them.
#[derive(Debug)]
pub struct Invalid {
    /// The file, for rendering the problems with their source lines.
    pub file: SourceFile,
    /// Every problem found, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Invalid {
    /// The problems, ready for miette to render.
    pub fn located(&self) -> impl Iterator<Item = Located> + '_ {
        self.diagnostics.iter().map(|d| d.in_file(&self.file))
    }
}

/// Why a workflow could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The file was read and has problems.
    #[error("{} has {} problem(s)", .0.file.name(), .0.diagnostics.len())]
    Invalid(Invalid),
}

/// A valid workflow, with its file and the spans of its nodes for later diagnostics.
#[derive(Debug)]
pub struct Loaded {
    /// The workflow.
    pub workflow: Workflow,
    /// Its file.
    pub file: SourceFile,
    /// Where each of its nodes is in the file.
    pub spans: Spans,
}

impl Loaded {
    /// A diagnostic about the node at `path` (its key when `key` is set, else its value).
    pub fn diagnostic(
        &self,
        path: &KeyPath,
        key: bool,
        message: String,
        label: &str,
    ) -> Diagnostic {
        let span = if key {
            self.spans.key(path)
        } else {
            self.spans.value(path)
        };
        Diagnostic::at(span, message, label)
    }

    /// The diagnostics as an [`Invalid`] file, for rendering.
    pub fn invalid(&self, diagnostics: Vec<Diagnostic>) -> Invalid {
        Invalid {
            file: self.file.clone(),
            diagnostics,
        }
    }
}

/// Validates a workflow already read (the text a run recorded, for `retry`).
pub fn load_source(file: SourceFile) -> Result<Loaded, LoadError> {
    match parse_with_spans(&file) {
        Ok((workflow, spans)) => Ok(Loaded {
            workflow,
            file,
            spans,
        }),
        Err(diagnostics) => Err(LoadError::Invalid(Invalid { file, diagnostics })),
    }
}

/// Reads and validates the workflow at `path`.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    match SourceFile::read(path)? {
        Ok(file) => load_source(file),
        Err((file, unreadable)) => {
            let diagnostic = match unreadable {
                Unreadable::TooLarge { bytes } => Diagnostic::file(format!(
                    "the file is {:.1} MiB; a workflow may be at most {} MiB",
                    f64::from(u32::try_from(bytes / 1024).unwrap_or(u32::MAX)) / 1024.0,
                    MAX_FILE_BYTES / 1024 / 1024,
                ))
                .help(
                    "split it into several workflows, or list repositories with a `discover` fleet",
                ),
                Unreadable::NotUtf8 { lossy, offset } => Diagnostic::at(
                    Span::new(
                        offset,
                        offset
                            + lossy.text()[offset..]
                                .chars()
                                .next()
                                .map_or(0, char::len_utf8),
                    ),
                    "the file is not valid UTF-8",
                    "invalid byte",
                )
                .help("save the file as UTF-8"),
            };
            Err(LoadError::Invalid(Invalid {
                file,
                diagnostics: vec![diagnostic],
            }))
        }
    }
}

/// Validates a workflow held in memory; every problem found is returned, in file order.
pub fn parse(file: &SourceFile) -> Result<Workflow, Vec<Diagnostic>> {
    parse_with_spans(file).map(|(workflow, _)| workflow)
}

/// The problems of the whole workflow (references, cycles, templates) found despite schema
/// problems, so that one `validate` reports both kinds. The keys with schema problems are
/// left out, and the workflow checked without them; problems in the task or section that
/// held them are dropped, as they may come from the removal. Nothing when a problem cannot
/// be set aside that way (a whole task, a required key).
fn checks_despite(
    document: &yaml::Document,
    shape: &[Diagnostic],
    file: &SourceFile,
) -> Vec<Diagnostic> {
    let mut pruned = document.value.clone();
    let mut damaged = Vec::new();
    for diagnostic in shape {
        let Some((span, _)) = &diagnostic.primary else {
            return Vec::new();
        };
        let Some(path) = document.spans.node_at(span.start) else {
            return Vec::new();
        };
        // A key inside a task (`tasks.ID.KEY`) or a section (`defaults.KEY`): never a whole
        // task, whose removal would make references to it look wrong.
        let in_task = path.to_string().starts_with("tasks.");
        let region = if in_task { 2 } else { 1 };
        if path.depth() <= region || !path.remove_from(&mut pruned) {
            return Vec::new();
        }
        damaged.push(document.spans.whole(&path.prefix(region)));
    }
    if !shape::check(&pruned, &document.spans, file).is_empty() {
        return Vec::new();
    }
    let Ok(workflow) = serde_yaml::from_value::<Workflow>(pruned) else {
        return Vec::new();
    };
    checks::check(&workflow, &document.spans, file)
        .into_iter()
        .filter(|d| {
            d.primary.as_ref().is_some_and(|(span, _)| {
                !damaged
                    .iter()
                    .any(|r| span.start < r.end && r.start < span.end.max(span.start + 1))
            })
        })
        .collect()
}

fn parse_with_spans(file: &SourceFile) -> Result<(Workflow, Spans), Vec<Diagnostic>> {
    if file.text().trim().is_empty() {
        return Err(vec![Diagnostic::file("the file is empty").help(
            "a workflow needs at least `version: 1`, a `name` and one task under `tasks:`",
        )]);
    }
    let document = yaml::parse(file)?;
    if document.value.is_null() {
        return Err(vec![
            Diagnostic::file("the file holds no workflow, only comments").help(
                "a workflow needs at least `version: 1`, a `name` and one task under `tasks:`",
            ),
        ]);
    }
    let sorted = |mut found: Vec<Diagnostic>| {
        found.sort_by_key(Diagnostic::offset);
        found
    };
    let mut found = shape::check(&document.value, &document.spans, file);
    if !found.is_empty() {
        let semantic = checks_despite(&document, &found, file);
        found.extend(semantic);
        return Err(sorted(found));
    }
    let workflow: Workflow = serde_yaml::from_value(document.value).map_err(|error| {
        // The shape check accepts only what deserializes; reaching this is a bug.
        vec![Diagnostic::file(format!(
            "internal error: the workflow passed the schema but not the types: {error}"
        ))]
    })?;
    let found = checks::check(&workflow, &document.spans, file);
    if !found.is_empty() {
        return Err(sorted(found));
    }
    Ok((workflow, document.spans))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(yaml: &str) -> Vec<String> {
        parse(&SourceFile::new("w.yaml", yaml))
            .unwrap_err()
            .into_iter()
            .map(|d| d.message)
            .collect()
    }

    #[test]
    fn schema_and_workflow_problems_are_reported_together_and_only_real_ones() {
        let base = "version: 1\nname: w\ntasks:\n  bump:\n    repo: https://github.com/a/b\n";
        // A bad key in one task, an unknown name in another: both at once.
        let both = messages(&format!(
            "{base}    prompt: Bump.\n    timeot: 1h\n  fix:\n    repo: https://github.com/a/b\n    prompt: \"{{{{ repo.nme }}}}\"\n"
        ));
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(both[1].contains("repo.nme"), "{both:?}");
        // A task missing its prompt cannot be set aside: the others' references to it would
        // look wrong, so only the schema problem is said.
        let missing = messages(&format!(
            "{base}  fix:\n    repo: https://github.com/a/b\n    needs: [bump]\n    prompt: Fix.\n"
        ));
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].contains("prompt"), "{missing:?}");
        // A problem in the task that held the bad key is not reported: it may come from the
        // removal (here, a task without `repo` or `fleet`).
        let same_task =
            messages("version: 1\nname: w\ntasks:\n  bump:\n    repo: 42\n    prompt: Bump.\n");
        assert_eq!(same_task.len(), 1, "{same_task:?}");
    }
}
