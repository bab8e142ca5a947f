//! Webhook deliveries: signed like Cursor's, sometimes twice, sometimes out of order.

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::http::Shared;
use crate::cursor::model::{Agent, StatusChange, Webhook};

/// `sha256=<hex of HMAC-SHA256(secret, body)>`, as in `X-Webhook-Signature`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Delivers due webhooks until `stop` is cancelled.
pub async fn deliver(state: Shared, stop: CancellationToken) {
    let http = reqwest::Client::builder()
        .user_agent("Cursor-Agent-Webhook/1.0")
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut sequence: u64 = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let due = {
            let mut s = state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            s.due_webhooks(SystemTime::now())
                .into_iter()
                .map(|(webhook, agent)| {
                    let faults = &s.config.faults;
                    let (delay_range, duplicate) = (faults.webhook_delay, faults.webhook_duplicate);
                    let copies = if duplicate > 0.0 && s.rng.random_bool(duplicate) {
                        2
                    } else {
                        1
                    };
                    let delays: Vec<Duration> = (0..copies)
                        .map(|_| {
                            delay_range.map_or(Duration::ZERO, |(low, high)| {
                                if low >= high {
                                    low
                                } else {
                                    s.rng.random_range(low..=high)
                                }
                            })
                        })
                        .collect();
                    s.stats.webhook_deliveries += copies;
                    (webhook, agent, delays)
                })
                .collect::<Vec<_>>()
        };
        for (webhook, agent, delays) in due {
            sequence += 1;
            let delivery_id = format!("whd_{sequence:08}");
            let body = serde_json::to_vec(&payload(&agent)).expect("plain JSON");
            for delay in delays {
                let http = http.clone();
                let (webhook, body, delivery_id) =
                    (webhook.clone(), body.clone(), delivery_id.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    post(&http, &webhook, &delivery_id, body).await;
                });
            }
        }
    }
}

fn payload(agent: &Agent) -> StatusChange {
    let error = (agent.status == crate::cursor::AgentStatus::Error)
        .then(|| "The agent failed (simulated)".to_owned());
    StatusChange {
        event: "statusChange".into(),
        timestamp: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        id: agent.id.clone(),
        status: agent.status.clone(),
        source: agent.source.clone(),
        target: agent.target.clone(),
        summary: agent.summary.clone(),
        error,
    }
}

/// Posts one delivery, retrying a few times as Cursor does when the receiver fails.
async fn post(http: &reqwest::Client, webhook: &Webhook, delivery_id: &str, body: Vec<u8>) {
    let mut request = http
        .post(&webhook.url)
        .header("Content-Type", "application/json")
        .header("X-Webhook-ID", delivery_id)
        .header("X-Webhook-Event", "statusChange");
    if let Some(secret) = &webhook.secret {
        request = request.header("X-Webhook-Signature", signature(secret.expose(), &body));
    }
    for attempt in 0..3u32 {
        let Some(attempt_request) = request.try_clone() else {
            return;
        };
        match attempt_request.body(body.clone()).send().await {
            Ok(response) if response.status().is_success() => return,
            _ => tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(attempt)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn signatures_match_a_known_hmac() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
