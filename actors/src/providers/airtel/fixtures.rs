//! Named Airtel Money payloads for tests and local experiments: the API document's examples and real shapes.

use serde_json::{json, Value};

/// Airtel Money callback payloads, one constructor per scenario.
pub struct AirtelMoneyCallbackFixtures;

impl AirtelMoneyCallbackFixtures {
    /// The API document's payment success.
    pub fn payment_success() -> Value {
        Self::payment_for("airtel_txn_123456789", "TS")
    }

    /// The API document's payment shape, for any id and status.
    pub fn payment_for(id: &str, status: &str) -> Value {
        json!({
            "transaction": {"id": id, "status": status, "message": "Transaction processed successfully"},
            "data": {"transaction": {
                "id": "merchant_ref_123456", "amount": "1000.00", "currency": "KES",
                "status": status, "message": "Success"
            }}
        })
    }

    /// The shape Airtel documents: `status_code`, `airtel_money_id` and the optional `hash`.
    pub fn payment_documented_shape(id: &str, status_code: &str) -> Value {
        json!({
            "transaction": {
                "id": id,
                "message": "Paid UGX 5,000 to TECHNOLOGIES LIMITED Charge UGX 140, Trans ID MP210603.1234.L06941.",
                "status_code": status_code,
                "airtel_money_id": "MP210603.1234.L06941"
            },
            "hash": "zITVAAGYSlzl1WkUQJn81kbpT5drH3koffT8jCkcJJA="
        })
    }

    /// The API document's disbursement success.
    pub fn disbursement_success() -> Value {
        json!({
            "transaction": {"id": "airtel_disb_987654321", "status": "TS", "message": "Disbursement successful"},
            "data": {"transaction": {"id": "merchant_disb_789", "amount": "5000.00", "currency": "KES", "status": "TS"}}
        })
    }

    /// The API document's notification.
    pub fn notification() -> Value {
        json!({"transaction": {"id": "notification_123", "status": "TS", "message": "General notification"}})
    }
}
