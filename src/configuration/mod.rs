//! Layered configuration: `config/default.toml` → `config/<MMO_ENV>.toml` → the file named by `MMO_CONFIG`
//! → environment variables `MMO__<SECTION>__<KEY>` (lists as comma-separated values).
//!
//! Each section lives in its own module with its meaning, its checks and its adapters (`config/default.toml`
//! documents its defaults). Invalid values fail start-up with a message naming the key; unknown keys are
//! warnings, because one environment may serve several versions of the service. Secrets are
//! [`SecretString`]s and never print.

mod access;
mod console;
mod delivery;
mod lists;
mod pipeline;
mod providers;
mod reconciler;
mod reports;
mod server;
mod storage;
#[cfg(test)]
mod tests;

pub use access::AuthSettings;
pub use console::{ConsoleSettings, PortalSettings};
pub use delivery::{ConfiguredEndpoint, DeliveryConfig};
pub use pipeline::{
    ActorSettings, C2bValidationSettings, CacheSettings, PersonalData, PrivacySettings,
};
pub use providers::{ProviderSettings, StatusApiSettings};
pub use reconciler::ReconcilerConfig;
pub use reports::ReportSettings;
pub use server::{LogFormat, LogSettings, RateLimitSettings, ServerSettings};
pub use storage::{JournalSettings, MongoDbSettings, QuarantineSettings};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use mmo_actors::journal::JournalOptions;
use mmo_actors::store::MongoSettings;
use mmo_actors::{SupervisorSettings, PROVIDERS};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub mongodb: MongoDbSettings,
    pub auth: AuthSettings,
    pub actors: ActorSettings,
    pub cache: CacheSettings,
    pub rate_limit: RateLimitSettings,
    pub c2b_validation: C2bValidationSettings,
    pub privacy: PrivacySettings,
    pub journal: JournalSettings,
    pub quarantine: QuarantineSettings,
    /// Per provider slug (`mpesa`, `mtn`, `airtel`).
    pub providers: BTreeMap<String, ProviderSettings>,
    pub reconciler: ReconcilerConfig,
    pub delivery: DeliveryConfig,
    /// The money report's settlement zones.
    #[serde(default)]
    pub reports: ReportSettings,
    /// The operators' web console at `/ui/`.
    #[serde(default)]
    pub console: ConsoleSettings,
    /// The portal a merchant's developer opens with a signed link.
    #[serde(default)]
    pub portal: PortalSettings,
    pub log: LogSettings,
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

fn invalid(key: &str, problem: &str) -> ConfigurationError {
    ConfigurationError::Invalid {
        key: key.to_owned(),
        problem: problem.to_owned(),
    }
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
            directory: std::env::var_os("MMO_CONFIG_DIR")
                .map_or_else(|| PathBuf::from("config"), PathBuf::from),
            environment: std::env::var("MMO_ENV")
                .ok()
                .filter(|name| !name.is_empty()),
            file: std::env::var_os("MMO_CONFIG").map(PathBuf::from),
            variables: std::env::vars()
                .filter(|(name, _)| name.starts_with("MMO__"))
                .collect(),
        }
    }

    /// The repository's own `config/` directory with no environment: what tests start from.
    pub fn defaults_only() -> Self {
        Self {
            directory: Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
            ..Self::default()
        }
    }
}

pub fn load(sources: &Sources) -> Result<Loaded, ConfigurationError> {
    let defaults = sources.directory.join("default.toml");
    if !defaults.is_file() {
        return Err(invalid(
            "MMO_CONFIG_DIR",
            &format!(
                "is {}, which holds no default.toml: point MMO_CONFIG_DIR at the service's config \
                 directory (the one shipped beside it), or run from the directory that holds config/",
                sources.directory.display()
            ),
        ));
    }
    let mut builder = Config::builder().add_source(File::from(defaults));
    if let Some(environment) = &sources.environment {
        builder = builder.add_source(File::from(
            sources.directory.join(format!("{environment}.toml")),
        ));
    }
    if let Some(file) = &sources.file {
        builder = builder.add_source(File::new(&file.to_string_lossy(), FileFormat::Toml));
    }
    // Values stay text (no `try_parsing`, which would turn a numeric secret into a float); typed fields
    // parse their text, and list fields split it (see `lists`).
    let environment = Environment::with_prefix("MMO")
        .prefix_separator("__")
        .separator("__")
        .source(Some(sources.variables.clone()));
    let config = builder.add_source(environment).build()?;

    let mut warnings = Vec::new();
    let settings: Settings = serde_ignored::deserialize(config, |path| {
        warnings.push(format!("unknown configuration key `{path}` ignored"));
    })
    .map_err(ConfigurationError::Load)?;
    settings.validate(&mut warnings)?;
    Ok(Loaded { settings, warnings })
}

impl Settings {
    /// Checks what types alone cannot, section by section; collects warnings for what is allowed but
    /// suspicious.
    fn validate(&self, warnings: &mut Vec<String>) -> Result<(), ConfigurationError> {
        self.server.validate()?;
        self.rate_limit.validate()?;
        self.mongodb.validate()?;
        self.journal.validate()?;
        self.quarantine.validate()?;
        self.auth.validate(warnings)?;
        self.actors.validate(self.mongodb.operation_timeout_ms)?;
        self.privacy.validate()?;
        self.c2b_validation.validate()?;
        self.reconciler.validate()?;
        self.delivery.validate()?;
        self.reports.validate(warnings)?;
        self.console.validate(warnings)?;
        self.portal.validate()?;
        for provider in PROVIDERS {
            let slug = provider.slug();
            let Some(settings) = self.providers.get(slug) else {
                return Err(invalid(
                    &format!("providers.{slug}.pool_size"),
                    "is missing",
                ));
            };
            settings.validate(slug, warnings)?;
        }
        self.reconciler.validate_lease(&self.providers)?;
        for slug in self.providers.keys() {
            if !PROVIDERS.iter().any(|provider| provider.slug() == slug) {
                warnings.push(format!(
                    "`providers.{slug}` names no known provider and is ignored"
                ));
            }
        }
        Ok(())
    }

    /// The per-provider authentication policies.
    pub fn authenticator(&self) -> crate::auth::Authenticator {
        access::authenticator(&self.auth, &self.providers, &self.server.trusted_proxies)
    }

    pub fn mongo(&self) -> MongoSettings {
        storage::mongo(
            &self.mongodb,
            &self.quarantine,
            self.reconciler.retention_days,
            self.confirm_by_query(),
        )
    }

    pub fn journal_options(&self) -> JournalOptions {
        self.journal.options(&self.quarantine)
    }

    pub fn supervisor(&self) -> SupervisorSettings {
        let pool_sizes = self
            .providers
            .iter()
            .map(|(slug, provider)| (slug.clone(), provider.pool_size))
            .collect();
        self.actors.supervisor(&self.cache, pool_sizes)
    }

    /// Every secret, for checks that nothing prints them.
    pub fn secrets(&self) -> Vec<&SecretString> {
        let mut secrets: Vec<&SecretString> = vec![&self.mongodb.uri, &self.privacy.salt];
        secrets.extend(&self.auth.bearer_tokens);
        secrets.extend(&self.auth.admin_tokens);
        secrets.extend(&self.auth.client_tokens);
        for provider in self.providers.values() {
            secrets.extend(&provider.url_tokens);
            secrets.extend(&provider.signature_secrets);
            secrets.extend(&provider.hash_keys);
            secrets.extend(provider.api.secrets());
        }
        secrets.extend(
            self.delivery
                .endpoints
                .iter()
                .map(|endpoint| &endpoint.secret),
        );
        secrets.push(&self.delivery.secrets_key);
        secrets.push(&self.console.session_secret);
        secrets
    }

    /// Stored names of the providers whose callbacks are confirmed by query.
    pub fn confirm_by_query(&self) -> Vec<&'static str> {
        PROVIDERS
            .iter()
            .filter(|provider| {
                self.providers
                    .get(provider.slug())
                    .is_some_and(|settings| settings.confirm_by_query)
            })
            .map(|provider| provider.name())
            .collect()
    }

    /// The reconciler's settings.
    pub fn reconciler(&self) -> mmo_actors::reconciler::ReconcilerSettings {
        self.reconciler
            .settings(self.confirm_by_query(), self.privacy.hashing_salt())
    }
}
