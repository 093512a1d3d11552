//! `[console]`: the operators' web console at `/ui/` (see `docs/console.md`).

use std::num::NonZeroU32;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::lists::redacted;
use super::{invalid, ConfigurationError};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ConsoleSettings {
    /// Serve the console at `/ui/` (it still needs an admin token to sign in).
    pub enabled: bool,
    /// Mark the session cookie `Secure` (sent over HTTPS only): set it whenever the console is reached
    /// over HTTPS, directly or through a proxy.
    pub secure_cookie: bool,
    /// Signs session cookies. Empty: derived from `auth.admin_tokens`, so every instance with the same
    /// tokens accepts the same sessions (and changing the tokens signs everyone out). Set it (the same on
    /// every instance, at least 32 characters) to keep sessions across a token rotation.
    #[serde(serialize_with = "redacted")]
    pub session_secret: SecretString,
    /// How long a session lasts after sign-in.
    pub session_ttl_secs: u64,
    /// Sign-in attempts per minute per client address; more are refused with 429.
    pub login_attempts_per_minute: NonZeroU32,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            secure_cookie: false,
            session_secret: SecretString::from(String::new()),
            session_ttl_secs: 8 * 3600,
            login_attempts_per_minute: NonZeroU32::new(10).expect("not zero"),
        }
    }
}

impl ConsoleSettings {
    pub(super) fn validate(&self, warnings: &mut Vec<String>) -> Result<(), ConfigurationError> {
        if self.session_ttl_secs == 0 {
            return Err(invalid("console.session_ttl_secs", "must be at least 1"));
        }
        let secret = self.session_secret.expose_secret();
        if !secret.is_empty() && secret.len() < 32 {
            warnings.push("`console.session_secret` is shorter than 32 characters".to_owned());
        }
        Ok(())
    }
}
