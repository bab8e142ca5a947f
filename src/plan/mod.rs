//! Plans: a workflow's fleets expanded into task instances, ordered as a DAG.
//!
//! A [`Plan`] is what `plan` prints and what `apply` executes: one [`Instance`] per task and
//! repository, with its rendered prompt and branch, the instances it waits for, and its wave
//! (the longest chain of needs before it).

pub mod context;
mod diff;
mod format;
mod key;
mod templates;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use indexmap::IndexMap;
use petgraph::Direction;
use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;

pub use context::{AgentOutput, NeedContext, RepoContext, RunContext, TaskContext};
pub use diff::{Change, End, Recorded};
pub use format::Format;
pub use key::{DEFAULT_RUN_KEY, InstanceKey, RunId, RunKey, RunKeyError};
pub use templates::{Context, DEFAULT_BRANCH, Field, Needs, Templates};

use crate::spec::{
    Api, Condition, Discover, Fleet, FleetRepo, FollowUp, KeyPath, Mode, RepoUrl, TaskId, Workflow,
};

/// What `apply` will do with an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Not run yet: launch an agent.
    Launch,
    /// Succeeded with the same spec: nothing to do.
    Keep,
    /// Its spec changed, or a need was relaunched: launch a new agent.
    Relaunch,
    /// Started in an earlier apply: pick it up where it is.
    Continue,
    /// Launched by an earlier apply whose records this state lacks (lost, pruned, another
    /// machine's): its agent, found in the API, is picked up instead of launched again.
    Adopt,
}

impl Action {
    /// Every action, in the order plans count them.
    pub const ALL: [Action; 5] = [
        Action::Launch,
        Action::Relaunch,
        Action::Adopt,
        Action::Continue,
        Action::Keep,
    ];

    /// The word shown in plans.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Launch => "launch",
            Action::Keep => "keep",
            Action::Relaunch => "relaunch",
            Action::Continue => "continue",
            Action::Adopt => "adopt",
        }
    }
}

/// Why an instance that ran before is launched again; decided by the diff, shown by `plan`,
/// logged by `apply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RelaunchReason {
    /// Its prompt, repository, branch, model or follow-ups changed.
    SpecChanged,
    /// `retry` asked for it.
    RetryRequested,
    /// It was cancelled: a new attempt continues the work.
    Cancelled,
    /// One of its needs is launched again, so its inputs will change.
    NeedRelaunched,
}

impl std::fmt::Display for RelaunchReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RelaunchReason::SpecChanged => "its spec changed",
            RelaunchReason::RetryRequested => "retry requested",
            RelaunchReason::Cancelled => "it was cancelled",
            RelaunchReason::NeedRelaunched => "a need was relaunched",
        })
    }
}

/// Pull request settings sent with a launch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Target {
    /// Open a pull request when the agent finishes.
    pub auto_create_pr: bool,
    /// Open it as the Cursor GitHub App.
    pub open_as_cursor_github_app: bool,
    /// Do not request the key's user as reviewer.
    pub skip_reviewer_request: bool,
}

/// v1 settings of a launch, as the workflow set them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentOptions {
    /// Environment variables (secret values: never printed).
    pub env_vars: Option<IndexMap<String, String>>,
    /// MCP servers.
    pub mcp_servers: Option<Vec<crate::spec::McpServer>>,
    /// `agent` or `plan`.
    pub mode: Option<Mode>,
    /// Parameters of the model.
    pub model_params: Option<IndexMap<String, serde_json::Value>>,
    /// Work on the starting ref.
    pub work_on_current_branch: Option<bool>,
    /// An existing pull request to work on.
    pub pr_url: Option<String>,
}

/// An `env_vars` value refers to a variable orchestrate's environment does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("env_vars.{name} is `${{{from}}}`, and {from} is not set in orchestrate's environment")]
pub struct UnsetEnv {
    /// The agent's variable.
    pub name: String,
    /// The variable of orchestrate's environment it is read from.
    pub from: String,
}

impl AgentOptions {
    /// The environment to send: a value written `${NAME}` is read from orchestrate's own
    /// environment now, so a secret need not be in the workflow (nor in the state, which
    /// keeps the workflow's text). An error names the variable that is not set.
    pub fn env_values(&self) -> Result<Option<IndexMap<String, String>>, UnsetEnv> {
        let Some(vars) = &self.env_vars else {
            return Ok(None);
        };
        let mut values = IndexMap::new();
        for (name, value) in vars {
            let reference = value
                .trim()
                .strip_prefix("${")
                .and_then(|v| v.strip_suffix('}'));
            let value = match reference {
                Some(from) => std::env::var(from).map_err(|_| UnsetEnv {
                    name: name.clone(),
                    from: from.to_owned(),
                })?,
                None => value.clone(),
            };
            values.insert(name.clone(), value);
        }
        Ok(Some(values))
    }

    fn of(settings: &crate::spec::Settings) -> Self {
        Self {
            env_vars: settings.env_vars.clone(),
            mcp_servers: settings.mcp_servers.clone(),
            mode: settings.mode,
            model_params: settings.model_params.clone(),
            work_on_current_branch: settings.work_on_current_branch,
            pr_url: settings.pr_url.clone(),
        }
    }
}

/// One agent's worth of work: a task on one repository.
#[derive(Debug, Clone)]
pub struct Instance {
    /// `task[owner/name]`.
    pub key: InstanceKey,
    /// The task it comes from.
    pub task: TaskId,
    /// The repository; `None` until a discover fleet is resolved at apply time.
    pub repo: Option<RepoUrl>,
    /// The discover query this instance stands for, before it is resolved.
    pub discover: Option<Discover>,
    /// The ref the agent starts from; `None`: the default branch.
    pub git_ref: Option<String>,
    /// The branch the agent pushes to (v0); empty on v1, where the agent names it.
    pub branch: String,
    /// The prompt, rendered; outputs of needs appear as `<field of key>` until apply.
    pub prompt: String,
    /// The model; `None`: Cursor picks.
    pub model: Option<String>,
    /// Pull request settings.
    pub target: Target,
    /// v1 settings.
    pub options: AgentOptions,
    /// Longest the agent may run.
    pub timeout: Option<Duration>,
    /// Relaunches allowed after a failure.
    pub retries: u32,
    /// When to run given the outcome of needs.
    pub condition: Condition,
    /// Follow-ups, as templates: they are rendered when sent, with the agent's outputs.
    pub follow_ups: Vec<FollowUp>,
    /// Instances this one waits for, in plan order.
    pub needs: Vec<usize>,
    /// Canaries of the same task this instance waits for (a staged rollout); they are also
    /// in `needs`, for ordering, but count only as canaries.
    pub canaries: Vec<usize>,
    /// Longest chain of needs before this instance (0: starts at once).
    pub wave: usize,
    /// What `apply` will do.
    pub action: Action,
    /// Why, when it relaunches.
    pub relaunch: Option<RelaunchReason>,
    /// What changed since the recorded run, when its spec did (see [`Plan::explain`]).
    pub changes: Vec<Change>,
}

impl Instance {
    /// The instances of other tasks this one needs (its `needs`, without its canaries).
    pub fn task_needs(&self) -> impl Iterator<Item = usize> + '_ {
        self.needs
            .iter()
            .copied()
            .filter(|n| !self.canaries.contains(n))
    }

    /// `repo.*` for templates.
    pub fn repo_context(&self) -> RepoContext {
        match (&self.repo, &self.discover) {
            (Some(repo), _) => RepoContext {
                url: repo.to_string(),
                owner: repo.owner().to_owned(),
                name: repo.name().to_owned(),
                git_ref: self.git_ref.clone().unwrap_or_default(),
            },
            (None, discover) => {
                let (owner, pattern) = discover.as_ref().map_or(("?", "*"), |d| {
                    (d.owner.as_str(), d.name.as_deref().unwrap_or("*"))
                });
                RepoContext {
                    url: format!("https://github.com/{owner}/<{pattern}>"),
                    owner: owner.to_owned(),
                    name: format!("<{pattern}>"),
                    git_ref: self.git_ref.clone().unwrap_or_default(),
                }
            }
        }
    }
}

/// A workflow expanded into instances, in an order that respects every need.
#[derive(Debug)]
pub struct Plan {
    /// The workflow's name.
    pub workflow: String,
    /// The workflow's description.
    pub description: Option<String>,
    /// Where its agents run: a Cursor API version, or the LiteLLM Agent Platform.
    pub api: Api,
    /// The run this plan is for.
    pub run: RunId,
    /// `run.*` in templates.
    pub run_context: RunContext,
    /// Most agents active at once.
    pub concurrency: u32,
    /// Every instance, by wave, then task order, then fleet order.
    pub instances: Vec<Instance>,
    /// Instance indexes per wave.
    pub waves: Vec<Vec<usize>>,
    /// The workflow's `vars`.
    pub vars: IndexMap<String, serde_json::Value>,
    /// The compiled templates, for rendering at apply time.
    pub templates: Templates,
    /// For each instance, the needed tasks paired per repository (`needs.<task>` is one entry).
    paired: Vec<Vec<TaskId>>,
}

/// Inputs of planning besides the workflow.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--run KEY`: overrides the workflow's `run_key`.
    pub run_key: Option<String>,
    /// The time the run starts, for `run.date` and `{{ date }}`.
    pub now: SystemTime,
    /// Repositories of discover fleets, when they have been resolved.
    pub discovered: HashMap<String, Vec<RepoUrl>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            run_key: None,
            now: now(),
            discovered: HashMap::new(),
        }
    }
}

/// The current time, or `SOURCE_DATE_EPOCH` when set, so plans can be reproduced.
pub fn now() -> SystemTime {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or_else(SystemTime::now, |secs| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
        })
}

/// Why a valid workflow could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `--run KEY` or the rendered `run_key` is not a usable run key.
    #[error(transparent)]
    RunKey(#[from] RunKeyError),
    /// The `run_key` template failed to render.
    #[error("cannot render `run_key`: {0}")]
    RunKeyTemplate(String),
    /// A template failed to render for one instance.
    #[error("{instance}: cannot render `{field}`: {message}")]
    Render {
        /// The instance.
        instance: InstanceKey,
        /// The task of the instance.
        task: TaskId,
        /// The template's field.
        field: &'static str,
        /// minijinja's explanation.
        message: String,
    },
    /// The rendered branch is not a valid git branch name.
    #[error("{instance}: branch `{branch}` is not a valid git branch name: {reason}")]
    Branch {
        /// The instance.
        instance: InstanceKey,
        /// The task of the instance.
        task: TaskId,
        /// The rendered branch.
        branch: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two instances would push to the same branch of the same repository.
    #[error("{first} and {second} would both push to branch `{branch}` of the same repository")]
    SameBranch {
        /// One instance.
        first: InstanceKey,
        /// The other.
        second: InstanceKey,
        /// The task of the second.
        task: TaskId,
        /// The branch.
        branch: String,
    },
}

impl PlanError {
    /// The field of `workflow` the error comes from, when it comes from the file.
    pub fn path(&self, workflow: &Workflow) -> Option<KeyPath> {
        let branch = |task: &TaskId| {
            if workflow
                .tasks
                .get(task)
                .is_some_and(|t| t.settings.branch.is_some())
            {
                KeyPath::of(&["tasks", task.as_str(), "branch"])
            } else if workflow.defaults.branch.is_some() {
                KeyPath::of(&["defaults", "branch"])
            } else {
                KeyPath::of(&["tasks", task.as_str()])
            }
        };
        match self {
            PlanError::RunKey(_) | PlanError::RunKeyTemplate(_) => {
                workflow.run_key.as_ref().map(|_| KeyPath::of(&["run_key"]))
            }
            PlanError::Render {
                task,
                field: "branch",
                ..
            } => Some(branch(task)),
            PlanError::Render { task, field, .. } => {
                Some(KeyPath::of(&["tasks", task.as_str(), field]))
            }
            PlanError::Branch { task, .. } | PlanError::SameBranch { task, .. } => {
                Some(branch(task))
            }
        }
    }

    /// A short label for the place [`PlanError::path`] points at.
    pub fn label(&self) -> &'static str {
        match self {
            PlanError::RunKey(_) => "renders to an unusable run key",
            PlanError::RunKeyTemplate(_) | PlanError::Render { .. } => "fails to render",
            PlanError::Branch { .. } => "renders to an invalid branch",
            PlanError::SameBranch { .. } => "renders to a branch already taken",
        }
    }
}

/// A render error for people: what failed, the expression it failed on and its line, and
/// for a missing value how to give it a default.
pub fn render_message(error: &minijinja::Error) -> String {
    let mut message = error
        .detail()
        .map_or_else(|| error.kind().to_string(), str::to_owned);
    // minijinja points at the failing step (`.bump.pr_url` of `needs.bump.pr_url`): the
    // expression is taken back to where its name starts.
    let expression = error
        .range()
        .zip(error.template_source())
        .and_then(|(range, source)| {
            let name = |c: char| c.is_alphanumeric() || matches!(c, '_' | '.' | '[' | ']');
            let start = source
                .get(..range.start)?
                .rfind(|c: char| !name(c))
                .map_or(0, |at| at + 1);
            source.get(start..range.end)
        })
        .map(str::trim);
    if let Some(expression) = expression {
        message = format!("{message}: `{expression}`");
    }
    if let Some(line) = error.line() {
        message = format!("{message} (template line {line})");
    }
    if error.kind() == minijinja::ErrorKind::UndefinedError {
        let shown = expression.unwrap_or("value");
        message = format!(
            "{message}; if it may be missing, say what to print instead: `{{{{ {shown} or 'none' }}}}`"
        );
    }
    message
}

/// One repository a task instance runs on, before rendering.
struct Slot {
    repo: Option<RepoUrl>,
    discover: Option<Discover>,
    git_ref: Option<String>,
    slug: String,
}

fn slots(fleet: &Fleet, name: &str, options: &Options) -> Vec<Slot> {
    let from_url = |url: &RepoUrl, git_ref: Option<&str>| Slot {
        repo: Some(url.clone()),
        discover: None,
        git_ref: git_ref.map(str::to_owned),
        slug: url.slug(),
    };
    match fleet {
        Fleet::Repos(items) => items
            .iter()
            .map(|item: &FleetRepo| from_url(item.url(), item.git_ref()))
            .collect(),
        Fleet::Discover(fleet) => {
            if let Some(repos) = options.discovered.get(name) {
                return repos.iter().map(|url| from_url(url, None)).collect();
            }
            let d = &fleet.discover;
            vec![Slot {
                repo: None,
                discover: Some(d.clone()),
                git_ref: None,
                slug: format!("{}/{}", d.owner, d.name.as_deref().unwrap_or("*")),
            }]
        }
    }
}

impl Plan {
    /// Expands `workflow` (already validated) into a plan.
    pub fn build(workflow: &Workflow, options: &Options) -> Result<Plan, Vec<PlanError>> {
        let date = humantime::format_rfc3339_seconds(options.now).to_string()[..10].to_owned();
        let key = match &options.run_key {
            Some(key) => RunKey::new(key.clone()),
            None => match &workflow.run_key {
                Some(template) => {
                    let env = crate::spec::template::environment();
                    let ctx = minijinja::context! { date => date, name => workflow.name, vars => workflow.vars };
                    let rendered = env
                        .render_str(template, ctx)
                        .map_err(|e| vec![PlanError::RunKeyTemplate(render_message(&e))])?;
                    RunKey::new(rendered.trim())
                }
                None => RunKey::new(DEFAULT_RUN_KEY),
            },
        }
        .map_err(|e| vec![e.into()])?;
        let run_context = RunContext {
            key: key.to_string(),
            name: workflow.name.clone(),
            date,
        };
        let templates = Templates::compile(workflow).expect("templates are checked by validation");

        // Expand every task into instances, in file order.
        let mut instances: Vec<Instance> = Vec::new();
        let mut by_task: Vec<Vec<usize>> = Vec::new();
        let mut slug_index: Vec<HashMap<String, usize>> = Vec::new();
        let mut slug_of: Vec<String> = Vec::new();
        for (id, task) in &workflow.tasks {
            let settings = task.settings.or(&workflow.defaults);
            let task_slots = match (&task.repo, &task.fleet) {
                (Some(url), _) => vec![Slot {
                    repo: Some(url.clone()),
                    discover: None,
                    git_ref: None,
                    slug: url.slug(),
                }],
                (None, Some(fleet)) => slots(&workflow.fleets[fleet], fleet.as_str(), options),
                (None, None) => Vec::new(),
            };
            let mut indexes = Vec::new();
            let mut slugs = HashMap::new();
            for slot in task_slots {
                slugs.insert(slot.slug.to_ascii_lowercase(), instances.len());
                slug_of.push(slot.slug.to_ascii_lowercase());
                indexes.push(instances.len());
                instances.push(Instance {
                    key: InstanceKey::new(id, &slot.slug),
                    task: id.clone(),
                    repo: slot.repo,
                    discover: slot.discover,
                    git_ref: slot.git_ref.or_else(|| settings.git_ref.clone()),
                    branch: String::new(),
                    prompt: String::new(),
                    model: settings.model.clone(),
                    target: Target {
                        auto_create_pr: settings.auto_create_pr.unwrap_or(false),
                        open_as_cursor_github_app: settings
                            .open_as_cursor_github_app
                            .unwrap_or(false),
                        skip_reviewer_request: settings.skip_reviewer_request.unwrap_or(false),
                    },
                    options: AgentOptions::of(&settings),
                    timeout: settings.timeout.map(crate::spec::HumanDuration::get),
                    retries: settings.retries.unwrap_or(0),
                    condition: task.condition,
                    follow_ups: task.follow_ups.clone(),
                    needs: Vec::new(),
                    canaries: Vec::new(),
                    wave: 0,
                    action: Action::Launch,
                    relaunch: None,
                    changes: Vec::new(),
                });
            }
            by_task.push(indexes);
            slug_index.push(slugs);
        }

        // Needs between two tasks over the same fleet pair per repository; otherwise an
        // instance waits for every instance of the needed task.
        let mut paired: Vec<Vec<TaskId>> = vec![Vec::new(); instances.len()];
        for (task_index, (_, task)) in workflow.tasks.iter().enumerate() {
            for need in &task.needs {
                let need_index = workflow.tasks.get_index_of(need).expect("validated need");
                let same_fleet =
                    task.fleet.is_some() && task.fleet == workflow.tasks[need_index].fleet;
                for &instance in &by_task[task_index] {
                    let needed: Vec<usize> = if same_fleet {
                        slug_index[need_index]
                            .get(&slug_of[instance])
                            .copied()
                            .into_iter()
                            .collect()
                    } else {
                        by_task[need_index].clone()
                    };
                    if same_fleet {
                        paired[instance].push(need.clone());
                    }
                    instances[instance].needs.extend(needed);
                }
            }
        }

        // A staged rollout: the first instances of a task are canaries for the others.
        for (task_index, (_, task)) in workflow.tasks.iter().enumerate() {
            if let Some(rollout) = task.rollout {
                let members = &by_task[task_index];
                let count = (rollout.canary as usize).min(members.len());
                let (canaries, rest) = members.split_at(count);
                for &instance in rest {
                    instances[instance].canaries = canaries.to_vec();
                    instances[instance].needs.extend_from_slice(canaries);
                }
            }
        }

        // The DAG: an edge from each need to its dependent.
        let mut graph: DiGraph<usize, ()> =
            DiGraph::with_capacity(instances.len(), instances.len());
        let nodes: Vec<NodeIndex> = (0..instances.len()).map(|i| graph.add_node(i)).collect();
        for (index, instance) in instances.iter().enumerate() {
            for &need in &instance.needs {
                graph.add_edge(nodes[need], nodes[index], ());
            }
        }
        let order = toposort(&graph, None).expect("cycles are rejected by validation");
        for &node in &order {
            let index = graph[node];
            let wave = graph
                .neighbors_directed(node, Direction::Incoming)
                .map(|n| instances[graph[n]].wave + 1)
                .max()
                .unwrap_or(0);
            instances[index].wave = wave;
        }

        // Plan order: wave, then file order (which expansion already follows).
        let mut order: Vec<usize> = (0..instances.len()).collect();
        order.sort_by_key(|&i| instances[i].wave);
        let mut position = vec![0; instances.len()];
        for (new, &old) in order.iter().enumerate() {
            position[old] = new;
        }
        let mut slots: Vec<Option<Instance>> = instances.into_iter().map(Some).collect();
        let mut instances: Vec<Instance> = order
            .iter()
            .map(|&old| slots[old].take().expect("once"))
            .collect();
        let paired: Vec<Vec<TaskId>> = order.iter().map(|&old| paired[old].clone()).collect();
        for instance in &mut instances {
            for need in instance
                .needs
                .iter_mut()
                .chain(instance.canaries.iter_mut())
            {
                *need = position[*need];
            }
            instance.needs.sort_unstable();
            instance.canaries.sort_unstable();
        }
        let wave_count = instances.last().map_or(0, |i| i.wave + 1);
        let mut waves = vec![Vec::new(); wave_count];
        for (index, instance) in instances.iter().enumerate() {
            waves[instance.wave].push(index);
        }

        let mut plan = Plan {
            workflow: workflow.name.clone(),
            description: workflow.description.clone(),
            // Validation reported a bad CURSOR_API_VERSION already.
            api: workflow.api().unwrap_or_default(),
            run: RunId::new(&workflow.name, &key),
            run_context,
            concurrency: workflow.concurrency,
            instances,
            waves,
            vars: workflow.vars.clone(),
            templates,
            paired,
        };
        plan.render_all()?;
        Ok(plan)
    }

    /// Renders every instance's branch and prompt, with placeholders for the outputs of needs.
    fn render_all(&mut self) -> Result<(), Vec<PlanError>> {
        let mut errors = Vec::new();
        for index in 0..self.instances.len() {
            let key = self.instances[index].key.clone();
            let task = self.instances[index].task.clone();
            let placeholders = |need: &Instance| {
                let output = AgentOutput::placeholder(&need.key, &need.branch);
                NeedContext::new(need, "<state>", output)
            };
            let context = self.context(index, placeholders, None);
            // Only v0 lets orchestrate name the branch; elsewhere the agent names it, and it is
            // known once the agent reports it.
            let branch = if self.api.names_branches() {
                self.templates.render(Field::Branch(&task), &context)
            } else {
                Ok(String::new())
            };
            let prompt = self.templates.render(Field::Prompt(&task), &context);
            let failed = |field, error: &minijinja::Error| PlanError::Render {
                instance: key.clone(),
                task: task.clone(),
                field,
                message: render_message(error),
            };
            match (branch, prompt) {
                (Err(error), _) => errors.push(failed("branch", &error)),
                (_, Err(error)) => errors.push(failed("prompt", &error)),
                (Ok(branch), Ok(prompt)) => {
                    let branch = branch.trim().to_owned();
                    // A discover instance's branch holds a placeholder until it is resolved.
                    let resolved =
                        self.instances[index].repo.is_some() && self.api.names_branches();
                    if let (true, Err(reason)) = (resolved, check_branch(&branch)) {
                        errors.push(PlanError::Branch {
                            instance: key,
                            task: task.clone(),
                            branch: branch.clone(),
                            reason,
                        });
                    }
                    self.instances[index].branch = branch;
                    self.instances[index].prompt = prompt;
                }
            }
        }
        let mut seen: HashMap<(String, &str), &InstanceKey> = HashMap::new();
        for instance in self.instances.iter().filter(|_| self.api.names_branches()) {
            let repo = instance.repo.as_ref().map_or_else(
                || instance.key.to_string(),
                |r| r.slug().to_ascii_lowercase(),
            );
            if let Some(first) = seen.insert((repo, instance.branch.as_str()), &instance.key) {
                errors.push(PlanError::SameBranch {
                    first: first.clone(),
                    second: instance.key.clone(),
                    task: instance.task.clone(),
                    branch: instance.branch.clone(),
                });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The template context of instance `index`; `need` gives each needed instance's entry.
    pub fn context(
        &self,
        index: usize,
        need: impl Fn(&Instance) -> NeedContext,
        agent: Option<AgentOutput>,
    ) -> Context<'_> {
        let instance = &self.instances[index];
        let mut needs: IndexMap<String, Needs> = IndexMap::new();
        for n in instance.task_needs() {
            let needed = &self.instances[n];
            let entry = need(needed);
            if self.paired[index].contains(&needed.task) {
                needs.insert(needed.task.to_string(), Needs::One(Box::new(entry)));
            } else {
                match needs
                    .entry(needed.task.to_string())
                    .or_insert_with(|| Needs::All(Vec::new()))
                {
                    Needs::All(list) => list.push(entry),
                    Needs::One(_) => {}
                }
            }
        }
        Context {
            repo: instance.repo_context(),
            run: &self.run_context,
            task: TaskContext {
                id: instance.task.to_string(),
            },
            vars: &self.vars,
            needs,
            agent,
        }
    }

    /// How many instances wait on a discover fleet to be resolved.
    pub fn deferred(&self) -> usize {
        self.instances.iter().filter(|i| i.repo.is_none()).count()
    }
}

/// Whether `branch` is a branch name git accepts (the rules of `git check-ref-format`).
fn check_branch(branch: &str) -> Result<(), &'static str> {
    if branch.is_empty() {
        return Err("it is empty");
    }
    if branch.len() > 200 {
        return Err("it is longer than 200 characters");
    }
    if branch.starts_with(['-', '/', '.'])
        || branch.ends_with(['/', '.'])
        || branch.to_ascii_lowercase().ends_with(".lock")
    {
        return Err("it starts or ends with a character git does not allow there");
    }
    if branch.contains("..")
        || branch.contains("//")
        || branch.contains("@{")
        || branch.contains("/.")
    {
        return Err("it holds `..`, `//`, `/.` or `@{`");
    }
    if branch
        .chars()
        .any(|c| c.is_ascii_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
    {
        return Err("it holds a space, a control character or one of ~ ^ : ? * [ \\");
    }
    Ok(())
}

#[cfg(test)]
mod render_tests {
    #[test]
    fn a_render_error_names_the_expression_its_line_and_a_default() {
        let env = crate::spec::template::environment();
        let template = env
            .template_from_str("Ship it.\nPR: {{ need.pr_url }}")
            .unwrap();
        let error = template
            .render(minijinja::context! { need => minijinja::context! {} })
            .unwrap_err();
        insta::assert_snapshot!(super::render_message(&error), @"undefined value: `need.pr_url` (template line 2); if it may be missing, say what to print instead: `{{ need.pr_url or 'none' }}`");
        // A value that is there but empty (no PR opened) is the same error, not "".
        let error = template
            .render(minijinja::context! { need => minijinja::context! { pr_url => () } })
            .unwrap_err();
        insta::assert_snapshot!(super::render_message(&error), @"a value is missing, and would print as nothing: `need.pr_url` (template line 2); if it may be missing, say what to print instead: `{{ need.pr_url or 'none' }}`");
        let shown = env
            .template_from_str("{{ need.pr_url or 'no PR' }}{% if not need.pr_url %}!{% endif %}")
            .unwrap()
            .render(minijinja::context! { need => minijinja::context! { pr_url => () } })
            .unwrap();
        assert_eq!(shown, "no PR!");
    }
}
