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

/// `[portal]`: the portal a merchant's developer opens with a signed link (see `docs/console.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct PortalSettings {
    /// Serve `/portal/` and `POST /v1/portal/links`.
    pub enabled: bool,
    /// How long a link from `POST /v1/portal/links` opens the portal.
    pub link_ttl_secs: u64,
    /// How long a portal session lasts once a link opened it.
    pub session_ttl_secs: u64,
    /// Origins that may embed the portal in an iframe (`https://dashboard.example.com`); empty: none.
    /// When set, the portal's cookie is `SameSite=None; Secure` (a cross-site iframe gets no other), so
    /// the portal must then be reached over HTTPS.
    #[serde(deserialize_with = "super::lists::comma_separated")]
    pub frame_ancestors: Vec<String>,
}

impl Default for PortalSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            link_ttl_secs: 900,
            session_ttl_secs: 3600,
            frame_ancestors: Vec::new(),
        }
    }
}

impl PortalSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigurationError> {
        if self.link_ttl_secs == 0 || self.session_ttl_secs == 0 {
            return Err(invalid(
                "portal.link_ttl_secs",
                "and portal.session_ttl_secs must be at least 1",
            ));
        }
        for origin in &self.frame_ancestors {
            let valid = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin
                    .contains(|c: char| c.is_whitespace() || c == ';' || c == ',' || c == '\'');
            if !valid {
                return Err(invalid(
                    "portal.frame_ancestors",
                    "must list origins such as https://dashboard.example.com",
                ));
            }
        }
        Ok(())
    }
}
