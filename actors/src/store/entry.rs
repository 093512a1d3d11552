//! The store operations a callback calls for, as the journal keeps them until the drain applies them to
//! MongoDB (see [`crate::journal`] and [`super::batch`]). A leaf of the store: the journal imports it, it
//! imports nothing of the journal.

use mongodb::bson::RawDocumentBuf;
use serde::{Deserialize, Serialize};

use super::{RejectedCallback, StoreError};
use crate::callback::{Callback, CallbackKey, Delivery};

/// What the journal keeps: the store operations still to be applied to MongoDB. Encoded as BSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Entry {
    /// A callback to store: its document exactly as it is inserted (see
    /// [`super::callback_document`]), built once when the callback was accepted.
    Record {
        document: RawDocumentBuf,
    },
    CountDelivery {
        key: CallbackKey,
        delivery: Delivery,
    },
    Quarantine {
        rejected: RejectedCallback,
    },
}

/// An [`Entry`] made of references: what is written, without copying into an owned entry first.
/// Serializes exactly as the `Entry` it mirrors.
#[derive(Serialize)]
#[serde(rename = "Entry")]
pub enum EntryRef<'a> {
    Record {
        document: &'a RawDocumentBuf,
    },
    CountDelivery {
        key: &'a CallbackKey,
        delivery: &'a Delivery,
    },
    Quarantine {
        rejected: &'a RejectedCallback,
    },
}

impl EntryRef<'_> {
    /// The journal's bytes for this entry.
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        mongodb::bson::to_vec(self).map_err(|error| StoreError::Rejected(error.to_string()))
    }
}

impl Entry {
    /// The entry that records `callback` on its first `delivery`.
    pub fn record(callback: &Callback, delivery: &Delivery) -> Self {
        Self::Record {
            document: super::callback_document(callback, delivery),
        }
    }

    /// Entries of one group are applied in journal order; groups are independent. A transaction's
    /// callbacks share a group, so a `PENDING` is never applied after the `SUCCESSFUL` that followed it.
    pub fn group(&self) -> String {
        match self {
            Self::Record { document } => format!(
                "{}/{}",
                document.get_str("provider").unwrap_or_default(),
                document
                    .get_str("provider_transaction_id")
                    .unwrap_or_default()
            ),
            Self::CountDelivery { key, .. } => {
                format!("{}/{}", key.provider, key.provider_transaction_id)
            }
            Self::Quarantine { rejected } => format!("quarantine/{}", rejected.id),
        }
    }

    /// The journal's bytes for an entry.
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        mongodb::bson::to_vec(self).map_err(|error| StoreError::Rejected(error.to_string()))
    }

    /// Reads an entry back: BSON, or the JSON of journals written before entries were BSON (so that
    /// an upgrade drains what the previous version accepted).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        match mongodb::bson::from_slice(bytes) {
            Ok(entry) => Ok(entry),
            Err(error) if bytes.first() == Some(&b'{') => {
                legacy::decode(bytes).map_err(|legacy| format!("{error}; as JSON: {legacy}"))
            }
            Err(error) => Err(error.to_string()),
        }
    }

    /// When the operation was received (for the age of the oldest entry).
    pub fn received_at(&self) -> chrono::DateTime<chrono::Utc> {
        match self {
            Self::Record { document } => document
                .get_datetime("received_at")
                .ok()
                .map(|at| at.to_chrono())
                .unwrap_or_default(),
            Self::CountDelivery { delivery, .. } => delivery.received_at,
            Self::Quarantine { rejected } => rejected.received_at,
        }
    }
}

/// Journals written by versions whose entries were JSON.
mod legacy {
    use chrono::{DateTime, Utc};
    use mongodb::bson::oid::ObjectId;
    use serde::Deserialize;

    use super::Entry;
    use crate::callback::{Callback, CallbackKey, Delivery};
    use crate::store::RejectedCallback;

    #[derive(Deserialize)]
    enum LegacyEntry {
        Record {
            callback: Box<Callback>,
            delivery: LegacyDelivery,
        },
        CountDelivery {
            key: CallbackKey,
            delivery: LegacyDelivery,
        },
        Quarantine {
            rejected: LegacyRejected,
        },
    }

    /// Ids were hex strings.
    #[derive(Deserialize)]
    struct LegacyDelivery {
        id: String,
        received_at: DateTime<Utc>,
    }

    #[derive(Deserialize)]
    struct LegacyRejected {
        id: String,
        raw: Vec<u8>,
        path: String,
        reason: String,
        request_id: String,
        received_at: DateTime<Utc>,
    }

    fn id(hex: &str) -> Result<ObjectId, String> {
        ObjectId::parse_str(hex).map_err(|error| error.to_string())
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Entry, String> {
        let legacy: LegacyEntry =
            serde_json::from_slice(bytes).map_err(|error| error.to_string())?;
        let delivery = |legacy: LegacyDelivery| -> Result<Delivery, String> {
            Ok(Delivery {
                id: id(&legacy.id)?,
                received_at: legacy.received_at,
                replayed_from: None,
            })
        };
        Ok(match legacy {
            LegacyEntry::Record {
                callback,
                delivery: first,
            } => Entry::record(&callback, &delivery(first)?),
            LegacyEntry::CountDelivery { key, delivery: at } => Entry::CountDelivery {
                key,
                delivery: delivery(at)?,
            },
            LegacyEntry::Quarantine { rejected } => Entry::Quarantine {
                rejected: RejectedCallback {
                    id: id(&rejected.id)?,
                    raw: rejected.raw,
                    path: rejected.path,
                    reason: rejected.reason,
                    request_id: rejected.request_id,
                    received_at: rejected.received_at,
                    authenticated: true,
                    client: None,
                    provider: None,
                    callback_type: None,
                    evidence: None,
                    truncated: false,
                    parsed: false,
                },
            },
        })
    }
}
