//! The normalized form of one provider callback: what every provider's parser produces and what is stored.

use std::fmt;

use rust_decimal::Decimal;
use serde_json::Value;

/// The kind of callback, named as it is stored in `callback_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
}

impl CallbackType {
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
        }
    }
}

impl CallbackType {
    /// The transaction flow a callback of this type reports on: callbacks of one flow with one key shape
    /// one document in `transactions`. A B2C result and its queue timeout share the `b2c` flow.
    /// `None` for callbacks that describe no transaction state of their own: a C2B validation (a
    /// question, answered before any money moves) and an Airtel notification (no flow is named).
    pub const fn flow(self) -> Option<&'static str> {
        match self {
            Self::StkPush => Some("stk_push"),
            Self::B2cResult | Self::B2cTimeout => Some("b2c"),
            Self::C2bConfirmation => Some("c2b"),
            Self::Collection => Some("collection"),
            Self::Disbursement => Some("disbursement"),
            Self::Remittance => Some("remittance"),
            Self::Payment => Some("payment"),
            Self::C2bValidation | Self::Notification => None,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// One callback as understood by its provider's parser.
#[derive(Debug, Clone, PartialEq)]
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
}

impl Callback {
    /// A digest of the body fields that must not change between repeats (amount, currency, MSISDN,
    /// receipt): a repeat with a different digest is not a plain duplicate but a disagreement.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&self.amount, &self.currency, &self.msisdn, &self.receipt).hash(&mut hasher);
        hasher.finish()
    }

    /// The identity under which the callback is stored once: the unique index of `callbacks`.
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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallbackKey {
    pub provider: &'static str,
    pub callback_type: CallbackType,
    pub provider_transaction_id: String,
    pub status: Status,
}

impl CallbackKey {
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
