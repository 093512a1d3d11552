//! Named MTN MoMo payloads for tests and local experiments: the API document's examples and real variants.

use serde_json::{json, Value};

use crate::callback::{CallbackType, Status};
use crate::providers::fixtures::Scenario;

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

    /// A collection that failed with `reason` (a string), keyed on `externalId` as real traffic often is.
    pub fn collection_failed(external_id: &str, reason: &str) -> Value {
        json!({
            "externalId": external_id,
            "amount": "2500",
            "currency": "UGX",
            "payer": {"partyIdType": "MSISDN", "partyId": "256772000001"},
            "status": "FAILED",
            "reason": reason
        })
    }

    /// A collection the payer never approved in time.
    pub fn collection_expired() -> Value {
        json!({
            "referenceId": "7c1a2b3c-expired",
            "externalId": "ext-expired-1",
            "amount": "100",
            "currency": "UGX",
            "payer": {"partyIdType": "MSISDN", "partyId": "256772000002"},
            "status": "EXPIRED",
            "reason": "EXPIRED"
        })
    }

    /// A remittance that failed inside MTN: a final failure.
    pub fn remittance_failed_internal_error() -> Value {
        json!({
            "referenceId": "remit-failed-1",
            "externalId": "ext_remit_002",
            "amount": "10000.00",
            "currency": "UGX",
            "payee": {"partyIdType": "MSISDN", "partyId": "256774123456"},
            "status": "FAILED",
            "reason": "INTERNAL_PROCESSING_ERROR"
        })
    }

    /// Every scenario, with the key and status it must be stored under.
    pub fn all() -> Vec<Scenario> {
        let scenario = Scenario::of("mtn");
        vec![
            scenario(
                "collection_success",
                CallbackType::Collection,
                Self::collection_success(),
                "d4e90f52-7e4b-4f4a-9c3a-1234567890ab",
                Status::Successful,
            ),
            scenario(
                "collection_pending",
                CallbackType::Collection,
                Self::collection_for("pending-ref-1", "PENDING"),
                "pending-ref-1",
                Status::Pending,
            ),
            scenario(
                "collection_created",
                CallbackType::Collection,
                Self::collection_for("created-ref-1", "CREATED"),
                "created-ref-1",
                Status::Pending,
            ),
            scenario(
                "collection_failed_without_reference_id",
                CallbackType::Collection,
                Self::collection_failed_without_reference_id(),
                "ext-947321",
                Status::Failed,
            ),
            scenario(
                "collection_rejected_by_payer",
                CallbackType::Collection,
                Self::collection_failed("ext-rejected-1", "APPROVAL_REJECTED"),
                "ext-rejected-1",
                Status::Failed,
            ),
            scenario(
                "collection_cancelled",
                CallbackType::Collection,
                Self::collection_failed("ext-cancelled-1", "TRANSACTION_CANCELED"),
                "ext-cancelled-1",
                Status::Cancelled,
            ),
            scenario(
                "collection_payer_not_found",
                CallbackType::Collection,
                Self::collection_failed("ext-nopayer-1", "PAYER_NOT_FOUND"),
                "ext-nopayer-1",
                Status::Failed,
            ),
            scenario(
                "collection_expired",
                CallbackType::Collection,
                Self::collection_expired(),
                "7c1a2b3c-expired",
                Status::Expired,
            ),
            scenario(
                "disbursement_success",
                CallbackType::Disbursement,
                Self::disbursement_success(),
                "transfer-456-xyz",
                Status::Successful,
            ),
            scenario(
                "disbursement_failed_reason_object",
                CallbackType::Disbursement,
                Self::disbursement_failed_reason_object(),
                "ext_disb_002",
                Status::Failed,
            ),
            scenario(
                "remittance_success",
                CallbackType::Remittance,
                Self::remittance_success(),
                "remit-789-abc",
                Status::Successful,
            ),
            scenario(
                "remittance_failed_internal_error",
                CallbackType::Remittance,
                Self::remittance_failed_internal_error(),
                "remit-failed-1",
                Status::Failed,
            ),
        ]
    }
}
