//! What v1 shows of the model: agents as metadata with runs, run streams, usage, artifacts.

use std::time::SystemTime;

use crate::cursor::model::v1::{self, AgentRunId as RunId};
use crate::cursor::model::{AgentId, AgentStatus};
use crate::sim::model::{Refusal, SimAgent, SimRun, SimState, first_line, result_of, rfc3339};

/// What a v1 run's stream has to tell (see [`SimState::run_stream`]).
#[derive(Debug, Clone)]
pub struct RunStream {
    /// The run's status now.
    pub status: AgentStatus,
    /// Its events so far: number, type, data.
    pub events: Vec<(u32, &'static str, serde_json::Value)>,
    /// When it ended, if it has.
    pub ended: Option<SystemTime>,
    /// When its status changes next on its own (a cancel can come sooner).
    pub next_change: Option<SystemTime>,
}

impl SimAgent {
    /// The agent as v1 shows it at `now`: metadata, and its latest run's id.
    pub fn view_v1(&self, now: SystemTime) -> v1::Agent {
        let latest = self.latest();
        // The published enum has no IDLE (seen live): the simulator keeps to the file.
        let status = if self.archived { "ARCHIVED" } else { "ACTIVE" };
        v1::Agent {
            id: self.id.clone(),
            name: Some(self.name.clone()),
            status: Some(status.to_owned()),
            env: Some(v1::AgentEnv {
                kind: "cloud".into(),
                name: None,
            }),
            repos: vec![v1::RepoSpec {
                url: self.source.repository.clone(),
                starting_ref: self.source.git_ref.clone(),
                pr_url: self.existing_pr.clone(),
            }],
            latest_run_id: Some(latest.id().clone()),
            url: self.target.url.clone(),
            created_at: Some(rfc3339(self.created)),
            updated_at: Some(rfc3339(latest.changed(now))),
        }
    }

    /// A run as v1 shows it at `now`; `full` adds what lists leave out.
    pub(super) fn run_view(&self, run: &SimRun, now: SystemTime, full: bool) -> v1::Run {
        let status = run.status(now);
        let ended = status.is_terminal();
        let finished = status == AgentStatus::Finished;
        let end = run.cancelled().unwrap_or(run.busy_until());
        v1::Run {
            id: run.id().clone(),
            agent_id: Some(self.id.clone()),
            created_at: Some(rfc3339(run.started())),
            updated_at: Some(rfc3339(run.changed(now))),
            duration_ms: (full && ended).then(|| {
                u64::try_from(
                    end.duration_since(run.started())
                        .unwrap_or_default()
                        .as_millis(),
                )
                .unwrap_or(u64::MAX)
            }),
            result: (full && finished).then(|| result_of(run.prompt())),
            git: finished.then(|| v1::Git {
                branches: vec![v1::GitBranch {
                    repo_url: self
                        .source
                        .repository
                        .trim_start_matches("https://")
                        .to_owned(),
                    branch: self.target.branch_name.clone(),
                    pr_url: self.pr_url(true),
                }],
            }),
            status,
        }
    }

    /// Tokens its runs used by `now` (a function of the prompt, so tests can predict it).
    pub(super) fn usage(&self, now: SystemTime) -> v1::Usage {
        let runs: Vec<v1::RunUsage> = self
            .runs
            .iter()
            .filter(|r| r.status(now).is_terminal())
            .map(|r| {
                let size = r.prompt().len() as u64;
                let (input_tokens, output_tokens) = (800 + 8 * size, 200 + 2 * size);
                v1::RunUsage {
                    id: r.id().clone(),
                    usage: v1::Tokens {
                        input_tokens,
                        output_tokens,
                        total_tokens: input_tokens + output_tokens,
                        ..v1::Tokens::default()
                    },
                }
            })
            .collect();
        let mut total = v1::Tokens::default();
        for run in &runs {
            total.input_tokens += run.usage.input_tokens;
            total.output_tokens += run.usage.output_tokens;
            total.total_tokens += run.usage.total_tokens;
        }
        v1::Usage {
            total_usage: total,
            runs,
        }
    }
}

impl SimState {
    /// v1 follow-up: a new run, unless one is active or the agent is archived.
    pub fn create_run(
        &mut self,
        id: &AgentId,
        text: String,
        now: SystemTime,
    ) -> Result<v1::Run, Refusal> {
        let agent = self.agent(id).ok_or(Refusal::NotFound)?;
        if agent.archived {
            return Err(Refusal::Archived);
        }
        if !agent.latest().status(now).is_terminal() {
            return Err(Refusal::Busy);
        }
        if self.over_usage_limit() {
            return Err(Refusal::UsageLimit);
        }
        let run = self.add_run(id, text, now);
        self.run(id, &run, now, true)
    }

    /// A run of an agent as v1 shows it (`full`: with result and duration).
    pub fn run(
        &self,
        id: &AgentId,
        run: &RunId,
        now: SystemTime,
        full: bool,
    ) -> Result<v1::Run, Refusal> {
        let agent = self.agent(id).ok_or(Refusal::NotFound)?;
        let found = agent.run(run).ok_or(Refusal::RunNotFound)?;
        Ok(agent.run_view(found, now, full))
    }

    /// v1: what a run's event stream has to tell at `now`: its status, its numbered events so
    /// far (1: RUNNING, 2: the result, 3: done), and when it ended.
    pub fn run_stream(
        &self,
        id: &AgentId,
        run: &RunId,
        now: SystemTime,
    ) -> Result<RunStream, Refusal> {
        let agent = self.agent(id).ok_or(Refusal::NotFound)?;
        let found = agent.run(run).ok_or(Refusal::RunNotFound)?;
        let view = agent.run_view(found, now, true);
        let mut events = Vec::new();
        let ran = now >= found.creating_until()
            && found
                .cancelled()
                .is_none_or(|c| c >= found.creating_until());
        if ran {
            let data = serde_json::json!({ "runId": run, "status": "RUNNING" });
            events.push((1, "status", data));
        }
        let ended = view
            .status
            .is_terminal()
            .then(|| found.cancelled().unwrap_or(found.busy_until()));
        if ended.is_some() {
            let mut data = serde_json::json!({
                "runId": run,
                "status": view.status,
                "durationMs": view.duration_ms,
            });
            if let Some(text) = &view.result {
                data["text"] = text.clone().into();
            }
            if let Some(git) = &view.git {
                data["git"] = serde_json::to_value(git).unwrap_or_default();
            }
            events.push((2, "result", data));
            events.push((3, "done", serde_json::json!({ "runId": run })));
        }
        let next_change = [found.creating_until(), found.busy_until()]
            .into_iter()
            .find(|t| *t > now && found.cancelled().is_none());
        Ok(RunStream {
            status: view.status,
            events,
            ended,
            next_change,
        })
    }

    /// v1: the runs of an agent, newest first, from after `cursor`.
    pub fn runs(
        &self,
        id: &AgentId,
        limit: usize,
        cursor: Option<&RunId>,
        now: SystemTime,
    ) -> Result<v1::Page<v1::Run>, Refusal> {
        let agent = self.agent(id).ok_or(Refusal::NotFound)?;
        let mut runs = agent.runs.iter().rev().peekable();
        if let Some(cursor) = cursor {
            while runs.next_if(|r| r.id() != cursor).is_some() {}
            runs.next();
        }
        let mut items: Vec<v1::Run> = runs
            .take(limit + 1)
            .map(|r| agent.run_view(r, now, false))
            .collect();
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = more.then(|| items.last().map(|r| r.id.0.clone())).flatten();
        Ok(v1::Page { items, next_cursor })
    }

    /// v1: cancels an active run.
    pub fn cancel_run(
        &mut self,
        id: &AgentId,
        run: &RunId,
        now: SystemTime,
    ) -> Result<v1::Run, Refusal> {
        let agent = self.agent_mut(id).ok_or(Refusal::NotFound)?;
        let found = agent
            .runs
            .iter_mut()
            .find(|r| r.id() == run)
            .ok_or(Refusal::RunNotFound)?;
        if found.status(now).is_terminal() {
            return Err(Refusal::NotCancellable);
        }
        found.cancel(now);
        self.run(id, run, now, true)
    }

    /// v1: archives or unarchives (idempotent).
    pub fn set_archived(
        &mut self,
        id: &AgentId,
        archived: bool,
        now: SystemTime,
    ) -> Result<v1::Agent, Refusal> {
        let agent = self.agent_mut(id).ok_or(Refusal::NotFound)?;
        agent.archived = archived;
        Ok(agent.view_v1(now))
    }

    /// v1: token usage of an agent.
    pub fn usage(&self, id: &AgentId, now: SystemTime) -> Result<v1::Usage, Refusal> {
        Ok(self.agent(id).ok_or(Refusal::NotFound)?.usage(now))
    }

    /// v1: the files an agent produced: a summary per finished run.
    pub fn artifacts(
        &self,
        id: &AgentId,
        now: SystemTime,
    ) -> Result<Vec<(String, String, SystemTime)>, Refusal> {
        let agent = self.agent(id).ok_or(Refusal::NotFound)?;
        Ok(agent
            .runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.status(now) == AgentStatus::Finished)
            .map(|(n, r)| {
                (
                    format!("runs/{}/summary.md", n + 1),
                    format!(
                        "# {}\n\n{}\n",
                        first_line(r.prompt()),
                        result_of(r.prompt())
                    ),
                    r.busy_until(),
                )
            })
            .collect())
    }

    /// A v1 page of agents (archived ones only when asked), optionally those on `pr_url`.
    pub fn page_v1(
        &self,
        limit: usize,
        cursor: Option<&AgentId>,
        include_archived: bool,
        pr_url: Option<&str>,
        now: SystemTime,
    ) -> v1::Page<v1::Agent> {
        let (page, next_cursor) = self.newest(limit, cursor, include_archived);
        let items = page
            .into_iter()
            .filter(|a| pr_url.is_none_or(|pr| a.pr_url(true).as_deref() == Some(pr)))
            .map(|a| v1::Agent {
                // A list item is an `AgentSummary`: no repositories.
                repos: Vec::new(),
                ..a.view_v1(now)
            })
            .collect();
        v1::Page { items, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sim::model::Origin;
    use crate::sim::model::testing::{new_agent, state};

    #[test]
    fn a_run_stream_tells_running_then_the_result_and_done() {
        let mut state = state();
        let start = SystemTime::now();
        let id = state
            .create(new_agent(Origin::V1, None, "api"), start)
            .unwrap();
        let run = state.agent(&id).unwrap().latest().id().clone();
        let at = |s| start + Duration::from_secs(s);
        let creating = state.run_stream(&id, &run, start).unwrap();
        assert!(creating.events.is_empty());
        assert_eq!(creating.next_change, Some(at(1)));
        let working = state.run_stream(&id, &run, at(5)).unwrap();
        let kinds = |s: &RunStream| s.events.iter().map(|e| e.1).collect::<Vec<_>>();
        assert_eq!(kinds(&working), ["status"]);
        let ended = state.run_stream(&id, &run, at(20)).unwrap();
        assert_eq!(kinds(&ended), ["status", "result", "done"]);
        assert_eq!(ended.ended, Some(at(11)));
        assert_eq!(ended.events[1].2["text"], "Done: Bump it");
    }

    #[test]
    fn a_follow_up_waits_for_the_run_to_end_and_starts_a_new_one() {
        let mut state = state();
        let start = SystemTime::now();
        let id = state
            .create(new_agent(Origin::V1, None, "api"), start)
            .unwrap();
        let at = |s| start + Duration::from_secs(s);
        assert_eq!(
            state.create_run(&id, "again".into(), at(5)),
            Err(Refusal::Busy)
        );
        let run = state.create_run(&id, "again".into(), at(12)).unwrap();
        assert_eq!(state.agent(&id).unwrap().latest().id(), &run.id);
        let page = state.runs(&id, 10, None, at(12)).unwrap();
        assert_eq!(page.items.len(), 2, "newest first, both runs");
        assert_eq!(page.items[0].id, run.id);
    }
}
