//! Settings: defaults, then a TOML file (`--config` / `LTI2_CONFIG`), then `LTI2_…`
//! environment variables and flags (clap reads both; a flag wins over its variable).
//!
//! Every value has a default, so `lti2 serve` runs with none. Settings are validated once,
//! at startup; a bad value stops the program with a message naming it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::assertion::{normalize_url, AssertionPolicy};
use crate::jose::Alg;
use crate::store::postgres::PoolSettings;
use crate::store::sqlite::Durability;

/// The TOML file. Every key is optional.
///
/// ```toml
/// listen = "127.0.0.1:3000"
/// base_url = ["https://lms.example.edu"]   # or one string
/// database_url = "sqlite://lti2.db"
/// data_dir = "lti2-data"
/// issuer = "Canvas"
/// access_token_lifetime = 3600             # seconds
/// max_assertion_lifetime = 300             # seconds; 0 = no bound
/// allowed_algorithms = ["HS256"]
/// token_audience = ["files.example.edu"]   # extra hosts for the access token's aud
/// log_format = "text"                      # or "json"
/// sqlite_durability = "normal"             # or "full"
/// cache_refresh_ms = 200
/// redis_url = "redis://127.0.0.1:6379"     # optional: jtis in Redis
/// db_max_connections = 16                  # PostgreSQL pool, per process
/// db_min_connections = 1
/// db_acquire_timeout_ms = 5000
/// ```
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen address.
    pub listen: Option<String>,
    /// Public base URL(s).
    pub base_url: Option<OneOrMany>,
    /// Database URL.
    pub database_url: Option<String>,
    /// Data directory (master key).
    pub data_dir: Option<PathBuf>,
    /// Access-token issuer.
    pub issuer: Option<String>,
    /// Access-token lifetime, seconds.
    pub access_token_lifetime: Option<i64>,
    /// Assertion lifetime bound, seconds.
    pub max_assertion_lifetime: Option<i64>,
    /// Assertion algorithms.
    pub allowed_algorithms: Option<Vec<String>>,
    /// Extra access-token audience hosts.
    pub token_audience: Option<Vec<String>>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// `normal` or `full`.
    pub sqlite_durability: Option<Durability>,
    /// How often (ms) the server checks the database for changes made by other processes.
    pub cache_refresh_ms: Option<u64>,
    /// Allow webhook targets over plain `http`.
    pub webhooks_allow_http: Option<bool>,
    /// Allow webhook targets on loopback and private addresses.
    pub webhooks_allow_private: Option<bool>,
    /// Seconds a webhook delivery is retried before it fails.
    pub webhook_retry_for: Option<i64>,
    /// Failed deliveries in a row that deactivate a subscription.
    pub webhook_deactivate_after: Option<i64>,
    /// Redis for the jti store.
    pub redis_url: Option<String>,
    /// PostgreSQL pool: most connections per process.
    pub db_max_connections: Option<u32>,
    /// PostgreSQL pool: connections kept open when idle.
    pub db_min_connections: Option<u32>,
    /// PostgreSQL pool: how long a request waits for a connection, ms.
    pub db_acquire_timeout_ms: Option<u64>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Many.
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Values given on the command line or in `LTI2_…` variables (they win over the file).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config` / `LTI2_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--listen` / `LTI2_LISTEN`.
    pub listen: Option<String>,
    /// `--base-url` / `LTI2_BASE_URL` (comma-separated in the variable).
    pub base_url: Vec<String>,
    /// `--database-url` / `LTI2_DATABASE_URL`.
    pub database_url: Option<String>,
    /// `--data-dir` / `LTI2_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--issuer` / `LTI2_ISSUER`.
    pub issuer: Option<String>,
    /// `--max-assertion-lifetime` / `LTI2_MAX_ASSERTION_LIFETIME`.
    pub max_assertion_lifetime: Option<i64>,
    /// `--allowed-algorithms` / `LTI2_ALLOWED_ALGORITHMS`.
    pub allowed_algorithms: Vec<String>,
    /// `--log-format` / `LTI2_LOG_FORMAT`.
    pub log_format: Option<String>,
    /// `--sqlite-durability` / `LTI2_SQLITE_DURABILITY`.
    pub sqlite_durability: Option<Durability>,
    /// `--cache-refresh-ms` / `LTI2_CACHE_REFRESH_MS`.
    pub cache_refresh_ms: Option<u64>,
    /// `--redis-url` / `LTI2_REDIS_URL`.
    pub redis_url: Option<String>,
    /// `--db-max-connections` / `LTI2_DB_MAX_CONNECTIONS`.
    pub db_max_connections: Option<u32>,
    /// `--db-acquire-timeout-ms` / `LTI2_DB_ACQUIRE_TIMEOUT_MS`.
    pub db_acquire_timeout_ms: Option<u64>,
    /// `LTI2_MASTER_KEY`: 64 hex characters.
    pub master_key: Option<String>,
    /// `LTI2_ADMIN_TOKEN`: turns the admin HTTP API on.
    pub admin_token: Option<String>,
    /// `--dev` / `LTI2_DEV`: allow webhook targets over http and on loopback and private
    /// addresses (local development).
    pub dev: bool,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Public base URLs, normalised (`scheme://host[:port]`, no trailing slash); the first is
    /// the primary. Empty means "http:// + the bound address", filled in by the server.
    pub base_urls: Vec<String>,
    /// Database URL.
    pub database_url: String,
    /// Data directory (holds `master.key`).
    pub data_dir: PathBuf,
    /// `iss` of access tokens.
    pub issuer: String,
    /// Access-token lifetime, seconds (`expires_in`).
    pub access_token_lifetime: i64,
    /// Assertion checks.
    pub policy: AssertionPolicy,
    /// Extra hosts for the access token's `aud`.
    pub token_audience: Vec<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// SQLite commit durability.
    pub sqlite_durability: Durability,
    /// How often the server looks for changes made by other processes (admin CLI).
    pub cache_refresh: Duration,
    /// The master key from the environment, if given.
    pub master_key: Option<String>,
    /// The bearer token of the admin HTTP API (`/api/admin/…`); None turns the API off.
    pub admin_token: Option<String>,
    /// Webhook delivery rules.
    pub webhooks: crate::webhooks::WebhookSettings,
    /// Redis for the jti store (`redis://…`); None keeps jtis in the database.
    pub redis_url: Option<String>,
    /// The PostgreSQL connection pool (ignored for SQLite).
    pub pool: PoolSettings,
}

/// A bad setting.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl Settings {
    /// Resolves the settings: defaults < file < overrides.
    pub fn resolve(o: Overrides) -> Result<Settings, ConfigError> {
        let file = match &o.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let listen_s = o
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:3000".into());
        let listen: SocketAddr = listen_s.parse().map_err(|_| {
            ConfigError(format!(
                "listen: '{listen_s}' is not an address like 127.0.0.1:3000"
            ))
        })?;
        let base_raw = if o.base_url.is_empty() {
            file.base_url.map(OneOrMany::into_vec).unwrap_or_default()
        } else {
            o.base_url
        };
        let base_urls = base_raw
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse_base_url)
            .collect::<Result<Vec<_>, _>>()?;
        let mut policy = AssertionPolicy::default();
        if let Some(m) = o.max_assertion_lifetime.or(file.max_assertion_lifetime) {
            if m < 0 {
                return Err(ConfigError(
                    "max_assertion_lifetime must be 0 (no bound) or a positive number of seconds"
                        .into(),
                ));
            }
            policy.max_lifetime = m;
        }
        let algs = if o.allowed_algorithms.is_empty() {
            file.allowed_algorithms.unwrap_or_default()
        } else {
            o.allowed_algorithms
        };
        if !algs.is_empty() {
            policy.allowed_algs = algs
                .iter()
                .flat_map(|s| s.split(','))
                .map(str::trim)
                .map(|a| {
                    Alg::parse(a).ok_or_else(|| {
                        ConfigError(format!(
                            "allowed_algorithms: '{a}' is not one of HS256, HS384, HS512"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        let lifetime = file.access_token_lifetime.unwrap_or(3600);
        if lifetime <= 0 {
            return Err(ConfigError("access_token_lifetime must be positive".into()));
        }
        let log_format = match o.log_format.or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError(format!(
                    "log_format: '{other}' is not text or json"
                )))
            }
        };
        let issuer = o.issuer.or(file.issuer).unwrap_or_else(|| "Canvas".into());
        if issuer.is_empty() {
            return Err(ConfigError("issuer must not be empty".into()));
        }
        let defaults = PoolSettings::default();
        let pool = PoolSettings {
            max_connections: o
                .db_max_connections
                .or(file.db_max_connections)
                .unwrap_or(defaults.max_connections),
            min_connections: file.db_min_connections.unwrap_or(defaults.min_connections),
            acquire_timeout_ms: o
                .db_acquire_timeout_ms
                .or(file.db_acquire_timeout_ms)
                .unwrap_or(defaults.acquire_timeout_ms),
        };
        if pool.max_connections == 0 || pool.min_connections > pool.max_connections {
            return Err(ConfigError(
                "db_max_connections must be at least 1 and at least db_min_connections".into(),
            ));
        }
        if pool.acquire_timeout_ms == 0 {
            return Err(ConfigError("db_acquire_timeout_ms must be positive".into()));
        }
        let redis_url = o.redis_url.or(file.redis_url).filter(|u| !u.is_empty());
        if let Some(u) = &redis_url {
            if !crate::store::redis_nonces::is_redis_url(u) {
                return Err(ConfigError(format!(
                    "redis_url: '{u}' must start with redis://"
                )));
            }
        }
        Ok(Settings {
            redis_url,
            pool,
            listen,
            base_urls,
            database_url: o
                .database_url
                .or(file.database_url)
                .unwrap_or_else(|| "sqlite://lti2.db".into()),
            data_dir: o
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("lti2-data")),
            issuer,
            access_token_lifetime: lifetime,
            policy,
            token_audience: file.token_audience.unwrap_or_default(),
            log_format,
            sqlite_durability: o
                .sqlite_durability
                .or(file.sqlite_durability)
                .unwrap_or_default(),
            cache_refresh: Duration::from_millis(
                o.cache_refresh_ms.or(file.cache_refresh_ms).unwrap_or(200),
            ),
            master_key: o.master_key,
            webhooks: crate::webhooks::WebhookSettings {
                allow_http: o.dev || file.webhooks_allow_http.unwrap_or(false),
                allow_private: o.dev || file.webhooks_allow_private.unwrap_or(false),
                retry_for: file.webhook_retry_for.unwrap_or(3600).max(0),
                deactivate_after: file.webhook_deactivate_after.unwrap_or(20).max(1),
                ..Default::default()
            },
            admin_token: match o.admin_token {
                Some(t) if t.len() < 32 => {
                    return Err(ConfigError(
                        "LTI2_ADMIN_TOKEN must be at least 32 characters".into(),
                    ))
                }
                t => t,
            },
        })
    }

    /// The hosts (no port) of the access token's `aud`: each base URL's host, then the extra
    /// `token_audience` hosts, without repeats.
    pub fn token_aud_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        for h in self
            .base_urls
            .iter()
            .filter_map(|u| host_of(u))
            .chain(self.token_audience.iter().map(|h| h.to_ascii_lowercase()))
        {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
        hosts
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
}

/// Checks a public base URL (`http(s)://host[:port]`, no path, query or userinfo) and returns
/// it normalised (see [`normalize_url`]).
pub fn parse_base_url(s: &str) -> Result<String, ConfigError> {
    let bad = || {
        ConfigError(format!(
            "base_url: '{s}' must look like https://host[:port] (no path)"
        ))
    };
    let trimmed = s.strip_suffix('/').unwrap_or(s);
    let n = normalize_url(trimmed).ok_or_else(bad)?;
    let (scheme, authority) = n.split_once("://").ok_or_else(bad)?;
    if !(scheme == "http" || scheme == "https")
        || authority.contains(['/', '?', '#'])
        || authority.starts_with(':')
    {
        return Err(bad());
    }
    Ok(n)
}

/// The host of a normalised base URL, without port.
pub fn host_of(base_url: &str) -> Option<String> {
    let authority = base_url.split_once("://")?.1;
    Some(strip_port(authority).to_ascii_lowercase())
}

/// `host[:port]` → `host` (IPv6 literals keep their brackets).
pub fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map(|i| &authority[..=i])
            .unwrap_or(authority);
    }
    authority
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_normalised() {
        assert_eq!(
            parse_base_url("https://LMS.example.edu:443/").unwrap(),
            "https://lms.example.edu"
        );
        assert_eq!(
            parse_base_url("http://127.0.0.1:3000").unwrap(),
            "http://127.0.0.1:3000"
        );
        assert!(parse_base_url("https://lms.example.edu/canvas").is_err());
        assert!(parse_base_url("ftp://lms.example.edu").is_err());
        assert!(parse_base_url("lms.example.edu").is_err());
    }

    #[test]
    fn defaults_need_nothing() {
        let s = Settings::resolve(Overrides::default()).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(s.database_url, "sqlite://lti2.db");
        assert_eq!(s.issuer, "Canvas");
        assert_eq!(s.policy.max_lifetime, 300);
    }

    #[test]
    fn token_aud_hosts_drop_ports_and_repeats() {
        let s = Settings::resolve(Overrides {
            base_url: vec!["https://a.example:8443,https://A.example".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.token_aud_hosts(), vec!["a.example".to_string()]);
        assert_eq!(strip_port("[::1]:3000"), "[::1]");
    }

    #[test]
    fn file_then_overrides_in_rising_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lti2.toml");
        std::fs::write(
            &path,
            r#"
listen = "0.0.0.0:8080"
base_url = ["https://LMS.example.edu:443", "https://vanity.example.org"]
database_url = "sqlite:///var/lib/lti2/lti2.db"
issuer = "Platform"
access_token_lifetime = 1800
max_assertion_lifetime = 120
allowed_algorithms = ["HS256", "HS512"]
token_audience = ["Files.example.edu"]
log_format = "json"
sqlite_durability = "full"
cache_refresh_ms = 50
"#,
        )
        .unwrap();
        let from_file = Settings::resolve(Overrides {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(from_file.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(
            from_file.base_urls,
            vec!["https://lms.example.edu", "https://vanity.example.org"]
        );
        assert_eq!(from_file.issuer, "Platform");
        assert_eq!(from_file.access_token_lifetime, 1800);
        assert_eq!(from_file.policy.max_lifetime, 120);
        assert_eq!(from_file.policy.allowed_algs, vec![Alg::HS256, Alg::HS512]);
        assert_eq!(from_file.log_format, LogFormat::Json);
        assert_eq!(from_file.sqlite_durability, Durability::Full);
        assert_eq!(from_file.cache_refresh, Duration::from_millis(50));
        assert_eq!(
            from_file.token_aud_hosts(),
            vec!["lms.example.edu", "vanity.example.org", "files.example.edu"]
        );
        let overridden = Settings::resolve(Overrides {
            config: Some(path),
            listen: Some("127.0.0.1:9000".into()),
            base_url: vec!["http://localhost:9000".into()],
            max_assertion_lifetime: Some(0),
            allowed_algorithms: vec!["HS384".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(overridden.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(overridden.base_urls, vec!["http://localhost:9000"]);
        assert_eq!(overridden.policy.max_lifetime, 0);
        assert_eq!(overridden.policy.allowed_algs, vec![Alg::HS384]);
        assert_eq!(
            overridden.issuer, "Platform",
            "what no override names comes from the file"
        );
    }

    #[test]
    fn bad_settings_name_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:3000\"\nunknown_key = 1\n").unwrap();
        let e = Settings::resolve(Overrides {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("unknown_key"), "{e}");
        for (o, word) in [
            (
                Overrides {
                    listen: Some("nowhere".into()),
                    ..Default::default()
                },
                "listen",
            ),
            (
                Overrides {
                    allowed_algorithms: vec!["none".into()],
                    ..Default::default()
                },
                "allowed_algorithms",
            ),
            (
                Overrides {
                    max_assertion_lifetime: Some(-1),
                    ..Default::default()
                },
                "max_assertion_lifetime",
            ),
            (
                Overrides {
                    log_format: Some("xml".into()),
                    ..Default::default()
                },
                "log_format",
            ),
            (
                Overrides {
                    base_url: vec!["https://x.example/path".into()],
                    ..Default::default()
                },
                "base_url",
            ),
        ] {
            let e = Settings::resolve(o).unwrap_err();
            assert!(e.to_string().contains(word), "{e}");
        }
    }
}
