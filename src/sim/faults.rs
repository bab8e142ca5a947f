//! Fault injection: what the simulator does wrong, on purpose, from a `--faults` spec.
//!
//! `5xx=0.1,429=0.05:3,latency=5ms..50ms,drop=0.05,stream_drop=0.1,error=0.2,expire=0.01,hook_dup=0.3,hook_delay=0ms..200ms,seed=7`

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The faults a simulator injects. All off by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Chance that a request answers 500, 502 or 503 without acting.
    pub server_error: f64,
    /// Chance that a request starts a burst of 429 answers.
    pub rate_limit_burst: f64,
    /// Requests in such a burst, the first included.
    pub burst_length: u32,
    /// Extra latency drawn uniformly from this range.
    pub latency: Option<(Duration, Duration)>,
    /// Chance that the connection is dropped instead of answered. A launch or follow-up is
    /// acted on first, as when a response is lost on the way back.
    pub drop: f64,
    /// Chance that an Agent Platform event stream breaks after an event (the client reconnects
    /// from the last event id).
    pub stream_drop: f64,
    /// Chance that `GET /v0/repositories` answers 503 (the endpoint is slow and fragile).
    pub repositories_error: f64,
    /// Chance that an agent ends in ERROR.
    pub agent_error: f64,
    /// Chance that an agent ends in EXPIRED.
    pub agent_expire: f64,
    /// Chance that a webhook is delivered twice.
    pub webhook_duplicate: f64,
    /// Delay of each webhook delivery, drawn from this range (deliveries overtake each other).
    pub webhook_delay: Option<(Duration, Duration)>,
    /// Seed of the simulator's randomness, for reproducible runs.
    pub seed: Option<u64>,
    /// v1: once this many agents exist, creating agents or runs answers 400
    /// `usage_limit_exceeded` (a spending ceiling).
    pub usage_limit: Option<u64>,
}

/// Why a faults spec does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--faults: {0}")]
pub struct FaultsError(String);

fn probability(key: &str, value: &str) -> Result<f64, FaultsError> {
    match value.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(FaultsError(format!(
            "`{key}={value}`: expected a probability from 0 to 1"
        ))),
    }
}

fn range(key: &str, value: &str) -> Result<(Duration, Duration), FaultsError> {
    let error = || FaultsError(format!("`{key}={value}`: expected a range like 5ms..50ms"));
    let (low, high) = value.split_once("..").unwrap_or((value, value));
    let low = humantime::parse_duration(low.trim()).map_err(|_| error())?;
    let high = humantime::parse_duration(high.trim()).map_err(|_| error())?;
    if low > high {
        return Err(error());
    }
    Ok((low, high))
}

impl FromStr for Faults {
    type Err = FaultsError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut faults = Faults::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| FaultsError(format!("`{part}`: expected KEY=VALUE")))?;
            let (key, value) = (key.trim(), value.trim());
            match key {
                "5xx" => faults.server_error = probability(key, value)?,
                "429" => {
                    let (chance, length) = value.split_once(':').unwrap_or((value, "1"));
                    faults.rate_limit_burst = probability(key, chance)?;
                    faults.burst_length =
                        length.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                            FaultsError(format!(
                                "`{part}`: the burst length after `:` must be a count"
                            ))
                        })?;
                }
                "latency" => faults.latency = Some(range(key, value)?),
                "drop" => faults.drop = probability(key, value)?,
                "stream_drop" => faults.stream_drop = probability(key, value)?,
                "repos_5xx" => faults.repositories_error = probability(key, value)?,
                "error" => faults.agent_error = probability(key, value)?,
                "expire" => faults.agent_expire = probability(key, value)?,
                "hook_dup" => faults.webhook_duplicate = probability(key, value)?,
                "hook_delay" => faults.webhook_delay = Some(range(key, value)?),
                "usage_limit" => {
                    faults.usage_limit = Some(
                        value
                            .parse()
                            .map_err(|_| FaultsError(format!("`{part}`: not a count")))?,
                    );
                }
                "seed" => {
                    faults.seed = Some(
                        value
                            .parse()
                            .map_err(|_| FaultsError(format!("`{part}`: not a number")))?,
                    );
                }
                other => {
                    return Err(FaultsError(format!(
                        "unknown fault `{other}`: 5xx, 429, latency, drop, stream_drop, repos_5xx, error, expire, hook_dup, hook_delay, usage_limit, seed"
                    )));
                }
            }
        }
        Ok(faults)
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let ms = |d: Duration| humantime::format_duration(d).to_string();
        if self.server_error > 0.0 {
            parts.push(format!("5xx={}", self.server_error));
        }
        if self.rate_limit_burst > 0.0 {
            parts.push(format!(
                "429={}:{}",
                self.rate_limit_burst, self.burst_length
            ));
        }
        if let Some((low, high)) = self.latency {
            parts.push(format!("latency={}..{}", ms(low), ms(high)));
        }
        for (key, p) in [
            ("drop", self.drop),
            ("stream_drop", self.stream_drop),
            ("repos_5xx", self.repositories_error),
            ("error", self.agent_error),
            ("expire", self.agent_expire),
            ("hook_dup", self.webhook_duplicate),
        ] {
            if p > 0.0 {
                parts.push(format!("{key}={p}"));
            }
        }
        if let Some(limit) = self.usage_limit {
            parts.push(format!("usage_limit={limit}"));
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::float_cmp)] // parsed from exact literals
    fn specs_parse() {
        let faults: Faults = "5xx=0.1, 429=0.05:3, latency=5ms..50ms, drop=0.02, error=0.2, seed=7"
            .parse()
            .unwrap();
        assert_eq!(faults.server_error, 0.1);
        assert_eq!((faults.rate_limit_burst, faults.burst_length), (0.05, 3));
        assert_eq!(
            faults.latency,
            Some((Duration::from_millis(5), Duration::from_millis(50)))
        );
        assert_eq!(faults.seed, Some(7));
        let limit: Faults = "usage_limit=3".parse().unwrap();
        assert_eq!(limit.usage_limit, Some(3));
        assert_eq!(limit.to_string(), "usage_limit=3");
        assert_eq!("".parse::<Faults>().unwrap(), Faults::default());
    }

    #[test]
    fn bad_specs_say_why() {
        for (spec, says) in [
            ("5xx=2", "probability"),
            ("429=0.1:0", "burst length"),
            ("latency=9ms..1ms", "range"),
            ("boom=1", "unknown fault `boom`"),
            ("drop", "KEY=VALUE"),
        ] {
            let error = spec.parse::<Faults>().unwrap_err().to_string();
            assert!(error.contains(says), "{spec}: {error}");
        }
    }
}
