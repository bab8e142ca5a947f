//! A workflow's templates, compiled once and rendered per instance.

use indexmap::IndexMap;
use minijinja::Environment;
use serde::Serialize;

use super::context::{AgentOutput, NeedContext, RepoContext, RunContext, TaskContext};
use crate::spec::{TaskId, Workflow, template};

/// Where a template sits in the workflow; also its name in the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// `tasks.<id>.prompt`.
    Prompt(&'a TaskId),
    /// `tasks.<id>.branch`, else `defaults.branch`, else the default branch template.
    Branch(&'a TaskId),
    /// `tasks.<id>.follow_ups[i].prompt`.
    FollowUp(&'a TaskId, usize),
}

impl Field<'_> {
    fn name(self) -> String {
        match self {
            Field::Prompt(task) => format!("tasks.{task}.prompt"),
            Field::Branch(task) => format!("tasks.{task}.branch"),
            Field::FollowUp(task, index) => format!("tasks.{task}.follow_ups[{index}].prompt"),
        }
    }
}

/// The branch of a task that sets none: unique per workflow, run and task, so that a resumed
/// run can recognise its own agents by repository and branch.
pub const DEFAULT_BRANCH: &str = "orchestrate/{{ run.name }}/{{ run.key }}/{{ task.id }}";

/// `needs.<task>`: one entry when paired per repository, else all of them.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Needs {
    /// The instance of the same repository.
    One(Box<NeedContext>),
    /// Every instance of the needed task.
    All(Vec<NeedContext>),
}

/// Everything a template of one instance can see.
#[derive(Debug, Serialize)]
pub struct Context<'a> {
    /// `repo.*`.
    pub repo: RepoContext,
    /// `run.*`.
    pub run: &'a RunContext,
    /// `task.*`.
    pub task: TaskContext,
    /// `vars.*`.
    pub vars: &'a IndexMap<String, serde_json::Value>,
    /// `needs.<task>`.
    pub needs: IndexMap<String, Needs>,
    /// `agent.*`, in follow-ups only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentOutput>,
}

/// The compiled templates of a workflow.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Templates {
    /// Compiles every template of `workflow` (already validated, so compiling succeeds).
    pub fn compile(workflow: &Workflow) -> Result<Self, minijinja::Error> {
        let mut env = template::environment();
        for (id, task) in &workflow.tasks {
            env.add_template_owned(Field::Prompt(id).name(), task.prompt.clone())?;
            let branch = task
                .settings
                .branch
                .clone()
                .or_else(|| workflow.defaults.branch.clone())
                .unwrap_or_else(|| DEFAULT_BRANCH.to_owned());
            env.add_template_owned(Field::Branch(id).name(), branch)?;
            for (index, follow_up) in task.follow_ups.iter().enumerate() {
                env.add_template_owned(
                    Field::FollowUp(id, index).name(),
                    follow_up.prompt.clone(),
                )?;
            }
        }
        Ok(Self { env })
    }

    /// Renders `field` with `context`.
    pub fn render(
        &self,
        field: Field<'_>,
        context: &Context<'_>,
    ) -> Result<String, minijinja::Error> {
        self.env.get_template(&field.name())?.render(context)
    }

    /// Evaluates a follow-up's `if` expression with `context`.
    pub fn condition(
        &self,
        expression: &str,
        context: &Context<'_>,
    ) -> Result<bool, minijinja::Error> {
        let value = self.env.compile_expression(expression)?.eval(context)?;
        Ok(value.is_true())
    }
}
