//! The Cursor Cloud Agents API (v0, v1, and the LiteLLM Agent Platform's `cursor` runtime):
//! its JSON shapes, a typed client with quotas and retries.

mod budget;
mod client;
mod config;
mod error;
pub mod model;
mod outage;
mod platform;
mod quota;
mod retry;
mod sse;
mod v1;
pub mod webhook;

pub use budget::{Outcome, RateHeaders};
pub use client::{Client, MAX_PAGE, USER_AGENT};
pub use config::{ApiKey, AuthScheme, ClientConfig, ConfigError, DEFAULT_BASE_URL};
pub use error::ApiError;
pub use model::{AgentId, AgentStatus};
pub use outage::Outage;
pub use platform::EventStream;
pub use quota::{
    CallKind, Pace, Permit, QuotaConfig, Quotas, Rate, RateError, Rates, SharedBuckets,
    rate_headers,
};
pub use retry::RetryPolicy;
pub use sse::RawEvent;
pub use v1::RunEvents;
