//! Loading and planning a workflow file for a command, reporting problems on the way.

use std::path::Path;

use super::Error;
use crate::plan::{Options, Plan, PlanError};
use crate::spec::{self, Diagnostic, Loaded};

/// Loads and plans `file`; a plan's problems are located in the file.
pub fn load_and_plan(file: &Path, options: &Options) -> Result<(Loaded, Plan), Error> {
    let loaded = spec::load(file)?;
    match Plan::build(&loaded.workflow, options) {
        Ok(plan) => Ok((loaded, plan)),
        Err(errors) => {
            if let (Some(_), Some(error)) = (
                &options.run_key,
                errors.iter().find(|e| matches!(e, PlanError::RunKey(_))),
            ) {
                return Err(Error::Usage(format!("--run: {error}")));
            }
            let diagnostics = errors.iter().map(|e| plan_diagnostic(&loaded, e)).collect();
            Err(Error::Invalid(loaded.invalid(diagnostics)))
        }
    }
}

fn plan_diagnostic(loaded: &Loaded, error: &PlanError) -> Diagnostic {
    match error.path(&loaded.workflow) {
        Some(path) => {
            // A whole task is pointed at by its key, a field by its value.
            let text = path.to_string();
            let on_key = text.starts_with("tasks.") && text.matches('.').count() == 1;
            loaded.diagnostic(&path, on_key, error.to_string(), error.label())
        }
        None => Diagnostic::file(error.to_string()),
    }
}
