//! Lists in configuration: a TOML array, or one comma-separated string (how environment variables carry
//! lists: `MMO__AUTH__BEARER_TOKENS=token-a,token-b`).
//!
//! Done here rather than by the `config` crate, whose list splitting first turns values such as `12345`
//! or `true` into numbers and booleans: wrong for secrets.

use ipnet::IpNet;
use secrecy::SecretString;
use serde::Deserialize;

use crate::auth::Proof;

pub(super) fn comma_separated<'de, D: serde::Deserializer<'de>>(
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

pub(super) fn list_of_secrets<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<SecretString>, D::Error> {
    Ok(comma_separated(deserializer)?
        .into_iter()
        .map(SecretString::from)
        .collect())
}

/// Addresses (`196.201.214.200`) or CIDR ranges (`196.201.214.0/24`).
pub(super) fn list_of_networks<'de, D: serde::Deserializer<'de>>(
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

pub(super) fn list_of_proofs<'de, D: serde::Deserializer<'de>>(
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

/// A secret as printed by `mmo-webhooks config check`: whether it is set, never its value.
pub(super) fn redacted<S: serde::Serializer>(
    secret: &SecretString,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use secrecy::ExposeSecret;
    serializer.serialize_str(if secret.expose_secret().is_empty() {
        ""
    } else {
        "<redacted>"
    })
}

pub(super) fn redacted_list<S: serde::Serializer>(
    secrets: &[SecretString],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(secrets.iter().map(|_| "<redacted>"))
}
