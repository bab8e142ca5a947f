//! The client an apply talks through: to the API the environment names, or to a simulator
//! started in process.

use super::ApplyError;
use crate::cursor::{ApiError, ApiKey, AuthScheme, Client, ClientConfig};
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
    let learned = store.read(Store::learned_limit).await.ok().flatten();
    if let Some(limit) =
        learned.and_then(|l| l.for_api(client.base_url().as_str(), Timestamp::now()))
    {
        client.quotas().remember_limit(limit);
    }
    Ok((client, None))
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
