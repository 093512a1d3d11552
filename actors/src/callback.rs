//! The normalized form of one provider callback: what every provider's parser produces and what is stored.

use std::fmt;

use chrono::{DateTime, Utc};
use mongodb::bson::oid::ObjectId;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kind of callback, named as it is stored in `callback_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackType {
    StkPush,
    B2cResult,
    B2cTimeout,
    C2bConfirmation,
    C2bValidation,
    Collection,
    Disbursement,
    Remittance,
    Payment,
    Notification,
    /// An operator's answer to a status query, asked by the reconciler.
    StatusQuery,
    /// M-Pesa's asynchronous answer to a Transaction Status query (its result or its queue timeout).
    TransactionStatusResult,
}

impl CallbackType {
    pub const ALL: [Self; 12] = [
        Self::StkPush,
        Self::B2cResult,
        Self::B2cTimeout,
        Self::C2bConfirmation,
        Self::C2bValidation,
        Self::Collection,
        Self::Disbursement,
        Self::Remittance,
        Self::Payment,
        Self::Notification,
        Self::StatusQuery,
        Self::TransactionStatusResult,
    ];

    /// The type stored as `text` (`stk_push`, …).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::StkPush => "stk_push",
            Self::B2cResult => "b2c_result",
            Self::B2cTimeout => "b2c_timeout",
            Self::C2bConfirmation => "c2b_confirmation",
            Self::C2bValidation => "c2b_validation",
            Self::Collection => "collection",
            Self::Disbursement => "disbursement",
            Self::Remittance => "remittance",
            Self::Payment => "payment",
            Self::Notification => "notification",
            Self::StatusQuery => "status_query",
            Self::TransactionStatusResult => "transaction_status_result",
        }
    }
}

impl CallbackType {
    /// The transaction flow a callback of this type reports on: callbacks of one flow with one key shape
    /// one document in `transactions`. A B2C result and its queue timeout share the `b2c` flow.
    /// `None` for callbacks that describe no transaction state of their own: a C2B validation (a
    /// question, answered before any money moves) and an Airtel notification (no flow is named); and for
    /// answers to status queries, whose flow is the one asked about ([`Callback::flow`]). A Transaction
    /// Status result names no flow either: the reconciler that asked knows it, and records what the
    /// result says as a `status_query` of the right flow.
    pub const fn flow(self) -> Option<&'static str> {
        match self {
            Self::StkPush => Some("stk_push"),
            Self::B2cResult | Self::B2cTimeout => Some("b2c"),
            Self::C2bConfirmation => Some("c2b"),
            Self::Collection => Some("collection"),
            Self::Disbursement => Some("disbursement"),
            Self::Remittance => Some("remittance"),
            Self::Payment => Some("payment"),
            Self::C2bValidation
            | Self::Notification
            | Self::StatusQuery
            | Self::TransactionStatusResult => None,
        }
    }
}

impl fmt::Display for CallbackType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The normalized outcome of a transaction as a callback reports it.
///
/// `Unknown` is for codes no table knows: never mapped to success, never to pending-forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Successful,
    Failed,
    Pending,
    Cancelled,
    Expired,
    Ambiguous,
    Unknown,
}

impl Status {
    pub const ALL: [Self; 7] = [
        Self::Successful,
        Self::Failed,
        Self::Pending,
        Self::Cancelled,
        Self::Expired,
        Self::Ambiguous,
        Self::Unknown,
    ];

    /// Final outcomes: a transaction never leaves these for `pending`.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Successful | Self::Failed | Self::Cancelled | Self::Expired
        )
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "successful" => Self::Successful,
            "failed" => Self::Failed,
            "pending" => Self::Pending,
            "cancelled" => Self::Cancelled,
            "expired" => Self::Expired,
            "ambiguous" => Self::Ambiguous,
            "unknown" => Self::Unknown,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Successful => "successful",
            Self::Failed => "failed",
            Self::Pending => "pending",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Ambiguous => "ambiguous",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One callback as understood by its provider's parser. Serializable for the local journal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Callback {
    /// Stored provider name: `mpesa`, `mtn_mobile_money` or `airtel_money`.
    pub provider: &'static str,
    pub callback_type: CallbackType,
    /// The idempotency key for this callback type (e.g. STK `CheckoutRequestID`).
    pub provider_transaction_id: String,
    pub status: Status,
    /// Normalized reason for a non-successful status (`insufficient_funds`, `cancelled_by_user`, …).
    pub reason: Option<&'static str>,
    /// The provider's own code and description, as text, exactly as sent.
    pub result_code: Option<String>,
    pub result_description: Option<String>,
    pub amount: Option<Decimal>,
    pub currency: Option<String>,
    pub msisdn: Option<String>,
    pub receipt: Option<String>,
    /// When the provider says the transaction happened, in UTC, and the text it sent.
    pub transaction_time: Option<chrono::DateTime<chrono::Utc>>,
    pub transaction_time_raw: Option<String>,
    /// The whole payload as received (numbers keep their exact text).
    pub payload: Value,
    /// For an answer to a status query: the flow of the transaction asked about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queried_flow: Option<&'static str>,
}

impl Callback {
    /// The transaction flow this callback reports on (see [`CallbackType::flow`]).
    pub fn flow(&self) -> Option<&'static str> {
        self.queried_flow.or(self.callback_type.flow())
    }

    /// Whether this is the reconciler's record of an operator's answer rather than a callback the operator
    /// sent by itself.
    pub fn is_status_answer(&self) -> bool {
        self.callback_type == CallbackType::StatusQuery
    }

    /// A digest of the body fields that must not change between repeats (amount, currency, MSISDN,
    /// receipt): a repeat with a different digest is not a plain duplicate but a disagreement.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&self.amount, &self.currency, &self.msisdn, &self.receipt).hash(&mut hasher);
        hasher.finish()
    }

    /// The identity under which the callback is stored once: the `_id` of its document in `callbacks`.
    pub fn key(&self) -> CallbackKey {
        CallbackKey {
            provider: self.provider,
            callback_type: self.callback_type,
            provider_transaction_id: self.provider_transaction_id.clone(),
            status: self.status,
        }
    }
}

/// (`provider`, `callback_type`, `provider_transaction_id`, `status`): one stored document per value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct CallbackKey {
    pub provider: &'static str,
    pub callback_type: CallbackType,
    pub provider_transaction_id: String,
    pub status: Status,
}

impl CallbackKey {
    /// The `_id` of the callback's stored document: the identity itself, so that MongoDB's one mandatory
    /// unique index is also the one that makes storing idempotent (a second unique index would cost every
    /// insert). The transaction id comes last, so the text reads back unambiguously whatever it contains:
    /// the other parts never contain `|`.
    pub fn document_id(&self) -> String {
        document_id(
            self.provider,
            self.callback_type,
            self.status,
            &self.provider_transaction_id,
        )
    }

    /// The `_id`s a callback of this provider, type and transaction id has in each status: where to look
    /// for one whose status is not known.
    pub fn document_ids_in_any_status(
        provider: &str,
        callback_type: CallbackType,
        provider_transaction_id: &str,
    ) -> Vec<String> {
        Status::ALL
            .iter()
            .map(|status| document_id(provider, callback_type, *status, provider_transaction_id))
            .collect()
    }

    /// A stable routing hash, so that every repeat of a transaction reaches the same pool member.
    pub fn route(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        // DefaultHasher::new() uses fixed keys: the same key always routes the same way in a process.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.callback_type.hash(&mut hasher);
        self.provider_transaction_id.hash(&mut hasher);
        hasher.finish()
    }
}

/// One arrival of a callback: when it came, and an id that makes applying it twice harmless (a retried or
/// re-drained delivery is not counted again). The first delivery's id is kept in the stored callback
/// document (`delivery_id`), so re-applying that delivery recognises its own document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: ObjectId,
    pub received_at: DateTime<Utc>,
    /// The quarantined body (`rejected_callbacks` id) this delivery was recovered from by a replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_from: Option<ObjectId>,
}

impl Delivery {
    pub fn new(received_at: DateTime<Utc>) -> Self {
        Self {
            id: ObjectId::new(),
            received_at,
            replayed_from: None,
        }
    }
}

/// See [`CallbackKey::document_id`].
fn document_id(
    provider: &str,
    callback_type: CallbackType,
    status: Status,
    provider_transaction_id: &str,
) -> String {
    format!(
        "{provider}|{}|{}|{provider_transaction_id}",
        callback_type.as_str(),
        status.as_str()
    )
}

/// Distinct names the process keeps at most (the real set — providers, flows, reasons — is a few dozen).
const MAX_NAMES: usize = 4096;

/// Names (providers, flows, reasons) are a small closed set of `&'static str`s; read back from the journal
/// or MongoDB they are interned, so each distinct name is allocated once for the life of the process.
/// `None` past [`MAX_NAMES`] distinct names: stored data that is not the service's own (a damaged or
/// forged document) must not grow memory without bound; what holds such a name is refused as undecodable.
pub(crate) fn intern(name: &str) -> Option<&'static str> {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = names.get(name) {
        return Some(known);
    }
    if names.len() >= MAX_NAMES {
        return None;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    Some(leaked)
}

/// [`intern`], as a deserializer's error past the bound.
fn interned<E: serde::de::Error>(name: &str) -> Result<&'static str, E> {
    intern(name).ok_or_else(|| E::custom(format!("more than {MAX_NAMES} distinct names: {name:?}")))
}

/// What a [`Callback`] deserializes through: the same fields, with owned names (interned afterwards).
#[derive(Deserialize)]
struct OwnedCallback {
    provider: String,
    callback_type: CallbackType,
    provider_transaction_id: String,
    status: Status,
    reason: Option<String>,
    result_code: Option<String>,
    result_description: Option<String>,
    amount: Option<Decimal>,
    currency: Option<String>,
    msisdn: Option<String>,
    receipt: Option<String>,
    transaction_time: Option<DateTime<Utc>>,
    transaction_time_raw: Option<String>,
    payload: Value,
    #[serde(default)]
    queried_flow: Option<String>,
}

/// What a [`CallbackKey`] deserializes through.
#[derive(Deserialize)]
struct OwnedKey {
    provider: String,
    callback_type: CallbackType,
    provider_transaction_id: String,
    status: Status,
}

impl<'de> Deserialize<'de> for Callback {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let c = OwnedCallback::deserialize(deserializer)?;
        Ok(Self {
            provider: interned(&c.provider)?,
            callback_type: c.callback_type,
            provider_transaction_id: c.provider_transaction_id,
            status: c.status,
            reason: c.reason.as_deref().map(interned).transpose()?,
            result_code: c.result_code,
            result_description: c.result_description,
            amount: c.amount,
            currency: c.currency,
            msisdn: c.msisdn,
            receipt: c.receipt,
            transaction_time: c.transaction_time,
            transaction_time_raw: c.transaction_time_raw,
            payload: c.payload,
            queried_flow: c.queried_flow.as_deref().map(interned).transpose()?,
        })
    }
}

impl<'de> Deserialize<'de> for CallbackKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let k = OwnedKey::deserialize(deserializer)?;
        Ok(Self {
            provider: interned(&k.provider)?,
            callback_type: k.callback_type,
            provider_transaction_id: k.provider_transaction_id,
            status: k.status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::by_slug;
    use crate::providers::fixtures::all;

    #[test]
    fn every_fixture_survives_the_journal_round_trip() {
        for scenario in all() {
            let provider = by_slug(scenario.provider).unwrap();
            let callback = provider
                .parse(
                    scenario.callback_type,
                    scenario.payload.to_string().as_bytes(),
                )
                .unwrap();
            let text = serde_json::to_string(&callback).unwrap();
            let back: Callback = serde_json::from_str(&text).unwrap();
            assert_eq!(back, callback, "{}", scenario.name);
            assert_eq!(
                back.payload.to_string(),
                callback.payload.to_string(),
                "numbers keep their exact text"
            );
        }
    }

    proptest::proptest! {
        /// Two callbacks share a document `_id` only when they share the identity, whatever their
        /// transaction ids contain (`|` included).
        #[test]
        fn document_ids_are_the_identity_and_nothing_else(
            first in "[a-z|]{0,6}",
            second in "[a-z|]{0,6}",
            statuses in (0..Status::ALL.len(), 0..Status::ALL.len()),
        ) {
            let key = |id: &str, status: usize| CallbackKey {
                provider: "mpesa",
                callback_type: CallbackType::StkPush,
                provider_transaction_id: id.to_owned(),
                status: Status::ALL[status],
            };
            let (a, b) = (key(&first, statuses.0), key(&second, statuses.1));
            proptest::prop_assert_eq!(a.document_id() == b.document_id(), a == b);
        }
    }
}
