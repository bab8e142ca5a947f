//! The client's JSON types against the API reference's own examples: each example reads
//! into the type and writes back to the same JSON, so every field name matches the
//! reference exactly; unknown fields and statuses are tolerated.

use orchestrate::cursor::AgentStatus;
use orchestrate::cursor::model::{
    Agent, AgentPage, Conversation, FollowUpRequest, IdResponse, LaunchRequest, Me, Models,
    Repositories, StatusChange,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::support::repo_root;

fn round_trip<T: DeserializeOwned + Serialize>(file: &str) {
    let path = repo_root().join("tests/fixtures/api").join(file);
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let typed: T =
        serde_json::from_value(original.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        original,
        "{file} does not round-trip"
    );
}

#[test]
fn every_reference_example_round_trips() {
    round_trip::<AgentPage>("list-agents.json");
    round_trip::<LaunchRequest>("launch-request.json");
    round_trip::<Agent>("launch-response.json");
    round_trip::<Conversation>("conversation.json");
    round_trip::<FollowUpRequest>("followup-request.json");
    round_trip::<IdResponse>("id-response.json");
    round_trip::<Me>("me.json");
    round_trip::<Models>("models.json");
    round_trip::<Repositories>("repositories.json");
    round_trip::<StatusChange>("webhook-finished.json");
}

#[test]
fn unknown_fields_are_ignored_and_unknown_statuses_kept() {
    let agent: Agent = serde_json::from_str(
        r#"{"id": "bc_1", "status": "PAUSED_FOR_REVIEW", "newField": {"x": 1}, "target": {"branchName": "b", "futureFlag": true}}"#,
    )
    .unwrap();
    assert_eq!(
        agent.status,
        AgentStatus::Unknown("PAUSED_FOR_REVIEW".into())
    );
    assert!(!agent.status.is_terminal());
    assert_eq!(agent.branch(), Some("b"));
    assert_eq!(
        serde_json::to_value(&agent.status).unwrap(),
        "PAUSED_FOR_REVIEW"
    );
}
