//! `orchestrate plan FILE`.

use std::path::Path;

use super::{Exit, Output};
use crate::plan::{Format, Options, Plan};
use crate::spec;

/// Prints the plan of `file` in `format`.
pub fn run(out: &Output, file: &Path, format: Format, run_key: Option<String>) -> Exit {
    let workflow = match spec::load(file) {
        Ok(workflow) => workflow,
        Err(error) => {
            out.load_error(&error);
            return Exit::Invalid;
        }
    };
    let options = Options { run_key, ..Options::default() };
    match Plan::build(&workflow, &options) {
        Ok(plan) => {
            out.stdout(&plan.render(format));
            Exit::Success
        }
        Err(errors) => {
            for error in errors {
                out.error(&format!("{}: {error}", file.display()));
            }
            Exit::Invalid
        }
    }
}
