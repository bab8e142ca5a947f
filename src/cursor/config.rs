//! How the client reaches the API: base URL, key, auth scheme, timeouts, quotas, retries.

use std::fmt;
use std::time::Duration;

use url::Url;

use super::{QuotaConfig, RetryPolicy};

/// The official API.
pub const DEFAULT_BASE_URL: &str = "https://api.cursor.com";

/// An API key. It never shows in `Debug` output, logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the `Authorization` header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// How the key is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthScheme {
    /// HTTP Basic with the key as user name: the official scheme.
    #[default]
    Basic,
    /// `Authorization: Bearer KEY`: `LiteLLM` virtual keys, the older Background Agents docs.
    Bearer,
}

/// Why the client cannot be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No key in the environment.
    #[error("CURSOR_API_KEY is not set")]
    MissingKey,
    /// No key for the LiteLLM Agent Platform in the environment.
    #[error("neither LAP_MASTER_KEY nor CURSOR_API_KEY is set")]
    MissingPlatformKey,
    /// The base URL does not parse.
    #[error("CURSOR_API_BASE_URL `{0}` is not an http(s) URL")]
    BadBaseUrl(String),
    /// The auth scheme is unknown.
    #[error("CURSOR_API_AUTH `{0}` is neither basic nor bearer")]
    BadAuth(String),
    /// The quota overrides do not parse.
    #[error("ORCHESTRATE_QUOTAS: {0}")]
    BadQuotas(crate::cursor::quota::OverrideError),
    /// The HTTP client cannot be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// Everything the client needs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The API root; a path prefix (a `LiteLLM` proxy's `/cursor`) is kept.
    pub base_url: Url,
    /// The key.
    pub api_key: ApiKey,
    /// How the key is sent.
    pub auth: AuthScheme,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for an answer.
    pub request_timeout: Duration,
    /// Longest wait for `GET /v0/repositories`, which can take tens of seconds.
    pub repositories_timeout: Duration,
    /// Client-side quotas.
    pub quotas: QuotaConfig,
    /// Retries of failed calls.
    pub retry: RetryPolicy,
}

impl ClientConfig {
    /// A configuration with defaults for everything but the base URL and the key.
    pub fn new(base_url: &str, api_key: ApiKey) -> Result<Self, ConfigError> {
        Ok(Self {
            base_url: parse_base_url(base_url)?,
            api_key,
            auth: AuthScheme::Basic,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            repositories_timeout: Duration::from_secs(120),
            quotas: QuotaConfig::default(),
            retry: RetryPolicy::default(),
        })
    }

    /// The configuration of a LiteLLM Agent Platform at `url`: the key from `LAP_MASTER_KEY`
    /// (else `CURSOR_API_KEY`), sent as Bearer; `ORCHESTRATE_QUOTAS` as for the Cursor API.
    pub fn platform_from_env(url: &str) -> Result<Self, ConfigError> {
        let key = ["LAP_MASTER_KEY", "CURSOR_API_KEY"]
            .iter()
            .find_map(|var| std::env::var(var).ok().filter(|k| !k.trim().is_empty()))
            .ok_or(ConfigError::MissingPlatformKey)?;
        let mut config = Self::new(url, ApiKey::new(key.trim()))?;
        config.auth = AuthScheme::Bearer;
        config.quotas = quotas_from_env(config.quotas)?;
        Ok(config)
    }

    /// The configuration the environment describes: `CURSOR_API_KEY`,
    /// `CURSOR_API_BASE_URL`, `CURSOR_API_AUTH` and `ORCHESTRATE_QUOTAS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let key = std::env::var("CURSOR_API_KEY")
            .ok()
            .filter(|k| !k.trim().is_empty());
        let key = ApiKey::new(key.ok_or(ConfigError::MissingKey)?.trim());
        let base =
            std::env::var("CURSOR_API_BASE_URL").unwrap_or_else(|_| DEFAULT_BASE_URL.to_owned());
        let mut config = Self::new(&base, key)?;
        if let Ok(auth) = std::env::var("CURSOR_API_AUTH") {
            config.auth = match auth.trim().to_ascii_lowercase().as_str() {
                "" | "basic" => AuthScheme::Basic,
                "bearer" => AuthScheme::Bearer,
                _ => return Err(ConfigError::BadAuth(auth)),
            };
        }
        config.quotas = quotas_from_env(config.quotas)?;
        Ok(config)
    }
}

/// `quotas` with the overrides of `ORCHESTRATE_QUOTAS`, if set.
fn quotas_from_env(quotas: QuotaConfig) -> Result<QuotaConfig, ConfigError> {
    match std::env::var("ORCHESTRATE_QUOTAS") {
        Ok(spec) => quotas.with_overrides(&spec).map_err(ConfigError::BadQuotas),
        Err(_) => Ok(quotas),
    }
}

/// Parses a base URL and makes sure relative paths join below it, prefix included.
fn parse_base_url(text: &str) -> Result<Url, ConfigError> {
    let mut url = Url::parse(text.trim()).map_err(|_| ConfigError::BadBaseUrl(text.to_owned()))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(ConfigError::BadBaseUrl(text.to_owned()));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_keep_their_path_prefix() {
        let key = ApiKey::new("k");
        let proxy = ClientConfig::new("http://proxy:4000/cursor", key.clone()).unwrap();
        assert_eq!(
            proxy.base_url.join("v0/agents").unwrap().as_str(),
            "http://proxy:4000/cursor/v0/agents"
        );
        let official = ClientConfig::new(DEFAULT_BASE_URL, key.clone()).unwrap();
        assert_eq!(
            official.base_url.join("v0/me").unwrap().as_str(),
            "https://api.cursor.com/v0/me"
        );
        assert!(ClientConfig::new("ftp://x", key.clone()).is_err());
        assert!(ClientConfig::new("not a url", key).is_err());
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let config = ClientConfig::new(DEFAULT_BASE_URL, ApiKey::new("key_live_abcdef")).unwrap();
        assert!(!format!("{config:?}").contains("abcdef"));
    }
}
