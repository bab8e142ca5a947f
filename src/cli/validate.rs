//! `orchestrate validate FILE...`.

use std::path::PathBuf;

use super::workflow::load_and_plan;
use super::{Error, Exit, Output};
use crate::plan::Options;

/// Validates each file and plans it (a workflow that cannot be planned is not valid).
pub fn run(out: &Output, files: &[PathBuf]) -> Result<Exit, Error> {
    let mut errors = Vec::new();
    for file in files {
        match load_and_plan(file, &Options::default()) {
            Ok((loaded, plan)) => {
                let tasks = loaded.workflow.tasks.len();
                let instances = plan.instances.len();
                let deferred = match plan.deferred() {
                    0 => String::new(),
                    n => format!(", {n} on discover fleets"),
                };
                out.status(&format!(
                    "{}: valid ({tasks} task{}, {instances} instance{}{deferred})",
                    file.display(),
                    plural(tasks),
                    plural(instances),
                ));
            }
            // The valid ones are said first, then the problems of the others.
            Err(error) => errors.push(error),
        }
    }
    match errors.len() {
        0 => Ok(Exit::Success),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Many(errors)),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
