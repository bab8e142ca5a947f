//! The client an apply talks through: to the API the environment names, or to a simulator
//! started in process.

use super::ApplyError;
use std::time::Duration;

use crate::cursor::{ApiError, ApiKey, AuthScheme, Client, ClientConfig, Rate, SharedBuckets};
use crate::sim::{SimConfig, Simulator};
use crate::spec::{Api, ApiVersion};
use crate::state::{Store, StoreHandle, Timestamp};

/// How fast the in-process simulator's agents work.
pub const SIMULATED_SPEED: f64 = 60.0;

/// The client for `api`, and the simulator behind it when `simulate`. A real client starts
/// from what the store remembers of the API's quotas: the last repositories call, the
/// limit the server named.
pub async fn connect(
    api: &Api,
    simulate: bool,
    store: &StoreHandle,
) -> Result<(Client, Option<Simulator>), ApplyError> {
    if simulate {
        let config = SimConfig {
            speed: SIMULATED_SPEED,
            ..SimConfig::default()
        };
        let key = config.api_key.clone();
        let simulator = Simulator::start(config, "127.0.0.1:0".parse().expect("an address"))
            .await
            .map_err(ApplyError::Simulator)?;
        let mut config =
            ClientConfig::new(&simulator.url(), ApiKey::new(key)).expect("a valid URL");
        if let Api::Platform(_) = api {
            config.auth = AuthScheme::Bearer;
        }
        return Ok((Client::new(config)?, Some(simulator)));
    }
    let config = match api {
        Api::Cursor(_) => ClientConfig::from_env(),
        Api::Platform(platform) => ClientConfig::platform_from_env(&platform.url),
    }?;
    let last_call = store
        .read(Store::last_repositories_call)
        .await
        .ok()
        .flatten()
        .map(Timestamp::time);
    let client = Client::resuming(config, last_call)?;
    if !store.needs_snapshots() {
        // A database other processes share: the ceilings hold for all of them together.
        client
            .quotas()
            .share_with(std::sync::Arc::new(StoreBuckets(store.clone())));
    }
    let learned = store.read(Store::learned_limit).await.ok().flatten();
    if let Some(limit) =
        learned.and_then(|l| l.for_api(client.base_url().as_str(), Timestamp::now()))
    {
        client.quotas().remember_limit(limit);
    }
    Ok((client, None))
}

/// The configured ceilings kept in the store's token buckets, shared by every process on
/// it. A bucket that cannot be read lets the call go: this process's own limiter still
/// holds it to the ceiling.
struct StoreBuckets(StoreHandle);

impl SharedBuckets for StoreBuckets {
    fn take(
        &self,
        name: &'static str,
        rate: Rate,
        burst: u32,
    ) -> futures_util::future::BoxFuture<'_, Result<(), Duration>> {
        let per_second = f64::from(rate.count.max(1)) / rate.per.as_secs_f64();
        Box::pin(async move {
            match self.0.take_token(name, per_second, burst).await {
                Ok(taken) => taken,
                Err(error) => {
                    tracing::warn!(%error, "the shared {name} quota cannot be read");
                    Ok(())
                }
            }
        })
    }
}

/// One cheap read before anything is written or launched, so that a wrong URL, a dead network
/// or a refused key ends the apply within the client's retries (seconds), not after a run of
/// failing launches. The Agent Platform documents no cheap read: there the outage budget of
/// the executor bounds the wait instead.
pub async fn preflight(api: &Api, client: &Client) -> Result<(), ApplyError> {
    let answer = match api {
        Api::Cursor(ApiVersion::V0) => client.me().await.map(drop),
        Api::Cursor(ApiVersion::V1) => client.v1_me().await.map(drop),
        Api::Platform(_) => return Ok(()),
    };
    let url = client.base_url().to_string();
    match answer {
        // A throttled read is an answer too: the API is there.
        Ok(()) | Err(ApiError::RateLimited { .. }) => Ok(()),
        Err(error) if error.is_outage() => Err(ApplyError::Unreachable { url, error }),
        Err(error) => Err(ApplyError::Refused { url, error }),
    }
}
