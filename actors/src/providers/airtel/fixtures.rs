//! Named Airtel Money payloads for tests and local experiments: the API document's examples and real shapes.

use serde_json::{json, Value};

use crate::callback::{CallbackType, Status};
use crate::providers::fixtures::Scenario;

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

    /// A failed disbursement in the documented shape.
    pub fn disbursement_failed() -> Value {
        json!({"transaction": {
            "id": "airtel_disb_failed_1",
            "message": "Transaction failed: insufficient balance",
            "status_code": "TF",
            "airtel_money_id": "MP210603.0001.X00001"
        }})
    }

    /// Every scenario, with the key and status it must be stored under.
    pub fn all() -> Vec<Scenario> {
        let scenario = Scenario::of("airtel");
        vec![
            scenario(
                "payment_success",
                CallbackType::Payment,
                Self::payment_success(),
                "airtel_txn_123456789",
                Status::Successful,
            ),
            scenario(
                "payment_documented_success",
                CallbackType::Payment,
                Self::payment_documented_shape("AIRTEL-TS-1", "TS"),
                "AIRTEL-TS-1",
                Status::Successful,
            ),
            scenario(
                "payment_documented_failed",
                CallbackType::Payment,
                Self::payment_documented_shape("AIRTEL-TF-1", "TF"),
                "AIRTEL-TF-1",
                Status::Failed,
            ),
            scenario(
                "payment_in_progress",
                CallbackType::Payment,
                Self::payment_for("AIRTEL-TIP-1", "TIP"),
                "AIRTEL-TIP-1",
                Status::Pending,
            ),
            scenario(
                "payment_ambiguous",
                CallbackType::Payment,
                Self::payment_for("AIRTEL-TA-1", "TA"),
                "AIRTEL-TA-1",
                Status::Ambiguous,
            ),
            scenario(
                "payment_expired",
                CallbackType::Payment,
                Self::payment_documented_shape("AIRTEL-TE-1", "TE"),
                "AIRTEL-TE-1",
                Status::Expired,
            ),
            scenario(
                "payment_error_code",
                CallbackType::Payment,
                Self::payment_documented_shape("AIRTEL-DP-1", "DP00800001007"),
                "AIRTEL-DP-1",
                Status::Failed,
            ),
            scenario(
                "disbursement_success",
                CallbackType::Disbursement,
                Self::disbursement_success(),
                "airtel_disb_987654321",
                Status::Successful,
            ),
            scenario(
                "disbursement_failed",
                CallbackType::Disbursement,
                Self::disbursement_failed(),
                "airtel_disb_failed_1",
                Status::Failed,
            ),
            scenario(
                "notification",
                CallbackType::Notification,
                Self::notification(),
                "notification_123",
                Status::Successful,
            ),
        ]
    }
}
