//! An instance this state never launched may still have an agent: an earlier apply, on a
//! state since lost, pruned or on another machine, launched it (or an apply killed between
//! finding it and adopting it). Such launches are looked for before anything is launched, so
//! that each is adopted instead of launched twice.

use super::ApplyError;
use crate::cursor::{ApiError, Client, ClientConfig, ConfigError};
use crate::exec::{AnyBackend, Backend, Recall, Wanted};
use crate::plan::Plan;
use crate::spec::Api;
use crate::state::{InstanceRecord, InstanceState};

/// For `plan`: marks the instances of `plan` (diffed against `recorded`) whose launch the API
/// already holds as adopted, as `apply` would. Returns whether it could look: not without
/// `CURSOR_API_KEY`, nor on the Agent Platform, which cannot list its sessions.
pub async fn mark_adopted(
    plan: &mut Plan,
    recorded: &[InstanceRecord],
) -> Result<bool, ApplyError> {
    if matches!(plan.api, Api::Platform(_)) {
        return Ok(false);
    }
    let config = match ClientConfig::from_env() {
        Ok(config) => config,
        Err(ConfigError::MissingKey) => return Ok(false),
        Err(error) => return Err(error.into()),
    };
    let backend = AnyBackend::new(&plan.api, Client::new(config)?);
    let records = super::merge(plan, recorded).records;
    recall(plan, &records, &backend)
        .await
        .map_err(ApplyError::Recall)?;
    Ok(true)
}

/// The launches the API holds for the instances of `plan` whose `records` (in plan order)
/// show none yet; the plan marks those that may be the same launch as adopted. One sweep of
/// the agent list, made only when some instance has no launch.
pub async fn recall(
    plan: &mut Plan,
    records: &[InstanceRecord],
    backend: &AnyBackend,
) -> Result<Recall, ApiError> {
    let unlaunched = |r: &InstanceRecord| r.state == InstanceState::Pending && r.attempt == 0;
    let wanted: Vec<Wanted> = plan
        .instances
        .iter()
        .zip(records)
        .filter(|(_, r)| unlaunched(r))
        .filter_map(|(i, _)| {
            Some(Wanted {
                key: i.key.to_string(),
                repository: i.repo.as_ref()?.to_string(),
                branch: i.branch.clone(),
            })
        })
        .collect();
    if wanted.is_empty() || !backend.recalls() {
        return Ok(Recall::new());
    }
    let recall = backend.recall(plan.run.as_str(), &wanted).await?;
    plan.adopt(|i| {
        recall
            .get(i.key.as_str())
            .is_some_and(|found| found.may_be(&i.spec_hash()))
    });
    Ok(recall)
}
