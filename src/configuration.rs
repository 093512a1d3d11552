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
use ipnet::IpNet;
use mmo_actors::store::MongoSettings;
use mmo_actors::{SupervisorSettings, PROVIDERS};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::auth::{HashMode, Proof};

#[derive(Debug, Clone, Deserialize)]
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
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed; nobody else's is.
    #[serde(deserialize_with = "list_of_networks")]
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MongoDbSettings {
    /// May carry credentials, hence secret.
    pub uri: SecretString,
    pub database: String,
    pub server_selection_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Upper bound on one MongoDB operation (drain writes, readiness pings).
    pub operation_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// Accepted `Authorization: Bearer` tokens; several at once allow rotation.
    #[serde(deserialize_with = "list_of_secrets")]
    pub bearer_tokens: Vec<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActorSettings {
    pub arbiters: NonZeroUsize,
    pub persistence_pool_size: NonZeroUsize,
    pub mailbox_capacity: NonZeroUsize,
    pub call_timeout_ms: u64,
    /// Restarts of a pool's actors allowed without delay within `restart_window_secs`; beyond it the
    /// pool restarts with backoff and the service reports itself not ready.
    pub restart_limit: usize,
    pub restart_window_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CacheSettings {
    pub capacity: NonZeroUsize,
    pub ttl_secs: u64,
}

/// The local durable journal callbacks are written to before they are acknowledged.
#[derive(Debug, Clone, Deserialize)]
pub struct JournalSettings {
    pub dir: PathBuf,
    /// Largest backlog kept; beyond it callbacks are answered 503 instead of acknowledged.
    pub max_bytes: u64,
    /// Sync policy: how long appends are gathered into one commit (one fsync); 0 = as soon as possible.
    pub commit_window_ms: u64,
    /// Entries the drain reads per round.
    pub drain_batch: NonZeroUsize,
    /// Batches the drain writes at once (of different transactions).
    pub drain_pipeline: NonZeroUsize,
    /// Attempts before an entry that keeps failing (not for unavailability) is quarantined.
    pub max_attempts: u32,
    /// On shutdown, how long to keep draining to MongoDB before exiting (the rest waits for the next start).
    pub shutdown_drain_secs: u64,
    /// The journal's page cache: its memory, whatever the backlog.
    pub cache_bytes: usize,
}

impl JournalSettings {
    pub fn options(&self) -> mmo_actors::journal::JournalOptions {
        mmo_actors::journal::JournalOptions {
            dir: self.dir.clone(),
            max_bytes: self.max_bytes,
            commit_window: Duration::from_millis(self.commit_window_ms),
            cache_bytes: self.cache_bytes,
        }
    }
}

/// What is kept of rejected bodies.
#[derive(Debug, Clone, Deserialize)]
pub struct QuarantineSettings {
    /// Days the bodies of unauthenticated requests are kept in `rejected_callbacks`; those of
    /// authenticated senders are never expired.
    pub unauthenticated_retention_days: u32,
}

/// Whether personal data (MSISDNs, customer names) is stored as it came or as salted digests.
#[derive(Debug, Clone, Deserialize)]
pub struct PrivacySettings {
    pub personal_data: PersonalData,
    /// Salt of the digests when `personal_data = "hash"`. Keep it stable: a new salt gives new digests.
    pub salt: SecretString,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PersonalData {
    Keep,
    Hash,
}

impl PrivacySettings {
    /// The salt to pseudonymize with, when personal data is hashed.
    pub fn hashing_salt(&self) -> Option<Vec<u8>> {
        (self.personal_data == PersonalData::Hash)
            .then(|| self.salt.expose_secret().as_bytes().to_vec())
    }
}

/// Local rules answering M-Pesa C2B validation requests (`/v1/webhooks/mpesa/c2b/validation`).
#[derive(Debug, Clone, Deserialize)]
pub struct C2bValidationSettings {
    /// `BusinessShortCode`s payments may be made to; empty accepts any.
    #[serde(deserialize_with = "comma_separated")]
    pub accepted_shortcodes: Vec<String>,
    pub min_amount: Option<rust_decimal::Decimal>,
    pub max_amount: Option<rust_decimal::Decimal>,
    /// Regular expression the whole `BillRefNumber` must match; empty accepts any.
    pub account_pattern: String,
}

impl C2bValidationSettings {
    fn pattern(&self) -> Result<Option<regex_lite::Regex>, regex_lite::Error> {
        let pattern = self.account_pattern.trim();
        if pattern.is_empty() {
            return Ok(None);
        }
        regex_lite::Regex::new(pattern).map(Some)
    }

    pub fn rules(&self) -> mmo_actors::providers::AcceptanceRules {
        mmo_actors::providers::AcceptanceRules {
            accepted_accounts: self.accepted_shortcodes.clone(),
            min_amount: self.min_amount,
            max_amount: self.max_amount,
            // Checked by `Settings::validate`.
            account_reference: self.pattern().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    /// Per client (bearer identity, else source address) on webhook endpoints.
    pub webhooks_per_minute: std::num::NonZeroU32,
    pub health_per_minute: std::num::NonZeroU32,
    /// Per source address for operators' allowlisted addresses (`providers.<name>.allowed_ips`), so that
    /// an operator's burst is never refused while an anonymous flood is.
    pub provider_sources_per_minute: std::num::NonZeroU32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProviderSettings {
    pub pool_size: NonZeroUsize,
    /// Proofs a callback must ALL carry: `bearer`, `url_token`, `source_ip`, `hmac_header`, `airtel_hash`.
    #[serde(default = "default_proofs", deserialize_with = "list_of_proofs")]
    pub require: Vec<Proof>,
    #[serde(default, deserialize_with = "list_of_secrets")]
    pub url_tokens: Vec<SecretString>,
    #[serde(default, deserialize_with = "list_of_networks")]
    pub allowed_ips: Vec<IpNet>,
    /// Secrets for `X-MTN-Signature` (HMAC-SHA256 of the raw body); several allow rotation.
    #[serde(default, deserialize_with = "list_of_secrets")]
    pub signature_secrets: Vec<SecretString>,
    /// Airtel callback keys for the body `hash`.
    #[serde(default, deserialize_with = "list_of_secrets")]
    pub hash_keys: Vec<SecretString>,
    #[serde(default)]
    pub hash_mode: HashMode,
}

fn default_proofs() -> Vec<Proof> {
    vec![Proof::Bearer]
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

/// A list given as a TOML array or as one comma-separated string (how environment variables carry lists).
///
/// Done here rather than by the `config` crate, whose list splitting first turns values such as `12345`
/// or `true` into numbers and booleans: wrong for secrets.
fn comma_separated<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<String>),
        Text(String),
    }
    let items = match ListOrText::deserialize(deserializer)? {
        ListOrText::List(items) => items,
        ListOrText::Text(text) => text.split(',').map(str::to_owned).collect(),
    };
    Ok(items
        .into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect())
}

fn list_of_secrets<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<SecretString>, D::Error> {
    Ok(comma_separated(deserializer)?
        .into_iter()
        .map(SecretString::from)
        .collect())
}

/// Addresses (`196.201.214.200`) or CIDR ranges (`196.201.214.0/24`).
fn list_of_networks<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<IpNet>, D::Error> {
    comma_separated(deserializer)?
        .into_iter()
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!("`{item}` is not an IP address or CIDR range"))
                })
        })
        .collect()
}

fn list_of_proofs<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Proof>, D::Error> {
    use serde::de::value::{Error as ValueError, StrDeserializer};
    comma_separated(deserializer)?
        .into_iter()
        .map(|item| {
            Proof::deserialize(StrDeserializer::<ValueError>::new(&item)).map_err(|_| {
                serde::de::Error::custom(format!(
                    "unknown proof `{item}` (expected bearer, url_token, source_ip, hmac_header or airtel_hash)"
                ))
            })
        })
        .collect()
}

pub fn load(sources: &Sources) -> Result<Loaded, ConfigurationError> {
    let mut builder =
        Config::builder().add_source(File::from(sources.directory.join("default.toml")));
    if let Some(environment) = &sources.environment {
        builder = builder.add_source(File::from(
            sources.directory.join(format!("{environment}.toml")),
        ));
    }
    if let Some(file) = &sources.file {
        builder = builder.add_source(File::new(&file.to_string_lossy(), FileFormat::Toml));
    }
    // Values stay text (no `try_parsing`, which would turn a numeric secret into a float); typed fields
    // parse their text, and list fields split it (see `comma_separated`).
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
    warnings.extend(settings.validate()?);
    Ok(Loaded { settings, warnings })
}

impl Settings {
    /// Checks what types alone cannot; returns warnings for what is allowed but suspicious.
    fn validate(&self) -> Result<Vec<String>, ConfigurationError> {
        let invalid = |key: &str, problem: &str| ConfigurationError::Invalid {
            key: key.to_owned(),
            problem: problem.to_owned(),
        };
        let mut warnings = Vec::new();
        if self.auth.bearer_tokens.is_empty() {
            return Err(invalid(
                "auth.bearer_tokens",
                "is empty: every endpoint requires a bearer token (e.g. MMO__AUTH__BEARER_TOKENS)",
            ));
        }
        if self
            .auth
            .bearer_tokens
            .iter()
            .any(|token| token.expose_secret().len() < 16)
        {
            warnings.push("`auth.bearer_tokens` has a token shorter than 16 characters".to_owned());
        }
        for provider in PROVIDERS {
            warnings.extend(self.validate_provider(provider.slug())?);
        }
        if self.journal.max_attempts == 0 {
            return Err(invalid("journal.max_attempts", "must be at least 1"));
        }
        if self.journal.max_bytes < 1024 * 1024 {
            return Err(invalid("journal.max_bytes", "must be at least 1 MiB"));
        }
        if self.privacy.personal_data == PersonalData::Hash
            && self.privacy.salt.expose_secret().len() < 16
        {
            return Err(invalid(
                "privacy.salt",
                "must be at least 16 characters when privacy.personal_data = \"hash\"",
            ));
        }
        if let Err(error) = self.c2b_validation.pattern() {
            return Err(invalid(
                "c2b_validation.account_pattern",
                &format!("is not a valid pattern: {error}"),
            ));
        }
        if let (Some(min), Some(max)) = (
            self.c2b_validation.min_amount,
            self.c2b_validation.max_amount,
        ) {
            if min > max {
                return Err(invalid(
                    "c2b_validation.min_amount",
                    "exceeds c2b_validation.max_amount",
                ));
            }
        }
        for slug in self.providers.keys() {
            if !PROVIDERS.iter().any(|provider| provider.slug() == slug) {
                warnings.push(format!(
                    "`providers.{slug}` names no known provider and is ignored"
                ));
            }
        }
        for (key, value) in [
            (
                "mongodb.operation_timeout_ms",
                self.mongodb.operation_timeout_ms,
            ),
            (
                "mongodb.server_selection_timeout_ms",
                self.mongodb.server_selection_timeout_ms,
            ),
            (
                "mongodb.connect_timeout_ms",
                self.mongodb.connect_timeout_ms,
            ),
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

    /// A registered provider's section: present, and with everything its `require` list needs.
    fn validate_provider(&self, slug: &str) -> Result<Vec<String>, ConfigurationError> {
        let key = |name: &str| format!("providers.{slug}.{name}");
        let invalid = |name: &str, problem: String| ConfigurationError::Invalid {
            key: key(name),
            problem,
        };
        let Some(settings) = self.providers.get(slug) else {
            return Err(invalid("pool_size", "is missing".to_owned()));
        };
        if settings.require.is_empty() {
            return Err(invalid(
                "require",
                "names no proof: every callback must prove where it comes from".to_owned(),
            ));
        }
        for proof in &settings.require {
            let (name, missing) = match proof {
                Proof::Bearer => ("require", false),
                Proof::UrlToken => ("url_tokens", settings.url_tokens.is_empty()),
                Proof::SourceIp => ("allowed_ips", settings.allowed_ips.is_empty()),
                Proof::HmacHeader => ("signature_secrets", settings.signature_secrets.is_empty()),
                Proof::AirtelHash => ("hash_keys", settings.hash_keys.is_empty()),
            };
            if missing {
                return Err(invalid(
                    name,
                    format!("is empty but `{}` requires it", key("require")),
                ));
            }
        }
        let mut warnings = Vec::new();
        if slug == "mtn" && settings.signature_secrets.is_empty() {
            warnings.push(format!(
                "`{}` is empty: X-MTN-Signature headers are ignored",
                key("signature_secrets")
            ));
        }
        if settings.require.contains(&Proof::AirtelHash) && settings.hash_mode == HashMode::Observe
        {
            warnings.push(format!(
                "`{}` is observe: Airtel hashes are logged, not enforced",
                key("hash_mode")
            ));
        }
        Ok(warnings)
    }

    /// The per-provider authentication policies.
    pub fn authenticator(&self) -> crate::auth::Authenticator {
        let policies = self
            .providers
            .iter()
            .map(|(slug, provider)| {
                let policy = crate::auth::ProviderPolicy::new(
                    provider.require.clone(),
                    &provider.url_tokens,
                    provider.allowed_ips.clone(),
                    &provider.signature_secrets,
                    &provider.hash_keys,
                    provider.hash_mode,
                );
                (slug.clone(), policy)
            })
            .collect();
        crate::auth::Authenticator::new(
            &self.auth.bearer_tokens,
            self.server.trusted_proxies.clone(),
            policies,
        )
    }

    pub fn mongo(&self) -> MongoSettings {
        MongoSettings {
            uri: self.mongodb.uri.expose_secret().to_owned(),
            database: self.mongodb.database.clone(),
            server_selection_timeout: Duration::from_millis(
                self.mongodb.server_selection_timeout_ms,
            ),
            connect_timeout: Duration::from_millis(self.mongodb.connect_timeout_ms),
            operation_timeout: Duration::from_millis(self.mongodb.operation_timeout_ms),
            unauthenticated_retention: Duration::from_secs(
                u64::from(self.quarantine.unauthenticated_retention_days) * 86_400,
            ),
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
            restart_policy: mmo_actors::pool::RestartPolicy {
                limit: self.actors.restart_limit,
                window: Duration::from_secs(self.actors.restart_window_secs),
                max_backoff: Duration::from_secs(30),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(variables: &[(&str, &str)]) -> Sources {
        let mut variables: HashMap<String, String> = variables
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        variables
            .entry("MMO__AUTH__BEARER_TOKENS".into())
            .or_insert_with(|| "token-a-0123456789,token-b-0123456789".into());
        Sources {
            variables,
            ..Sources::defaults_only()
        }
    }

    fn error_of(variables: &[(&str, &str)]) -> String {
        load(&sources(variables))
            .expect_err("configuration must be refused")
            .to_string()
    }

    #[test]
    fn environment_variables_override_files_and_lists_split_on_commas() {
        let loaded = load(&sources(&[
            ("MMO__SERVER__PORT", "9100"),
            ("MMO__PROVIDERS__MPESA__POOL_SIZE", "8"),
            ("MMO__MONGODB__DATABASE", "elsewhere"),
        ]))
        .unwrap();
        let settings = loaded.settings;
        assert_eq!(settings.server.port, 9100);
        assert_eq!(settings.providers["mpesa"].pool_size.get(), 8);
        assert_eq!(
            settings.providers["mtn"].pool_size.get(),
            4,
            "untouched keys keep the file's value"
        );
        assert_eq!(settings.mongodb.database, "elsewhere");
        let tokens: Vec<&str> = settings
            .auth
            .bearer_tokens
            .iter()
            .map(|token| token.expose_secret())
            .collect();
        assert_eq!(tokens, ["token-a-0123456789", "token-b-0123456789"]);
        assert_eq!(
            loaded.warnings,
            ["`providers.mtn.signature_secrets` is empty: X-MTN-Signature headers are ignored"]
        );
    }

    #[test]
    fn a_numeric_token_stays_a_string() {
        let loaded = load(&sources(&[(
            "MMO__AUTH__BEARER_TOKENS",
            "12345678901234567890",
        )]))
        .unwrap();
        assert_eq!(
            loaded.settings.auth.bearer_tokens[0].expose_secret(),
            "12345678901234567890"
        );
    }

    #[test]
    fn the_environment_file_and_the_named_file_are_layered_in_order() {
        let named = std::env::temp_dir().join(format!("mmo-config-{}.toml", std::process::id()));
        std::fs::write(&named, "[mongodb]\ndatabase = \"from_named_file\"\n").unwrap();
        let mut layered = sources(&[]);
        layered.environment = Some("local".into());
        assert_eq!(
            load(&layered).unwrap().settings.mongodb.database,
            "mmo_webhooks_local"
        );
        layered.file = Some(named.clone());
        let settings = load(&layered).unwrap().settings;
        std::fs::remove_file(named).unwrap();
        assert_eq!(settings.mongodb.database, "from_named_file");
        assert_eq!(
            settings.server.host, "127.0.0.1",
            "local.toml still applies beneath the named file"
        );
    }

    #[test]
    fn invalid_values_name_their_key() {
        assert!(error_of(&[("MMO__SERVER__PORT", "eighty")]).contains("server.port"));
        assert!(error_of(&[("MMO__PROVIDERS__MTN__POOL_SIZE", "0")])
            .contains("providers.mtn.pool_size"));
        assert!(error_of(&[("MMO__LOG__FORMAT", "xml")]).contains("log.format"));
        assert!(error_of(&[("MMO__AUTH__BEARER_TOKENS", "")]).contains("auth.bearer_tokens"));
        assert!(
            error_of(&[("MMO__ACTORS__CALL_TIMEOUT_MS", "100")]).contains("actors.call_timeout_ms")
        );
    }

    #[test]
    fn authentication_policies_are_read_from_comma_separated_values() {
        let settings = load(&sources(&[
            ("MMO__PROVIDERS__MPESA__REQUIRE", "url_token, source_ip"),
            ("MMO__PROVIDERS__MPESA__URL_TOKENS", "tok-1,tok-2"),
            (
                "MMO__PROVIDERS__MPESA__ALLOWED_IPS",
                "196.201.214.200,196.201.212.0/24",
            ),
            ("MMO__PROVIDERS__AIRTEL__HASH_MODE", "enforce"),
            ("MMO__SERVER__TRUSTED_PROXIES", "10.0.0.0/8"),
        ]))
        .unwrap()
        .settings;
        let mpesa = &settings.providers["mpesa"];
        assert_eq!(mpesa.require, [Proof::UrlToken, Proof::SourceIp]);
        assert_eq!(mpesa.url_tokens.len(), 2);
        assert_eq!(
            mpesa.allowed_ips,
            [
                "196.201.214.200/32".parse::<IpNet>().unwrap(),
                "196.201.212.0/24".parse().unwrap()
            ]
        );
        assert_eq!(
            settings.providers["mtn"].require,
            [Proof::Bearer],
            "the default proof"
        );
        assert_eq!(settings.providers["airtel"].hash_mode, HashMode::Enforce);
        assert_eq!(
            settings.server.trusted_proxies,
            ["10.0.0.0/8".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn incomplete_authentication_policies_name_the_missing_key() {
        assert!(error_of(&[("MMO__PROVIDERS__MPESA__REQUIRE", "url_token")])
            .contains("providers.mpesa.url_tokens"));
        assert!(error_of(&[("MMO__PROVIDERS__MTN__REQUIRE", "hmac_header")])
            .contains("providers.mtn.signature_secrets"));
        assert!(
            error_of(&[("MMO__PROVIDERS__AIRTEL__REQUIRE", "airtel_hash")])
                .contains("providers.airtel.hash_keys")
        );
        assert!(error_of(&[("MMO__PROVIDERS__MTN__REQUIRE", "source_ip")])
            .contains("providers.mtn.allowed_ips"));
        assert!(error_of(&[("MMO__PROVIDERS__MTN__REQUIRE", "")]).contains("providers.mtn.require"));
        let unknown = error_of(&[("MMO__PROVIDERS__MTN__REQUIRE", "password")]);
        assert!(
            unknown.contains("providers.mtn.require") && unknown.contains("password"),
            "{unknown}"
        );
        assert!(
            error_of(&[("MMO__PROVIDERS__MTN__ALLOWED_IPS", "not-an-ip")])
                .contains("providers.mtn.allowed_ips")
        );
        assert!(error_of(&[("MMO__PROVIDERS__AIRTEL__HASH_MODE", "strict")])
            .contains("providers.airtel.hash_mode"));
    }

    #[test]
    fn privacy_and_validation_rules_are_checked_at_start_up() {
        assert!(error_of(&[("MMO__PRIVACY__PERSONAL_DATA", "hash")]).contains("privacy.salt"));
        assert!(
            error_of(&[("MMO__PRIVACY__PERSONAL_DATA", "erase")]).contains("privacy.personal_data")
        );
        assert!(error_of(&[("MMO__C2B_VALIDATION__ACCOUNT_PATTERN", "(")])
            .contains("c2b_validation.account_pattern"));
        assert!(error_of(&[("MMO__C2B_VALIDATION__MIN_AMOUNT", "ten")])
            .contains("c2b_validation.min_amount"));
        assert!(error_of(&[("MMO__C2B_VALIDATION__MIN_AMOUNT", "500000")])
            .contains("c2b_validation.min_amount"));
        let hashing = load(&sources(&[
            ("MMO__PRIVACY__PERSONAL_DATA", "hash"),
            ("MMO__PRIVACY__SALT", "sixteen-chars-or-more"),
            ("MMO__C2B_VALIDATION__ACCEPTED_SHORTCODES", "600000,600001"),
        ]))
        .unwrap()
        .settings;
        assert_eq!(
            hashing.privacy.hashing_salt().as_deref(),
            Some(&b"sixteen-chars-or-more"[..])
        );
        assert_eq!(
            hashing.c2b_validation.rules().accepted_accounts,
            ["600000", "600001"]
        );
    }

    #[test]
    fn unknown_keys_are_warnings_not_failures() {
        let loaded = load(&sources(&[
            ("MMO__SERVER__COLOUR", "blue"),
            ("MMO__FEATURE__NEXT", "on"),
        ]))
        .unwrap();
        assert!(
            loaded
                .warnings
                .iter()
                .any(|warning| warning.contains("server.colour")),
            "{:?}",
            loaded.warnings
        );
        assert!(
            loaded
                .warnings
                .iter()
                .any(|warning| warning.contains("feature")),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn secrets_never_print() {
        let settings = load(&sources(&[
            ("MMO__MONGODB__URI", "mongodb://user:hunter2@db.example/"),
            ("MMO__PRIVACY__SALT", "the-salt-is-secret"),
        ]))
        .unwrap()
        .settings;
        let printed = format!("{settings:?}");
        assert!(!printed.contains("the-salt-is-secret"));
        assert!(!printed.contains("token-a-0123456789"));
        assert!(!printed.contains("hunter2"));
    }
}
