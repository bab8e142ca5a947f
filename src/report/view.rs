//! The JSON views of runs: `status --json`, `runs --json` and `report --format json` all
//! serialize these, so the three cannot drift apart.

use serde::Serialize;

use crate::state::{BranchOutput, Counts, InstanceRecord, RunRecord, Timestamp};

/// What every view says of a run besides its id.
#[derive(Debug, Serialize)]
pub struct RunFields<'a> {
    workflow: &'a str,
    api: &'static str,
    key: &'a str,
    state: &'static str,
    simulated: bool,
    started_at: String,
    finished_at: Option<String>,
    counts: Counts,
}

impl<'a> RunFields<'a> {
    fn of(run: &'a RunRecord, counts: Counts) -> Self {
        Self {
            workflow: &run.workflow,
            api: run.api.as_str(),
            key: &run.key,
            state: run.state.as_str(),
            simulated: run.simulated,
            started_at: run.started_at.rfc3339(),
            finished_at: run.finished_at.map(Timestamp::rfc3339),
            counts,
        }
    }
}

/// A run with its instances (`status --json`, `report --format json`).
#[derive(Debug, Serialize)]
pub struct RunView<'a> {
    run: &'a str,
    #[serde(flatten)]
    fields: RunFields<'a>,
    instances: Vec<InstanceView<'a>>,
}

impl<'a> RunView<'a> {
    /// The view of `run` and its `instances`.
    pub fn new(run: &'a RunRecord, instances: &'a [InstanceRecord]) -> Self {
        Self {
            run: &run.id,
            fields: RunFields::of(run, Counts::of(instances)),
            instances: instances.iter().map(InstanceView::of).collect(),
        }
    }

    /// Pretty JSON, with a final newline.
    pub fn to_json(&self) -> String {
        format!(
            "{}\n",
            serde_json::to_string_pretty(self).expect("plain JSON")
        )
    }
}

/// A run in the list of runs (`runs --json`).
#[derive(Debug, Serialize)]
pub struct ListedRun<'a> {
    id: &'a str,
    #[serde(flatten)]
    fields: RunFields<'a>,
}

impl<'a> ListedRun<'a> {
    /// The listing of `run`, whose instances are `instances`.
    pub fn new(run: &'a RunRecord, instances: &[InstanceRecord]) -> Self {
        Self {
            id: &run.id,
            fields: RunFields::of(run, Counts::of(instances)),
        }
    }
}

/// One instance of a run.
#[derive(Debug, Serialize)]
pub struct InstanceView<'a> {
    key: &'a str,
    task: &'a str,
    repo: &'a str,
    state: &'static str,
    agent_id: Option<&'a str>,
    branch: &'a str,
    pr_url: Option<&'a str>,
    summary: Option<&'a str>,
    error: Option<&'a str>,
    /// The attempt number of the current agent.
    attempts: u32,
    started_at: Option<String>,
    finished_at: Option<String>,
    duration_seconds: Option<u64>,
    run_duration_ms: Option<u64>,
    tokens: Option<u64>,
    branches: &'a [BranchOutput],
}

impl<'a> InstanceView<'a> {
    fn of(record: &'a InstanceRecord) -> Self {
        Self {
            key: &record.key,
            task: &record.task,
            repo: &record.repository,
            state: record.state.as_str(),
            agent_id: record.agent_id.as_deref(),
            branch: &record.branch,
            pr_url: record.pr_url.as_deref(),
            summary: record.summary.as_deref(),
            error: record.error.as_deref(),
            attempts: record.attempt,
            started_at: record.started_at.map(Timestamp::rfc3339),
            finished_at: record.finished_at.map(Timestamp::rfc3339),
            duration_seconds: record.elapsed().map(|d| d.as_secs()),
            run_duration_ms: record.duration_ms,
            tokens: record.tokens,
            branches: &record.branches,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Api, ApiVersion};
    use crate::state::{InstanceState, RunState};

    #[test]
    fn status_runs_and_report_say_the_same_of_a_run() {
        let run = RunRecord {
            id: "w/k".into(),
            workflow: "w".into(),
            key: "k".into(),
            file: "w.yaml".into(),
            source: String::new(),
            state: RunState::Failed,
            simulated: false,
            api: Api::Cursor(ApiVersion::V0),
            started_at: Timestamp(1_790_000_000_000),
            finished_at: None,
        };
        let mut records = vec![InstanceRecord::pending(
            "t[a/x]",
            "t",
            "https://github.com/a/x",
            "b",
            "h",
        )];
        records[0].fail(InstanceState::Failed, "the agent ended in ERROR");
        let full = serde_json::to_value(RunView::new(&run, &records)).unwrap();
        let listed = serde_json::to_value(ListedRun::new(&run, &records)).unwrap();
        assert_eq!(full["run"], "w/k");
        assert_eq!(listed["id"], "w/k");
        for field in [
            "workflow",
            "api",
            "key",
            "state",
            "started_at",
            "finished_at",
            "counts",
        ] {
            assert_eq!(full[field], listed[field], "{field}");
        }
        assert_eq!(full["counts"], serde_json::json!({"failed": 1}));
        assert_eq!(full["instances"][0]["error"], "the agent ended in ERROR");
        assert_eq!(full["instances"][0]["repo"], "https://github.com/a/x");
    }
}
