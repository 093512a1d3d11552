//! Console sessions: a stateless, signed cookie value (`<expires>.<nonce>.<mac>`), valid on every
//! instance that shares the signing key, and the CSRF token derived from it.
//!
//! The key comes from `console.session_secret` when set, otherwise from `auth.admin_tokens`: two
//! instances configured alike accept each other's sessions, and removing a token signs everyone out.

use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::configuration::ConsoleSettings;

type HmacSha256 = Hmac<Sha256>;

/// The session cookie's name.
pub const COOKIE: &str = "mmo_console";

/// What the console needs to know, built once at start-up.
pub struct Console {
    pub enabled: bool,
    pub secure_cookie: bool,
    ttl: Duration,
    key: [u8; 32],
    /// Sign-in attempts, per client address.
    logins: RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>,
}

/// A valid session: its cookie value (what the CSRF token is derived from).
#[derive(Debug, Clone)]
pub struct Session {
    value: String,
}

impl Console {
    pub fn new(settings: &ConsoleSettings, admin_tokens: &[SecretString]) -> Self {
        let secret = settings.session_secret.expose_secret();
        let mut digest = Sha256::new();
        digest.update(b"mmo-webhooks console session key\0");
        if secret.is_empty() {
            // Every admin token, in an order that does not depend on the configuration's.
            let mut tokens: Vec<&str> = admin_tokens.iter().map(|t| t.expose_secret()).collect();
            tokens.sort_unstable();
            for token in tokens {
                digest.update((token.len() as u64).to_be_bytes());
                digest.update(token.as_bytes());
            }
        } else {
            digest.update(b"secret\0");
            digest.update(secret.as_bytes());
        }
        Self::with_key(
            digest.finalize().into(),
            settings.enabled,
            settings.secure_cookie,
            Duration::from_secs(settings.session_ttl_secs),
            settings.login_attempts_per_minute,
        )
    }

    fn with_key(
        key: [u8; 32],
        enabled: bool,
        secure_cookie: bool,
        ttl: Duration,
        per_minute: NonZeroU32,
    ) -> Self {
        Self {
            enabled,
            secure_cookie,
            ttl,
            key,
            logins: RateLimiter::keyed(Quota::per_minute(per_minute)),
        }
    }

    fn mac(&self, purpose: &str, text: &str) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(text.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether `client` may try to sign in now.
    pub fn may_try_login(&self, client: &str) -> bool {
        self.logins.check_key(&client.to_owned()).is_ok()
    }

    /// Forgets clients whose allowance is whole again.
    pub fn forget_idle_clients(&self) {
        self.logins.retain_recent();
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new session's cookie value, valid until now + the configured lifetime.
    pub fn issue(&self) -> String {
        self.issue_at(now())
    }

    fn issue_at(&self, now: u64) -> String {
        let mut nonce = [0_u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        let payload = format!("{}.{}", now + self.ttl.as_secs(), hex::encode(nonce));
        let mac = hex::encode(self.mac("session", &payload));
        format!("{payload}.{mac}")
    }

    /// The session `value` stands for, if its signature holds and it has not expired.
    pub fn verify(&self, value: &str) -> Option<Session> {
        self.verify_at(value, now())
    }

    fn verify_at(&self, value: &str, now: u64) -> Option<Session> {
        let (payload, mac) = value.rsplit_once('.')?;
        let presented = hex::decode(mac).ok()?;
        let mut check = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        check.update(b"session\0");
        check.update(payload.as_bytes());
        // Constant time.
        check.verify_slice(&presented).ok()?;
        let expires: u64 = payload.split_once('.')?.0.parse().ok()?;
        (now < expires).then(|| Session {
            value: value.to_owned(),
        })
    }

    /// The CSRF token of `session`: every state-changing form carries it.
    pub fn csrf(&self, session: &Session) -> String {
        hex::encode(&self.mac("csrf", &session.value)[..16])
    }

    /// Whether `presented` is `session`'s CSRF token (compared in constant time).
    pub fn csrf_matches(&self, session: &Session, presented: &str) -> bool {
        let expected = self.csrf(session);
        expected.len() == presented.len()
            && expected
                .bytes()
                .zip(presented.bytes())
                .fold(0_u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(secret: &str, tokens: &[&str]) -> Console {
        let settings = ConsoleSettings {
            session_secret: SecretString::from(secret.to_owned()),
            ..ConsoleSettings::default()
        };
        let tokens: Vec<SecretString> = tokens
            .iter()
            .map(|t| SecretString::from((*t).to_owned()))
            .collect();
        Console::new(&settings, &tokens)
    }

    #[test]
    fn a_session_is_valid_on_every_instance_alike_until_it_expires() {
        let one = console("", &["token-a-0123456789", "token-b-0123456789"]);
        // Another instance, its tokens listed in another order.
        let two = console("", &["token-b-0123456789", "token-a-0123456789"]);
        let value = one.issue_at(1_000);
        let session = two.verify_at(&value, 1_001).expect("accepted elsewhere");
        assert_eq!(one.csrf(&session), two.csrf(&session));
        assert!(two.verify_at(&value, 1_000 + 8 * 3600).is_none(), "expired");
    }

    #[test]
    fn a_forged_or_foreign_session_is_refused() {
        let one = console("", &["token-a-0123456789"]);
        let other = console("", &["token-c-0123456789"]);
        let value = one.issue_at(1_000);
        assert!(other.verify_at(&value, 1_001).is_none());
        let (payload, mac) = value.rsplit_once('.').unwrap();
        let later = payload.replacen(&payload[..4], "9999", 1);
        assert!(one.verify_at(&format!("{later}.{mac}"), 1_001).is_none());
        assert!(one.verify_at("garbage", 1_001).is_none());
        let with_secret = console(
            "a-configured-secret-of-32-characters!",
            &["token-a-0123456789"],
        );
        assert!(with_secret.verify_at(&value, 1_001).is_none());
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session() {
        let console = console("", &["token-a-0123456789"]);
        let a = console.verify_at(&console.issue_at(1_000), 1_001).unwrap();
        let b = console.verify_at(&console.issue_at(1_000), 1_001).unwrap();
        assert!(console.csrf_matches(&a, &console.csrf(&a)));
        assert!(!console.csrf_matches(&a, &console.csrf(&b)));
        assert!(!console.csrf_matches(&a, ""));
    }

    #[test]
    fn cookies_are_read_by_name() {
        assert_eq!(
            cookie_value("a=1; mmo_console=x.y.z; b=2", COOKIE),
            Some("x.y.z")
        );
        assert_eq!(cookie_value("other=1", COOKIE), None);
    }
}
