//! The simulator's strict mode: every exchange on Cursor's paths, its own answers included
//! (auth refusals, 429s, injected errors), is checked against the published OpenAPI files,
//! and what breaks them is recorded for tests and logged for users.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use super::http::{Shared, lock};
use crate::contract::{self, AuthScheme, Contract, Violation};

/// Bodies larger than this are not the API's (its largest request is a prompt with images).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Checks the request, lets the simulator answer, checks the answer.
pub(super) async fn check(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let contract = lock(&state).config.contract.clone();
    let Some(contract) = contract.filter(|_| Contract::covers(&path)) else {
        return next.run(request).await;
    };
    let method = request.method().as_str().to_owned();
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return super::http::dropped_connection();
    };
    let header = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(header::CONTENT_TYPE);
    let authorization = header(header::AUTHORIZATION);
    let found = contract.check_request(&contract::Request {
        method: &method,
        path: &path,
        query: parts.uri.query(),
        auth: AuthScheme::of(authorization.as_deref()),
        content_type: content_type.as_deref(),
        body: &bytes,
    });
    record(&state, found);
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("text/event-stream"))
    {
        let answer = contract::Response {
            status,
            content_type: content_type.as_deref(),
            body: None,
        };
        record(&state, contract.check_response(&method, &path, &answer));
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        // An injected dropped connection: nothing was answered to check.
        return super::http::dropped_connection();
    };
    let found = contract.check_response(
        &method,
        &path,
        &contract::Response {
            status,
            content_type: content_type.as_deref(),
            body: Some(&bytes),
        },
    );
    record(&state, found);
    Response::from_parts(parts, Body::from(bytes))
}

/// Keeps what broke the published API for tests (`Simulator::violations`), and says it.
fn record(state: &Shared, found: Vec<Violation>) {
    for violation in &found {
        tracing::warn!(%violation, "an exchange breaks Cursor's published API");
    }
    if !found.is_empty() {
        lock(state).violations.extend(found);
    }
}
