use std::collections::HashMap;

use ipnet::IpNet;
use secrecy::ExposeSecret;

use super::*;
use crate::auth::{HashMode, Proof};

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
    assert!(
        loaded.warnings.is_empty(),
        "a plain configuration starts without warnings: {:?}",
        loaded.warnings
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
    let local = load(&layered).unwrap().settings;
    assert_eq!(local.mongodb.database, "mmo_webhooks_local");
    // A developer's burst from one token is not refused locally; production keeps its limit.
    assert_eq!(local.rate_limit.webhooks_per_minute.get(), 1_000_000);
    // A developer's receiver (`mmo-webhooks listen`) is on loopback: allowed locally, and nothing else
    // that is not public (issue 27); production allows public addresses only.
    assert_eq!(
        local.delivery.address_policy(),
        crate::addresses::AddressPolicy::PublicAndLoopback
    );
    assert_eq!(
        load(&sources(&[]))
            .unwrap()
            .settings
            .delivery
            .address_policy(),
        crate::addresses::AddressPolicy::PublicOnly
    );
    assert_eq!(
        load(&sources(&[]))
            .unwrap()
            .settings
            .rate_limit
            .webhooks_per_minute
            .get(),
        1000
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
    assert!(
        error_of(&[("MMO__PROVIDERS__MTN__POOL_SIZE", "0")]).contains("providers.mtn.pool_size")
    );
    assert!(error_of(&[("MMO__LOG__FORMAT", "xml")]).contains("log.format"));
    assert!(error_of(&[("MMO__AUTH__BEARER_TOKENS", "")]).contains("auth.bearer_tokens"));
    assert!(error_of(&[("MMO__ACTORS__CALL_TIMEOUT_MS", "100")]).contains("actors.call_timeout_ms"));
    // Retentions past a century would overflow the dates they compute: refused at start-up.
    for (variable, key) in [
        (
            "MMO__QUARANTINE__UNAUTHENTICATED_RETENTION_DAYS",
            "quarantine.unauthenticated_retention_days",
        ),
        (
            "MMO__RECONCILER__RETENTION_DAYS",
            "reconciler.retention_days",
        ),
    ] {
        for value in ["0", "4000000000"] {
            assert!(
                error_of(&[(variable, value)]).contains(key),
                "{variable}={value}"
            );
        }
    }
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
    assert!(error_of(&[("MMO__PRIVACY__PERSONAL_DATA", "erase")]).contains("privacy.personal_data"));
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

/// A claim's lease shorter than a question (a token, then the status request, each up to the operator's
/// `request_timeout_secs`) would let a second instance ask about the same payment: refused at start-up,
/// naming both settings.
#[test]
fn a_lease_shorter_than_a_question_is_refused() {
    let mtn = [
        (
            "MMO__PROVIDERS__MTN__API__BASE_URL",
            "https://sandbox.momodeveloper.mtn.com",
        ),
        ("MMO__PROVIDERS__MTN__API__API_USER", "user"),
        ("MMO__PROVIDERS__MTN__API__API_KEY", "key"),
        ("MMO__PROVIDERS__MTN__API__TARGET_ENVIRONMENT", "sandbox"),
        ("MMO__PROVIDERS__MTN__API__REQUEST_TIMEOUT_SECS", "20"),
    ];
    let with = |lease: &'static str| {
        let mut variables = mtn.to_vec();
        variables.push(("MMO__RECONCILER__LEASE_SECS", lease));
        variables
    };
    let refused = error_of(&with("40"));
    assert!(
        refused.contains("reconciler.lease_secs")
            && refused.contains("providers.mtn.api.request_timeout_secs")
            && refused.contains("40 s"),
        "{refused}"
    );
    assert!(load(&sources(&with("41"))).is_ok());
    // Operators whose API is not configured are never asked: their time-outs do not count.
    assert!(load(&sources(&[("MMO__RECONCILER__LEASE_SECS", "1")])).is_ok());
    // Nor does anything when the reconciler is off.
    let mut off = with("40");
    off.push(("MMO__RECONCILER__ENABLED", "false"));
    assert!(load(&sources(&off)).is_ok());
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

#[test]
fn settlement_zones_default_per_operator_and_are_checked() {
    let zones = load(&sources(&[]))
        .unwrap()
        .settings
        .reports
        .settlement_zones();
    assert_eq!(zones["mpesa"], chrono_tz::Tz::Africa__Nairobi);
    assert_eq!(zones["mtn_mobile_money"], chrono_tz::Tz::UTC);
    assert_eq!(zones["airtel_money"], chrono_tz::Tz::UTC);

    let loaded = load(&sources(&[(
        "MMO__REPORTS__SETTLEMENT_ZONES__MTN",
        "Africa/Kampala",
    )]))
    .unwrap();
    let zones = loaded.settings.reports.settlement_zones();
    assert_eq!(zones["mtn_mobile_money"], chrono_tz::Tz::Africa__Kampala);
    assert_eq!(
        zones["mpesa"],
        chrono_tz::Tz::Africa__Nairobi,
        "the others keep the file's"
    );

    let error = error_of(&[("MMO__REPORTS__SETTLEMENT_ZONES__MPESA", "EAT")]);
    assert!(error.contains("reports.settlement_zones.mpesa"), "{error}");
    let loaded = load(&sources(&[(
        "MMO__REPORTS__SETTLEMENT_ZONES__MPAISA",
        "UTC",
    )]))
    .unwrap();
    assert!(
        loaded
            .warnings
            .iter()
            .any(|warning| warning.contains("reports.settlement_zones.mpaisa")),
        "{:?}",
        loaded.warnings
    );
}
