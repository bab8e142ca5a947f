//! `orchestrate plan FILE`: what `apply` would do, against the recorded run when there is one.

use std::path::Path;

use super::workflow::load_and_plan;
use super::{Error, Exit, Output};
use crate::apply::{discovered_from_cache, now_or, recorded_map};
use crate::plan::{Format, Options, Plan};
use crate::state::{InstanceRecord, Location, StoreHandle};

/// Prints the plan of `file` in `format`, with the diff against the state at `state`,
/// and the launches the API already holds (when `CURSOR_API_KEY` lets it look) as adopted.
pub async fn run(
    out: &Output,
    state: &Location,
    file: &Path,
    format: Format,
    run_key: Option<String>,
    detailed_exitcode: bool,
) -> Result<Exit, Error> {
    let keyed = run_key.is_some();
    let options = Options {
        run_key,
        ..Options::default()
    };
    let (loaded, mut plan) = load_and_plan(file, &options)?;
    let mut recorded = Vec::new();
    if state.exists() {
        match StoreHandle::open(state) {
            Ok(store) => {
                if let Some((diffed, records)) =
                    against_state(&store, &loaded.workflow, &plan).await
                {
                    (plan, recorded) = (diffed, records);
                }
                store.close().await;
            }
            Err(error) => out.status(&format!(
                "note: {error}; the plan below ignores the recorded state"
            )),
        }
    }
    match crate::apply::mark_adopted(&mut plan, &recorded).await {
        Ok(false) if keyed => out.status(
            "note: without CURSOR_API_KEY, launches of this run that an earlier state made are not looked for: `apply` adopts them instead of launching",
        ),
        Ok(_) => {}
        Err(error) => out.status(&format!(
            "note: {error}; `apply` looks again before launching anything"
        )),
    }
    out.stdout(&plan.render_colored(format, out.stdout_color()));
    Ok(if detailed_exitcode && plan.changes() > 0 {
        Exit::CHANGES
    } else {
        Exit::Success
    })
}

/// The plan again, as `apply` would build it for the recorded run, with each action set, and
/// the run's records.
async fn against_state(
    store: &StoreHandle,
    workflow: &crate::spec::Workflow,
    plan: &Plan,
) -> Option<(Plan, Vec<InstanceRecord>)> {
    let id = plan.run.to_string();
    let (run, records) = store
        .read(move |s| Ok((s.run(&id)?, s.instances(&id)?)))
        .await
        .ok()?;
    let run = run?;
    let options = Options {
        run_key: Some(run.key.clone()),
        now: now_or(Some(&run)),
        discovered: discovered_from_cache(workflow, store).await,
    };
    let mut diffed = Plan::build(workflow, &options).ok()?;
    diffed.diff(&recorded_map(&records, &[]));
    // The workflow as the run last applied it says what a changed instance was.
    let source = crate::spec::SourceFile::new(run.file.clone(), run.source.as_str());
    if let Ok(recorded) = crate::spec::load_source(source) {
        if let Ok(before) = Plan::build(&recorded.workflow, &options) {
            diffed.explain(&before);
        }
    }
    Some((diffed, records))
}
