//! Follow-ups: the next one chosen, its intent written, sent, and confirmed against the
//! conversation when its answer was lost.

use super::backend::{AgentView, Backend};
use super::crash::{CrashPoint, crash_point};
use super::event::InstanceEvent;
use super::execution::{Execution, Halt, halt_on};
use crate::plan::{AgentOutput, Field};
use crate::state::{FollowUpIntent, InstanceRecord, InstanceState, Timestamp};

/// What to do with a finished agent's next follow-up.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Choice {
    /// None is left: the instance succeeded.
    Done,
    /// Not sent, for this reason; the next one may follow.
    Skip {
        /// Which (1-based).
        number: u32,
        /// Why.
        why: String,
    },
    /// Send this text.
    Send {
        /// Which (1-based).
        number: u32,
        /// The rendered text.
        text: String,
    },
}

/// The choice for follow-up `number` (1-based), from whether its `if` holds and its text
/// rendered; `None` for both when there is no such follow-up.
pub(super) fn choose<E: std::fmt::Display>(
    number: u32,
    rendered: Option<(Result<bool, E>, Result<String, E>)>,
) -> Choice {
    match rendered {
        None => Choice::Done,
        Some((Ok(false), _)) => Choice::Skip {
            number,
            why: "`if` is false".to_owned(),
        },
        Some((Err(error), _) | (_, Err(error))) => Choice::Skip {
            number,
            why: format!("cannot be rendered: {error}"),
        },
        Some((Ok(true), Ok(text))) => Choice::Send { number, text },
    }
}

/// What a finished agent's follow-up templates see of it.
fn output_of(agent: &AgentView, record: &InstanceRecord) -> AgentOutput {
    AgentOutput {
        id: agent.id.0.clone(),
        status: agent.status.to_string(),
        summary: agent.summary.clone().unwrap_or_default(),
        branch: agent
            .branch
            .clone()
            .unwrap_or_else(|| record.branch.clone()),
        pr_url: agent.pr_url.clone().unwrap_or_default(),
        url: agent.url.clone().unwrap_or_default(),
    }
}

impl<B: Backend> Execution<B> {
    /// Deals with the next follow-up of a finished agent. Returns whether the agent works
    /// again or the next may follow (true), or none is left (false).
    pub(super) async fn follow_up(
        &self,
        index: usize,
        record: &mut InstanceRecord,
        agent: &AgentView,
    ) -> Result<bool, Halt> {
        if let Some(intent) = record.follow_up.clone() {
            // An earlier send may have reached the agent: the conversation tells.
            match self
                .backend
                .follow_up_received(&agent.id, &intent.text, record.follow_ups_sent)
                .await
            {
                Ok(true) => {
                    self.follow_up_sent(index, record, intent.index + 1).await?;
                    return Ok(true);
                }
                Ok(false) => {}
                Err(error) => {
                    halt_on(&error)?;
                    self.pause(self.config.poll.min).await?;
                    return Ok(true);
                }
            }
        }
        match self.choose_follow_up(index, record, agent) {
            Choice::Done => Ok(false),
            Choice::Skip { number, why } => {
                record.follow_ups_done += 1;
                let event = InstanceEvent::FollowUpSkipped { number, why };
                self.emit(index, record, event).await?;
                Ok(true)
            }
            Choice::Send { number, text } => {
                // An adopted agent may have had this one before its record was lost.
                if record.adopted {
                    match self
                        .backend
                        .follow_up_received(&agent.id, &text, record.follow_ups_sent)
                        .await
                    {
                        Ok(true) => {
                            self.follow_up_sent(index, record, number).await?;
                            return Ok(true);
                        }
                        Ok(false) => record.adopted = false, // the rest are new
                        Err(error) => {
                            halt_on(&error)?;
                            self.pause(self.config.poll.min).await?;
                            return Ok(true);
                        }
                    }
                }
                record.follow_up = Some(FollowUpIntent {
                    index: number - 1,
                    text: text.clone(),
                    at: Timestamp::now(),
                });
                self.emit(index, record, InstanceEvent::FollowUpIntent { number })
                    .await?;
                self.lease_held(&record.key)?;
                let sent = self.backend.follow_up(&agent.id, &text).await;
                crash_point(CrashPoint::FollowUp);
                match sent {
                    Ok(()) => self.follow_up_sent(index, record, number).await?,
                    Err(error) => {
                        halt_on(&error)?;
                        // Unknown whether it arrived: the next round reads the conversation.
                        self.pause(self.config.poll.min).await?;
                    }
                }
                Ok(true)
            }
        }
    }

    /// The next follow-up's choice, its templates given the agent's outputs.
    fn choose_follow_up(&self, index: usize, record: &InstanceRecord, agent: &AgentView) -> Choice {
        let instance = &self.plan.instances[index];
        let next = record.follow_ups_done as usize;
        let number = u32::try_from(next + 1).unwrap_or(u32::MAX);
        let rendered = instance.follow_ups.get(next).map(|follow_up| {
            let context = self.context(index, Some(output_of(agent, record)));
            let templates = &self.plan.templates;
            let explained = |error: minijinja::Error| crate::plan::render_message(&error);
            let wanted = follow_up.condition.as_ref().map_or(Ok(true), |condition| {
                templates.condition(condition, &context).map_err(explained)
            });
            let text = templates
                .render(Field::FollowUp(&instance.task, next), &context)
                .map_err(explained);
            (wanted, text)
        });
        choose(number, rendered)
    }

    /// Follow-up `number` (1-based) reached the agent, which works again.
    async fn follow_up_sent(
        &self,
        index: usize,
        record: &mut InstanceRecord,
        number: u32,
    ) -> Result<(), Halt> {
        record.follow_up = None;
        record.follow_ups_done = number;
        record.follow_ups_sent += 1;
        record.follow_up_sent_at = Some(Timestamp::now());
        record.state = InstanceState::FollowingUp;
        self.emit(index, record, InstanceEvent::FollowUpSent { number })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follow_up_is_sent_skipped_or_none_is_left() {
        let send: Option<(Result<bool, String>, Result<String, String>)> =
            Some((Ok(true), Ok("Open the PR.".into())));
        assert_eq!(
            choose(2, send),
            Choice::Send {
                number: 2,
                text: "Open the PR.".into()
            }
        );
        let unwanted = Some((Ok(false), Err("never rendered".to_owned())));
        assert_eq!(
            choose(1, unwanted),
            Choice::Skip {
                number: 1,
                why: "`if` is false".into()
            }
        );
        let broken = Some((Ok(true), Err("undefined value".to_owned())));
        assert_eq!(
            choose(1, broken),
            Choice::Skip {
                number: 1,
                why: "cannot be rendered: undefined value".into()
            }
        );
        assert_eq!(choose::<String>(3, None), Choice::Done);
    }
}
