//! Server-sent event streams on the client's transport (key, quotas, typed errors): a v1
//! run's stream and a LiteLLM Agent Platform session's.

use std::pin::Pin;

use eventsource_stream::Eventsource as _;
use futures_util::{Stream, StreamExt as _};
use reqwest::Method;

use super::client::{network_error, retry_after, send};
use super::{ApiError, CallKind, Client};

/// One event as sent: its type (`event:`), its id (`id:`, absent on some), its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// `event:`; `message` when the server names none.
    pub kind: String,
    /// `id:`, for `Last-Event-ID` on a reconnect.
    pub id: Option<String>,
    /// `data:`, possibly empty.
    pub data: String,
}

/// The events of one connection, as they come.
pub type RawEvents = Pin<Box<dyn Stream<Item = Result<RawEvent, ApiError>> + Send>>;

/// An open stream: its events and the `X-Cursor-Stream-Retention-Seconds` it announced.
pub struct Opened {
    /// The events.
    pub events: RawEvents,
    /// How long the server keeps the stream after the run ends, when it says.
    pub retention_seconds: Option<u64>,
}

impl Client {
    /// `GET path` as a stream of server-sent events, from after `last_event_id` (from the
    /// start without one). One connection, not retried: the caller reconnects with the last
    /// id it read, and decides what an error answer means.
    pub(super) async fn event_stream(
        &self,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<Opened, ApiError> {
        let permit = self.acquire(CallKind::Read).await;
        let mut request = self
            .request(Method::GET, path)?
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(last) = last_event_id {
            request = request.header("Last-Event-ID", last);
        }
        let (response, headers) = send(request, permit).await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(ApiError::from_status(
                status.as_u16(),
                retry_after(status, headers),
                &body,
            ));
        }
        let retention_seconds = response
            .headers()
            .get("x-cursor-stream-retention-seconds")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let events = response
            .bytes_stream()
            .eventsource()
            .map(|item| match item {
                Ok(event) => Ok(RawEvent {
                    kind: event.event,
                    id: (!event.id.is_empty()).then_some(event.id),
                    data: event.data,
                }),
                Err(eventsource_stream::EventStreamError::Transport(e)) => Err(network_error(e)),
                Err(e) => Err(ApiError::Decode {
                    message: e.to_string(),
                }),
            });
        Ok(Opened {
            events: Box::pin(events),
            retention_seconds,
        })
    }
}
