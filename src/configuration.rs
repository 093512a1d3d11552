//! Layered configuration: `config/default.toml` → `config/<MMO_ENV>.toml` → the file named by `MMO_CONFIG`
//! → environment variables `MMO__<SECTION>__<KEY>` (lists as comma-separated values).
//!
//! Invalid values fail start-up with a message naming the key; unknown keys are warnings, because one
//! environment may serve several versions of the service. Secrets are [`SecretString`]s and never print.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use mmo_actors::store::MongoSettings;
use mmo_actors::{SupervisorSettings, PROVIDERS};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub mongodb: MongoDbSettings,
    pub auth: AuthSettings,
    pub actors: ActorSettings,
    pub cache: CacheSettings,
    /// Per provider slug (`mpesa`, `mtn`, `airtel`).
    pub providers: BTreeMap<String, ProviderSettings>,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    pub max_body_bytes: NonZeroUsize,
    pub client_request_timeout_ms: u64,
    pub keep_alive_secs: u64,
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MongoDbSettings {
    /// May carry credentials, hence secret.
    pub uri: SecretString,
    pub database: String,
    pub server_selection_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Upper bound on one store operation; a callback gets its 503 within about this long.
    pub operation_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// Accepted `Authorization: Bearer` tokens; several at once allow rotation.
    pub bearer_tokens: Vec<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActorSettings {
    pub arbiters: NonZeroUsize,
    pub persistence_pool_size: NonZeroUsize,
    pub mailbox_capacity: NonZeroUsize,
    pub call_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CacheSettings {
    pub capacity: NonZeroUsize,
    pub ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProviderSettings {
    pub pool_size: NonZeroUsize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// A `tracing` filter such as `info` or `mmo_webhooks=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Settings plus the warnings found while loading them (logged once telemetry is up).
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigurationError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: `{key}` {problem}")]
    Invalid { key: String, problem: String },
}

/// Where configuration comes from. [`Sources::from_process`] reads the process environment; tests build
/// their own so that the developer's environment cannot leak in.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub directory: PathBuf,
    /// `MMO_ENV`: selects `config/<name>.toml`.
    pub environment: Option<String>,
    /// `MMO_CONFIG`: one more file, applied after the environment's.
    pub file: Option<PathBuf>,
    /// `MMO__…` variables.
    pub variables: HashMap<String, String>,
}

impl Sources {
    pub fn from_process() -> Self {
        Self {
            directory: std::env::var_os("MMO_CONFIG_DIR").map_or_else(|| PathBuf::from("config"), PathBuf::from),
            environment: std::env::var("MMO_ENV").ok().filter(|name| !name.is_empty()),
            file: std::env::var_os("MMO_CONFIG").map(PathBuf::from),
            variables: std::env::vars().filter(|(name, _)| name.starts_with("MMO__")).collect(),
        }
    }

    /// The repository's own `config/` directory with no environment: what tests start from.
    pub fn defaults_only() -> Self {
        Self { directory: Path::new(env!("CARGO_MANIFEST_DIR")).join("config"), ..Self::default() }
    }
}

/// List-valued keys that may be given as comma-separated environment values.
const LIST_KEYS: &[&str] = &["auth.bearer_tokens"];

pub fn load(sources: &Sources) -> Result<Loaded, ConfigurationError> {
    let mut builder = Config::builder().add_source(File::from(sources.directory.join("default.toml")));
    if let Some(environment) = &sources.environment {
        builder = builder.add_source(File::from(sources.directory.join(format!("{environment}.toml"))));
    }
    if let Some(file) = &sources.file {
        builder = builder.add_source(File::new(&file.to_string_lossy(), FileFormat::Toml));
    }
    let mut environment = Environment::with_prefix("MMO")
        .prefix_separator("__")
        .separator("__")
        .list_separator(",")
        .try_parsing(true)
        .source(Some(sources.variables.clone()));
    for key in LIST_KEYS {
        environment = environment.with_list_parse_key(key);
    }
    let config = builder.add_source(environment).build()?;

    let mut warnings = Vec::new();
    let settings: Settings = serde_ignored::deserialize(config, |path| {
        warnings.push(format!("unknown configuration key `{path}` ignored"));
    })
    .map_err(ConfigurationError::Load)?;
    warnings.extend(settings.validate()?);
    Ok(Loaded { settings, warnings })
}

impl Settings {
    /// Checks what types alone cannot; returns warnings for what is allowed but suspicious.
    fn validate(&self) -> Result<Vec<String>, ConfigurationError> {
        let invalid = |key: &str, problem: &str| ConfigurationError::Invalid { key: key.to_owned(), problem: problem.to_owned() };
        let mut warnings = Vec::new();
        if self.auth.bearer_tokens.is_empty() {
            return Err(invalid("auth.bearer_tokens", "is empty: every endpoint requires a bearer token (e.g. MMO__AUTH__BEARER_TOKENS)"));
        }
        if self.auth.bearer_tokens.iter().any(|token| token.expose_secret().trim().is_empty()) {
            return Err(invalid("auth.bearer_tokens", "contains an empty token"));
        }
        if self.auth.bearer_tokens.iter().any(|token| token.expose_secret().len() < 16) {
            warnings.push("`auth.bearer_tokens` has a token shorter than 16 characters".to_owned());
        }
        for provider in PROVIDERS {
            if !self.providers.contains_key(provider.slug()) {
                return Err(invalid(&format!("providers.{}.pool_size", provider.slug()), "is missing"));
            }
        }
        for slug in self.providers.keys() {
            if !PROVIDERS.iter().any(|provider| provider.slug() == slug) {
                warnings.push(format!("`providers.{slug}` names no known provider and is ignored"));
            }
        }
        for (key, value) in [
            ("mongodb.operation_timeout_ms", self.mongodb.operation_timeout_ms),
            ("mongodb.server_selection_timeout_ms", self.mongodb.server_selection_timeout_ms),
            ("mongodb.connect_timeout_ms", self.mongodb.connect_timeout_ms),
            ("actors.call_timeout_ms", self.actors.call_timeout_ms),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.actors.call_timeout_ms <= self.mongodb.operation_timeout_ms {
            return Err(invalid(
                "actors.call_timeout_ms",
                "must exceed mongodb.operation_timeout_ms, or a slow write is reported as an actor timeout",
            ));
        }
        if self.mongodb.database.trim().is_empty() {
            return Err(invalid("mongodb.database", "is empty"));
        }
        Ok(warnings)
    }

    pub fn mongo(&self) -> MongoSettings {
        MongoSettings {
            uri: self.mongodb.uri.expose_secret().to_owned(),
            database: self.mongodb.database.clone(),
            server_selection_timeout: Duration::from_millis(self.mongodb.server_selection_timeout_ms),
            connect_timeout: Duration::from_millis(self.mongodb.connect_timeout_ms),
            operation_timeout: Duration::from_millis(self.mongodb.operation_timeout_ms),
        }
    }

    pub fn supervisor(&self) -> SupervisorSettings {
        SupervisorSettings {
            provider_pool_sizes: self
                .providers
                .iter()
                .map(|(slug, provider)| (slug.clone(), provider.pool_size))
                .collect(),
            persistence_pool_size: self.actors.persistence_pool_size,
            mailbox_capacity: self.actors.mailbox_capacity,
            cache_capacity: self.cache.capacity,
            cache_ttl: Duration::from_secs(self.cache.ttl_secs),
            call_timeout: Duration::from_millis(self.actors.call_timeout_ms),
            arbiters: self.actors.arbiters,
        }
    }
}
