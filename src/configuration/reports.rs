//! `[reports]`: how the money report cuts days — each operator's settlement zone, the IANA time zone its
//! days (and its statements) are cut in. A report that names a provider without a `tz` uses that
//! provider's zone.
//!
//! Defaults: Daraja (M-Pesa) settles in East Africa Time, `Africa/Nairobi`. MTN MoMo and Airtel Money
//! serve many countries from one API (Uganda, Ghana, Zambia, Nigeria, …, from UTC to UTC+3), so no zone
//! is right for every deployment: `UTC` until configured, rather than a guess that is silently wrong in
//! most of their markets (set `Africa/Kampala`, `Africa/Accra`, … for yours).

use std::collections::BTreeMap;

use chrono_tz::Tz;
use mmo_actors::PROVIDERS;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigurationError};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ReportSettings {
    /// Per provider slug (`mpesa`, `mtn`, `airtel`): an IANA time zone name.
    #[serde(default = "default_settlement_zones")]
    pub settlement_zones: BTreeMap<String, String>,
}

impl Default for ReportSettings {
    fn default() -> Self {
        Self {
            settlement_zones: default_settlement_zones(),
        }
    }
}

fn default_settlement_zones() -> BTreeMap<String, String> {
    [
        ("mpesa", "Africa/Nairobi"),
        ("mtn", "UTC"),
        ("airtel", "UTC"),
    ]
    .into_iter()
    .map(|(slug, zone)| (slug.to_owned(), zone.to_owned()))
    .collect()
}

impl ReportSettings {
    pub(super) fn validate(&self, warnings: &mut Vec<String>) -> Result<(), ConfigurationError> {
        for (slug, zone) in &self.settlement_zones {
            if zone.parse::<Tz>().is_err() {
                return Err(invalid(
                    &format!("reports.settlement_zones.{slug}"),
                    "is not an IANA time zone name (e.g. Africa/Nairobi, Africa/Kampala, UTC)",
                ));
            }
            if !PROVIDERS.iter().any(|provider| provider.slug() == slug) {
                warnings.push(format!(
                    "`reports.settlement_zones.{slug}` names no known provider and is ignored"
                ));
            }
        }
        Ok(())
    }

    /// Each provider's settlement zone, by stored provider name (`UTC` for one not configured).
    pub fn settlement_zones(&self) -> BTreeMap<&'static str, Tz> {
        PROVIDERS
            .iter()
            .map(|provider| {
                let zone = self
                    .settlement_zones
                    .get(provider.slug())
                    .and_then(|zone| zone.parse().ok())
                    .unwrap_or(Tz::UTC);
                (provider.name(), zone)
            })
            .collect()
    }
}
