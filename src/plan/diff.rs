//! What `apply` will do with each instance, given what an earlier apply recorded.

use std::collections::HashMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Action, Instance, Plan, RelaunchReason};

/// What the state says of an instance, as far as the diff is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The hash of the spec it ran with.
    pub spec_hash: String,
    /// How it ended, if it did.
    pub end: End,
    /// The user asked to run it again (`retry`).
    pub relaunch_requested: bool,
    /// An agent was launched for it, or a launch was begun (and may have made one).
    pub launched: bool,
}

/// How a recorded instance ended, as far as the diff is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Not yet: it continues where it was.
    Unfinished,
    /// Succeeded: kept while its spec is the same.
    Succeeded,
    /// Failed or timed out: kept until a retry asks for it.
    Unsuccessful,
    /// Cancelled (`cancel`, a second Ctrl-C): the next apply continues it with a new attempt.
    Cancelled,
}

/// One field of an instance's spec as the recorded run had it and as the workflow has it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `prompt`, `repo`, `follow-up 2`...
    pub field: String,
    /// As recorded.
    pub before: String,
    /// As the workflow says now.
    pub after: String,
}

impl Instance {
    /// The fields its spec hash covers, each as text: what a relaunch's diff compares.
    fn spec_fields(&self) -> Vec<(String, String)> {
        let mut fields = vec![
            (
                "repo".to_owned(),
                self.repo
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
            ("ref".to_owned(), self.git_ref.clone().unwrap_or_default()),
            ("branch".to_owned(), self.branch.clone()),
            ("model".to_owned(), self.model.clone().unwrap_or_default()),
            (
                "target".to_owned(),
                serde_json::to_string(&self.target).unwrap_or_default(),
            ),
            ("prompt".to_owned(), self.prompt.clone()),
        ];
        let count = self.follow_ups.len();
        for (n, follow_up) in self.follow_ups.iter().enumerate() {
            let when = follow_up
                .condition
                .as_deref()
                .map(|c| format!("if {c}\n"))
                .unwrap_or_default();
            fields.push((
                format!("follow-up {}", n + 1),
                format!("{when}{}", follow_up.prompt),
            ));
        }
        fields.push(("follow-ups".to_owned(), count.to_string()));
        fields
    }

    /// What differs in its spec from `before`, the same instance in the recorded run.
    pub fn changes_from(&self, before: &Instance) -> Vec<Change> {
        let old: HashMap<String, String> = before.spec_fields().into_iter().collect();
        let mut changes: Vec<Change> = self
            .spec_fields()
            .into_iter()
            .filter_map(|(field, after)| {
                let before = old.get(&field).cloned().unwrap_or_default();
                (before != after).then_some(Change {
                    field,
                    before,
                    after,
                })
            })
            .collect();
        // Follow-ups only the recorded run had are changes too.
        let now: Vec<String> = self.spec_fields().into_iter().map(|(f, _)| f).collect();
        for (field, before) in before.spec_fields() {
            if !now.contains(&field) {
                changes.push(Change {
                    field,
                    before,
                    after: String::new(),
                });
            }
        }
        changes
    }

    /// The hash of what makes this instance's agent do what it does: repository, ref, branch,
    /// model, target, prompt (with placeholders for outputs of needs) and follow-ups. A
    /// change to any of them relaunches it on re-apply.
    pub fn spec_hash(&self) -> String {
        let spec = serde_json::json!({
            "repo": self.repo.as_ref().map(ToString::to_string),
            "ref": self.git_ref,
            "branch": self.branch,
            "model": self.model,
            "target": self.target,
            "prompt": self.prompt,
            "follow_ups": self.follow_ups.iter().map(|f| (&f.prompt, &f.condition)).collect::<Vec<_>>(),
        });
        hex::encode(Sha256::digest(spec.to_string().as_bytes()))
    }
}

impl Plan {
    /// Sets each instance's action from what was recorded: new ones launch, changed or
    /// retried ones relaunch (and so do their dependents), ended ones with the same spec are
    /// kept, the others continue where they were.
    pub fn diff(&mut self, recorded: &HashMap<String, Recorded>) {
        // Plan order is topological: a need's action is known before its dependents'.
        for index in 0..self.instances.len() {
            let instance = &self.instances[index];
            let need_relaunched = instance
                .needs
                .iter()
                .any(|&n| self.instances[n].action == Action::Relaunch);
            let (action, relaunch) = match recorded.get(instance.key.as_str()) {
                None => (Action::Launch, None),
                Some(r) if r.spec_hash != instance.spec_hash() => {
                    (Action::Relaunch, Some(RelaunchReason::SpecChanged))
                }
                Some(r) if r.relaunch_requested => {
                    (Action::Relaunch, Some(RelaunchReason::RetryRequested))
                }
                Some(r) if r.end == End::Cancelled => {
                    (Action::Relaunch, Some(RelaunchReason::Cancelled))
                }
                Some(r) if need_relaunched && r.end != End::Unfinished => {
                    (Action::Relaunch, Some(RelaunchReason::NeedRelaunched))
                }
                Some(r) if r.end != End::Unfinished => (Action::Keep, None),
                // Recorded but never launched (a run stopped before its turn, or blocked by a
                // need that runs again): what happens is a launch, and the plan says so.
                Some(r) if !r.launched => (Action::Launch, None),
                Some(_) => (Action::Continue, None),
            };
            self.instances[index].relaunch = relaunch;
            self.instances[index].action = action;
        }
    }

    /// Notes on each instance relaunched because its spec changed what changed since
    /// `recorded`, the plan of the workflow as the recorded run last applied it.
    pub fn explain(&mut self, recorded: &Plan) {
        let before: HashMap<&str, &Instance> = recorded
            .instances
            .iter()
            .map(|i| (i.key.as_str(), i))
            .collect();
        for instance in &mut self.instances {
            if instance.relaunch != Some(RelaunchReason::SpecChanged) {
                continue;
            }
            if let Some(old) = before.get(instance.key.as_str()) {
                instance.changes = instance.changes_from(old);
            }
        }
    }

    /// Marks the instances to launch or continue that already have their launch in the API
    /// (`found` says which) as adopted.
    pub fn adopt(&mut self, found: impl Fn(&Instance) -> bool) {
        for instance in &mut self.instances {
            let open = matches!(instance.action, Action::Launch | Action::Continue);
            if open && found(instance) {
                instance.action = Action::Adopt;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Options;
    use crate::spec::{self, SourceFile};

    fn pipeline(prompt: &str) -> Plan {
        let yaml = format!(
            "version: 1\nname: p\nfleets:\n  f:\n    - https://github.com/a/x\n    - https://github.com/a/y\n\
             tasks:\n  bump:\n    fleet: f\n    prompt: {prompt}\n  fix:\n    fleet: f\n    needs: [bump]\n    prompt: fix\n\
             \n  notes:\n    repo: https://github.com/a/docs\n    needs: [fix]\n    prompt: notes\n"
        );
        let workflow = spec::parse(&SourceFile::new("p.yaml", yaml)).unwrap();
        Plan::build(&workflow, &Options::default()).unwrap()
    }

    fn recorded_from(plan: &Plan, succeeded: bool) -> HashMap<String, Recorded> {
        plan.instances
            .iter()
            .map(|i| {
                let r = Recorded {
                    spec_hash: i.spec_hash(),
                    end: if succeeded {
                        End::Succeeded
                    } else {
                        End::Unfinished
                    },
                    relaunch_requested: false,
                    launched: true,
                };
                (i.key.to_string(), r)
            })
            .collect()
    }

    fn actions(plan: &Plan) -> Vec<(String, String)> {
        plan.instances
            .iter()
            .map(|i| {
                let action = match i.relaunch {
                    Some(reason) => format!("relaunch: {reason}"),
                    None => i.action.as_str().to_owned(),
                };
                (i.key.to_string(), action)
            })
            .collect()
    }

    #[test]
    fn an_edited_prompt_relaunches_its_instances_and_their_dependents_only() {
        let before = pipeline("bump");
        let recorded = recorded_from(&before, true);
        let mut same = pipeline("bump");
        same.diff(&recorded);
        assert!(same.instances.iter().all(|i| i.action == Action::Keep));

        let mut edited = pipeline("bump harder");
        edited.diff(&recorded);
        assert_eq!(
            edited.instances[0].relaunch,
            Some(RelaunchReason::SpecChanged)
        );
        assert!(
            edited
                .instances
                .iter()
                .all(|i| i.action == Action::Relaunch),
            "{:?}",
            actions(&edited)
        );
    }

    #[test]
    fn a_retried_instance_relaunches_with_its_own_dependents() {
        let plan = pipeline("bump");
        let mut recorded = recorded_from(&plan, true);
        recorded.get_mut("bump[a/x]").unwrap().relaunch_requested = true;
        let mut again = pipeline("bump");
        again.diff(&recorded);
        assert_eq!(
            actions(&again),
            [
                ("bump[a/x]".into(), "relaunch: retry requested".into()),
                ("bump[a/y]".into(), "keep".into()),
                ("fix[a/x]".into(), "relaunch: a need was relaunched".into()),
                ("fix[a/y]".into(), "keep".into()),
                (
                    "notes[a/docs]".into(),
                    "relaunch: a need was relaunched".into()
                ),
            ]
        );
    }

    #[test]
    fn a_cancelled_instance_is_never_kept_it_relaunches_and_says_why() {
        let plan = pipeline("bump");
        let mut recorded = recorded_from(&plan, false);
        // Cancelled while it worked: ended, not succeeded; its dependents were skipped.
        let bump = recorded.get_mut("bump[a/y]").unwrap();
        bump.end = End::Cancelled;
        let mut again = pipeline("bump");
        again.diff(&recorded);
        let actions = actions(&again);
        assert_eq!(
            actions[1],
            ("bump[a/y]".into(), "relaunch: it was cancelled".into())
        );
        assert_eq!(actions[3], ("fix[a/y]".into(), "continue".into()));
        assert!(
            again.instances.iter().all(|i| i.action != Action::Keep),
            "{actions:?}"
        );
    }

    #[test]
    fn unfinished_instances_continue_and_new_ones_launch() {
        let plan = pipeline("bump");
        let mut recorded = recorded_from(&plan, false);
        recorded.remove("notes[a/docs]");
        let mut again = pipeline("bump");
        again.diff(&recorded);
        assert_eq!(again.instances[0].action, Action::Continue);
        assert_eq!(again.instances[4].action, Action::Launch);
        // Recorded, but never launched (a run stopped before its turn): a launch.
        recorded.get_mut("bump[a/y]").unwrap().launched = false;
        again.diff(&recorded);
        assert_eq!(again.instances[1].action, Action::Launch);
    }

    #[test]
    fn a_changed_prompt_says_what_changed() {
        let before = pipeline("bump it");
        let mut after = pipeline("\"bump it\\nand test\"");
        after.diff(&recorded_from(&before, true));
        after.explain(&before);
        let changes = &after.instances[0].changes;
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].field, "prompt");
        assert_eq!(changes[0].before, "bump it");
        assert!(
            after.instances[2].changes.is_empty(),
            "fix relaunches for its need only"
        );
        let text = after.render(crate::plan::Format::Text);
        assert!(
            text.contains("~ bump[a/x] (relaunch: its prompt changed; a new agent)"),
            "{text}"
        );
        assert!(
            text.contains("        | bump it\n      + | and test"),
            "{text}"
        );
    }
}
