//! The LiteLLM Agent Platform backend: each instance is a session of the platform's `cursor`
//! runtime. A session's progress and end come from its event stream, read in the background
//! and reconnected from the last event id whenever it breaks; the executor's polls read what
//! the stream has told so far, without a call.
//!
//! What it cannot do that the Cursor backends can: `POST /session` takes no id and the
//! platform has no lookup of sessions, so a launch whose answer was lost (a crash or a
//! dropped connection after sending) cannot be found again (see [`Backend::finds_launches`]),
//! nor can a run whose state was lost (see [`Backend::recalls`]);
//! no branch is reported; the pull request is only what the agent's messages link to; no
//! token counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use tokio::task::JoinHandle;

use super::{AgentView, Backend, LaunchSpec, Statuses};
use crate::cursor::model::platform::{
    CreateSession, Environment, RUNTIME, SendEvents, SessionEvent, UserEvent, kind,
};
use crate::cursor::{AgentId, AgentStatus, ApiError, Client};

/// A stream silent this long (the platform sends keep-alives) is taken as broken.
const SILENCE: Duration = Duration::from_secs(60);
/// The first wait before reconnecting a broken stream; doubled up to [`MAX_RECONNECT`].
const FIRST_RECONNECT: Duration = Duration::from_millis(50);
const MAX_RECONNECT: Duration = Duration::from_secs(10);

/// What a session's events have told so far.
#[derive(Debug, Default)]
struct Told {
    /// The id of the last event read: a reconnect continues after it.
    last_event: Option<String>,
    /// Prompts the session received (`user.message`: the first and each follow-up).
    prompts: u32,
    /// Prompts this process knows it sent (the launch, follow-ups).
    sent: u32,
    /// Turns started (`session.status_running`) and ended (`session.status_idle`).
    started: u32,
    ended: u32,
    /// The current turn failed (`session.error`, or a failed final result).
    failed: Option<String>,
    /// The current turn was interrupted.
    interrupted: bool,
    /// The session ended for good.
    terminated: bool,
    /// The latest text of the agent: its final result, else its last message.
    summary: Option<String>,
    /// The last pull request the agent linked to.
    pr_url: Option<String>,
    /// The stream cannot be read at all (the session is gone, the key refused).
    fatal: Option<ApiError>,
}

impl Told {
    fn read(&mut self, id: Option<String>, event: &SessionEvent) {
        if id.is_some() {
            self.last_event = id;
        }
        let text = event.text();
        match event.kind.as_str() {
            kind::USER_MESSAGE => self.prompts += 1,
            kind::RUNNING => {
                self.started += 1;
                self.failed = None;
                self.interrupted = false;
            }
            kind::IDLE => {
                self.ended += 1;
                self.interrupted |= event.stop_reason() == Some("interrupted");
            }
            kind::USER_INTERRUPT => self.interrupted = true,
            kind::TERMINATED => self.terminated = true,
            kind::ERROR => {
                self.failed = Some(
                    event
                        .error_message()
                        .unwrap_or_else(|| "session error".into()),
                );
            }
            kind::TOOL_RESULT if event.is_error == Some(true) => {
                self.failed
                    .get_or_insert(text.unwrap_or_else(|| "the agent failed".into()));
            }
            kind::MESSAGE | kind::TOOL_RESULT => {
                if let Some(text) = text {
                    if let Some(pr) = pull_request_in(&text) {
                        self.pr_url = Some(pr);
                    }
                    if !text.trim().is_empty() {
                        self.summary = Some(text);
                    }
                }
            }
            _ => {}
        }
    }

    /// The turns the executor waits for: every prompt received or sent, at least the first.
    fn awaited(&self) -> u32 {
        self.prompts.max(self.sent).max(1)
    }

    /// Whether the session has nothing left to tell until it is sent another prompt.
    fn settled(&self) -> bool {
        self.fatal.is_some() || self.terminated || self.ended >= self.awaited()
    }

    /// Settled, and known to be so: the reader may stop (a new prompt starts it again).
    fn settled_for_good(&self) -> bool {
        self.last_event.is_some() && self.settled()
    }

    fn status(&self) -> AgentStatus {
        if self.terminated {
            if self.failed.is_some() {
                AgentStatus::Error
            } else {
                AgentStatus::Expired
            }
        } else if self.ended >= self.awaited() {
            if self.interrupted {
                AgentStatus::Cancelled
            } else if self.failed.is_some() {
                AgentStatus::Error
            } else {
                AgentStatus::Finished
            }
        } else if self.started > self.ended {
            AgentStatus::Running
        } else {
            AgentStatus::Creating
        }
    }
}

/// A `https://github.com/OWNER/NAME/pull/N` in `text`, the last one.
fn pull_request_in(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '<' | '>'))
        .rev()
        .find_map(|word| {
            let word = word.trim_end_matches(['.', ',', ';', ':']);
            let (repo, number) = word.split_once("/pull/")?;
            let ok = repo.starts_with("https://github.com/")
                && repo.matches('/').count() == 4
                && !number.is_empty()
                && number.chars().all(|c| c.is_ascii_digit());
            ok.then(|| word.to_owned())
        })
}

/// A session being watched.
#[derive(Debug, Default)]
struct Session {
    told: Mutex<Told>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

/// The LiteLLM Agent Platform.
#[derive(Debug)]
pub struct Platform {
    client: Client,
    agent_id: String,
    sessions: Mutex<HashMap<AgentId, Arc<Session>>>,
}

impl Platform {
    /// A backend running sessions of `agent_id` through `client` (the platform's URL and key).
    pub fn new(client: Client, agent_id: String) -> Self {
        Self {
            client,
            agent_id,
            sessions: Mutex::default(),
        }
    }

    fn session(&self, id: &AgentId) -> Arc<Session> {
        self.sessions
            .lock()
            .expect("not poisoned")
            .entry(id.clone())
            .or_default()
            .clone()
    }

    /// Makes sure the session's stream is read, unless it has nothing left to tell.
    fn watch(&self, id: &AgentId) -> Arc<Session> {
        let session = self.session(id);
        let mut reader = session.reader.lock().expect("not poisoned");
        let running = reader.as_ref().is_some_and(|r| !r.is_finished());
        if !running
            && !session
                .told
                .lock()
                .expect("not poisoned")
                .settled_for_good()
        {
            let task = read_stream(self.client.clone(), id.clone(), session.clone());
            *reader = Some(tokio::spawn(task));
        }
        drop(reader);
        session
    }

    fn view(id: &AgentId, told: &Told) -> AgentView {
        AgentView {
            id: id.clone(),
            status: told.status(),
            branch: None,
            pr_url: told.pr_url.clone(),
            summary: told.summary.clone(),
            url: None,
            duration: None,
            branches: Vec::new(),
        }
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        for session in self.sessions.lock().expect("not poisoned").values() {
            if let Some(reader) = session.reader.lock().expect("not poisoned").take() {
                reader.abort();
            }
        }
    }
}

/// Reads a session's events until it settles, reconnecting after the last event read.
async fn read_stream(client: Client, id: AgentId, session: Arc<Session>) {
    let mut wait = FIRST_RECONNECT;
    loop {
        let last = session
            .told
            .lock()
            .expect("not poisoned")
            .last_event
            .clone();
        match client.platform_stream(&id, last.as_deref()).await {
            Ok(mut events) => loop {
                match tokio::time::timeout(SILENCE, events.next()).await {
                    Ok(Some(Ok((event_id, event)))) => {
                        wait = FIRST_RECONNECT;
                        let mut told = session.told.lock().expect("not poisoned");
                        told.read(event_id, &event);
                        if told.settled() {
                            return;
                        }
                    }
                    // Broken, ended or silent: reconnect from the last event.
                    Ok(Some(Err(error))) => {
                        tracing::debug!(session = %id, %error, "event stream broke");
                        break;
                    }
                    Ok(None) | Err(_) => break,
                }
            },
            Err(error) if error.is_retryable() => {
                tracing::debug!(session = %id, %error, "cannot open the event stream");
            }
            Err(error) => {
                session.told.lock().expect("not poisoned").fatal = Some(error);
                return;
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_RECONNECT);
    }
}

impl Backend for Platform {
    fn outage(&self) -> Option<crate::cursor::Outage> {
        self.client.outage()
    }

    fn pace(&self) -> Option<crate::cursor::Pace> {
        self.client.quotas().pace()
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<AgentView, ApiError> {
        let request = CreateSession {
            runtime: RUNTIME,
            agent_id: self.agent_id.clone(),
            prompt: spec.prompt.clone(),
            environment: Environment {
                repository: spec.repository.clone(),
                git_ref: spec.git_ref.clone(),
                auto_create_pr: spec.target.auto_create_pr,
            },
        };
        let created = self.client.platform_create_session(&request).await?;
        let session = self.session(&created.id);
        session.told.lock().expect("not poisoned").sent = 1;
        let session = self.watch(&created.id);
        let told = session.told.lock().expect("not poisoned");
        Ok(Self::view(&created.id, &told))
    }

    fn finds_launches(&self) -> bool {
        false
    }

    async fn find_launched(&self, _spec: &LaunchSpec) -> Result<Option<AgentView>, ApiError> {
        Ok(None)
    }

    async fn statuses(&self, ids: &[AgentId], _oldest: SystemTime) -> Result<Statuses, ApiError> {
        let mut statuses = Statuses::new();
        for id in ids {
            let session = self.watch(id);
            let told = session.told.lock().expect("not poisoned");
            let status = match &told.fatal {
                Some(error @ ApiError::NotFound { .. }) => Err(error.clone()),
                Some(error) => return Err(error.clone()),
                None => Ok(Self::view(id, &told)),
            };
            statuses.insert(id.clone(), status);
        }
        Ok(statuses)
    }

    async fn follow_up(&self, id: &AgentId, text: &str) -> Result<(), ApiError> {
        let events = SendEvents {
            events: vec![UserEvent::message(text)],
        };
        self.client.platform_send(id, &events, false).await?;
        {
            let session = self.session(id);
            let mut told = session.told.lock().expect("not poisoned");
            told.sent = told.awaited() + 1;
        }
        self.watch(id);
        Ok(())
    }

    async fn follow_up_received(
        &self,
        id: &AgentId,
        _text: &str,
        sent_before: u32,
    ) -> Result<bool, ApiError> {
        // Every prompt shows in the session's events as a `user.message`: the first one and
        // each follow-up received.
        let mut prompts = 0;
        let mut page: Option<String> = None;
        loop {
            let answer = self.client.platform_events(id, page.as_deref()).await?;
            prompts += answer
                .data
                .iter()
                .filter(|e| e.kind == kind::USER_MESSAGE)
                .count();
            match answer.next_page {
                Some(next) => page = Some(next),
                None => break,
            }
        }
        let received = prompts >= 2 + sent_before as usize;
        if received {
            let session = self.session(id);
            let mut told = session.told.lock().expect("not poisoned");
            told.sent = told.sent.max(u32::try_from(prompts).unwrap_or(u32::MAX));
            drop(told);
            self.watch(id);
        }
        Ok(received)
    }

    async fn stop(&self, id: &AgentId) -> Result<(), ApiError> {
        let events = SendEvents {
            events: vec![UserEvent::Interrupt],
        };
        match self.client.platform_send(id, &events, true).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn tokens(&self, _id: &AgentId) -> Result<Option<u64>, ApiError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str) -> SessionEvent {
        SessionEvent {
            kind: kind.into(),
            ..SessionEvent::default()
        }
    }

    #[test]
    fn a_turn_runs_then_finishes_with_its_result_and_pull_request() {
        let mut told = Told {
            sent: 1,
            ..Told::default()
        };
        assert_eq!(told.status(), AgentStatus::Creating);
        told.read(Some("1".into()), &event(kind::USER_MESSAGE));
        told.read(Some("2".into()), &event(kind::RUNNING));
        assert_eq!(told.status(), AgentStatus::Running);
        let mut message = event(kind::MESSAGE);
        message.content = Some(serde_json::json!(
            "Done. Opened https://github.com/acme/api/pull/7."
        ));
        told.read(Some("3".into()), &message);
        told.read(Some("4".into()), &event(kind::IDLE));
        assert_eq!(told.status(), AgentStatus::Finished);
        assert_eq!(
            told.pr_url.as_deref(),
            Some("https://github.com/acme/api/pull/7")
        );
        assert_eq!(told.last_event.as_deref(), Some("4"));
        // A follow-up sent: the earlier idle no longer ends the wait.
        told.sent = 2;
        assert!(!told.settled());
        assert_eq!(told.status(), AgentStatus::Creating);
        told.read(None, &event(kind::RUNNING));
        let mut failed = event(kind::ERROR);
        failed.error = Some(serde_json::json!({"message": "boom"}));
        told.read(None, &failed);
        told.read(None, &event(kind::IDLE));
        assert_eq!(told.status(), AgentStatus::Error);
        assert_eq!(told.failed.as_deref(), Some("boom"));
    }

    #[test]
    fn interrupts_cancel_and_termination_expires() {
        let mut told = Told::default();
        told.read(None, &event(kind::RUNNING));
        told.read(None, &event(kind::USER_INTERRUPT));
        told.read(None, &event(kind::IDLE));
        assert_eq!(told.status(), AgentStatus::Cancelled);
        let mut ended = Told::default();
        ended.read(None, &event(kind::RUNNING));
        ended.read(None, &event(kind::TERMINATED));
        assert_eq!(ended.status(), AgentStatus::Expired);
    }

    #[test]
    fn pull_requests_are_found_in_text() {
        assert_eq!(
            pull_request_in("see (https://github.com/a/b/pull/12), thanks").as_deref(),
            Some("https://github.com/a/b/pull/12")
        );
        assert_eq!(pull_request_in("https://github.com/a/b/issues/3"), None);
        assert_eq!(pull_request_in("https://github.com/a/b/pull/x"), None);
    }
}
