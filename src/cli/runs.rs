//! `status`, `runs`, `cancel`, `retry`: looking at and acting on recorded runs.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::json;

use super::apply::{ApplyArgs, Source, apply};
use super::{Exit, Output};
use crate::exec::{AnyBackend, cancel_run};
use crate::state::{
    InstanceRecord, InstanceState, RunRecord, RunState, Store, StoreHandle, Timestamp,
};
use crate::state::{StateError, read_snapshot};

fn open(out: &Output, dir: &Path) -> Result<StoreHandle, Exit> {
    if !dir.join("db").exists() {
        out.error(&format!(
            "no state in {}: nothing has been applied there yet",
            dir.display()
        ));
        return Err(Exit::Invalid);
    }
    StoreHandle::open(dir).map_err(|e| {
        out.error(&e.to_string());
        Exit::Invalid
    })
}

/// The state and the run named `run` (or the most recent one) in it.
pub async fn open_run(
    out: &Output,
    dir: &Path,
    run: Option<String>,
) -> Result<(StoreHandle, RunRecord), Exit> {
    let store = open(out, dir)?;
    let run = find_run(out, &store, run).await?;
    Ok((store, run))
}

/// The run named `run`, or the most recent one.
async fn find_run(
    out: &Output,
    store: &StoreHandle,
    run: Option<String>,
) -> Result<RunRecord, Exit> {
    let runs = store.read(Store::runs).await.map_err(|e| {
        out.error(&e.to_string());
        Exit::Invalid
    })?;
    let found = match &run {
        Some(id) => runs.iter().find(|r| {
            &r.id == id
                || (r.workflow == *id && runs.iter().filter(|o| o.workflow == *id).count() == 1)
        }),
        None => runs.first(),
    };
    found.cloned().ok_or_else(|| {
        match run {
            Some(id) => {
                let known: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
                out.error(&format!(
                    "no run `{id}` in the state; runs: {}",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ));
            }
            None => out.error("no run in the state yet"),
        }
        Exit::Invalid
    })
}

fn counts(records: &[InstanceRecord]) -> serde_json::Map<String, serde_json::Value> {
    let mut counts = serde_json::Map::new();
    for state in InstanceState::ALL {
        let n = records.iter().filter(|r| r.state == state).count();
        if n > 0 {
            counts.insert(state.as_str().to_owned(), n.into());
        }
    }
    counts
}

/// `orchestrate status [RUN] [--json]`.
pub async fn status(out: &Output, dir: &Path, run: Option<String>, as_json: bool) -> Exit {
    // While an apply holds the state, its live snapshot answers.
    if dir.join("db").exists() {
        match StoreHandle::open(dir) {
            Err(StateError::Locked { holder, .. }) => {
                return live_status(out, dir, run.as_deref(), as_json, &holder);
            }
            Ok(probe) => probe.close().await,
            Err(_) => {} // reported by `open_run` below
        }
    }
    let (store, run) = match open_run(out, dir, run).await {
        Ok(found) => found,
        Err(exit) => return exit,
    };
    let id = run.id.clone();
    let records = match store.read(move |s| s.instances(&id)).await {
        Ok(records) => records,
        Err(error) => {
            out.error(&error.to_string());
            return Exit::Invalid;
        }
    };
    print_status(out, &run, &records, as_json);
    Exit::Success
}

/// `status` from the snapshot of the apply that holds the state.
fn live_status(out: &Output, dir: &Path, run: Option<&str>, as_json: bool, holder: &str) -> Exit {
    let Some((snapshot, written)) = read_snapshot(dir, run) else {
        out.error(&format!(
            "the state in {} is in use by another orchestrate ({holder}), which has written no snapshot yet",
            dir.display()
        ));
        return Exit::Invalid;
    };
    let age = SystemTime::now()
        .duration_since(written)
        .unwrap_or_default();
    out.status(&format!(
        "an apply is running ({holder}); its snapshot from {}s ago:",
        age.as_secs()
    ));
    print_status(out, &snapshot.run, &snapshot.instances, as_json);
    Exit::Success
}

/// Prints a run's instances, as a table or as the stable JSON.
fn print_status(out: &Output, run: &RunRecord, records: &[InstanceRecord], as_json: bool) {
    if as_json {
        let instances: Vec<serde_json::Value> = records
            .iter()
            .map(|r| {
                json!({
                    "key": r.key,
                    "state": r.state.as_str(),
                    "agent_id": r.agent_id,
                    "branch": r.branch,
                    "pr_url": r.pr_url,
                    "summary": r.summary,
                    "attempts": r.attempt,
                    "started_at": r.started_at.map(Timestamp::rfc3339),
                    "finished_at": r.finished_at.map(Timestamp::rfc3339),
                    "error": r.error,
                    "run_duration_ms": r.duration_ms,
                    "tokens": r.tokens,
                    "branches": r.branches,
                })
            })
            .collect();
        let body = json!({
            "run": run.id,
            "workflow": run.workflow,
            "api": run.api.as_str(),
            "state": run.state.as_str(),
            "counts": counts(records),
            "instances": instances,
        });
        out.stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&body).expect("plain JSON")
        ));
        return;
    }
    let mut text = format!(
        "run {} ({}), started {}\n",
        run.id,
        run.state.as_str(),
        run.started_at.rfc3339()
    );
    text.push_str("INSTANCE\tSTATE\tAGENT\tBRANCH\tPR\tATTEMPTS\tTIME\tTOKENS\tSUMMARY\n");
    for r in records {
        let time = r.elapsed().map_or_else(
            || "-".to_owned(),
            |d| humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string(),
        );
        let summary = r.error.as_deref().or(r.summary.as_deref()).unwrap_or("-");
        let summary: String = summary
            .lines()
            .next()
            .unwrap_or("-")
            .chars()
            .take(60)
            .collect();
        let _ = writeln!(
            text,
            "{}\t{}\t{}\t{}\t{}\t{}\t{time}\t{}\t{summary}",
            r.key,
            r.state.as_str(),
            r.agent_id.as_deref().unwrap_or("-"),
            if r.branch.is_empty() { "-" } else { &r.branch },
            r.pr_url.as_deref().unwrap_or("-"),
            r.attempt,
            r.tokens_text(),
        );
    }
    out.stdout(&text);
}

/// `orchestrate runs [--json]`.
pub async fn runs(out: &Output, dir: &Path, as_json: bool) -> Exit {
    let store = match open(out, dir) {
        Ok(store) => store,
        Err(exit) => return exit,
    };
    let listed = store
        .read(|s| {
            let runs = s.runs()?;
            runs.into_iter()
                .map(|run| Ok((s.instances(&run.id)?, run)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
    let listed = match listed {
        Ok(listed) => listed,
        Err(error) => {
            out.error(&error.to_string());
            return Exit::Invalid;
        }
    };
    if as_json {
        let body: Vec<serde_json::Value> = listed
            .iter()
            .map(|(records, run)| {
                json!({
                    "id": run.id,
                    "workflow": run.workflow,
                    "key": run.key,
                    "state": run.state.as_str(),
                    "started_at": run.started_at.rfc3339(),
                    "finished_at": run.finished_at.map(Timestamp::rfc3339),
                    "counts": counts(records),
                })
            })
            .collect();
        out.stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&body).expect("plain JSON")
        ));
        return Exit::Success;
    }
    let mut text = String::from("RUN\tSTATE\tSTARTED\tINSTANCES\n");
    for (records, run) in &listed {
        let counts: Vec<String> = counts(records)
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        let _ = writeln!(
            text,
            "{}\t{}\t{}\t{}",
            run.id,
            run.state.as_str(),
            run.started_at.rfc3339(),
            counts.join(", ")
        );
    }
    out.stdout(&text);
    Exit::Success
}

/// `orchestrate cancel RUN`.
pub async fn cancel(out: &Output, dir: &Path, run: Option<String>) -> Exit {
    let (store, run) = match open_run(out, dir, run).await {
        Ok(found) => found,
        Err(exit) => return exit,
    };
    if run.simulated {
        out.error(&format!(
            "run {} was simulated; its agents ended with its simulator",
            run.id
        ));
        return Exit::Invalid;
    }
    let client = match super::api::client_for(out, &run.api) {
        Ok(client) => client,
        Err(exit) => return exit,
    };
    let backend = Arc::new(AnyBackend::new(&run.api, client));
    match cancel_run(&store, backend.as_ref(), &run.id).await {
        Ok(done) => {
            out.status(&format!(
                "run {} cancelled: {} agent(s) stopped, {} instance(s) skipped",
                run.id, done.stopped, done.skipped
            ));
            for failure in &done.failures {
                out.error(&format!("could not stop {failure}"));
            }
            if done.failures.is_empty() {
                Exit::Success
            } else {
                Exit::ApiUnusable
            }
        }
        Err(error) => {
            out.error(&error.to_string());
            Exit::Invalid
        }
    }
}

/// `orchestrate retry RUN --failed`: relaunch the failed and timed-out instances (and
/// re-run their dependents) with the workflow the run recorded.
pub async fn retry(out: &Output, dir: &Path, run: Option<String>, mut args: ApplyArgs) -> Exit {
    let record = {
        let store = match open(out, dir) {
            Ok(store) => store,
            Err(exit) => return exit,
        };
        let found = find_run(out, &store, run).await;
        store.close().await;
        match found {
            Ok(run) => run,
            Err(exit) => return exit,
        }
    };
    args.run = Some(record.key.clone());
    args.simulate = record.simulated;
    let source = Source {
        name: record.file.clone(),
        text: Some(record.source.clone()),
    };
    apply(out, dir, &args, source, true).await
}

/// `orchestrate report [RUN] --format markdown|json|junit`.
pub async fn report(
    out: &Output,
    dir: &Path,
    run: Option<String>,
    format: crate::report::ReportFormat,
) -> Exit {
    let (store, run) = match open_run(out, dir, run).await {
        Ok(found) => found,
        Err(exit) => return exit,
    };
    let id = run.id.clone();
    match store.read(move |s| s.instances(&id)).await {
        Ok(instances) => {
            out.stdout(&crate::report::Report { run, instances }.render(format));
            Exit::Success
        }
        Err(error) => {
            out.error(&error.to_string());
            Exit::Invalid
        }
    }
}

/// `orchestrate runs prune --older-than AGE`.
pub async fn prune(out: &Output, dir: &Path, older_than: std::time::Duration) -> Exit {
    let store = match open(out, dir) {
        Ok(store) => store,
        Err(exit) => return exit,
    };
    let runs = match store.read(Store::runs).await {
        Ok(runs) => runs,
        Err(error) => {
            out.error(&error.to_string());
            return Exit::Invalid;
        }
    };
    let settled = |run: &RunRecord| {
        matches!(
            run.state,
            RunState::Succeeded | RunState::Failed | RunState::Cancelled
        )
    };
    let (old, kept): (Vec<RunRecord>, Vec<RunRecord>) = runs.into_iter().partition(|run| {
        settled(run) && run.finished_at.unwrap_or(run.started_at).elapsed() > older_than
    });
    let unsettled = kept.iter().filter(|r| !settled(r)).count();
    let writes = old
        .iter()
        .map(|run| crate::state::Write::RemoveRun(run.id.clone()))
        .collect();
    if let Err(error) = store.write(writes).await {
        out.error(&error.to_string());
        return Exit::Invalid;
    }
    for run in &old {
        out.stdout(&format!(
            "removed {} ({}, {})\n",
            run.id,
            run.state.as_str(),
            run.started_at.rfc3339()
        ));
    }
    let note = if unsettled > 0 {
        format!("; {unsettled} unsettled run(s) kept whatever their age")
    } else {
        String::new()
    };
    out.status(&format!(
        "pruned {} run(s), {} kept{note}",
        old.len(),
        kept.len()
    ));
    Exit::Success
}
