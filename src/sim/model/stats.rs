//! What the simulator counts, for tests (`GET /__sim/stats`) and people.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cursor::model::AgentId;

/// Counters tests read through `GET /__sim/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Calls per route (`GET /v0/agents/{id}`), rejected ones included.
    pub calls: BTreeMap<String, u64>,
    /// Launches per `repository#branch` (v0), `repository#name` (v1, where the agent picks
    /// its branch and orchestrate names each attempt) or `repository#prompt` (platform
    /// sessions): more than one is a duplicate agent.
    pub launches: BTreeMap<String, u64>,
    /// Follow-ups accepted per agent.
    pub follow_ups: BTreeMap<String, u64>,
    /// Requests refused because they exceeded a documented quota (the repositories
    /// endpoint's), per route: a client that keeps to the documentation has none.
    pub quota_violations: BTreeMap<String, u64>,
    /// Requests refused (429) by the general calls quota, per route: how a client learns it.
    pub throttled: BTreeMap<String, u64>,
    /// The most agents working at once (a run started and not yet ended).
    pub peak_working: u64,
    /// Faults injected, per kind.
    pub faults: BTreeMap<String, u64>,
    /// Agents created.
    pub agents: u64,
    /// Webhook deliveries attempted.
    pub webhook_deliveries: u64,
    /// v1 refusals per error code (`agent_id_conflict`, `agent_busy`, ...).
    pub errors: BTreeMap<String, u64>,
    /// Agent Platform events sent over event streams (an event sent twice counts twice).
    pub stream_events: u64,
    /// Agent Platform event streams opened with `Last-Event-ID` (reconnects).
    pub stream_resumes: u64,
}

impl Stats {
    /// Requests refused for exceeding a documented quota, over every route.
    pub fn total_quota_violations(&self) -> u64 {
        self.quota_violations.values().sum()
    }

    /// Requests the general calls quota refused, over every route.
    pub fn total_throttled(&self) -> u64 {
        self.throttled.values().sum()
    }
}

/// A launch as the simulator received it, whichever API it came through.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Launch {
    /// `v0` or `v1`.
    pub api: String,
    /// The agent it made.
    pub agent_id: AgentId,
    /// The repository.
    pub repository: String,
    /// The ref it starts from.
    pub git_ref: Option<String>,
    /// The branch the agent pushes to (asked for on v0, picked by the agent on v1).
    pub branch: String,
    /// The model asked for.
    pub model: Option<String>,
    /// The prompt text.
    pub prompt: String,
    /// The body as sent, secrets (webhook secret, environment values) masked.
    pub body: serde_json::Value,
}

impl Stats {
    /// Counts one more of `what` in `counter`.
    pub fn bump(counter: &mut BTreeMap<String, u64>, what: impl Into<String>) {
        *counter.entry(what.into()).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_every_route() {
        let mut stats = Stats::default();
        Stats::bump(&mut stats.quota_violations, "GET /v0/repositories");
        Stats::bump(&mut stats.quota_violations, "GET /v0/repositories");
        Stats::bump(&mut stats.quota_violations, "GET /v1/repositories");
        Stats::bump(&mut stats.throttled, "GET /v0/agents");
        assert_eq!(stats.total_quota_violations(), 3);
        assert_eq!(stats.total_throttled(), 1);
    }
}
