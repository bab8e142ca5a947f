//! `orchestrate sim`: the simulator on its own.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::{Error, Exit, Output};
use crate::contract::Contract;
use crate::cursor::{Rate, Rates};
use crate::sim::{DEFAULT_KEY, Faults, SimConfig, Simulator};

/// `orchestrate sim` options.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8787")]
    addr: SocketAddr,
    /// How much faster than real time agents work (60: a minute takes a second).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Faults to inject, e.g. `5xx=0.1,429=0.05:3,latency=5ms..50ms,drop=0.02,error=0.1`.
    #[arg(long, default_value = "")]
    faults: Faults,
    /// The API key it accepts (Basic or Bearer).
    #[arg(long, default_value = DEFAULT_KEY, env = "ORCHESTRATE_SIM_KEY", hide_env_values = true)]
    key: String,
    /// How long an agent works on a prompt, in simulated time.
    #[arg(long, default_value = "30s..3m", value_parser = parse_range)]
    agent_duration: (Duration, Duration),
    /// A quota on all calls, e.g. `600/min` (default: none).
    #[arg(long)]
    calls_quota: Option<Rate>,
    /// The quotas of `GET /v0/repositories`.
    #[arg(long, default_value = "1/min+30/h")]
    repositories_quota: Rates,
    /// Check every exchange against Cursor's OpenAPI files in DIR (`cursor-openapi-v0.yaml`,
    /// `cursor-openapi-v1.yaml`): each request and answer that breaks them is logged and
    /// listed at `GET /__sim/violations`.
    #[arg(long, value_name = "DIR")]
    strict: Option<std::path::PathBuf>,
}

/// Why `--agent-duration` does not parse.
#[derive(Debug, thiserror::Error)]
enum RangeError {
    /// A bound is not a duration.
    #[error("`{text}`: {source}")]
    Duration {
        /// The bound.
        text: String,
        /// Why.
        source: humantime::DurationError,
    },
    /// The low bound is above the high one.
    #[error("`{0}`: the range runs backwards")]
    Backwards(String),
}

fn parse_range(text: &str) -> Result<(Duration, Duration), RangeError> {
    let (low, high) = text.split_once("..").unwrap_or((text, text));
    let parse = |t: &str| {
        humantime::parse_duration(t.trim()).map_err(|source| RangeError::Duration {
            text: t.to_owned(),
            source,
        })
    };
    let (low, high) = (parse(low)?, parse(high)?);
    if low > high {
        return Err(RangeError::Backwards(text.to_owned()));
    }
    Ok((low, high))
}

/// Runs the simulator until Ctrl-C.
pub async fn run(out: &Output, args: SimArgs) -> Result<Exit, Error> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        return Err(Error::Usage("--speed must be a positive number".into()));
    }
    let contract = match &args.strict {
        None => None,
        Some(dir) => Some(std::sync::Arc::new(
            Contract::load_dir(dir).map_err(|error| Error::Usage(format!("--strict: {error}")))?,
        )),
    };
    let strict = contract.is_some();
    let config = SimConfig {
        contract,
        api_key: args.key,
        speed: args.speed,
        agent_duration: args.agent_duration,
        faults: args.faults,
        calls_quota: args.calls_quota,
        repositories_quota: args.repositories_quota.0,
        ..SimConfig::default()
    };
    let faults = config.faults.to_string();
    let simulator = Simulator::start(config, args.addr)
        .await
        .map_err(|error| Error::Usage(format!("cannot listen on {}: {error}", args.addr)))?;
    let checks = if strict {
        ", strict: every exchange checked against the published API"
    } else {
        ""
    };
    out.stdout(&format!(
        "simulator listening on {url} (speed {speed}x, faults: {faults}{checks})\n\
         try: CURSOR_API_BASE_URL={url} CURSOR_API_KEY=<the --key> orchestrate me\n",
        url = simulator.url(),
        speed = args.speed,
    ));
    simulator
        .run_until_ctrl_c()
        .await
        .map_err(|error| Error::Unusable(error.to_string()))?;
    Ok(Exit::Success)
}
