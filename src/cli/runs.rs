//! `status`, `runs`, `cancel`, `retry`: looking at and acting on recorded runs.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::apply::TuningArgs;
use super::{Error, Exit, Listing, Output};
use crate::exec::{AnyBackend, cancel_run};
use crate::report::{ListedRun, RunView, Table, Tone, first_line, natural_cmp, short_id};
use crate::state::read_snapshot;
use crate::state::{
    Counts, InstanceRecord, InstanceState, Location, RunRecord, RunState, Store, StoreHandle,
};

fn open(state: &Location) -> Result<StoreHandle, Error> {
    if !state.exists() {
        return Err(Error::Usage(format!(
            "no state in {}: nothing has been applied there yet",
            state.describe()
        )));
    }
    Ok(StoreHandle::open(state)?)
}

/// The state and the run named `run` (or the most recent one) in it.
pub async fn open_run(
    state: &Location,
    run: Option<String>,
) -> Result<(StoreHandle, RunRecord), Error> {
    let store = open(state)?;
    let run = find_run(&store, run).await?;
    Ok((store, run))
}

/// Who holds a state directory, when an apply does: then its live snapshot answers instead.
/// A shared database is read as it is, whoever applies its runs.
async fn apply_holding(state: &Location) -> Option<String> {
    if state.dir().is_none() || !state.exists() {
        return None;
    }
    match StoreHandle::open(state) {
        Err(crate::state::StateError::Locked { holder, .. }) => Some(holder),
        Ok(probe) => {
            probe.close().await;
            None
        }
        Err(_) => None, // reported when the state is opened for real
    }
}

/// The snapshot the apply holding the state (`holder`) writes of `run`, said as such.
fn snapshot(
    out: &Output,
    state: &Location,
    run: Option<&str>,
    holder: &str,
) -> Result<crate::state::Snapshot, Error> {
    let dir = state.dir().unwrap_or(Path::new(""));
    let Some((snapshot, written)) = read_snapshot(dir, run) else {
        return Err(Error::Usage(format!(
            "the state in {} is in use by another orchestrate ({holder}), which has written no snapshot{} yet",
            dir.display(),
            run.map(|r| format!(" of {r}")).unwrap_or_default()
        )));
    };
    let age = SystemTime::now()
        .duration_since(written)
        .unwrap_or_default();
    out.status(&format!(
        "an apply is running ({holder}); its snapshot from {}s ago:",
        age.as_secs()
    ));
    Ok(snapshot)
}

/// The run named `run`, or the most recent one.
async fn find_run(store: &StoreHandle, run: Option<String>) -> Result<RunRecord, Error> {
    let runs = store.read(Store::runs).await?;
    let found = match &run {
        Some(id) => runs.iter().find(|r| {
            &r.id == id
                || (r.workflow == *id && runs.iter().filter(|o| o.workflow == *id).count() == 1)
        }),
        None => runs.first(),
    };
    found.cloned().ok_or_else(|| match run {
        Some(id) => {
            let known: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
            let known = if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            };
            Error::Usage(format!("no run `{id}` in the state; runs: {known}"))
        }
        None => Error::Usage("no run in the state yet".into()),
    })
}

/// What `status` shows, and how.
#[derive(Debug, Clone, Default)]
pub struct StatusView {
    /// Table or JSON.
    pub format: Listing,
    /// Only instances in these states (all when empty).
    pub only: Vec<InstanceState>,
    /// Show it again as it changes until the run ends.
    pub watch: bool,
}

/// `--state-is failed`: an instance state by the word `status` prints for it.
pub fn parse_state(word: &str) -> Result<InstanceState, String> {
    let word = word.trim().replace('-', "_");
    InstanceState::ALL
        .into_iter()
        .find(|state| state.as_str() == word)
        .ok_or_else(|| {
            let known: Vec<&str> = InstanceState::ALL.iter().map(|s| s.as_str()).collect();
            // Typed states are short: a shared start is as good a guess as a close spelling.
            let start: String = word.chars().take(3).collect();
            let close = crate::spec::did_you_mean(&word, known.iter().copied())
                .or_else(|| {
                    known
                        .iter()
                        .copied()
                        .find(|k| !start.is_empty() && k.starts_with(&start))
                })
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            format!(
                "`{word}` is not a state; {close}states: {}",
                known.join(", ")
            )
        })
}

/// How often `status --watch` reads the run again.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// `orchestrate status [RUN] [-o json] [--state-is STATES] [--watch]`.
pub async fn status(
    out: &Output,
    state: &Location,
    run: Option<String>,
    view: StatusView,
) -> Result<Exit, Error> {
    loop {
        let (run_record, mut records) = read_status(out, state, run.clone(), !view.watch).await?;
        if !view.only.is_empty() {
            records.retain(|r| view.only.contains(&r.state));
        }
        let text = status_text(out, &run_record, &records, view.format);
        let live = run_record.state == RunState::Running;
        if !view.watch || !live {
            out.stdout(&text);
            return Ok(Exit::Success);
        }
        // In a terminal the table is drawn again in place; piped, each reading follows.
        let clear = if out.terminal().is_some() {
            "\x1b[H\x1b[2J"
        } else {
            ""
        };
        out.stdout(&format!("{clear}{text}"));
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// The run and its instances: from the live snapshot while an apply holds the state.
async fn read_status(
    out: &Output,
    state: &Location,
    run: Option<String>,
    say_snapshot: bool,
) -> Result<(RunRecord, Vec<InstanceRecord>), Error> {
    if let Some(holder) = apply_holding(state).await {
        let quiet = out.clone().quieted(!say_snapshot);
        let snapshot = snapshot(&quiet, state, run.as_deref(), &holder)?;
        return Ok((snapshot.run, snapshot.instances));
    }
    let (store, run) = open_run(state, run).await?;
    let id = run.id.clone();
    let records = store.read(move |s| s.instances(&id)).await?;
    if say_snapshot && let Some(holder) = store.holder(&run.id).await? {
        out.status(&format!(
            "an apply is running ({holder}); its records as of now:"
        ));
    }
    let run = store.as_found(run).await?;
    store.close().await;
    Ok((run, records))
}

/// A run's instances, as a table or as the stable JSON.
fn status_text(
    out: &Output,
    run: &RunRecord,
    records: &[InstanceRecord],
    format: Listing,
) -> String {
    if format == Listing::Json {
        return RunView::new(run, records).to_json();
    }
    let mut text = format!(
        "run {} ({}), started {}\n",
        run.id,
        run.state.as_str(),
        run.started_at.rfc3339()
    );
    let terminal = out.terminal();
    let mut table = Table::new(&[
        "INSTANCE", "STATE", "AGENT", "BRANCH", "PR", "ATTEMPTS", "TIME", "TOKENS", "SUMMARY",
    ]);
    let mut records: Vec<&InstanceRecord> = records.iter().collect();
    let order = task_order(run);
    let rank = |r: &InstanceRecord| order.get(&r.task).copied().unwrap_or((usize::MAX, 0));
    records.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then_with(|| natural_cmp(&a.key, &b.key))
    });
    for r in records {
        let time = r.elapsed().map_or_else(
            || "-".to_owned(),
            |d| humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string(),
        );
        let summary = r.error.as_deref().or(r.summary.as_deref()).unwrap_or("-");
        let agent = r.agent_id.as_deref().unwrap_or("-");
        // Piped rows keep whole ids and summaries: scripts and `grep` want them.
        let (agent, summary) = match terminal {
            Some(_) => (short_id(agent), first_line(summary, 200)),
            None => (agent.to_owned(), first_line(summary, usize::MAX)),
        };
        let plain = |text: &str| (text.to_owned(), Tone::Plain);
        table.toned([
            plain(&r.key),
            (r.state.as_str().to_owned(), Tone::of(r.state)),
            plain(&agent),
            plain(if r.branch.is_empty() { "-" } else { &r.branch }),
            plain(r.pr_url.as_deref().unwrap_or("-")),
            plain(&r.attempt.to_string()),
            plain(&time),
            plain(&r.tokens_text()),
            plain(&summary),
        ]);
    }
    text.push_str(&table.render(terminal));
    text
}

/// Each task's place in plan order, from the workflow the run recorded: its wave (the
/// longest chain of needs before it), then its place in the file. Empty if the recorded
/// workflow no longer loads; rows then follow their keys.
fn task_order(run: &RunRecord) -> std::collections::HashMap<String, (usize, usize)> {
    let source = crate::spec::SourceFile::new(run.file.clone(), run.source.as_str());
    let Ok(loaded) = crate::spec::load_source(source) else {
        return std::collections::HashMap::new();
    };
    let tasks = &loaded.workflow.tasks;
    let mut wave: Vec<Option<usize>> = vec![None; tasks.len()];
    // Needs form a DAG (validated), so a task's wave is known once its needs' are; a pass
    // per wave settles them all.
    for _ in 0..=tasks.len() {
        for (index, (_, task)) in tasks.iter().enumerate() {
            let needs: Option<Vec<usize>> = task
                .needs
                .iter()
                .map(|need| tasks.get_index_of(need).and_then(|n| wave[n]))
                .collect();
            wave[index] = needs.map(|needs| needs.into_iter().map(|w| w + 1).max().unwrap_or(0));
        }
    }
    tasks
        .keys()
        .enumerate()
        .map(|(index, id)| (id.to_string(), (wave[index].unwrap_or(usize::MAX), index)))
        .collect()
}

/// `orchestrate runs [-o json]`.
pub async fn runs(out: &Output, state: &Location, format: Listing) -> Result<Exit, Error> {
    let listed = if let Some(holder) = apply_holding(state).await {
        let snapshot = snapshot(out, state, None, &holder)?;
        out.status("(only the run it applies; the others are listed once it ends)");
        vec![(snapshot.instances, snapshot.run)]
    } else {
        let store = open(state)?;
        store
            .read(|s| {
                let runs = s.runs()?;
                runs.into_iter()
                    .map(|run| Ok((s.instances(&run.id)?, s.as_found(run)?)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?
    };
    if format == Listing::Json {
        let body: Vec<ListedRun> = listed
            .iter()
            .map(|(records, run)| ListedRun::new(run, records))
            .collect();
        out.stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&body).expect("plain JSON")
        ));
        return Ok(Exit::Success);
    }
    let mut table = Table::new(&["RUN", "STATE", "STARTED", "INSTANCES"]);
    for (records, run) in &listed {
        let simulated = if run.simulated { " (simulated)" } else { "" };
        let tone = match run.state {
            RunState::Succeeded => Tone::Good,
            RunState::Running => Tone::Busy,
            RunState::Failed | RunState::Cancelled | RunState::Interrupted => Tone::Bad,
        };
        table.toned([
            (run.id.clone(), Tone::Plain),
            (format!("{}{simulated}", run.state.as_str()), tone),
            (run.started_at.rfc3339(), Tone::Plain),
            (Counts::of(records).to_string(), Tone::Plain),
        ]);
    }
    out.stdout(&table.render(out.terminal()));
    Ok(Exit::Success)
}

/// How long `cancel` waits for the apply it asked to stop.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// `orchestrate cancel RUN`. While an apply holds the run, it is asked to cancel (it alone
/// writes the run's records) and waited for.
pub async fn cancel(out: &Output, state: &Location, run: Option<String>) -> Result<Exit, Error> {
    if let Some(holder) = apply_holding(state).await {
        let dir = state.dir().expect("only a directory is held whole");
        let id = snapshot(out, state, run.as_deref(), &holder)?.run.id;
        crate::state::request_cancel(dir, &id).map_err(|error| crate::state::StateError::Io {
            at: state.describe(),
            message: format!("cannot ask the running apply to cancel: {error}"),
        })?;
        return cancel_through(out, state, None, &id, &holder).await;
    }
    let (store, run) = open_run(state, run).await?;
    if let Some(holder) = store.holder(&run.id).await? {
        store.request_cancel(&run.id).await?;
        return cancel_through(out, state, Some(store), &run.id, &holder).await;
    }
    if run.simulated {
        return Err(Error::Usage(format!(
            "run {} was simulated; its agents ended with its simulator",
            run.id
        )));
    }
    let client = super::api::client_for(&run.api)?;
    let backend = Arc::new(AnyBackend::new(&run.api, client));
    let done = cancel_run(&store, backend.as_ref(), &run.id).await?;
    out.status(&format!(
        "run {} cancelled: {} agent(s) stopped, {} instance(s) skipped",
        run.id, done.stopped, done.skipped
    ));
    if done.failures.is_empty() {
        return Ok(Exit::Success);
    }
    Err(Error::Many(
        done.failures
            .iter()
            .map(|failure| Error::Unusable(format!("could not stop {failure}")))
            .collect(),
    ))
}

/// Waits until the apply asked to cancel run `id` (`holder`) let go of it, and tells what
/// it recorded. `shared` is the open database whose run lock tells; a directory's lock tells
/// without it.
async fn cancel_through(
    out: &Output,
    state: &Location,
    shared: Option<StoreHandle>,
    id: &str,
    holder: &str,
) -> Result<Exit, Error> {
    out.status(&format!(
        "asked the running apply ({holder}) to cancel run {id}; waiting for it to stop its agents..."
    ));
    let deadline = std::time::Instant::now() + CANCEL_WAIT;
    loop {
        let applying = match &shared {
            Some(store) => store.holder(id).await?.is_some(),
            None => apply_holding(state).await.is_some(),
        };
        if !applying {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Unusable(format!(
                "the apply holding the state ({holder}) did not stop within {}s; it may still cancel run {id}",
                CANCEL_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    drop(shared);
    let (store, run) = open_run(state, Some(id.to_owned())).await?;
    let rid = run.id.clone();
    let records = store.read(move |s| s.instances(&rid)).await?;
    out.status(&format!(
        "run {} {}: {}",
        run.id,
        run.state.as_str(),
        Counts::of(&records)
    ));
    Ok(if run.state == RunState::Cancelled {
        Exit::Success
    } else {
        Exit::TaskFailed
    })
}

/// Which instances `retry` relaunches.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct RetrySelect {
    /// Relaunch the failed instances.
    #[arg(long)]
    pub failed: bool,
    /// Relaunch the timed-out instances.
    #[arg(long)]
    pub timed_out: bool,
    /// Relaunch the cancelled instances (`apply` does too).
    #[arg(long)]
    pub cancelled: bool,
}

impl RetrySelect {
    /// The states selected: those flagged, or all three when none is.
    pub fn states(self) -> Vec<InstanceState> {
        let all = !(self.failed || self.timed_out || self.cancelled);
        [
            (self.failed, InstanceState::Failed),
            (self.timed_out, InstanceState::TimedOut),
            (self.cancelled, InstanceState::Cancelled),
        ]
        .into_iter()
        .filter(|&(chosen, _)| chosen || all)
        .map(|(_, state)| state)
        .collect()
    }
}

/// `orchestrate retry [RUN] [--failed] [--timed-out] [--cancelled]`: relaunch the selected
/// instances (and re-run their dependents) with the workflow the run recorded.
pub async fn retry(
    out: &Output,
    state: &Location,
    run: Option<String>,
    select: RetrySelect,
    tuning: TuningArgs,
    yes: bool,
) -> Result<Exit, Error> {
    let record = {
        let store = open(state)?;
        let found = find_run(&store, run).await;
        store.close().await;
        found?
    };
    super::apply::retry(out, state, &record, select.states(), tuning, yes).await
}

/// `orchestrate report [RUN] --format markdown|json|junit`.
pub async fn report(
    out: &Output,
    state: &Location,
    run: Option<String>,
    format: crate::report::ReportFormat,
) -> Result<Exit, Error> {
    let (run, instances) = if let Some(holder) = apply_holding(state).await {
        let snapshot = snapshot(out, state, run.as_deref(), &holder)?;
        (snapshot.run, snapshot.instances)
    } else {
        let (store, run) = open_run(state, run).await?;
        let id = run.id.clone();
        let instances = store.read(move |s| s.instances(&id)).await?;
        (store.as_found(run).await?, instances)
    };
    out.stdout(&crate::report::Report { run, instances }.render(format));
    Ok(Exit::Success)
}

/// `orchestrate runs rm RUN [--force]`: one run out of the state. A run whose agents may
/// still work is refused without `--force`: its results would be lost.
pub async fn remove(out: &Output, state: &Location, run: &str, force: bool) -> Result<Exit, Error> {
    let store = open(state)?;
    let found = find_run(&store, Some(run.to_owned())).await?;
    if let Some(holder) = store.holder(&found.id).await? {
        return Err(crate::state::StateError::RunLocked {
            run: found.id,
            holder,
        }
        .into());
    }
    let id = found.id.clone();
    let records = store.read(move |s| s.instances(&id)).await?;
    let live = records.iter().filter(|r| r.state.has_live_agent()).count();
    if live > 0 && !found.simulated && !force {
        let hints = super::hint::Hints::new(state);
        return Err(Error::Usage(format!(
            "run {} has {live} instance(s) whose agents may still work; stop them first with `{}`, or remove it anyway with --force (their results are lost)",
            found.id,
            hints.command(&["cancel", &found.id])
        )));
    }
    store
        .write(vec![crate::state::Write::RemoveRun(found.id.clone())])
        .await?;
    out.status(&format!(
        "removed {} ({}, {} instance(s))",
        found.id,
        found.state.as_str(),
        records.len()
    ));
    Ok(Exit::Success)
}

/// `orchestrate runs prune --older-than AGE`.
pub async fn prune(
    out: &Output,
    state: &Location,
    older_than: std::time::Duration,
) -> Result<Exit, Error> {
    // Interrupted runs (recorded `running`, their process gone) go too, their agents long
    // done by the age that prunes them; a run another process applies stays.
    let store = open(state)?;
    let runs = store
        .read(|s| {
            s.runs()?
                .into_iter()
                .map(|run| s.as_found(run))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    let (old, kept): (Vec<RunRecord>, Vec<RunRecord>) = runs.into_iter().partition(|run| {
        run.state != RunState::Running
            && run.finished_at.unwrap_or(run.started_at).elapsed() > older_than
    });
    let writes = old
        .iter()
        .map(|run| crate::state::Write::RemoveRun(run.id.clone()))
        .collect();
    store.write(writes).await?;
    for run in &old {
        out.stdout(&format!(
            "removed {} ({}, {})\n",
            run.id,
            run.state.as_str(),
            run.started_at.rfc3339()
        ));
    }
    out.status(&format!("pruned {} run(s), {} kept", old.len(), kept.len()));
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_without_a_selector_takes_all_three_kinds_and_with_one_only_it() {
        use InstanceState::{Cancelled, Failed, TimedOut};
        assert_eq!(
            RetrySelect::default().states(),
            [Failed, TimedOut, Cancelled]
        );
        let timed_out = RetrySelect {
            timed_out: true,
            ..RetrySelect::default()
        };
        assert_eq!(timed_out.states(), [TimedOut]);
        let two = RetrySelect {
            failed: true,
            cancelled: true,
            ..RetrySelect::default()
        };
        assert_eq!(two.states(), [Failed, Cancelled]);
    }
}
