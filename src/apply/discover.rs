//! Resolving `discover` fleets from `GET /v0/repositories`, through the store's cache.

use std::collections::HashMap;
use std::time::Duration;

use super::ApplyError;
use crate::cursor::{ApiError, Client};
use crate::spec::{ApiVersion, Fleet, HumanDuration, RepoUrl, Workflow};
use crate::state::{RepositoryCache, Store, StoreHandle, Timestamp, Write};

/// How long a fetch of the repository list may take when a cached list can stand in.
const SLOW_ENDPOINT: Duration = Duration::from_secs(30);

/// How long a cached repository list is used when a fleet does not say.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);

/// The repositories of each discover fleet of `workflow`. The cached list is used while it
/// is younger than the fleet's `max_age` (or always with `refresh` false and a failing API);
/// a fetch keeps the endpoint's quotas across processes through the store.
pub async fn resolve(
    say: &(dyn Fn(&str) + Sync),
    workflow: &Workflow,
    store: &StoreHandle,
    client: &Client,
    refresh: bool,
) -> Result<HashMap<String, Vec<RepoUrl>>, ApplyError> {
    let fleets = discover_fleets(workflow);
    if fleets.is_empty() {
        return Ok(HashMap::new());
    }
    let cache = store.read(Store::repositories).await?;
    let youngest_needed = fleets
        .iter()
        .map(|(_, d)| d.max_age.map_or(DEFAULT_MAX_AGE, HumanDuration::get))
        .min()
        .unwrap_or(DEFAULT_MAX_AGE);
    let fresh = cache
        .as_ref()
        .is_some_and(|c| c.fetched_at.elapsed() < youngest_needed);
    let list = if fresh && !refresh {
        cache.expect("fresh means present")
    } else {
        if let Some(next) = client.quotas().next_repositories_call() {
            if let Ok(wait) = next.duration_since(std::time::SystemTime::now()) {
                say(&format!(
                    "waiting {} for the repositories quota (1 call per minute, 30 per hour)",
                    humantime::format_duration(Duration::from_secs(wait.as_secs() + 1))
                ));
            }
        }
        let fetched = fetch(workflow, client, cache.is_some()).await;
        match fetched {
            Ok(repositories) => {
                let list = RepositoryCache {
                    fetched_at: Timestamp::now(),
                    repositories,
                };
                let mut writes = vec![Write::Repositories(list.clone())];
                if let Some(at) = client.quotas().last_repositories_call() {
                    writes.push(Write::LastRepositoriesCall(at.into()));
                }
                store.write(writes).await?;
                list
            }
            Err(error) => match cache {
                Some(cache) => {
                    say(&format!(
                        "warning: cannot list repositories ({error}); using the cached list from {} ago",
                        humantime::format_duration(Duration::from_secs(
                            cache.fetched_at.elapsed().as_secs()
                        ))
                    ));
                    cache
                }
                None => return Err(ApplyError::Discover(error)),
            },
        }
    };
    Ok(select(&fleets, &list))
}

/// The repository list from the API, in the shape of the workflow's API version; with a
/// `cached` list to fall back on, a slow endpoint is not waited on for long.
async fn fetch(
    workflow: &Workflow,
    client: &Client,
    cached: bool,
) -> Result<Vec<String>, ApiError> {
    // Both versions share the endpoint's quota; each has its own shape.
    // (Validation refuses discover fleets on the Agent Platform.)
    let api = workflow
        .api()
        .ok()
        .and_then(|a| a.version())
        .unwrap_or_default();
    let fetch = async {
        match api {
            ApiVersion::V0 => client.repositories().await.map(|answer| {
                answer
                    .repositories
                    .into_iter()
                    .map(|r| r.repository)
                    .collect::<Vec<_>>()
            }),
            ApiVersion::V1 => client
                .v1_repositories()
                .await
                .map(|items| items.into_iter().map(|r| r.url).collect()),
        }
    };
    // With a cache to fall back on, a slow endpoint is not waited on for long.
    if cached {
        return tokio::time::timeout(SLOW_ENDPOINT, fetch)
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::Network {
                    sent: true,
                    message: format!("no answer within {}s", SLOW_ENDPOINT.as_secs()),
                })
            });
    }
    fetch.await
}

/// Discover fleets resolved from the cached list only, without calling the API (for `plan`).
pub async fn from_cache(workflow: &Workflow, store: &StoreHandle) -> HashMap<String, Vec<RepoUrl>> {
    let fleets = discover_fleets(workflow);
    match store.read(Store::repositories).await {
        Ok(Some(list)) if !fleets.is_empty() => select(&fleets, &list),
        _ => HashMap::new(),
    }
}

fn discover_fleets(workflow: &Workflow) -> Vec<(&str, &crate::spec::Discover)> {
    workflow
        .fleets
        .iter()
        .filter_map(|(name, fleet)| match fleet {
            Fleet::Discover(d) => Some((name.as_str(), &d.discover)),
            Fleet::Repos(_) => None,
        })
        .collect()
}

/// The repositories of `list` each fleet takes: its owner, names matching its glob.
fn select(
    fleets: &[(&str, &crate::spec::Discover)],
    list: &RepositoryCache,
) -> HashMap<String, Vec<RepoUrl>> {
    let mut resolved = HashMap::new();
    for (name, discover) in fleets {
        // Validation checked the pattern.
        let pattern = glob::Pattern::new(discover.name.as_deref().unwrap_or("*"))
            .unwrap_or_else(|_| glob::Pattern::new("*").expect("a valid glob"));
        let mut repos: Vec<RepoUrl> = list
            .repositories
            .iter()
            .filter_map(|url| url.parse::<RepoUrl>().ok())
            .filter(|repo| {
                repo.owner().eq_ignore_ascii_case(&discover.owner) && pattern.matches(repo.name())
            })
            .collect();
        repos.sort_by_key(|r| r.slug().to_ascii_lowercase());
        repos.dedup_by(|a, b| a.same_repository(b));
        resolved.insert((*name).to_owned(), repos);
    }
    resolved
}
