//! What can go wrong talking to the API, and whether trying again can help.

use std::time::Duration;

/// An API call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 401 or 403: the key is wrong, revoked, or lacks access.
    #[error("the API refused the key (HTTP {status}): {message}")]
    Auth {
        /// 401 or 403.
        status: u16,
        /// The API's explanation.
        message: String,
    },
    /// 429: too many requests; try again after `retry_after` when given.
    #[error("rate limited by the API{}: {message}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs_f64())).unwrap_or_default())]
    RateLimited {
        /// The `Retry-After` the API sent.
        retry_after: Option<Duration>,
        /// The API's explanation.
        message: String,
    },
    /// 400: the request is wrong; sending it again will not help.
    #[error("the API rejected the request: {message}")]
    BadRequest {
        /// The API's error code, when it sent one.
        code: Option<String>,
        /// The API's explanation.
        message: String,
    },
    /// `usage_limit_exceeded`: a spending ceiling was reached. Never retried: the run pauses
    /// until someone raises the limit.
    #[error("the API's usage limit is reached: {message}")]
    UsageLimit {
        /// The API's explanation.
        message: String,
    },
    /// 404: no such agent (deleted, or never existed).
    #[error("not found: {message}")]
    NotFound {
        /// The API's explanation.
        message: String,
    },
    /// 409: the agent is busy or in a state that does not allow the request.
    #[error("conflict: {message}")]
    Conflict {
        /// The API's error code, when it sent one.
        code: Option<String>,
        /// The API's explanation.
        message: String,
    },
    /// 5xx: the API failed; the request may or may not have taken effect.
    #[error("the API failed (HTTP {status}): {message}")]
    Server {
        /// The status.
        status: u16,
        /// The API's explanation.
        message: String,
    },
    /// Another status the API is not documented to send.
    #[error("unexpected HTTP {status} from the API: {message}")]
    Unexpected {
        /// The status.
        status: u16,
        /// The body.
        message: String,
    },
    /// The connection failed or timed out.
    #[error("network error{}: {message}", if *.sent { "" } else { " before the request was sent" })]
    Network {
        /// False when the request surely never reached the API (connecting failed).
        sent: bool,
        /// What happened.
        message: String,
    },
    /// The answer is not the JSON the reference documents.
    #[error("cannot read the API's answer: {message}")]
    Decode {
        /// What did not parse.
        message: String,
    },
}

impl ApiError {
    /// Whether the API is out of reach rather than answering: no connection, or a 5xx.
    pub fn is_outage(&self) -> bool {
        matches!(self, ApiError::Network { .. } | ApiError::Server { .. })
    }

    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::RateLimited { .. } | ApiError::Server { .. } | ApiError::Network { .. } => {
                true
            }
            // Busy is waited out; an archived agent, a taken id or an ended run stay so.
            ApiError::Conflict { code, .. } => code.as_deref() == Some("agent_busy"),
            ApiError::Auth { .. }
            | ApiError::UsageLimit { .. }
            | ApiError::BadRequest { .. }
            | ApiError::NotFound { .. }
            | ApiError::Unexpected { .. }
            | ApiError::Decode { .. } => false,
        }
    }

    /// Whether the API surely did not act on the request, so that even a launch can be sent
    /// again without risking a second agent.
    pub fn surely_not_processed(&self) -> bool {
        match self {
            ApiError::RateLimited { .. }
            | ApiError::Auth { .. }
            | ApiError::BadRequest { .. }
            | ApiError::UsageLimit { .. }
            | ApiError::Conflict { .. } => true,
            ApiError::Network { sent, .. } => !sent,
            _ => false,
        }
    }

    /// The code of a 409, like `agent_busy` or `agent_id_conflict`.
    pub fn conflict_code(&self) -> Option<&str> {
        match self {
            ApiError::Conflict { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The `Retry-After` the API asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The error for an HTTP answer that is not a success.
    pub fn from_status(status: u16, retry_after: Option<Duration>, body: &str) -> Self {
        let (code, message) = parse_error_body(body);
        match code.as_deref() {
            Some("usage_limit_exceeded") => return ApiError::UsageLimit { message },
            // A run's stream not ready yet, just after the run started: a passing fault.
            Some("stream_unavailable") => return ApiError::Server { status, message },
            _ => {}
        }
        match status {
            400 | 422 => ApiError::BadRequest { code, message },
            401 | 403 => ApiError::Auth { status, message },
            404 => ApiError::NotFound { message },
            409 => ApiError::Conflict { code, message },
            429 => ApiError::RateLimited {
                retry_after,
                message,
            },
            500..=599 => ApiError::Server { status, message },
            _ => ApiError::Unexpected { status, message },
        }
    }
}

/// The code and message of an error body, in either shape the API uses:
/// `{"error": {"code", "message"}}` or `{"error": "...", "message": "..."}`, else the text.
fn parse_error_body(body: &str) -> (Option<String>, String) {
    let text = || {
        let trimmed = body.trim();
        let short: String = trimmed.chars().take(300).collect();
        if short.is_empty() {
            "(no message)".to_owned()
        } else {
            short
        }
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else {
        return (None, text());
    };
    let str_of = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    match json.get("error") {
        Some(serde_json::Value::Object(error)) => {
            let code = error.get("code").and_then(str_of);
            let message = error
                .get("message")
                .and_then(str_of)
                .or_else(|| code.clone());
            (code, message.unwrap_or_else(text))
        }
        Some(serde_json::Value::String(error)) => {
            let message = json
                .get("message")
                .and_then(str_of)
                .unwrap_or_else(|| error.clone());
            (Some(error.clone()), message)
        }
        _ => (
            None,
            json.get("message").and_then(str_of).unwrap_or_else(text),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_error_shapes_are_read() {
        let nested = r#"{"error": {"code": "agent_busy", "message": "Agent is busy"}}"#;
        assert_eq!(
            ApiError::from_status(409, None, nested),
            ApiError::Conflict {
                code: Some("agent_busy".into()),
                message: "Agent is busy".into()
            }
        );
        let flat = r#"{"error": "bad_request", "message": "prompt.text is required"}"#;
        assert_eq!(
            ApiError::from_status(400, None, flat),
            ApiError::BadRequest {
                code: Some("bad_request".into()),
                message: "prompt.text is required".into()
            }
        );
        assert_eq!(
            ApiError::from_status(502, None, "<html>Bad gateway</html>"),
            ApiError::Server {
                status: 502,
                message: "<html>Bad gateway</html>".into()
            }
        );
    }

    #[test]
    fn statuses_map_to_classes() {
        let cases = [
            (400, false, true),
            (401, false, true),
            (403, false, true),
            (404, false, false),
            // A bare 409 is v0's "deleted or archived": it stays so.
            (409, false, true),
            (429, true, true),
            (500, true, false),
            (503, true, false),
            (418, false, false),
        ];
        for (status, retryable, not_processed) in cases {
            let error = ApiError::from_status(status, None, "{}");
            assert_eq!(error.is_retryable(), retryable, "{status}");
            assert_eq!(error.surely_not_processed(), not_processed, "{status}");
        }
        let conflict = |code: &str| {
            let body = format!(r#"{{"error": {{"code": "{code}", "message": "m"}}}}"#);
            ApiError::from_status(409, None, &body)
        };
        assert!(conflict("agent_busy").is_retryable());
        for code in ["agent_id_conflict", "agent_archived", "run_not_cancellable"] {
            assert!(!conflict(code).is_retryable(), "{code}");
        }
        let limit = r#"{"error": {"code": "usage_limit_exceeded", "message": "Spend limit"}}"#;
        let limit = ApiError::from_status(400, None, limit);
        assert_eq!(
            limit,
            ApiError::UsageLimit {
                message: "Spend limit".into()
            }
        );
        assert!(!limit.is_retryable());
    }
}
