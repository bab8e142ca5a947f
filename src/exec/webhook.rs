//! The webhook receiver of `apply --webhook-listen`.
//!
//! A verified delivery about an agent being waited on wakes the poller, which reads the
//! statuses from the API at once: the API stays the only source of truth, so a duplicate or
//! a delivery that overtook another changes nothing, and polling continues, more slowly, as a
//! safety net for deliveries that never come.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::poller::Poller;
use crate::cursor::AgentId;
use crate::cursor::webhook::verify;

/// The largest delivery accepted; Cursor's are a few hundred bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// Deliveries remembered to recognise duplicates.
const REMEMBERED: usize = 10_000;

/// What the receiver did, for tests and logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Deliveries {
    /// Verified deliveries acted on.
    pub accepted: u64,
    /// Verified deliveries already seen (same `X-Webhook-ID`).
    pub duplicates: u64,
    /// Deliveries without a valid signature.
    pub rejected: u64,
}

struct Receiver {
    secret: String,
    poller: Poller,
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
    counts: Mutex<Deliveries>,
}

#[derive(Deserialize)]
struct Delivery {
    id: AgentId,
}

/// A running receiver.
pub struct WebhookListener {
    addr: SocketAddr,
    receiver: Arc<Receiver>,
    stop: CancellationToken,
}

impl WebhookListener {
    /// Listens on `addr` for POSTs to `path`, signed with `secret`, waking `poller`.
    pub async fn start(
        addr: SocketAddr,
        path: &str,
        secret: String,
        poller: Poller,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Self::serve(listener, path, secret, poller)
    }

    /// [`Self::start`] on a socket bound beforehand (so that an address in use is found
    /// before anything else is done).
    pub fn serve(
        listener: tokio::net::TcpListener,
        path: &str,
        secret: String,
        poller: Poller,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let receiver = Arc::new(Receiver {
            secret,
            poller,
            seen: Mutex::default(),
            counts: Mutex::default(),
        });
        let app = Router::new()
            .route(path, post(receive))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(receiver.clone());
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
        });
        Ok(Self {
            addr,
            receiver,
            stop,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it received so far.
    pub fn deliveries(&self) -> Deliveries {
        self.receiver.counts.lock().expect("not poisoned").clone()
    }

    /// Stops listening.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for WebhookListener {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signature = headers
        .get("x-webhook-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !verify(&receiver.secret, &body, signature) {
        receiver.counts.lock().expect("not poisoned").rejected += 1;
        warn!("refused a webhook delivery without a valid signature");
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(delivery) = serde_json::from_slice::<Delivery>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let id = headers
        .get("x-webhook-id")
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || {
                format!(
                    "{}:{}",
                    delivery.id,
                    hex::encode(&body[..body.len().min(64)])
                )
            },
            str::to_owned,
        );
    {
        let mut seen = receiver.seen.lock().expect("not poisoned");
        if !seen.0.insert(id.clone()) {
            receiver.counts.lock().expect("not poisoned").duplicates += 1;
            return StatusCode::OK;
        }
        seen.1.push_back(id);
        if seen.1.len() > REMEMBERED {
            if let Some(old) = seen.1.pop_front() {
                seen.0.remove(&old);
            }
        }
    }
    receiver.counts.lock().expect("not poisoned").accepted += 1;
    if receiver.poller.watches(&delivery.id) {
        debug!(agent = %delivery.id, "webhook: reading statuses now");
        receiver.poller.wake();
    }
    StatusCode::OK
}
