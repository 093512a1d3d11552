//! Named MTN MoMo payloads for tests and local experiments: the API document's examples and real variants.

use serde_json::{json, Value};

/// MTN Mobile Money callback payloads, one constructor per scenario.
pub struct MTNMoMoCallbackFixtures;

impl MTNMoMoCallbackFixtures {
    /// The API document's collection success.
    pub fn collection_success() -> Value {
        Self::collection_for("d4e90f52-7e4b-4f4a-9c3a-1234567890ab", "SUCCESSFUL")
    }

    /// A collection callback with the API document's shape, for any key and status.
    pub fn collection_for(reference_id: &str, status: &str) -> Value {
        let mut payload = json!({
            "referenceId": reference_id,
            "externalId": "ext_ref_123456",
            "status": status,
            "amount": "1000.00",
            "currency": "UGX",
            "payer": {"partyIdType": "MSISDN", "partyId": "256774123456"},
            "payerMessage": "Payment for services",
            "payeeNote": "Order #12345"
        });
        if status == "SUCCESSFUL" {
            payload["financialTransactionId"] = json!("12345678");
        }
        payload
    }

    /// Real traffic: no `referenceId`, no `financialTransactionId`, a string `reason`.
    pub fn collection_failed_without_reference_id() -> Value {
        json!({
            "externalId": "ext-947321",
            "amount": "500",
            "currency": "EUR",
            "payer": {"partyIdType": "MSISDN", "partyId": "46733123453"},
            "payerMessage": "pay",
            "payeeNote": "note",
            "status": "FAILED",
            "reason": "NOT_ENOUGH_FUNDS"
        })
    }

    /// The API document's disbursement success.
    pub fn disbursement_success() -> Value {
        json!({
            "referenceId": "transfer-456-xyz",
            "externalId": "ext_disb_001",
            "status": "SUCCESSFUL",
            "amount": "5000.00",
            "currency": "UGX",
            "financialTransactionId": "87654321",
            "payee": {"partyIdType": "MSISDN", "partyId": "256774123456"},
            "payerMessage": "Salary payment",
            "payeeNote": "Monthly salary"
        })
    }

    /// Variant: `reason` as an object, `amount` as a number.
    pub fn disbursement_failed_reason_object() -> Value {
        json!({
            "externalId": "ext_disb_002",
            "status": "FAILED",
            "amount": 5000,
            "currency": "UGX",
            "payee": {"partyIdType": "MSISDN", "partyId": "256774000000"},
            "reason": {"code": "PAYEE_NOT_FOUND", "message": "Payee does not exist"}
        })
    }

    /// The API document's remittance success.
    pub fn remittance_success() -> Value {
        json!({
            "referenceId": "remit-789-abc",
            "externalId": "ext_remit_001",
            "status": "SUCCESSFUL",
            "amount": "10000.00",
            "currency": "UGX",
            "financialTransactionId": "99887766",
            "payee": {"partyIdType": "MSISDN", "partyId": "256774123456"}
        })
    }
}
