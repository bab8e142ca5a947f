//! `orchestrate validate FILE...`.

use std::path::PathBuf;

use super::{Exit, Output};
use crate::plan::{Options, Plan};
use crate::spec;

/// Validates each file and plans it (a workflow that cannot be planned is not valid).
pub fn run(out: &Output, files: &[PathBuf]) -> Exit {
    let mut exit = Exit::Success;
    for file in files {
        match spec::load(file) {
            Ok(workflow) => match Plan::build(&workflow, &Options::default()) {
                Ok(plan) => {
                    let deferred = plan.deferred();
                    let discover = if deferred > 0 { format!(", {deferred} on discover fleets") } else { String::new() };
                    out.status(&format!(
                        "{}: valid ({} task{}, {} instance{}{discover})",
                        file.display(),
                        workflow.tasks.len(),
                        if workflow.tasks.len() == 1 { "" } else { "s" },
                        plan.instances.len(),
                        if plan.instances.len() == 1 { "" } else { "s" },
                    ));
                }
                Err(errors) => {
                    for error in errors {
                        out.error(&format!("{}: {error}", file.display()));
                    }
                    exit = Exit::Invalid;
                }
            },
            Err(error) => {
                out.load_error(&error);
                exit = Exit::Invalid;
            }
        }
    }
    exit
}
