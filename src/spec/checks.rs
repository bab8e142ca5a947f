//! Checks that need the whole workflow: references, cycles, duplicates, templates.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use petgraph::algo::tarjan_scc;
use petgraph::graphmap::DiGraphMap;

use super::template::{self, Scope};
use super::yaml::{KeyPath, Spans};
use super::{
    API_VERSION_VAR, Api, ApiChoiceError, ApiVersion, BACKEND_VAR, Diagnostic, FORMAT_VERSION,
    Fleet, FleetName, OnlyOn, SourceFile, Span, TaskId, Workflow, did_you_mean, is_identifier,
};

/// The most environment variables a v1 agent takes.
const MAX_ENV_VARS: usize = 50;
/// The longest value of one, in bytes.
const MAX_ENV_VALUE: usize = 4096;

/// Every problem of a workflow whose shape is right.
pub fn check(workflow: &Workflow, spans: &Spans, file: &SourceFile) -> Vec<Diagnostic> {
    let mut checks = Checks {
        workflow,
        spans,
        file,
        found: Vec::new(),
    };
    checks.header();
    checks.api();
    checks.fleets();
    checks.tasks();
    checks.cycles();
    checks.templates();
    checks.found
}

/// Every place settings are written: `defaults`, then each task, with its path.
fn settings_places(w: &Workflow) -> Vec<(KeyPath, &super::Settings)> {
    let mut places = vec![(KeyPath::of(&["defaults"]), &w.defaults)];
    places.extend(
        w.tasks
            .iter()
            .map(|(id, task)| (KeyPath::of(&["tasks", id.as_str()]), &task.settings)),
    );
    places
}

struct Checks<'a> {
    workflow: &'a Workflow,
    spans: &'a Spans,
    file: &'a SourceFile,
    found: Vec<Diagnostic>,
}

impl Checks<'_> {
    fn header(&mut self) {
        let w = self.workflow;
        if w.version != FORMAT_VERSION {
            self.found.push(
                Diagnostic::at(
                    self.spans.value(&KeyPath::of(&["version"])),
                    format!("unsupported workflow version {}", w.version),
                    "not a version this release reads",
                )
                .help(format!("this orchestrate reads version {FORMAT_VERSION}")),
            );
        }
        if !is_identifier(&w.name) || w.name.contains('_') {
            self.found.push(
                Diagnostic::at(
                    self.spans.value(&KeyPath::of(&["name"])),
                    format!("invalid workflow name `{}`", w.name),
                    "invalid name",
                )
                .help("use lowercase letters, digits and dashes, starting with a letter or digit"),
            );
        }
    }

    /// Where the agents run; settings the chosen API does not have, and v1 settings' rules.
    fn api(&mut self) {
        let w = self.workflow;
        let api = match w.api() {
            Ok(api) => api,
            Err(error) => {
                let help = match error {
                    ApiChoiceError::BadVersion(_) => format!(
                        "unset {API_VERSION_VAR}, or set `api: {{version: v1}}` in the workflow"
                    ),
                    ApiChoiceError::BadBackend(_) => format!(
                        "unset {BACKEND_VAR}, or set `api: {{backend: cursor}}` in the workflow"
                    ),
                    ApiChoiceError::PlatformSetting { .. } => {
                        "set `api: {backend: litellm-agent-platform, url: https://..., agent_id: ...}`"
                            .to_owned()
                    }
                };
                self.found
                    .push(Diagnostic::file(error.to_string()).help(help));
                return;
            }
        };
        let Api::Cursor(version) = api else {
            self.platform();
            return;
        };
        let platform_fields = [
            ("url", w.api.url.is_some()),
            ("agent_id", w.api.agent_id.is_some()),
        ];
        for (field, _) in platform_fields.into_iter().filter(|(_, set)| *set) {
            self.found.push(
                Diagnostic::at(
                    self.spans.key(&KeyPath::of(&["api", field])),
                    format!("`api.{field}` is a setting of the litellm-agent-platform backend, and this workflow runs on the Cursor API"),
                    "not used by the Cursor API",
                )
                .help("set `backend: litellm-agent-platform` next to it, or remove it"),
            );
        }
        let chosen = if w.api.version.is_some() {
            format!("`api.version: {version}`")
        } else if ApiVersion::from_env().ok().flatten().is_some() {
            format!("{API_VERSION_VAR}={version}")
        } else {
            format!("the default, {version}")
        };
        for (path, settings) in settings_places(w) {
            for (name, only) in settings.version_specific() {
                let help = match only {
                    OnlyOn::V1 => "set `api: {version: v1}` in the workflow, or remove the field",
                    OnlyOn::V0 if name == "branch" => {
                        "v1 agents name their own branch (it is `needs.<task>.branch` once reported); remove the field, or set `api: {version: v0}`"
                    }
                    OnlyOn::V0 => "remove the field, or set `api: {version: v0}`",
                };
                let (wanted, wrong) = match only {
                    OnlyOn::V0 => ("v0", ApiVersion::V1),
                    OnlyOn::V1 => ("v1", ApiVersion::V0),
                };
                if version == wrong {
                    self.found.push(
                        Diagnostic::at(
                            self.spans.key(&path.key(name)),
                            format!("`{name}` is an API {wanted} setting, and this workflow runs on {chosen}"),
                            format!("only API {wanted} has it"),
                        )
                        .help(help),
                    );
                }
            }
            self.v1_settings(&path, settings);
        }
        for (id, task) in &w.tasks {
            let effective = task.settings.or(&w.defaults);
            if effective.model_params.is_some() && effective.model.is_none() {
                let path = if task.settings.model_params.is_some() {
                    KeyPath::of(&["tasks", id.as_str(), "model_params"])
                } else {
                    KeyPath::of(&["defaults", "model_params"])
                };
                self.found.push(
                    Diagnostic::at(
                        self.spans.key(&path),
                        format!("task `{id}` sets model parameters without a `model`"),
                        "parameters of which model?",
                    )
                    .help("set `model` next to `model_params` (or in `defaults`)"),
                );
            }
        }
    }

    /// What the LiteLLM Agent Platform backend cannot do: a setting `POST /session` has no
    /// field for, or a fleet discovered through the Cursor API it does not reach.
    fn platform(&mut self) {
        let w = self.workflow;
        if w.api.version.is_some() {
            self.found.push(
                Diagnostic::at(
                    self.spans.key(&KeyPath::of(&["api", "version"])),
                    "`api.version` picks a Cursor API version, and this workflow runs on the LiteLLM Agent Platform",
                    "the platform has no Cursor API version",
                )
                .help("remove `version`, or set `backend: cursor`"),
            );
        }
        if let Some(url) = &w.api.url {
            if !url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                self.found.push(
                    Diagnostic::at(
                        self.spans.value(&KeyPath::of(&["api", "url"])),
                        format!("`{url}` is not an http(s) URL"),
                        "not a URL",
                    )
                    .help("write the platform's root, for example http://localhost:4000"),
                );
            }
        }
        for (path, settings) in settings_places(w) {
            for name in settings.not_on_platform() {
                let help = if name == "model" {
                    "the platform agent's model is used: set it on the agent (`model` of `POST /api/agents`), and remove it here"
                } else {
                    "remove it, or run the workflow on the Cursor API (`api: {backend: cursor}`)"
                };
                self.found.push(
                    Diagnostic::at(
                        self.spans.key(&path.key(name)),
                        format!("`{name}` cannot be sent through the LiteLLM Agent Platform"),
                        "`POST /session` has no such field",
                    )
                    .help(help),
                );
            }
        }
        for (name, fleet) in &w.fleets {
            if matches!(fleet, Fleet::Discover(_)) {
                self.found.push(
                    Diagnostic::at(
                        self.spans.key(&KeyPath::of(&["fleets", name.as_str(), "discover"])),
                        format!("fleet `{name}` is discovered through the Cursor API, which the LiteLLM Agent Platform backend does not reach"),
                        "no repository listing on the platform",
                    )
                    .help("list the fleet's repositories"),
                );
            }
        }
    }

    fn v1_settings(&mut self, path: &KeyPath, settings: &super::Settings) {
        if let Some(vars) = &settings.env_vars {
            self.env_vars(&path.key("env_vars"), vars);
        }
        if let Some(params) = &settings.model_params {
            for (id, value) in params {
                if super::param_text(value).is_none() {
                    self.found.push(
                        Diagnostic::at(
                            self.spans.value(&path.key("model_params").key(id)),
                            format!("model parameter `{id}` must be a non-empty string, a number or a boolean"),
                            "not a text value",
                        )
                        .help("the API takes each parameter as text: write it as `high`, `8000` or `true`"),
                    );
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for (n, server) in settings.mcp_servers.iter().flatten().enumerate() {
            let at = path.key("mcp_servers").index(n);
            for (field, message, help) in server.problems() {
                self.found.push(
                    Diagnostic::at(self.spans.key(&at.key(field)), message, "this MCP server")
                        .help(help),
                );
            }
            if !names.insert(server.name.as_str()) {
                self.found.push(
                    Diagnostic::at(
                        self.spans.value(&at.key("name")),
                        format!("two MCP servers are named `{}`", server.name),
                        "a second server of this name",
                    )
                    .help("give each MCP server its own name"),
                );
            }
        }
        if let Some(url) = &settings.pr_url {
            let ok = url.split_once("/pull/").is_some_and(|(repo, number)| {
                repo.parse::<super::RepoUrl>().is_ok()
                    && !number.is_empty()
                    && number.chars().all(|c| c.is_ascii_digit())
            });
            if !ok {
                self.found.push(
                    Diagnostic::at(
                        self.spans.value(&path.key("pr_url")),
                        format!("`{url}` is not a GitHub pull request URL"),
                        "not a pull request",
                    )
                    .help("write it as https://github.com/OWNER/NAME/pull/NUMBER"),
                );
            }
        }
    }

    /// The documented limits of `envVars`: at most 50; names of 1 to 255 bytes, not
    /// `CURSOR_*`; values of 1 to 4096 bytes (a `${NAME}` reference is checked at launch).
    fn env_vars(&mut self, path: &KeyPath, vars: &indexmap::IndexMap<String, String>) {
        if vars.len() > MAX_ENV_VARS {
            self.found.push(
                Diagnostic::at(
                    self.spans.key(path),
                    format!(
                        "{} environment variables, and the API takes at most {MAX_ENV_VARS}",
                        vars.len()
                    ),
                    "too many",
                )
                .help("keep the ones the agent needs"),
            );
        }
        for (name, value) in vars {
            let key = self.spans.key(&path.key(name));
            let problem = if name.starts_with("CURSOR_") {
                Some((
                    format!("environment variable `{name}` may not start with CURSOR_"),
                    "reserved prefix",
                    "the API reserves CURSOR_ names for its own variables",
                ))
            } else if name.is_empty() || name.len() > 255 {
                Some((
                    format!(
                        "environment variable names are 1 to 255 bytes; this one is {}",
                        name.len()
                    ),
                    "name length",
                    "shorten the name",
                ))
            } else {
                None
            };
            if let Some((message, label, help)) = problem {
                self.found
                    .push(Diagnostic::at(key, message, label).help(help));
            }
            let reference = value.trim().starts_with("${") && value.trim().ends_with('}');
            if !reference && (value.is_empty() || value.len() > MAX_ENV_VALUE) {
                self.found.push(
                    Diagnostic::at(
                        self.spans.value(&path.key(name)),
                        format!("the value of `{name}` is {} bytes; the API takes 1 to {MAX_ENV_VALUE}", value.len()),
                        "value length",
                    )
                    .help("remove the variable, or read it from orchestrate's environment with `${NAME}`"),
                );
            }
        }
    }

    fn fleets(&mut self) {
        for (name, fleet) in &self.workflow.fleets {
            let path = KeyPath::of(&["fleets", name.as_str()]);
            match fleet {
                Fleet::Repos(repos) if repos.is_empty() => self.found.push(
                    Diagnostic::at(
                        self.spans.key(&path),
                        format!("fleet `{name}` is empty"),
                        "no repositories",
                    )
                    .help("list at least one repository, or remove the fleet"),
                ),
                Fleet::Repos(repos) => {
                    let mut first: Vec<(usize, &super::RepoUrl)> = Vec::new();
                    for (index, item) in repos.iter().enumerate() {
                        let url = item.url();
                        if let Some((earlier, _)) =
                            first.iter().find(|(_, u)| u.same_repository(url))
                        {
                            self.found.push(
                                Diagnostic::at(
                                    self.spans.value(&path.index(index)),
                                    format!("repository {} is twice in fleet `{name}`", url.slug()),
                                    "listed again here",
                                )
                                .related(
                                    self.spans.value(&path.index(*earlier)),
                                    "first listed here",
                                )
                                .help(
                                    "each repository gets one agent per task; remove the duplicate",
                                ),
                            );
                        } else {
                            first.push((index, url));
                        }
                    }
                }
                Fleet::Discover(fleet) => {
                    let discover = &fleet.discover;
                    let owner_ok = !discover.owner.is_empty()
                        && discover
                            .owner
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-');
                    if !owner_ok {
                        self.found.push(Diagnostic::at(
                            self.spans.value(&path.key("discover").key("owner")),
                            format!("`{}` is not a GitHub owner", discover.owner),
                            "letters, digits and dashes only",
                        ));
                    }
                    if let Some(Err(error)) = discover.name.as_deref().map(glob::Pattern::new) {
                        self.found.push(
                            Diagnostic::at(
                                self.spans.value(&path.key("discover").key("name")),
                                format!("invalid name pattern: {}", error.msg),
                                "here",
                            )
                            .help("a glob: `*` matches anything, `?` one character, `[ab]` a or b"),
                        );
                    }
                }
            }
        }
    }

    fn tasks(&mut self) {
        let task_ids: Vec<&str> = self.workflow.tasks.keys().map(TaskId::as_str).collect();
        let fleet_names: Vec<&str> = self.workflow.fleets.keys().map(FleetName::as_str).collect();
        for (id, task) in &self.workflow.tasks {
            let path = KeyPath::of(&["tasks", id.as_str()]);
            if !is_identifier(id.as_str()) {
                self.found.push(
                    Diagnostic::at(self.spans.key(&path), format!("invalid task id `{id}`"), "invalid id")
                        .help("use lowercase letters, digits, `-` and `_`, starting with a letter or digit"),
                );
            }
            match (&task.repo, &task.fleet) {
                (Some(_), Some(_)) => self.found.push(
                    Diagnostic::at(
                        self.spans.key(&path.key("fleet")),
                        format!("task `{id}` has both `repo` and `fleet`"),
                        "one of these",
                    )
                    .related(self.spans.key(&path.key("repo")), "and this")
                    .help("a task runs on one repository (`repo`) or on every repository of a fleet (`fleet`), not both"),
                ),
                (None, None) => self.found.push(
                    Diagnostic::at(
                        self.spans.key(&path),
                        format!("task `{id}` has neither `repo` nor `fleet`"),
                        "says where to run",
                    )
                    .help("add `repo: https://github.com/OWNER/NAME`, or `fleet: NAME` to fan out over a fleet"),
                ),
                _ => {}
            }
            if task.rollout.is_some() && task.fleet.is_none() {
                self.found.push(
                    Diagnostic::at(
                        self.spans.key(&path.key("rollout")),
                        format!("task `{id}` has a `rollout` but runs on one repository"),
                        "needs a fleet",
                    )
                    .help("a staged rollout runs canaries of a fleet first; give the task a `fleet`, or remove `rollout`"),
                );
            }
            if let Some(fleet) = &task.fleet {
                if !self.workflow.fleets.contains_key(fleet) {
                    let help = match did_you_mean(fleet.as_str(), fleet_names.iter().copied()) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None if fleet_names.is_empty() => "declare it under `fleets:`".to_owned(),
                        None => format!("fleets in this file: {}", fleet_names.join(", ")),
                    };
                    self.found.push(
                        Diagnostic::at(
                            self.spans.value(&path.key("fleet")),
                            format!("task `{id}` uses fleet `{fleet}`, which does not exist"),
                            "unknown fleet",
                        )
                        .help(help),
                    );
                }
            }
            let mut seen: Vec<&str> = Vec::new();
            for (index, need) in task.needs.iter().enumerate() {
                let span = self.spans.value(&path.key("needs").index(index));
                if need == id {
                    self.found.push(Diagnostic::at(
                        span,
                        format!("task `{id}` needs itself"),
                        "remove this",
                    ));
                } else if !self.workflow.tasks.contains_key(need) {
                    let others = task_ids.iter().copied().filter(|t| *t != id.as_str());
                    let help = did_you_mean(need.as_str(), others).map_or_else(
                        || format!("tasks in this file: {}", task_ids.join(", ")),
                        |close| format!("did you mean `{close}`?"),
                    );
                    self.found.push(
                        Diagnostic::at(
                            span,
                            format!("task `{id}` needs `{need}`, which is not a task"),
                            "unknown task",
                        )
                        .help(help),
                    );
                } else if seen.contains(&need.as_str()) {
                    self.found.push(Diagnostic::at(
                        span,
                        format!("task `{id}` lists `{need}` twice in `needs`"),
                        "listed again",
                    ));
                }
                seen.push(need.as_str());
            }
        }
    }

    fn cycles(&mut self) {
        let tasks = &self.workflow.tasks;
        let mut graph = DiGraphMap::<usize, ()>::new();
        for (index, (_, task)) in tasks.iter().enumerate() {
            graph.add_node(index);
            for need in &task.needs {
                if let Some(need_index) = tasks.get_index_of(need) {
                    if need_index != index {
                        graph.add_edge(index, need_index, ());
                    }
                }
            }
        }
        let mut components = tarjan_scc(&graph);
        components.retain(|c| c.len() > 1);
        for component in &mut components {
            component.sort_unstable();
        }
        components.sort();
        for component in components {
            let cycle = shortest_cycle(component[0], &component, |at| {
                tasks[at]
                    .needs
                    .iter()
                    .filter_map(|n| tasks.get_index_of(n))
                    .collect()
            });
            let names: Vec<&str> = cycle
                .iter()
                .map(|i| tasks.get_index(*i).expect("index").0.as_str())
                .collect();
            let (from, to) = (names[names.len() - 2], names[0]);
            let need_index = tasks[cycle[cycle.len() - 2]]
                .needs
                .iter()
                .position(|n| n.as_str() == to)
                .unwrap_or(0);
            self.found.push(
                Diagnostic::at(
                    self.spans
                        .value(&KeyPath::of(&["tasks", from, "needs"]).index(need_index)),
                    format!(
                        "tasks depend on each other in a cycle: {}",
                        names.join(" -> ")
                    ),
                    "closes the cycle",
                )
                .help("remove one of these `needs` so that some task can start first"),
            );
        }
    }

    fn templates(&mut self) {
        let env = template::environment();
        let vars: Vec<&str> = self.workflow.vars.keys().map(String::as_str).collect();
        if let Some(run_key) = &self.workflow.run_key {
            let scope = Scope {
                vars: vars.clone(),
                run_key: true,
                ..Scope::default()
            };
            self.template(&env, run_key, &KeyPath::of(&["run_key"]), &scope);
        }
        let instance = Scope {
            vars: vars.clone(),
            instance: true,
            ..Scope::default()
        };
        if let Some(branch) = &self.workflow.defaults.branch {
            self.template(
                &env,
                branch,
                &KeyPath::of(&["defaults", "branch"]),
                &instance,
            );
        }
        for (id, task) in &self.workflow.tasks {
            let path = KeyPath::of(&["tasks", id.as_str()]);
            // As the planner pairs them: two tasks on one fleet meet per repository.
            let listed = task
                .needs
                .iter()
                .filter(|need| {
                    let other = self.workflow.tasks.get(*need).map(|t| &t.fleet);
                    task.fleet.is_none() || other != Some(&task.fleet)
                })
                .map(TaskId::as_str)
                .collect();
            let scope = Scope {
                needs: task.needs.iter().map(TaskId::as_str).collect(),
                listed,
                ..instance.clone()
            };
            self.template(&env, &task.prompt, &path.key("prompt"), &scope);
            if let Some(branch) = &task.settings.branch {
                self.template(&env, branch, &path.key("branch"), &scope);
            }
            let follow_up_scope = Scope {
                agent: true,
                ..scope
            };
            for (index, follow_up) in task.follow_ups.iter().enumerate() {
                let path = path.key("follow_ups").index(index);
                self.template(
                    &env,
                    &follow_up.prompt,
                    &path.key("prompt"),
                    &follow_up_scope,
                );
                if let Some(condition) = &follow_up.condition {
                    self.expression(&env, condition, &path.key("if"), &follow_up_scope);
                }
            }
        }
    }

    fn template(
        &mut self,
        env: &minijinja::Environment,
        source: &str,
        path: &KeyPath,
        scope: &Scope,
    ) {
        match env.template_from_str(source) {
            Ok(compiled) => self.names(compiled.undeclared_variables(true), path, scope),
            Err(error) => self.syntax(source, &error, path, "template"),
        }
    }

    fn expression(
        &mut self,
        env: &minijinja::Environment,
        source: &str,
        path: &KeyPath,
        scope: &Scope,
    ) {
        match env.compile_expression(source) {
            Ok(compiled) => self.names(compiled.undeclared_variables(true), path, scope),
            Err(error) => self.syntax(source, &error, path, "`if` expression"),
        }
    }

    fn names(&mut self, used: std::collections::HashSet<String>, path: &KeyPath, scope: &Scope) {
        for unknown in scope.unknown(used) {
            let span = self.inside(path, &unknown.name);
            let close = did_you_mean(&unknown.name, unknown.known.iter().map(String::as_str));
            let help = match (unknown.instead, close) {
                (Some(instead), _) => instead,
                (None, Some(close)) => format!("did you mean `{close}`?"),
                (None, None) if unknown.name.starts_with("needs.") => format!(
                    "`needs.<task>` holds the outputs of the tasks this task lists in `needs:`; add `{}` there",
                    &unknown.name["needs.".len()..]
                ),
                (None, None) if unknown.known.is_empty() => "nothing is declared there".to_owned(),
                (None, None) => format!("available here: {}", unknown.known.join(", ")),
            };
            self.found.push(
                Diagnostic::at(
                    span,
                    format!(
                        "`{path}` uses `{}`, which is not defined there",
                        unknown.name
                    ),
                    "unknown name",
                )
                .help(help),
            );
        }
    }

    fn syntax(&mut self, source: &str, error: &minijinja::Error, path: &KeyPath, what: &str) {
        let detail = error
            .detail()
            .map_or_else(|| error.kind().to_string(), str::to_owned);
        let at = error.range().and_then(|range| source.get(range));
        let span = at.map_or_else(|| self.first_line(path), |text| self.inside(path, text));
        self.found.push(
            Diagnostic::at(
                span,
                format!("`{path}` is not a valid {what}: {detail}"),
                "here",
            )
            .help("templates use Jinja syntax: {{ name }}, {% if ... %}...{% endif %}"),
        );
    }

    /// The span of `needle` inside the value at `path`, when the file holds it verbatim;
    /// else the value's first line.
    fn inside(&self, path: &KeyPath, needle: &str) -> Span {
        let value = self.spans.value(path);
        let text = self.spans_text(value);
        match text.and_then(|t| t.find(needle)) {
            Some(at) if !needle.is_empty() => {
                Span::new(value.start + at, value.start + at + needle.len())
            }
            _ => self.first_line(path),
        }
    }

    fn first_line(&self, path: &KeyPath) -> Span {
        let value = self.spans.value(path);
        let len = self
            .spans_text(value)
            .map_or(0, |t| t.find('\n').unwrap_or(t.len()));
        Span::new(value.start, value.start + len)
    }

    fn spans_text(&self, span: Span) -> Option<&str> {
        self.file.text().get(span.start..span.end)
    }
}

/// The shortest cycle through `start` inside `component` (a strongly connected set of nodes),
/// as `[start, ..., start]`. Breadth-first, so it is found from any shape of component and
/// reads as short as it can be.
fn shortest_cycle(
    start: usize,
    component: &[usize],
    needs: impl Fn(usize) -> Vec<usize>,
) -> Vec<usize> {
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(at) = queue.pop_front() {
        for next in needs(at).into_iter().filter(|n| component.contains(n)) {
            if next == start {
                let mut cycle = vec![at];
                while let Some(&previous) = parent.get(cycle.last().expect("not empty")) {
                    cycle.push(previous);
                }
                // The chain of parents ends at `start`, which has none.
                cycle.reverse();
                cycle.push(start);
                return cycle;
            }
            if let Entry::Vacant(entry) = parent.entry(next) {
                entry.insert(at);
                queue.push_back(next);
            }
        }
    }
    unreachable!("every node of a strongly connected component lies on a cycle")
}

#[cfg(test)]
mod tests {
    use super::shortest_cycle;

    #[test]
    fn finds_the_cycle_whatever_the_order_of_needs() {
        // a=0 needs b; b needs c first, then a; c needs b. A greedy walk from a through b's
        // first need, c, would dead-end at c.
        let needs = |n: usize| if n == 1 { vec![2, 0] } else { vec![1] };
        assert_eq!(shortest_cycle(0, &[0, 1, 2], needs), [0, 1, 0]);
        let ring = |n: usize| vec![(n + 1) % 3];
        assert_eq!(shortest_cycle(0, &[0, 1, 2], ring), [0, 1, 2, 0]);
    }
}
