//! The LiteLLM Agent Platform's endpoints for the `cursor` runtime, on the same transport
//! (key, quotas, retries, typed errors) as the Cursor API.

use std::pin::Pin;

use futures_util::{Stream, StreamExt as _};
use reqwest::Method;

use super::client::{Call, segment};
use super::model::AgentId;
use super::model::platform::{CreateSession, EventPage, SendEvents, Session, SessionEvent};
use super::{ApiError, CallKind, Client};

/// A session's events as they come: each with the stream's id of it, for reconnecting.
pub type EventStream =
    Pin<Box<dyn Stream<Item = Result<(Option<String>, SessionEvent), ApiError>> + Send>>;

impl Client {
    /// `POST /session`. Like a launch, retried only when the platform surely did not act on
    /// it: after any other failure the session may exist.
    pub async fn platform_create_session(
        &self,
        request: &CreateSession,
    ) -> Result<Session, ApiError> {
        self.call(Call {
            method: Method::POST,
            path: "session",
            query: &[],
            body: Some(request),
            kind: CallKind::Launch,
            idempotent: false,
        })
        .await
    }

    /// `POST /v1/sessions/{id}/events`. A follow-up is not idempotent; an interrupt is.
    pub async fn platform_send(
        &self,
        id: &AgentId,
        events: &SendEvents,
        idempotent: bool,
    ) -> Result<serde_json::Value, ApiError> {
        self.call(Call {
            method: Method::POST,
            path: &format!("v1/sessions/{}/events", segment(&id.0)),
            query: &[],
            body: Some(events),
            kind: CallKind::Change,
            idempotent,
        })
        .await
    }

    /// `GET /v1/sessions/{id}/events`: one page of the session's events, oldest first.
    pub async fn platform_events(
        &self,
        id: &AgentId,
        page: Option<&str>,
    ) -> Result<EventPage, ApiError> {
        let query: Vec<(&str, String)> = page.map(|p| ("page", p.to_owned())).into_iter().collect();
        self.get(
            &format!("v1/sessions/{}/events", segment(&id.0)),
            &query,
            CallKind::Read,
        )
        .await
    }

    /// `GET /v1/sessions/{id}/events/stream`: the session's events as server-sent events,
    /// from after `last_event_id` (from the start without one). One connection, not retried:
    /// the caller reconnects with the last id it read.
    pub async fn platform_stream(
        &self,
        id: &AgentId,
        last_event_id: Option<&str>,
    ) -> Result<EventStream, ApiError> {
        let path = format!("v1/sessions/{}/events/stream", segment(&id.0));
        let opened = self.event_stream(&path, last_event_id).await?;
        let events = opened.events.filter_map(|item| async {
            match item {
                // Keep-alive comments and events without data carry nothing.
                Ok(event) if event.data.trim().is_empty() => None,
                Ok(event) => {
                    let mut parsed: SessionEvent = match serde_json::from_str(&event.data) {
                        Ok(parsed) => parsed,
                        Err(e) => {
                            return Some(Err(ApiError::Decode {
                                message: format!("event {}: {e}", event.kind),
                            }));
                        }
                    };
                    if parsed.kind.is_empty() {
                        parsed.kind = event.kind;
                    }
                    Some(Ok((event.id, parsed)))
                }
                Err(error) => Some(Err(error)),
            }
        });
        Ok(Box::pin(events))
    }
}
