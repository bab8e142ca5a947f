//! `orchestrate plan FILE`.

use std::path::Path;

use super::workflow::load_and_plan;
use super::{Exit, Output};
use crate::plan::{Format, Options};

/// Prints the plan of `file` in `format`.
pub fn run(out: &Output, file: &Path, format: Format, run_key: Option<String>) -> Exit {
    let options = Options {
        run_key,
        ..Options::default()
    };
    match load_and_plan(out, file, &options) {
        Ok((_, plan)) => {
            out.stdout(&plan.render(format));
            Exit::Success
        }
        Err(code) => code,
    }
}
