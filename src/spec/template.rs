//! Templates in workflows: the Jinja environment, and what each template may refer to.
//!
//! Templates use strict undefined variables: a misspelt name is a validation error, never an
//! empty string in a prompt sent to a paid agent. Names are checked statically against the
//! scope of the field that holds the template, so a problem shows before anything runs,
//! even in a branch of an `{% if %}` that would not be taken.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior};

/// Fields of `repo` in templates.
pub const REPO_FIELDS: &[&str] = &["url", "owner", "name", "ref"];
/// Fields of `run` in templates.
pub const RUN_FIELDS: &[&str] = &["key", "name", "date"];
/// Fields of `task` in templates.
pub const TASK_FIELDS: &[&str] = &["id"];
/// Fields of `agent` in follow-ups, and of each entry of `needs.<task>`.
pub const AGENT_FIELDS: &[&str] = &["id", "status", "summary", "branch", "pr_url", "url"];
/// Extra fields of each entry of `needs.<task>`.
pub const NEED_FIELDS: &[&str] = &["key", "repo", "state"];

/// Rendering steps a template may take before it is stopped, so a runaway loop in a workflow
/// cannot hang `plan` or `apply`.
const FUEL: u64 = 200_000;

/// The environment every workflow template is compiled and rendered in.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Block tags on their own line leave no blank line behind: prompts read as written.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(64);
    // A missing value (a need that opened no PR, the default branch's `repo.ref`) is
    // `none`: testable in an `if`, an error where it would be printed as nothing.
    env.set_formatter(|out, state, value| {
        if value.is_none() {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::UndefinedError,
                "a value is missing, and would print as nothing",
            ));
        }
        minijinja::escape_formatter(out, state, value)
    });
    env
}

/// What a template may refer to.
#[derive(Debug, Clone, Default)]
pub struct Scope<'a> {
    /// `vars.*` names declared at the top level.
    pub vars: Vec<&'a str>,
    /// Whether `repo`, `run` and `task` are in scope (everything but `run_key`).
    pub instance: bool,
    /// Task ids usable as `needs.<task>`.
    pub needs: Vec<&'a str>,
    /// Those of `needs` that are a list (every instance of the task), not one paired entry:
    /// the two tasks are not on one fleet.
    pub listed: Vec<&'a str>,
    /// Whether `agent` is in scope (follow-ups).
    pub agent: bool,
    /// Whether the top-level `date` and `name` of `run_key` are in scope.
    pub run_key: bool,
}

/// A name a template uses that its scope does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// The name as written, for example `repo.nme`.
    pub name: String,
    /// The names that are in scope at that level.
    pub known: Vec<String>,
    /// What to write instead, when it is known better than by spelling.
    pub instead: Option<String>,
}

impl Scope<'_> {
    fn roots(&self) -> Vec<&str> {
        let mut roots = vec!["vars"];
        if self.instance {
            roots.extend(["repo", "run", "task", "needs"]);
        }
        if self.agent {
            roots.push("agent");
        }
        if self.run_key {
            roots.extend(["date", "name"]);
        }
        roots
    }

    fn fields(&self, root: &str) -> Option<Vec<&str>> {
        match root {
            "vars" => Some(self.vars.clone()),
            "repo" => Some(REPO_FIELDS.to_vec()),
            "run" => Some(RUN_FIELDS.to_vec()),
            "task" => Some(TASK_FIELDS.to_vec()),
            "agent" => Some(AGENT_FIELDS.to_vec()),
            "needs" => Some(self.needs.clone()),
            _ => None,
        }
    }

    /// The names among `used` (as reported by minijinja, `a.b.c`) that this scope lacks.
    pub fn unknown(&self, used: impl IntoIterator<Item = String>) -> Vec<UnknownName> {
        let env = environment();
        let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
        let roots = self.roots();
        let mut unknown = Vec::new();
        let mut used: Vec<String> = used.into_iter().collect();
        used.sort();
        for name in used {
            let mut parts = name.split('.');
            let root = parts.next().unwrap_or_default();
            if globals.contains(root) {
                continue;
            }
            if !roots.contains(&root) {
                let known = roots.iter().map(|r| (*r).to_owned()).collect();
                unknown.push(UnknownName {
                    name: root.to_owned(),
                    known,
                    instead: None,
                });
                continue;
            }
            if let (Some(field), Some(fields)) = (parts.next(), self.fields(root)) {
                if !fields.contains(&field) {
                    let known = fields.iter().map(|f| format!("{root}.{f}")).collect();
                    unknown.push(UnknownName {
                        name: format!("{root}.{field}"),
                        known,
                        instead: None,
                    });
                } else if let (true, Some(output)) = (root == "needs", parts.next()) {
                    // `needs.<task>.<output>`: what a need's agent gives, known now, not
                    // found missing when the need has run and paid for its agent.
                    let outputs = || NEED_FIELDS.iter().chain(AGENT_FIELDS);
                    let name = format!("needs.{field}.{output}");
                    if !outputs().any(|f| *f == output) {
                        unknown.push(UnknownName {
                            name,
                            known: outputs().map(|f| format!("needs.{field}.{f}")).collect(),
                            instead: None,
                        });
                    } else if self.listed.contains(&field) {
                        // Not on one fleet: `needs.<task>` is every instance of it.
                        unknown.push(UnknownName {
                            name,
                            known: Vec::new(),
                            instead: Some(format!(
                                "`needs.{field}` is the list of every `{field}` instance here (the two tasks are not on one fleet): write `needs.{field}[0].{output}` for the first, or loop with `{{% for n in needs.{field} %}}{{{{ n.{output} }}}}{{% endfor %}}`"
                            )),
                        });
                    }
                }
            }
        }
        unknown.dedup_by(|a, b| a.name == b.name);
        unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown_in(template: &str, scope: &Scope) -> Vec<String> {
        let env = environment();
        let used = env
            .template_from_str(template)
            .unwrap()
            .undeclared_variables(true);
        scope.unknown(used).into_iter().map(|u| u.name).collect()
    }

    #[test]
    fn names_are_checked_against_the_scope() {
        let scope = Scope {
            vars: vec!["team"],
            instance: true,
            needs: vec!["bump"],
            ..Scope::default()
        };
        let ok = "{{ repo.name }} {{ vars.team }} {% for t in needs.bump %}{{ t.pr_url }}{% endfor %}\
                  {% for i in range(3) %}{{ i }}{% endfor %}{{ run.key | upper }}";
        assert_eq!(unknown_in(ok, &scope), Vec::<String>::new());
        assert_eq!(
            unknown_in("{{ repo.nme }} {{ agent.id }} {{ vars.x }}", &scope),
            ["agent", "repo.nme", "vars.x"]
        );
        assert_eq!(unknown_in("{{ needs.fix }}", &scope), ["needs.fix"]);
        // A need on another fleet is a list: its outputs are reached through an item.
        let listed = Scope {
            listed: vec!["bump"],
            ..scope.clone()
        };
        assert_eq!(
            unknown_in("{{ needs.bump.pr_url }}", &listed),
            ["needs.bump.pr_url"]
        );
        assert_eq!(
            unknown_in(
                "{{ needs.bump[0].pr_url }}{% for b in needs.bump %}{{ b.pr_url }}{% endfor %}",
                &listed
            ),
            Vec::<String>::new()
        );
        // A need's outputs are known before it runs: a typo is found now, not after.
        assert_eq!(
            unknown_in(
                "{{ needs.bump.pr_ulr }} {{ needs.bump.pr_url }} {{ needs.bump.repo.name }}",
                &scope
            ),
            ["needs.bump.pr_ulr"]
        );
    }

    #[test]
    fn run_key_sees_date_and_name_only() {
        let scope = Scope {
            run_key: true,
            ..Scope::default()
        };
        assert_eq!(
            unknown_in("{{ date }}-{{ name }}", &scope),
            Vec::<String>::new()
        );
        assert_eq!(unknown_in("{{ repo.name }}", &scope), ["repo"]);
    }

    #[test]
    fn runaway_templates_stop() {
        let env = environment();
        let out = env.render_str(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            (),
        );
        assert!(out.is_err());
    }
}
