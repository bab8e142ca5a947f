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
    let youngest_needed = fleets
        .iter()
        .map(|(_, d)| d.max_age.map_or(DEFAULT_MAX_AGE, HumanDuration::get))
        .min()
        .unwrap_or(DEFAULT_MAX_AGE);
    let fresh = |cache: &Option<RepositoryCache>| {
        cache
            .as_ref()
            .is_some_and(|c| c.fetched_at.elapsed() < youngest_needed)
    };
    let cache = store.read(Store::repositories).await?;
    if fresh(&cache) && !refresh {
        return Ok(select(&fleets, &cache.expect("fresh means present")));
    }
    // One call at a time across every process on the state; the list or the last call
    // time another one wrote while this one waited its turn is heeded.
    take_turn(say, store).await?;
    let listed = async {
        let cache = store.read(Store::repositories).await?;
        if fresh(&cache) && !refresh {
            return Ok(cache.expect("fresh means present"));
        }
        if let Some(at) = store.read(Store::last_repositories_call).await? {
            client.quotas().heed_repositories_call(at.time()).await;
        }
        list(say, workflow, store, client, cache).await
    }
    .await;
    let released = store.read(Store::end_repositories_turn).await;
    let listed = listed?;
    released?;
    Ok(select(&fleets, &listed))
}

/// Waits until no other process sharing the state calls the repositories endpoint, saying
/// so once when it has to.
async fn take_turn(say: &(dyn Fn(&str) + Sync), store: &StoreHandle) -> Result<(), ApplyError> {
    let mut told = false;
    while !store.read(Store::take_repositories_turn).await? {
        if !std::mem::replace(&mut told, true) {
            say("waiting for another orchestrate on this state to list the repositories");
        }
        tokio::time::sleep(TURN_RETRY).await;
    }
    Ok(())
}

/// How often a process waiting for its turn at the repositories endpoint tries again.
const TURN_RETRY: Duration = Duration::from_millis(250);

/// The repository list, fetched (within the endpoint's quota) and cached; the `cache` it
/// replaces stands in when the API fails.
async fn list(
    say: &(dyn Fn(&str) + Sync),
    workflow: &Workflow,
    store: &StoreHandle,
    client: &Client,
    cache: Option<RepositoryCache>,
) -> Result<RepositoryCache, ApplyError> {
    if let Some(next) = client.quotas().next_repositories_call() {
        if let Ok(wait) = next.duration_since(std::time::SystemTime::now()) {
            say(&format!(
                "waiting {} for the repositories quota (1 call per minute, 30 per hour)",
                humantime::format_duration(Duration::from_secs(wait.as_secs() + 1))
            ));
        }
    }
    match fetch(workflow, client, cache.is_some()).await {
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
            Ok(list)
        }
        Err(error) => match cache {
            Some(cache) => {
                say(&format!(
                    "warning: cannot list repositories ({error}); using the cached list from {} ago",
                    humantime::format_duration(Duration::from_secs(
                        cache.fetched_at.elapsed().as_secs()
                    ))
                ));
                Ok(cache)
            }
            None => Err(ApplyError::Discover(error)),
        },
    }
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
