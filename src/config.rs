//! Settings: `config/default.toml` built in, then the `RESULTD_CONFIG` file, then `RESULTD_*`.
//!
//! Unknown keys and bad values stop startup with a message that names the key, so a typo in a
//! deployment never silently falls back to a default.

use std::fmt;
use std::net::SocketAddr;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

/// The built-in defaults, which double as the settings reference.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Every setting of the service.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Store URL: `memory://`, `redis://`, `rediss://`, `redis[s]-sentinel://`, `redis[s]-cluster://`.
    pub store: String,
    /// App used when a request names none.
    pub default_app: String,
    /// Expiry of each kind of key.
    pub ttl: TtlSettings,
    /// Value compression.
    pub compression: CompressionSettings,
    /// Request body limits.
    pub limits: LimitSettings,
    /// Long-poll limits.
    pub wait: WaitSettings,
    /// Per-app state behaviour.
    pub state: StateSettings,
    /// Redis connection behaviour.
    pub redis: RedisSettings,
    /// The in-process cache of done results.
    pub cache: CacheSettings,
    /// HTTP server behaviour.
    pub server: ServerSettings,
    /// Logging.
    pub log: LogSettings,
    /// Bearer-token authentication.
    pub auth: AuthSettings,
    /// Celery's Redis result backend.
    #[serde(default)]
    pub celery: CelerySettings,
    /// OmniQ's Redis storage (experimental).
    #[serde(default)]
    pub omniq: OmniqSettings,
    /// Rigatoni's Redis state store (resume tokens, locks).
    #[serde(default)]
    pub rigatoni: RigatoniSettings,
}

/// Key expiry, in seconds (0 = no expiry).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TtlSettings {
    /// Result hash, metadata and children.
    pub result_seconds: u64,
    /// Value hash.
    pub value_seconds: u64,
    /// State hash.
    pub state_seconds: u64,
    /// Smallest accepted `?ttl=`.
    pub min_seconds: u64,
    /// Largest accepted `?ttl=`.
    pub max_seconds: u64,
}

impl Default for TtlSettings {
    fn default() -> Self {
        Self {
            result_seconds: 1_814_400,
            value_seconds: 604_800,
            state_seconds: 7_200,
            min_seconds: 1,
            max_seconds: 31_536_000,
        }
    }
}

/// Celery's Redis result backend, served under `/celery/…` beside mognet's results.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CelerySettings {
    /// Whether the Celery routes answer (off: 404 `layout-disabled`).
    pub enabled: bool,
    /// The literal key prefix in front of `celery-task-meta-` (Celery's final
    /// `global_keyprefix`, separator included, exactly as it appears in the keys).
    pub key_prefix: String,
    /// Seconds a result written over HTTP lives (Celery `result_expires`; 0 = no expiry).
    pub result_expires: u64,
    /// Seconds a FAILURE written over HTTP lives (Celery 5.7 `result_failure_expires`);
    /// unset: `result_expires`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_failure_expires: Option<u64>,
    /// Celery `result_serializer`: only `json` is read (pickle and yaml are refused).
    pub result_serializer: String,
    /// The app name of `key_prefix`, as token scopes and `?app=` name it.
    pub app: String,
    /// More Celery apps on the same Redis: app name → its literal key prefix.
    #[serde(default)]
    pub apps: std::collections::BTreeMap<String, String>,
}

impl Default for CelerySettings {
    fn default() -> Self {
        Self {
            enabled: false,
            key_prefix: String::new(),
            result_expires: 86_400,
            result_failure_expires: None,
            result_serializer: "json".to_owned(),
            app: "celery".to_owned(),
            apps: std::collections::BTreeMap::new(),
        }
    }
}

/// OmniQ's Redis storage (experimental: the layout of `legout/omniQ@acdec6d`), served
/// read-only under `/omniq/…`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OmniqSettings {
    /// Whether the OmniQ routes answer (off: 404 `layout-disabled`).
    pub enabled: bool,
    /// OmniQ `results_prefix`: results are `{results_prefix}:result:{task_id}`.
    pub results_prefix: String,
    /// OmniQ `tasks_prefix`: tasks are `{tasks_prefix}:task:{task_id}`.
    pub tasks_prefix: String,
    /// OmniQ `events_prefix`: events are `{events_prefix}:event:{id}`, indexed by `{events_prefix}:events`.
    pub events_prefix: String,
    /// The app name token scopes give these routes.
    pub app: String,
    /// Turn on keyspace events for strings (`$`) so waits wake on OmniQ's plain `SET`s; off:
    /// waits on OmniQ keys are polled every `redis.poll_interval_ms`.
    pub notify: bool,
}

impl Default for OmniqSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            results_prefix: "omniq:results".to_owned(),
            tasks_prefix: "omniq:tasks".to_owned(),
            events_prefix: "omniq:events".to_owned(),
            app: "omniq".to_owned(),
            notify: true,
        }
    }
}

/// Rigatoni's Redis state store, served under `/rigatoni/…`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RigatoniSettings {
    /// Whether the Rigatoni routes answer (off: 404 `layout-disabled`).
    pub enabled: bool,
    /// The key prefix in front of `resume_token:` and `lock:` (Rigatoni's is `rigatoni:`).
    pub key_prefix: String,
    /// Whether `PUT /rigatoni/resume-tokens/{name}` may write (off: 403 `layout-read-only`).
    pub writable: bool,
    /// The app name token scopes give the Rigatoni routes.
    pub app: String,
}

impl Default for RigatoniSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            key_prefix: "rigatoni:".to_owned(),
            writable: false,
            app: "rigatoni".to_owned(),
        }
    }
}

/// Value compression.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionSettings {
    /// Whether values are gzipped at all.
    pub enabled: bool,
    /// Threshold in bytes of holder JSON.
    pub min_bytes: usize,
    /// gzip level 1..=9.
    pub level: u8,
    /// Largest value in bytes accepted (a gzip upload after inflation, a plain one as sent);
    /// stored values may inflate to this plus the holder's own bytes.
    pub max_inflated_bytes: usize,
    /// Most gzip and inflation jobs run on the blocking pool at once (large values only; each
    /// holds at most `max_inflated_bytes` while it runs).
    pub blocking_jobs: usize,
}

impl Default for CompressionSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            min_bytes: 256,
            level: 6,
            max_inflated_bytes: 64 << 20,
            blocking_jobs: 2,
        }
    }
}

/// Request body limits in bytes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Records, metadata, children, state.
    pub body_bytes: usize,
    /// Value uploads, before inflation.
    pub value_body_bytes: usize,
}

/// Long-poll limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WaitSettings {
    /// Longest wait in seconds.
    pub max_seconds: u64,
    /// Most waits held at once.
    pub max_waiters: usize,
    /// Most waits held at once per client address.
    pub max_waiters_per_client: usize,
    /// Most result ids one client address waits on at once, over all its waits (a multi-wait
    /// counts each of its ids).
    pub max_watched_ids_per_client: usize,
}

/// Per-app state behaviour.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// Refresh the TTL on reads.
    pub refresh_on_read: bool,
}

/// Redis connection behaviour.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// Per-command timeout in ms.
    pub command_timeout_ms: u64,
    /// Connect timeout in ms.
    pub connect_timeout_ms: u64,
    /// Reconnect back-off cap in ms.
    pub reconnect_max_delay_ms: u64,
    /// Pool size.
    pub pool_size: usize,
    /// Enable keyspace notifications at startup.
    pub configure_notifications: bool,
    /// Poll interval in ms when notifications are unavailable.
    pub poll_interval_ms: u64,
    /// PEM CA bundle for TLS.
    pub tls_ca_file: String,
}

/// The in-process cache of done results (Redis stores only).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// Bound of the cache in bytes; 0 turns it off.
    pub max_bytes: u64,
}

/// HTTP server behaviour.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Request timeout in ms (waits excepted).
    pub request_timeout_ms: u64,
    /// Shutdown grace period in ms.
    pub shutdown_grace_ms: u64,
    /// Longest wait in ms for a complete request head; also closes idle keep-alive connections.
    pub header_read_timeout_ms: u64,
    /// Most connections open at once; past it new ones wait in the listen backlog.
    pub max_connections: usize,
}

/// Logging.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: LogFormat,
    /// tracing filter directive.
    pub filter: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Bearer-token authentication.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Accepted tokens; empty disables authentication.
    pub tokens: Vec<TokenSettings>,
    /// Whether `/health/*` and `/metrics` need a token too.
    pub protect_operations: bool,
}

/// One accepted bearer token.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// Lowercase hex SHA-256 of the token.
    pub sha256: String,
    /// Apps it may touch; `*` for all.
    pub apps: Vec<String>,
    /// `read` or `write` (write includes read).
    pub scope: TokenScope,
}

impl fmt::Debug for TokenSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is as good as the token against a weak token: never print it.
        f.debug_struct("TokenSettings")
            .field("sha256", &"***")
            .field("apps", &self.apps)
            .field("scope", &self.scope)
            .finish()
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// GET and waits.
    Read,
    /// Everything.
    Write,
}

/// Settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer failed to parse or a key is unknown or mistyped.
    #[error("invalid configuration: {0}")]
    Figment(#[from] Box<figment::Error>),
    /// A value parsed but is out of range.
    #[error("invalid configuration: {key}: {message}")]
    Invalid {
        /// The dotted key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Settings {
    /// Loads the layers from the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_figment(Self::figment())
    }

    /// The layered figment, before extraction (tests add layers on top).
    pub fn figment() -> Figment {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Ok(path) = std::env::var("RESULTD_CONFIG") {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment.merge(Env::prefixed("RESULTD_").ignore(&["CONFIG"]).split("__"))
    }

    /// Extracts and validates settings from a figment.
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let settings: Self = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// The built-in defaults alone.
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(DEFAULT_TOML)))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        match self.celery.result_serializer.as_str() {
            "json" => {}
            "pickle" | "yaml" => {
                return invalid(
                    "celery.result_serializer",
                    "pickle and yaml are refused: reading them means running what a writer stored; configure Celery with result_serializer = \"json\"",
                );
            }
            other => {
                return invalid(
                    "celery.result_serializer",
                    &format!("{other:?} is not supported (only \"json\")"),
                );
            }
        }
        for app in std::iter::once(&self.celery.app).chain(self.celery.apps.keys()) {
            if let Err(e) = crate::domain::AppName::parse(app) {
                return invalid("celery.app", &format!("{app:?}: {}", e.0));
            }
        }
        if let Err(e) = crate::domain::AppName::parse(&self.omniq.app) {
            return invalid("omniq.app", &e.0);
        }
        for (key, prefix) in [
            ("omniq.results_prefix", &self.omniq.results_prefix),
            ("omniq.tasks_prefix", &self.omniq.tasks_prefix),
            ("omniq.events_prefix", &self.omniq.events_prefix),
        ] {
            if prefix.is_empty() || prefix.contains(['*', '?', '[', ']', '\\']) {
                return invalid(key, "must be a non-empty prefix without glob characters (* ? [ ] \\)");
            }
        }
        if let Err(e) = crate::domain::AppName::parse(&self.rigatoni.app) {
            return invalid("rigatoni.app", &format!("{:?}: {}", self.rigatoni.app, e.0));
        }
        if self
            .rigatoni
            .key_prefix
            .chars()
            .any(|c| c.is_control() || "*?[]\\".contains(c))
        {
            return invalid(
                "rigatoni.key_prefix",
                "may not hold control characters or glob characters * ? [ ] \\",
            );
        }
        if self.celery.apps.contains_key(&self.celery.app) {
            return invalid("celery.apps", "names celery.app again; its prefix is celery.key_prefix");
        }
        if let Err(e) = crate::domain::AppName::parse(&self.default_app) {
            return invalid("default_app", &e.0);
        }
        if !matches!(
            self.store.split_once("://").map(|(s, _)| s),
            Some(
                "memory"
                    | "redis"
                    | "rediss"
                    | "redis-sentinel"
                    | "rediss-sentinel"
                    | "redis-cluster"
                    | "rediss-cluster"
            )
        ) {
            return invalid(
                "store",
                "must start with memory://, redis://, rediss://, redis-sentinel://, rediss-sentinel://, redis-cluster:// or rediss-cluster://",
            );
        }
        if self.ttl.min_seconds == 0 || self.ttl.min_seconds > self.ttl.max_seconds {
            return invalid("ttl.min_seconds", "must be at least 1 and at most ttl.max_seconds");
        }
        if self.ttl.max_seconds > i64::MAX as u64 / 1000 {
            return invalid("ttl.max_seconds", "is too large");
        }
        if !(1..=9).contains(&self.compression.level) {
            return invalid("compression.level", "must be 1 to 9");
        }
        if self.compression.max_inflated_bytes == 0 {
            return invalid("compression.max_inflated_bytes", "must be positive");
        }
        if self.compression.blocking_jobs == 0 {
            return invalid("compression.blocking_jobs", "must be positive");
        }
        if self.limits.body_bytes == 0 || self.limits.value_body_bytes == 0 {
            return invalid("limits", "body limits must be positive");
        }
        if self.wait.max_waiters == 0 || self.wait.max_waiters_per_client == 0 {
            return invalid("wait.max_waiters", "must be positive");
        }
        if self.wait.max_watched_ids_per_client < 1000 {
            return invalid(
                "wait.max_watched_ids_per_client",
                "must be at least 1000, the ids of one multi-wait",
            );
        }
        if self.redis.command_timeout_ms == 0 {
            return invalid(
                "redis.command_timeout_ms",
                "must be positive: a Redis outage must answer 503 in bounded time",
            );
        }
        if self.server.header_read_timeout_ms == 0 {
            return invalid(
                "server.header_read_timeout_ms",
                "must be positive: a client that sends no request must not hold a connection forever",
            );
        }
        if self.server.max_connections == 0 {
            return invalid("server.max_connections", "must be positive");
        }
        if self.redis.pool_size == 0 {
            return invalid("redis.pool_size", "must be positive");
        }
        if self.redis.poll_interval_ms == 0 {
            return invalid("redis.poll_interval_ms", "must be positive");
        }
        for token in &self.auth.tokens {
            if token.sha256.len() != 64 || !token.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return invalid(
                    "auth.tokens.sha256",
                    "must be 64 hex digits (resultd hash-token prints it)",
                );
            }
            if token.apps.is_empty() {
                return invalid("auth.tokens.apps", "must name at least one app or \"*\"");
            }
        }
        Ok(())
    }

    /// The store URL with any password replaced by `***`.
    pub fn store_redacted(&self) -> String {
        redact_url(&self.store)
    }

    /// The effective settings as TOML, with secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        let mut copy = self.clone();
        copy.store = copy.store_redacted();
        for token in &mut copy.auth.tokens {
            token.sha256 = "***".to_owned();
        }
        toml::to_string_pretty(&copy).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("store", &self.store_redacted())
            .field("default_app", &self.default_app)
            .field("ttl", &self.ttl)
            .field("compression", &self.compression)
            .field("limits", &self.limits)
            .field("wait", &self.wait)
            .field("redis", &self.redis)
            .field("server", &self.server)
            .field("auth_tokens", &self.auth.tokens.len())
            .field("celery", &self.celery)
            .field("omniq", &self.omniq)
            .field("rigatoni", &self.rigatoni)
            .finish_non_exhaustive()
    }
}

/// Replaces the password of `scheme://user:password@host` and any `sentinelPassword=` query
/// value with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(redact_query(query))),
        None => (rest, None),
    };
    let redacted = redact_authority(scheme, rest);
    match query {
        Some(q) => format!("{redacted}?{q}"),
        None => redacted,
    }
}

/// Redacts the values of password-like query parameters.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn redact_authority(scheme: &str, rest: &str) -> String {
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                // A lone userinfo is a password in redis:// URLs ("redis://secret@host").
                format!("{scheme}://***@{host}{tail}")
            }
        }
        None => format!("{scheme}://{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_defaults_load() {
        let s = Settings::defaults().unwrap();
        assert_eq!(s.store, "memory://");
        assert_eq!(s.ttl.result_seconds, 1_814_400);
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let f = Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string("[redis]\ncommand_timeout = 5"));
        let err = Settings::from_figment(f).unwrap_err().to_string();
        assert!(err.contains("command_timeout"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let f = Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string("[compression]\nlevel = 12"));
        let err = Settings::from_figment(f).unwrap_err().to_string();
        assert!(err.contains("compression.level"), "{err}");
        let f = Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string("store = \"mysql://x\""));
        assert!(Settings::from_figment(f).unwrap_err().to_string().contains("store"));
    }

    #[test]
    fn connection_limits_default_and_must_be_positive() {
        let s = Settings::defaults().unwrap();
        assert_eq!(s.server.header_read_timeout_ms, 10_000);
        assert_eq!(s.server.max_connections, 10_000);
        for (toml, key) in [
            ("[server]\nheader_read_timeout_ms = 0", "server.header_read_timeout_ms"),
            ("[server]\nmax_connections = 0", "server.max_connections"),
        ] {
            let f = Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(toml));
            let err = Settings::from_figment(f).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn celery_defaults_and_refused_serializers() {
        let s = Settings::defaults().unwrap();
        assert!(!s.celery.enabled);
        assert_eq!(s.celery.result_expires, 86_400);
        assert_eq!(s.celery.result_failure_expires, None);
        assert_eq!(s.celery.key_prefix, "");
        for bad in ["pickle", "yaml", "msgpack"] {
            let f = Figment::from(Toml::string(DEFAULT_TOML))
                .merge(Toml::string(&format!("[celery]\nresult_serializer = \"{bad}\"")));
            let err = Settings::from_figment(f).unwrap_err().to_string();
            assert!(err.contains("celery.result_serializer") && err.contains(bad), "{err}");
        }
        let f = Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(
            "[celery]\nenabled = true\nkey_prefix = \"app:\"\nresult_failure_expires = 600",
        ));
        let s = Settings::from_figment(f).unwrap();
        assert_eq!(
            (s.celery.key_prefix.as_str(), s.celery.result_failure_expires),
            ("app:", Some(600))
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("redis://u:p4ss@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("redis://p4ss@h:1"), "redis://***@h:1");
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(
            redact_url("redis-sentinel://u:p4ss@h:26379/0?sentinelServiceName=m&sentinelPassword=s3nt&node=h:2"),
            "redis-sentinel://u:***@h:26379/0?sentinelServiceName=m&sentinelPassword=***&node=h:2"
        );
        let mut s = Settings::defaults().unwrap();
        s.store = "redis://u:p4ss@h:1/0".to_owned();
        assert!(!format!("{s:?}").contains("p4ss"));
        assert!(!s.to_redacted_toml().contains("p4ss"));
        s.auth.tokens.push(TokenSettings {
            sha256: "cd".repeat(32),
            apps: vec!["*".to_owned()],
            scope: TokenScope::Write,
        });
        assert!(!format!("{s:?}").contains("cdcd"));
        assert!(!format!("{:?}", s.auth).contains("cdcd"));
        assert!(!s.to_redacted_toml().contains("cdcd"));
    }
}
