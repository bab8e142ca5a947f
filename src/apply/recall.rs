//! A run this state holds no records of may still have agents: an earlier apply, on a state
//! since lost, pruned or on another machine, launched them. They are looked for before
//! anything is launched, so that each is adopted instead of launched twice.

use crate::cursor::ApiError;
use crate::exec::{AnyBackend, Backend, Recall, Wanted};
use crate::plan::{Action, Plan};

/// The launches of `plan`'s run that the API holds, for the instances the plan would launch;
/// the plan marks those that may be the same launch as adopted. One sweep of the agent list.
pub async fn recall(plan: &mut Plan, backend: &AnyBackend) -> Result<Recall, ApiError> {
    let wanted: Vec<Wanted> = plan
        .instances
        .iter()
        .filter(|i| i.action == Action::Launch)
        .filter_map(|i| {
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
