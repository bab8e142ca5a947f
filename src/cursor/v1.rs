//! The v1 endpoints of the client: agents, their runs, usage and artifacts.

use futures_util::StreamExt as _;
use reqwest::Method;

use super::client::{Call, segment};
use super::model::v1::RunEvent;
use super::model::v1::{
    Agent, AgentRunId, Artifact, CreateAgentRequest, CreateRunRequest, Created, Download,
    ModelItem, Page, RepositoryItem, Run, RunResponse, Usage,
};
use super::model::{AgentId, Me, Prompt};
use super::sse::RawEvents;
use super::{ApiError, CallKind, Client, MAX_PAGE};

/// A run's events as they come, each with its id (absent on the replayed `status`).
pub struct RunEvents {
    raw: RawEvents,
    /// `X-Cursor-Stream-Retention-Seconds`, when the server said.
    pub retention_seconds: Option<u64>,
}

impl RunEvents {
    /// The next event; `None` when the connection ended.
    pub async fn next(&mut self) -> Option<Result<(Option<String>, RunEvent), ApiError>> {
        let raw = match self.raw.next().await? {
            Ok(raw) => raw,
            Err(error) => return Some(Err(error)),
        };
        Some(
            RunEvent::parse(&raw.kind, &raw.data)
                .map(|event| (raw.id, event))
                .map_err(|bad| ApiError::Decode {
                    message: bad.to_string(),
                }),
        )
    }
}

/// `IdResponse`: what cancel, archive, unarchive and delete answer.
#[derive(serde::Deserialize)]
struct Id<T> {
    id: T,
}

/// Query parameters of one page of a list.
fn page_query(limit: Option<u32>, cursor: Option<&str>) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(limit) = limit {
        query.push(("limit", limit.clamp(1, MAX_PAGE).to_string()));
    }
    if let Some(cursor) = cursor {
        query.push(("cursor", cursor.to_owned()));
    }
    query
}

impl Client {
    /// `POST /v1/agents`: the agent and its first run. Sent again only when the API surely did
    /// not act on it; with an `agentId`, a second send answers 409 `agent_id_conflict`.
    pub async fn v1_create_agent(&self, request: &CreateAgentRequest) -> Result<Created, ApiError> {
        self.call(Call {
            method: Method::POST,
            path: "v1/agents",
            query: &[],
            body: Some(request),
            kind: CallKind::Launch,
            idempotent: false,
        })
        .await
    }

    /// `GET /v1/agents`: one page, newest first.
    pub async fn v1_agents(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
        include_archived: bool,
    ) -> Result<Page<Agent>, ApiError> {
        let mut query = page_query(limit, cursor);
        // The API's default is true; said either way, so the answer does not hang on it.
        query.push(("includeArchived", include_archived.to_string()));
        self.get("v1/agents", &query, CallKind::Read).await
    }

    /// `GET /v1/agents/{id}`.
    pub async fn v1_agent(&self, id: &AgentId) -> Result<Agent, ApiError> {
        self.get(
            &format!("v1/agents/{}", segment(&id.0)),
            &[],
            CallKind::Read,
        )
        .await
    }

    /// `POST /v1/agents/{id}/runs`: a follow-up. 409 `agent_busy` (a run is active) is waited
    /// out and retried; nothing else is sent twice unless surely not processed.
    pub async fn v1_create_run(&self, id: &AgentId, prompt: Prompt) -> Result<Run, ApiError> {
        let response: RunResponse = self
            .call(Call {
                method: Method::POST,
                path: &format!("v1/agents/{}/runs", segment(&id.0)),
                query: &[],
                body: Some(&CreateRunRequest { prompt }),
                kind: CallKind::Change,
                idempotent: false,
            })
            .await?;
        Ok(response.run)
    }

    /// `GET /v1/agents/{id}/runs`: one page of runs, newest first (without results).
    pub async fn v1_runs(
        &self,
        id: &AgentId,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<Run>, ApiError> {
        self.get(
            &format!("v1/agents/{}/runs", segment(&id.0)),
            &page_query(limit, cursor),
            CallKind::Read,
        )
        .await
    }

    /// `GET /v1/agents/{id}/runs/{runId}`: the bare run, with its result once ended.
    pub async fn v1_run(&self, id: &AgentId, run: &AgentRunId) -> Result<Run, ApiError> {
        let path = format!("v1/agents/{}/runs/{}", segment(&id.0), segment(&run.0));
        self.get(&path, &[], CallKind::Read).await
    }

    /// `GET /v1/agents/{id}/runs/{runId}/stream`: the run's events, from after
    /// `last_event_id`. One connection, not retried: 410 `stream_expired` means read the run
    /// instead; `stream_unavailable` right after a start means try again shortly.
    pub async fn v1_stream(
        &self,
        id: &AgentId,
        run: &AgentRunId,
        last_event_id: Option<&str>,
    ) -> Result<RunEvents, ApiError> {
        let path = format!(
            "v1/agents/{}/runs/{}/stream",
            segment(&id.0),
            segment(&run.0)
        );
        let opened = self.event_stream(&path, last_event_id).await?;
        Ok(RunEvents {
            raw: opened.events,
            retention_seconds: opened.retention_seconds,
        })
    }

    /// `POST /v1/agents/{id}/runs/{runId}/cancel`: answers the run's id only.
    pub async fn v1_cancel_run(
        &self,
        id: &AgentId,
        run: &AgentRunId,
    ) -> Result<AgentRunId, ApiError> {
        let path = format!(
            "v1/agents/{}/runs/{}/cancel",
            segment(&id.0),
            segment(&run.0)
        );
        let answer: Id<AgentRunId> = self.post_empty(&path).await?;
        Ok(answer.id)
    }

    /// `POST /v1/agents/{id}/archive` (idempotent): answers the agent's id only.
    pub async fn v1_archive(&self, id: &AgentId) -> Result<AgentId, ApiError> {
        let answer: Id<AgentId> = self
            .post_empty(&format!("v1/agents/{}/archive", segment(&id.0)))
            .await?;
        Ok(answer.id)
    }

    /// `POST /v1/agents/{id}/unarchive` (idempotent): answers the agent's id only.
    pub async fn v1_unarchive(&self, id: &AgentId) -> Result<AgentId, ApiError> {
        let answer: Id<AgentId> = self
            .post_empty(&format!("v1/agents/{}/unarchive", segment(&id.0)))
            .await?;
        Ok(answer.id)
    }

    /// `DELETE /v1/agents/{id}`: answers the agent's id only.
    pub async fn v1_delete(&self, id: &AgentId) -> Result<AgentId, ApiError> {
        let answer: Id<AgentId> = self
            .call::<(), _>(Call {
                method: Method::DELETE,
                path: &format!("v1/agents/{}", segment(&id.0)),
                query: &[],
                body: None,
                kind: CallKind::Change,
                idempotent: true,
            })
            .await?;
        Ok(answer.id)
    }

    /// `GET /v1/agents/{id}/usage`: 403 `feature_unavailable` where usage is not offered.
    pub async fn v1_usage(&self, id: &AgentId) -> Result<Usage, ApiError> {
        self.get(
            &format!("v1/agents/{}/usage", segment(&id.0)),
            &[],
            CallKind::Read,
        )
        .await
    }

    /// `GET /v1/agents/{id}/artifacts`.
    pub async fn v1_artifacts(&self, id: &AgentId) -> Result<Vec<Artifact>, ApiError> {
        let page: Page<Artifact> = self
            .get(
                &format!("v1/agents/{}/artifacts", segment(&id.0)),
                &[],
                CallKind::Read,
            )
            .await?;
        Ok(page.items)
    }

    /// `GET /v1/agents/{id}/artifacts/download?path=`: a presigned link, valid 15 minutes.
    pub async fn v1_artifact_download(
        &self,
        id: &AgentId,
        path: &str,
    ) -> Result<Download, ApiError> {
        self.get(
            &format!("v1/agents/{}/artifacts/download", segment(&id.0)),
            &[("path", path.to_owned())],
            CallKind::Read,
        )
        .await
    }

    /// `GET /v1/me`.
    pub async fn v1_me(&self) -> Result<Me, ApiError> {
        self.get("v1/me", &[], CallKind::Read).await
    }

    /// `GET /v1/models`.
    pub async fn v1_models(&self) -> Result<Vec<ModelItem>, ApiError> {
        let page: Page<ModelItem> = self.get("v1/models", &[], CallKind::Read).await?;
        Ok(page.items)
    }

    /// `GET /v1/repositories`, within the same 1 per minute and 30 per hour as v0 (this
    /// waits).
    pub async fn v1_repositories(&self) -> Result<Vec<RepositoryItem>, ApiError> {
        let answer: Result<Page<RepositoryItem>, ApiError> = self
            .get("v1/repositories", &[], CallKind::Repositories)
            .await;
        self.quotas().repositories_answered();
        answer.map(|page| page.items)
    }

    async fn post_empty<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.call::<(), _>(Call {
            method: Method::POST,
            path,
            query: &[],
            body: None,
            kind: CallKind::Change,
            idempotent: true,
        })
        .await
    }
}
