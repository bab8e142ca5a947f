//! A plan as text, JSON, Graphviz dot or Mermaid.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Action, AgentOptions, Change, Instance, Plan, RelaunchReason, Target};

/// How `plan` prints a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// For people: waves, instances, prompts.
    #[default]
    Text,
    /// For scripts: the stable JSON described in the README.
    Json,
    /// Graphviz dot.
    Dot,
    /// A Mermaid flowchart (renders in GitHub Markdown).
    Mermaid,
}

impl Plan {
    /// The plan in `format`.
    pub fn render(&self, format: Format) -> String {
        self.render_colored(format, false)
    }

    /// The plan in `format`; text with `+` green, `~` yellow and diffs coloured if `color`.
    pub fn render_colored(&self, format: Format, color: bool) -> String {
        match format {
            Format::Text => self.text(Paint(color)),
            Format::Json => {
                let mut json = serde_json::to_string_pretty(&self.json()).expect("plain data");
                json.push('\n');
                json
            }
            Format::Dot => self.dot(),
            Format::Mermaid => self.mermaid(),
        }
    }

    /// Instances `apply` would launch, relaunch, adopt or continue: all but those kept.
    pub fn changes(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| i.action != Action::Keep)
            .count()
    }

    fn counts(&self) -> String {
        let mut counts = Vec::new();
        for action in Action::ALL {
            let n = self.instances.iter().filter(|i| i.action == action).count();
            if n > 0 {
                counts.push(format!("{n} to {}", action.as_str()));
            }
        }
        counts.join(", ")
    }

    /// Tasks by action, in plan order: what a long plan comes to, before its detail.
    fn summary(&self) -> String {
        let actions: Vec<Action> = Action::ALL
            .into_iter()
            .filter(|a| self.instances.iter().any(|i| i.action == *a))
            .collect();
        let mut tasks: Vec<&str> = Vec::new();
        for instance in &self.instances {
            if !tasks.contains(&instance.task.as_str()) {
                tasks.push(instance.task.as_str());
            }
        }
        let width = tasks.iter().map(|t| t.len()).chain([4]).max().unwrap_or(4);
        let mut out = format!("  {:width$}", "TASK");
        for action in &actions {
            let _ = write!(out, "  {:>8}", action.as_str().to_uppercase());
        }
        out.push('\n');
        for task in tasks {
            let _ = write!(out, "  {task:width$}");
            for action in &actions {
                let n = self
                    .instances
                    .iter()
                    .filter(|i| i.task.as_str() == task && i.action == *action)
                    .count();
                let shown = if n == 0 {
                    "-".to_owned()
                } else {
                    n.to_string()
                };
                let _ = write!(out, "  {shown:>8}");
            }
            out.push('\n');
        }
        out
    }

    fn text(&self, paint: Paint) -> String {
        let mut out = String::new();
        let waves = self.waves.len();
        let _ = writeln!(
            out,
            "Plan for run {} ({} instances in {waves} wave{}, at most {} agents at once, {})",
            self.run,
            self.instances.len(),
            if waves == 1 { "" } else { "s" },
            self.concurrency,
            self.api,
        );
        if let Some(description) = &self.description {
            let _ = writeln!(out, "{}", description.trim());
        }
        if self.instances.len() > 1 {
            let _ = write!(out, "\n{}", self.summary());
        }
        for (wave, members) in self.waves.iter().enumerate() {
            let _ = writeln!(out, "\nwave {}", wave + 1);
            for &index in members {
                self.text_instance(&mut out, &self.instances[index], paint);
            }
        }
        let deferred = self.deferred();
        if deferred > 0 {
            let _ = writeln!(
                out,
                "\n{deferred} instance(s) run on a discover fleet: one per matching repository, resolved at apply time."
            );
        }
        let _ = writeln!(out, "\n{}.", self.counts());
        out
    }

    fn text_instance(&self, out: &mut String, instance: &Instance, paint: Paint) {
        let (sign, tone) = match instance.action {
            Action::Launch => ('+', GREEN),
            Action::Relaunch => ('~', YELLOW),
            Action::Continue => ('>', BLUE),
            Action::Keep => ('=', DIM),
            Action::Adopt => ('<', CYAN),
        };
        let sign = paint.apply(tone, &sign.to_string());
        match instance.relaunch {
            Some(reason) => {
                let why = match reason {
                    RelaunchReason::SpecChanged if !instance.changes.is_empty() => {
                        let fields: Vec<&str> =
                            instance.changes.iter().map(|c| c.field.as_str()).collect();
                        format!("its {} changed", fields.join(", "))
                    }
                    RelaunchReason::NeedRelaunched => {
                        let needs: Vec<&str> = instance
                            .needs
                            .iter()
                            .filter(|&&n| self.instances[n].action == Action::Relaunch)
                            .map(|&n| self.instances[n].key.as_str())
                            .collect();
                        match needs.as_slice() {
                            [one] => format!("its need {one} is relaunched"),
                            many => format!("its needs {} are relaunched", many.join(", ")),
                        }
                    }
                    other => other.to_string(),
                };
                // The old agent's work stays where it is: say what the new one costs.
                let new = if instance.target.auto_create_pr {
                    "a new agent and a new PR"
                } else {
                    "a new agent"
                };
                let _ = writeln!(out, "  {sign} {} (relaunch: {why}; {new})", instance.key);
            }
            None => {
                let _ = writeln!(
                    out,
                    "  {sign} {} ({})",
                    instance.key,
                    instance.action.as_str()
                );
            }
        }
        for change in &instance.changes {
            if !is_text_field(&change.field) {
                let _ = writeln!(
                    out,
                    "      changed: {}: {} -> {}",
                    change.field,
                    paint.apply(RED, &shown(&change.before)),
                    paint.apply(GREEN, &shown(&change.after))
                );
            }
        }
        let repo = match (&instance.repo, &instance.discover) {
            (Some(repo), _) => repo.to_string(),
            (None, Some(d)) => format!(
                "every repository of {} matching `{}` (resolved at apply time)",
                d.owner,
                d.name.as_deref().unwrap_or("*")
            ),
            (None, None) => "?".to_owned(),
        };
        let git_ref = instance.git_ref.as_deref().unwrap_or("default branch");
        let _ = writeln!(out, "      repo:    {repo} @ {git_ref}");
        if instance.branch.is_empty() {
            let _ = writeln!(out, "      branch:  named by the agent");
        } else {
            let _ = writeln!(out, "      branch:  {}", instance.branch);
        }
        if let Some(options) = options_text(&instance.options) {
            let _ = writeln!(out, "      agent:   {options}");
        }
        let mut target = Vec::new();
        if instance.target.auto_create_pr {
            target.push("opens a PR");
            if instance.target.open_as_cursor_github_app {
                target.push("as the Cursor GitHub App");
            }
            if instance.target.skip_reviewer_request {
                target.push("without reviewer request");
            }
        } else {
            target.push("no PR");
        }
        if let Some(model) = &instance.model {
            let _ = writeln!(out, "      model:   {model}");
        }
        let _ = writeln!(out, "      target:  {}", target.join(", "));
        if let Some(timeout) = instance.timeout {
            let _ = writeln!(
                out,
                "      limits:  timeout {}, {} retr{}",
                humantime::format_duration(timeout),
                instance.retries,
                if instance.retries == 1 { "y" } else { "ies" }
            );
        } else if instance.retries > 0 {
            let _ = writeln!(out, "      limits:  {} retries", instance.retries);
        }
        if !instance.canaries.is_empty() {
            let names: Vec<&str> = instance
                .canaries
                .iter()
                .map(|&n| self.instances[n].key.as_str())
                .collect();
            let _ = writeln!(
                out,
                "      rollout: after its canaries succeed: {}",
                names.join(", ")
            );
        }
        let needs: Vec<usize> = instance.task_needs().collect();
        if !needs.is_empty() {
            let names: Vec<String> = needs
                .iter()
                .map(|&n| self.instances[n].key.to_string())
                .collect();
            let shown = if names.len() > 4 {
                format!("{}, ... ({} in all)", names[..3].join(", "), names.len())
            } else {
                names.join(", ")
            };
            let _ = writeln!(
                out,
                "      needs:   {shown} (if {})",
                instance.condition.as_str()
            );
        }
        let changed = |field: &str| instance.changes.iter().find(|c| c.field == field);
        if let Some(change) = changed("prompt") {
            let _ = writeln!(out, "      prompt (changed):");
            text_diff(out, change, paint);
        } else {
            let _ = writeln!(out, "      prompt:");
            for line in instance.prompt.trim_end().lines() {
                let _ = writeln!(out, "        | {line}");
            }
        }
        for (n, follow_up) in instance.follow_ups.iter().enumerate() {
            let when = follow_up
                .condition
                .as_deref()
                .map(|c| format!(" (if {c})"))
                .unwrap_or_default();
            let field = format!("follow-up {}", n + 1);
            if let Some(change) = changed(&field) {
                let _ = writeln!(out, "      {field} (changed):");
                text_diff(out, change, paint);
                continue;
            }
            let _ = writeln!(out, "      {field}{when}:");
            for line in follow_up.prompt.trim_end().lines() {
                let _ = writeln!(out, "        | {line}");
            }
        }
        // A follow-up the recorded run had and the workflow no longer has.
        for change in &instance.changes {
            if change.after.is_empty() && change.field.starts_with("follow-up ") {
                let _ = writeln!(out, "      {} (removed):", change.field);
                text_diff(out, change, paint);
            }
        }
    }

    fn json(&self) -> JsonPlan<'_> {
        JsonPlan {
            workflow: &self.workflow,
            api: self.api.as_str(),
            run: self.run.as_str(),
            run_key: &self.run_context.key,
            concurrency: self.concurrency,
            instances: self
                .instances
                .iter()
                .map(|i| JsonInstance {
                    key: i.key.as_str(),
                    task: i.task.as_str(),
                    repo: i.repo.as_ref().map(ToString::to_string),
                    discover: i.discover.as_ref().map(|d| JsonDiscover {
                        owner: &d.owner,
                        name: d.name.as_deref().unwrap_or("*"),
                    }),
                    git_ref: i.git_ref.as_deref(),
                    branch: (!i.branch.is_empty()).then_some(i.branch.as_str()),
                    options: JsonOptions::of(&i.options),
                    model: i.model.as_deref(),
                    target: i.target,
                    prompt: &i.prompt,
                    follow_ups: i
                        .follow_ups
                        .iter()
                        .map(|f| JsonFollowUp {
                            prompt: &f.prompt,
                            condition: f.condition.as_deref(),
                        })
                        .collect(),
                    needs: i
                        .needs
                        .iter()
                        .map(|&n| self.instances[n].key.as_str())
                        .collect(),
                    canaries: i
                        .canaries
                        .iter()
                        .map(|&n| self.instances[n].key.as_str())
                        .collect(),
                    condition: i.condition.as_str(),
                    timeout_seconds: i.timeout.map(|t| t.as_secs()),
                    retries: i.retries,
                    wave: i.wave,
                    action: i.action,
                    relaunch: i.relaunch,
                    changes: &i.changes,
                })
                .collect(),
            waves: self
                .waves
                .iter()
                .map(|wave| {
                    wave.iter()
                        .map(|&n| self.instances[n].key.as_str())
                        .collect()
                })
                .collect(),
        }
    }

    fn dot(&self) -> String {
        let mut out = String::from(
            "digraph plan {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n",
        );
        let _ = writeln!(out, "  label={};", quote(&[self.run.as_str()]));
        for (wave, members) in self.waves.iter().enumerate() {
            let _ = writeln!(out, "  subgraph wave_{wave} {{\n    rank=same;");
            for &index in members {
                let instance = &self.instances[index];
                let _ = writeln!(
                    out,
                    "    n{index} [label={}];",
                    quote(&[instance.key.as_str(), instance.action.as_str()])
                );
            }
            out.push_str("  }\n");
        }
        for (index, instance) in self.instances.iter().enumerate() {
            for &need in &instance.needs {
                let _ = writeln!(out, "  n{need} -> n{index};");
            }
        }
        out.push_str("}\n");
        out
    }

    fn mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        for (index, instance) in self.instances.iter().enumerate() {
            let label = instance.key.as_str().replace('"', "#quot;");
            let _ = writeln!(out, "  n{index}[\"{label}\"]");
        }
        for (index, instance) in self.instances.iter().enumerate() {
            for &need in &instance.needs {
                let _ = writeln!(out, "  n{need} --> n{index}");
            }
        }
        out
    }
}

/// A Graphviz string literal of `lines`, one per line of the label.
fn quote(lines: &[&str]) -> String {
    let escaped: Vec<String> = lines
        .iter()
        .map(|line| line.replace('\\', "\\\\").replace('"', "\\\""))
        .collect();
    format!("\"{}\"", escaped.join("\\n"))
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    workflow: &'a str,
    api: &'static str,
    run: &'a str,
    run_key: &'a str,
    concurrency: u32,
    instances: Vec<JsonInstance<'a>>,
    waves: Vec<Vec<&'a str>>,
}

#[derive(Serialize)]
struct JsonInstance<'a> {
    key: &'a str,
    task: &'a str,
    repo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    discover: Option<JsonDiscover<'a>>,
    #[serde(rename = "ref")]
    git_ref: Option<&'a str>,
    /// `null` on v1: the agent names it.
    branch: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<JsonOptions<'a>>,
    model: Option<&'a str>,
    target: Target,
    prompt: &'a str,
    follow_ups: Vec<JsonFollowUp<'a>>,
    needs: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    canaries: Vec<&'a str>,
    #[serde(rename = "if")]
    condition: &'static str,
    timeout_seconds: Option<u64>,
    retries: u32,
    wave: usize,
    action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    relaunch: Option<RelaunchReason>,
    #[serde(skip_serializing_if = "<[Change]>::is_empty")]
    changes: &'a [Change],
}

/// SGR colours of the text plan.
const GREEN: &str = "32";
const YELLOW: &str = "33";
const RED: &str = "31";
const BLUE: &str = "34";
const CYAN: &str = "36";
const DIM: &str = "2";

/// Whether the text plan is coloured.
#[derive(Debug, Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn apply(self, sgr: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// Fields shown as a line diff (prompts) rather than `before -> after`.
fn is_text_field(field: &str) -> bool {
    field == "prompt" || field.starts_with("follow-up ")
}

/// A one-line value of a change, `(none)` when empty.
fn shown(value: &str) -> String {
    if value.is_empty() {
        "(none)".to_owned()
    } else {
        format!("`{value}`")
    }
}

/// The lines of a changed prompt: `-` as recorded, `+` as now, the others as they were.
fn text_diff(out: &mut String, change: &Change, paint: Paint) {
    // Every line ends in a newline, so that the last is compared as the others are.
    let (before, after) = (
        format!("{}\n", change.before.trim_end()),
        format!("{}\n", change.after.trim_end()),
    );
    let diff = similar::TextDiff::from_lines(&before, &after);
    for line in diff.iter_all_changes() {
        let text = line.value().trim_end_matches('\n');
        let _ = match line.tag() {
            similar::ChangeTag::Equal => writeln!(out, "        | {text}"),
            similar::ChangeTag::Delete => {
                writeln!(out, "{}", paint.apply(RED, &format!("      - | {text}")))
            }
            similar::ChangeTag::Insert => {
                writeln!(out, "{}", paint.apply(GREEN, &format!("      + | {text}")))
            }
        };
    }
}

#[derive(Serialize)]
struct JsonDiscover<'a> {
    owner: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct JsonFollowUp<'a> {
    prompt: &'a str,
    #[serde(rename = "if")]
    condition: Option<&'a str>,
}

/// v1 settings in a plan; environment variables by name only, their values are secrets.
#[derive(Serialize)]
struct JsonOptions<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env_vars: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mcp_servers: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_params: Option<&'a indexmap::IndexMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    work_on_current_branch: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pr_url: Option<&'a str>,
}

impl<'a> JsonOptions<'a> {
    fn of(options: &'a AgentOptions) -> Option<Self> {
        (*options != AgentOptions::default()).then(|| Self {
            env_vars: names(options.env_vars.as_ref().map(|v| v.keys())),
            mcp_servers: options
                .mcp_servers
                .iter()
                .flatten()
                .map(|s| s.name.as_str())
                .collect(),
            mode: options.mode.map(crate::spec::Mode::as_str),
            model_params: options.model_params.as_ref(),
            work_on_current_branch: options.work_on_current_branch,
            pr_url: options.pr_url.as_deref(),
        })
    }
}

fn names<'a>(keys: Option<impl Iterator<Item = &'a String>>) -> Vec<&'a str> {
    keys.map(|k| k.map(String::as_str).collect())
        .unwrap_or_default()
}

/// The v1 settings of an instance on one line, if it has any.
fn options_text(options: &AgentOptions) -> Option<String> {
    let json = JsonOptions::of(options)?;
    let mut parts = Vec::new();
    if let Some(mode) = json.mode {
        parts.push(format!("mode {mode}"));
    }
    if !json.env_vars.is_empty() {
        parts.push(format!("env {}", json.env_vars.join(", ")));
    }
    if !json.mcp_servers.is_empty() {
        parts.push(format!("mcp {}", json.mcp_servers.join(", ")));
    }
    if let Some(params) = json.model_params {
        let shown: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.push(format!("model params {}", shown.join(", ")));
    }
    if json.work_on_current_branch == Some(true) {
        parts.push("works on its starting ref".to_owned());
    }
    if let Some(pr) = json.pr_url {
        parts.push(format!("on {pr}"));
    }
    Some(parts.join("; "))
}
