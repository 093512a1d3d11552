//! Console sessions: a stateless, signed cookie value (`<expires>.<nonce>.<mac>`), valid on every
//! instance that shares the signing key, and the CSRF token derived from it.
//!
//! The key comes from `console.session_secret` when set, otherwise from `auth.admin_tokens`: two
//! instances configured alike accept each other's sessions, and removing a token signs everyone out.

use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
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

/// The portal's settings, as the service uses them.
pub struct Portal {
    pub enabled: bool,
    pub link_ttl: chrono::Duration,
    pub session_ttl: Duration,
    /// Origins allowed to embed the portal (empty: none).
    pub frame_ancestors: Vec<String>,
}

impl Portal {
    pub fn new(settings: &crate::configuration::PortalSettings) -> Self {
        Self {
            enabled: settings.enabled,
            link_ttl: chrono::Duration::seconds(
                i64::try_from(settings.link_ttl_secs).unwrap_or(i64::MAX / 1000),
            ),
            session_ttl: Duration::from_secs(settings.session_ttl_secs),
            frame_ancestors: settings.frame_ancestors.clone(),
        }
    }
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

    /// `payload` with its signature for `purpose` appended.
    fn signed(&self, purpose: &str, payload: &str) -> String {
        format!("{payload}.{}", hex::encode(self.mac(purpose, payload)))
    }

    /// The payload of `value` when its signature for `purpose` holds (checked in constant time).
    fn opened<'a>(&self, purpose: &str, value: &'a str) -> Option<&'a str> {
        let (payload, mac) = value.rsplit_once('.')?;
        let presented = hex::decode(mac).ok()?;
        let mut check = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        check.update(purpose.as_bytes());
        check.update(b"\0");
        check.update(payload.as_bytes());
        check.verify_slice(&presented).ok()?;
        Some(payload)
    }

    /// A link's value opening the portal for `owner` until `expires` (unix seconds).
    pub fn portal_link(&self, owner: &str, expires: u64) -> String {
        self.signed(
            "portal-link",
            &format!("{expires}.{}", URL_SAFE_NO_PAD.encode(owner)),
        )
    }

    /// The owner a portal link names, if it is genuine and has not expired.
    pub fn open_portal_link(&self, value: &str) -> Option<String> {
        self.open_portal_link_at(value, now())
    }

    fn open_portal_link_at(&self, value: &str, now: u64) -> Option<String> {
        let payload = self.opened("portal-link", value)?;
        let (expires, owner) = payload.split_once('.')?;
        let owner = String::from_utf8(URL_SAFE_NO_PAD.decode(owner).ok()?).ok()?;
        (now < expires.parse::<u64>().ok()?).then_some(owner)
    }

    /// A portal session's cookie value for `owner`, valid for `ttl`.
    pub fn portal_session(&self, owner: &str, ttl: Duration) -> String {
        let mut nonce = [0_u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        self.signed(
            "portal-session",
            &format!(
                "{}.{}.{}",
                now() + ttl.as_secs(),
                hex::encode(nonce),
                URL_SAFE_NO_PAD.encode(owner)
            ),
        )
    }

    /// The owner of a portal session, and the session (for its CSRF token), if genuine and not expired.
    pub fn open_portal_session(&self, value: &str) -> Option<(String, Session)> {
        let payload = self.opened("portal-session", value)?;
        let mut parts = payload.split('.');
        let expires: u64 = parts.next()?.parse().ok()?;
        let _nonce = parts.next()?;
        let owner = String::from_utf8(URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
        (now() < expires).then(|| {
            (
                owner,
                Session {
                    value: value.to_owned(),
                },
            )
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
    fn a_portal_link_names_its_owner_until_it_expires_and_cannot_be_changed() {
        let console = console("", &["token-a-0123456789"]);
        let link = console.portal_link("merchant.one", 2_000);
        assert_eq!(
            console.open_portal_link_at(&link, 1_999).as_deref(),
            Some("merchant.one")
        );
        assert!(
            console.open_portal_link_at(&link, 2_000).is_none(),
            "expired"
        );
        let other = console.portal_link("merchant.two", 2_000);
        let (_, mac) = link.rsplit_once('.').unwrap();
        let (payload, _) = other.rsplit_once('.').unwrap();
        assert!(
            console
                .open_portal_link_at(&format!("{payload}.{mac}"), 1_000)
                .is_none(),
            "another owner under this link's signature"
        );
        // A link is no session, and a console session is no portal session.
        assert!(console.open_portal_session(&link).is_none());
        assert!(console.open_portal_session(&console.issue()).is_none());
        let session = console.portal_session("merchant.one", Duration::from_secs(60));
        assert!(console.verify(&session).is_none());
        assert_eq!(
            console.open_portal_session(&session).unwrap().0,
            "merchant.one"
        );
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
