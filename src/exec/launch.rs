//! Launching: the intent, the reconcile of a launch whose answer was lost, the launch call, and
//! its answer classified once into what to do next.

use std::sync::Arc;

use super::backend::{AgentView, Backend, LaunchSpec, Recalled, agent_name};
use super::crash::{CrashPoint, crash_point};
use super::event::InstanceEvent;
use super::execution::{Execution, Halt, halt_on};
use crate::cursor::model::v1::agent_id_for;
use crate::cursor::{AgentId, ApiError};
use crate::plan::Field;
use crate::state::{InstanceRecord, InstanceState, LaunchIntent, Timestamp};

/// How many times an uncertain launch is looked for and tried again before the instance
/// fails.
pub(super) const MAX_UNCERTAIN_LAUNCHES: u32 = 6;

/// What a launch call's answer means for the instance.
#[derive(Debug)]
pub(super) enum LaunchOutcome {
    /// The agent exists.
    Launched(AgentView),
    /// Throttled, or the connection never opened: nothing was launched, and the same launch
    /// goes through later.
    NotYet(ApiError),
    /// The API refused it (400): sending it again will not help.
    Refused(ApiError),
    /// The agent may or may not exist: look for it before launching again.
    Uncertain(ApiError),
    /// The launch's id is taken (`agent_id_conflict`): an earlier send of this very launch
    /// made its agent, which is adopted once it checks out.
    Exists(ApiError),
}

/// What the answer to a launch call means; a halt when no instance can go on (a refused key,
/// a spent budget).
pub(super) fn classify(answer: Result<AgentView, ApiError>) -> Result<LaunchOutcome, Halt> {
    let error = match answer {
        Ok(agent) => return Ok(LaunchOutcome::Launched(agent)),
        Err(error) => error,
    };
    halt_on(&error)?;
    if error.conflict_code() == Some("agent_id_conflict") {
        return Ok(LaunchOutcome::Exists(error));
    }
    Ok(match (error.surely_not_processed(), error.is_retryable()) {
        (true, true) => LaunchOutcome::NotYet(error),
        (true, false) => LaunchOutcome::Refused(error),
        (false, _) => LaunchOutcome::Uncertain(error),
    })
}

/// The branch of an attempt: the task's, with `-attempt-N` from the second on (empty where
/// the agent names its own).
pub(super) fn attempt_branch(base: &str, attempt: u32) -> String {
    if attempt <= 1 || base.is_empty() {
        base.to_owned()
    } else {
        format!("{base}-attempt-{attempt}")
    }
}

/// Where a launch stands within one instance's life in this process.
#[derive(Debug, Default)]
pub(super) struct Launching {
    /// Whether the intent in the record may already have made an agent.
    pub(super) uncertain: bool,
    /// Launches whose answer was lost, in a row.
    pub(super) lost: u32,
}

impl<B: Backend> Execution<B> {
    /// Writes the intent of the next attempt: after it, the instance is launching.
    pub(super) async fn begin_attempt(
        &self,
        index: usize,
        record: &mut InstanceRecord,
        launching: &mut Launching,
    ) -> Result<(), Halt> {
        if self.interrupt.is_cancelled() {
            return Err(Halt::Interrupted);
        }
        let intent = self.intent(index, record, record.attempt + 1);
        let (attempt, branch) = (intent.attempt, intent.branch.clone());
        record.begin_attempt(intent);
        launching.uncertain = false;
        self.emit(
            index,
            record,
            InstanceEvent::LaunchIntent { attempt, branch },
        )
        .await
    }

    /// The intent of launching `attempt` of the instance, written now.
    fn intent(&self, index: usize, record: &InstanceRecord, attempt: u32) -> LaunchIntent {
        let instance = &self.plan.instances[index];
        // Where the API takes a client-chosen id, a resend of this launch is refused instead
        // of duplicated; the API does not allow one with env_vars.
        let agent_id =
            instance.options.env_vars.is_none().then(|| {
                agent_id_for(self.run.as_str(), &record.key, attempt, &record.spec_hash).0
            });
        LaunchIntent {
            attempt,
            at: Timestamp::now(),
            repository: record.repository.clone(),
            branch: attempt_branch(&instance.branch, attempt),
            agent_id,
            name: Some(agent_name(
                self.run.as_str(),
                &record.key,
                attempt,
                &record.spec_hash,
            )),
        }
    }

    /// Picks up the launch of this instance that an earlier apply made and recall `found`
    /// (the run's records were lost): adopted when it checks out as this very launch, else
    /// the next attempt comes after it, on a branch of its own. Only reads are made until
    /// the record says which, so a kill on the way leaves nothing to reconcile.
    pub(super) async fn recall(
        &self,
        index: usize,
        record: &mut InstanceRecord,
        found: Recalled,
    ) -> Result<(), Halt> {
        let intent = self.intent(index, record, found.attempt);
        if found.may_be(&record.spec_hash) {
            let Some(spec) = self.launch_spec(index, record, intent.clone()).await? else {
                return Ok(());
            };
            let agent = loop {
                match self.backend.recalled(&found.id, &spec).await {
                    Ok(agent) => break agent,
                    Err(error) => {
                        // Not knowing is not a reason to launch a second agent.
                        halt_on(&error)?;
                        self.pause(self.config.poll.min).await?;
                    }
                }
            };
            if let Some(agent) = agent {
                record.skip_to(found.attempt - 1);
                record.begin_attempt(intent);
                return self.adopt(index, record, &agent, true).await;
            }
        }
        record.skip_to(found.attempt);
        let event = InstanceEvent::Superseded {
            agent: found.id,
            attempt: found.attempt,
        };
        self.emit(index, record, event).await
    }

    /// Launches the attempt the record's intent describes, or finds the agent an earlier send
    /// of it made.
    pub(super) async fn launch(
        self: &Arc<Self>,
        index: usize,
        record: &mut InstanceRecord,
        launching: &mut Launching,
    ) -> Result<(), Halt> {
        let intent = record
            .launch
            .clone()
            .expect("a launching instance has an intent");
        let Some(spec) = self.launch_spec(index, record, intent).await? else {
            return Ok(());
        };
        if launching.uncertain {
            if !self.backend.finds_launches() {
                // The launch may have made an agent that cannot be looked up: sending it
                // again could make a second one. The user decides.
                let why = "launch outcome unknown: its answer was lost, and this backend cannot look the agent up; check the platform, then `orchestrate retry --failed` launches it again";
                record.end_attempt("launch outcome unknown");
                return self
                    .fail(index, record, InstanceState::Failed, why.to_owned())
                    .await;
            }
            match self.backend.find_launched(&spec).await {
                Ok(Some(agent)) => return self.adopt(index, record, &agent, true).await,
                Ok(None) => {}
                Err(error) => {
                    halt_on(&error)?;
                    return self.pause(self.config.poll.min).await;
                }
            }
        }
        self.lease_held(&record.key)?;
        let answer = self.backend.launch(&spec).await;
        crash_point(CrashPoint::Launch);
        match classify(answer)? {
            LaunchOutcome::Launched(agent) => self.adopt(index, record, &agent, false).await,
            LaunchOutcome::NotYet(error) => {
                let after = self.config.relaunch_backoff;
                // A 429 is the quota's business, waited out in silence; anything else means
                // the API is not there, which the user should see.
                if !matches!(error, ApiError::RateLimited { .. }) {
                    let event = InstanceEvent::LaunchDeferred {
                        error: error.to_string(),
                        after,
                    };
                    self.emit(index, record, event).await?;
                }
                self.pause(after).await
            }
            LaunchOutcome::Exists(error) => match self.backend.find_launched(&spec).await {
                Ok(Some(agent)) => self.adopt(index, record, &agent, true).await,
                Ok(None) => {
                    // Taken by an agent that is not this launch: never answer for it.
                    let why = format!(
                        "{error}: the agent with this launch's id is not its launch (another repository or name)"
                    );
                    record.end_attempt(why.clone());
                    self.fail(index, record, InstanceState::Failed, why).await
                }
                Err(error) => {
                    halt_on(&error)?;
                    self.pause(self.config.poll.min).await
                }
            },
            LaunchOutcome::Refused(error) => {
                record.end_attempt(format!("refused: {error}"));
                self.fail(index, record, InstanceState::Failed, error.to_string())
                    .await
            }
            LaunchOutcome::Uncertain(error) => {
                launching.lost += 1;
                if launching.lost >= MAX_UNCERTAIN_LAUNCHES {
                    let why = format!("could not launch: {error}");
                    return self.fail(index, record, InstanceState::Failed, why).await;
                }
                launching.uncertain = true;
                let event = InstanceEvent::LaunchUncertain {
                    error: error.to_string(),
                };
                self.emit(index, record, event).await?;
                self.pause(self.config.poll.min).await
            }
        }
    }

    /// What `intent` launches, its prompt rendered from the needs' outputs; `None` when
    /// the prompt cannot be rendered (the instance failed).
    async fn launch_spec(
        &self,
        index: usize,
        record: &mut InstanceRecord,
        intent: LaunchIntent,
    ) -> Result<Option<LaunchSpec>, Halt> {
        let instance = &self.plan.instances[index];
        let prompt = {
            let context = self.context(index, None);
            self.plan
                .templates
                .render(Field::Prompt(&instance.task), &context)
        };
        let prompt = match prompt {
            Ok(prompt) => prompt,
            Err(error) => {
                // Recorded as its error: the report and `status` say why it never ran.
                let detail = format!(
                    "cannot render the prompt: {}",
                    crate::plan::render_message(&error)
                );
                self.fail(index, record, InstanceState::Failed, detail)
                    .await?;
                return Ok(None);
            }
        };
        Ok(Some(LaunchSpec {
            repository: intent.repository,
            git_ref: instance.git_ref.clone(),
            branch: intent.branch,
            prompt,
            model: instance.model.clone(),
            target: instance.target,
            webhook: self.config.webhook.clone(),
            agent_id: intent.agent_id.map(AgentId),
            name: intent.name.unwrap_or_default(),
            options: instance.options.clone(),
            since: intent.at.time(),
        }))
    }

    /// The attempt has its agent: launched now, or `found` from an earlier launch.
    async fn adopt(
        &self,
        index: usize,
        record: &mut InstanceRecord,
        agent: &AgentView,
        found: bool,
    ) -> Result<(), Halt> {
        record.running(&agent.id.0, agent.status.to_string(), agent.url.clone());
        record.adopted = found;
        let event = InstanceEvent::Launched {
            agent: agent.id.clone(),
            found,
        };
        self.emit(index, record, event).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cursor::AgentStatus;

    fn agent() -> AgentView {
        crate::exec::fake::agent("bc-1", AgentStatus::Creating)
    }

    fn outcome(error: ApiError) -> Result<LaunchOutcome, Halt> {
        classify(Err(error))
    }

    #[test]
    fn each_launch_answer_is_classified_once() {
        assert!(matches!(
            classify(Ok(agent())),
            Ok(LaunchOutcome::Launched(_))
        ));
        let throttled = ApiError::RateLimited {
            retry_after: None,
            message: "slow down".into(),
        };
        assert!(matches!(outcome(throttled), Ok(LaunchOutcome::NotYet(_))));
        let refused = ApiError::BadRequest {
            message: "no such repository".into(),
            code: None,
        };
        assert!(matches!(outcome(refused), Ok(LaunchOutcome::Refused(_))));
        let lost = ApiError::Server {
            status: 502,
            message: "bad gateway".into(),
        };
        assert!(matches!(outcome(lost), Ok(LaunchOutcome::Uncertain(_))));
    }

    #[test]
    fn a_refused_key_or_a_spent_budget_halts_the_run() {
        let auth = ApiError::Auth {
            status: 401,
            message: "bad key".into(),
        };
        assert!(matches!(outcome(auth), Err(Halt::Fatal(_))));
        let spent = ApiError::UsageLimit {
            message: "limit reached".into(),
        };
        assert!(matches!(outcome(spent), Err(Halt::UsageLimit(_))));
    }

    #[test]
    fn every_attempt_after_the_first_has_its_own_branch() {
        assert_eq!(attempt_branch("orchestrate/w/k/t", 1), "orchestrate/w/k/t");
        assert_eq!(
            attempt_branch("orchestrate/w/k/t", 3),
            "orchestrate/w/k/t-attempt-3"
        );
        assert_eq!(attempt_branch("", 3), "", "the agent names its own");
    }
}
