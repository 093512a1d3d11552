//! MTN Mobile Money: Collection, Disbursement and Remittance callbacks (POST or PUT).
//!
//! Real shapes handled (see PROVIDERS.md): `referenceId` often absent (the key falls back to `externalId`),
//! `financialTransactionId` only on success, `amount` as string or number, `reason` as a string or an
//! object `{code, message}`, statuses beyond the documented three (`EXPIRED`, `CREATED`).

pub mod fixtures;

use serde_json::Value;

use super::json::{self, first_text, parse_object};
use super::{note_unknown_code, Endpoint, Method, ParseError, Provider, Reply};
use crate::callback::{Callback, CallbackType, Status};

const ACK: &str = r#"{"status":"accepted","message":"Callback received"}"#;
const METHODS: &[Method] = &[Method::Post, Method::Put];
const NAME: &str = "mtn_mobile_money";

pub struct MtnMobileMoney;

static ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: "collection",
        callback_type: CallbackType::Collection,
        methods: METHODS,
        reply: Reply::AfterStoring(ACK),
    },
    Endpoint {
        path: "disbursement",
        callback_type: CallbackType::Disbursement,
        methods: METHODS,
        reply: Reply::AfterStoring(ACK),
    },
    Endpoint {
        path: "remittance",
        callback_type: CallbackType::Remittance,
        methods: METHODS,
        reply: Reply::AfterStoring(ACK),
    },
];

impl Provider for MtnMobileMoney {
    fn slug(&self) -> &'static str {
        "mtn"
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn endpoints(&self) -> &'static [Endpoint] {
        ENDPOINTS
    }

    fn parse(&self, callback_type: CallbackType, body: &[u8]) -> Result<Callback, ParseError> {
        match callback_type {
            CallbackType::Collection | CallbackType::Disbursement | CallbackType::Remittance => {
                parse_transfer(callback_type, parse_object(body)?)
            }
            other => Err(ParseError::UnsupportedType(other)),
        }
    }
}

/// MTN `reason` code → normalized reason.
pub fn reason_of(code: &str) -> Option<&'static str> {
    Some(match code {
        "PAYER_NOT_FOUND" | "PAYEE_NOT_FOUND" => "invalid_account",
        "NOT_ENOUGH_FUNDS" => "insufficient_funds",
        "PAYER_LIMIT_REACHED" => "limit_exceeded",
        "APPROVAL_REJECTED" | "PAYMENT_NOT_APPROVED" | "COULD_NOT_PERFORM_TRANSACTION" => {
            "declined"
        }
        "EXPIRED" => "expired",
        "INVALID_CURRENCY" => "invalid_currency",
        "NOT_ALLOWED" | "NOT_ALLOWED_TARGET_ENVIRONMENT" | "PAYEE_NOT_ALLOWED_TO_RECEIVE" => {
            "not_allowed"
        }
        "INVALID_CALLBACK_URL_HOST" => "configuration_error",
        "TRANSACTION_CANCELED" => "cancelled_by_user",
        "SERVICE_UNAVAILABLE" => "service_unavailable",
        "INTERNAL_PROCESSING_ERROR" => "internal_error",
        "RESOURCE_NOT_FOUND" => "not_found",
        "RESOURCE_ALREADY_EXIST" => "duplicate",
        _ => return None,
    })
}

/// MTN `status` (and `reason`) → normalized status. `FAILED` + `INTERNAL_PROCESSING_ERROR` is final.
pub fn status_of(status: &str, reason: Option<&str>) -> Status {
    match status.to_ascii_uppercase().as_str() {
        "SUCCESSFUL" => Status::Successful,
        "PENDING" | "CREATED" => Status::Pending,
        "EXPIRED" => Status::Expired,
        "FAILED" | "REJECTED" => match reason {
            Some("TRANSACTION_CANCELED") => Status::Cancelled,
            Some("EXPIRED") => Status::Expired,
            _ => Status::Failed,
        },
        _ => Status::Unknown,
    }
}

fn parse_transfer(callback_type: CallbackType, payload: Value) -> Result<Callback, ParseError> {
    let key = first_text(&payload, &["referenceId", "externalId"])
        .ok_or(ParseError::MissingField("referenceId"))?;
    let result_code = json::text(payload.get("status"));
    // `reason` is a string, or an object `{code, message}`.
    let (reason_code, reason_message) = match payload.get("reason") {
        Some(object @ Value::Object(_)) => (
            json::text(object.get("code")),
            json::text(object.get("message")),
        ),
        other => (json::text(other), None),
    };
    let status = result_code.as_deref().map_or(Status::Unknown, |status| {
        status_of(status, reason_code.as_deref())
    });
    if let (Status::Unknown, Some(code)) = (status, result_code.as_deref()) {
        note_unknown_code(NAME, code);
    }
    let reason = match (status, reason_code.as_deref()) {
        (Status::Successful | Status::Pending, _) | (_, None) => None,
        (_, Some(code)) => {
            let reason = reason_of(code);
            if reason.is_none() {
                note_unknown_code(NAME, code);
            }
            reason
        }
    };
    let party = payload.get("payer").or_else(|| payload.get("payee"));
    Ok(Callback {
        provider: NAME,
        callback_type,
        provider_transaction_id: key,
        status,
        reason,
        result_code,
        result_description: reason_message.or(reason_code),
        amount: json::amount(payload.get("amount"), "amount")?,
        currency: json::text(payload.get("currency")),
        msisdn: party.and_then(|party| json::text(party.get("partyId"))),
        receipt: json::text(payload.get("financialTransactionId")),
        transaction_time: None,
        transaction_time_raw: None,
        payload,
        queried_flow: None,
    })
}

#[cfg(test)]
mod tests {
    use super::fixtures::MTNMoMoCallbackFixtures as F;
    use super::*;

    fn parse(kind: CallbackType, payload: &Value) -> Callback {
        MtnMobileMoney
            .parse(kind, payload.to_string().as_bytes())
            .unwrap()
    }

    #[test]
    fn collection_success_as_in_the_api_document() {
        let callback = parse(CallbackType::Collection, &F::collection_success());
        assert_eq!(
            callback.provider_transaction_id,
            "d4e90f52-7e4b-4f4a-9c3a-1234567890ab"
        );
        assert_eq!(callback.status, Status::Successful);
        assert_eq!(callback.amount.unwrap().to_string(), "1000.00");
        assert_eq!(callback.currency.as_deref(), Some("UGX"));
        assert_eq!(callback.msisdn.as_deref(), Some("256774123456"));
        assert_eq!(callback.receipt.as_deref(), Some("12345678"));
    }

    #[test]
    fn real_callback_without_reference_id_keys_on_external_id() {
        let callback = parse(
            CallbackType::Collection,
            &F::collection_failed_without_reference_id(),
        );
        assert_eq!(callback.provider_transaction_id, "ext-947321");
        assert_eq!(callback.status, Status::Failed);
        assert_eq!(callback.reason, Some("insufficient_funds"));
        assert_eq!(callback.receipt, None);
    }

    #[test]
    fn reason_as_an_object_is_understood() {
        let callback = parse(
            CallbackType::Disbursement,
            &F::disbursement_failed_reason_object(),
        );
        assert_eq!(callback.status, Status::Failed);
        assert_eq!(callback.reason, Some("invalid_account"));
        assert_eq!(
            callback.result_description.as_deref(),
            Some("Payee does not exist")
        );
    }

    #[test]
    fn missing_both_ids_is_rejected() {
        let payload = serde_json::json!({"status": "SUCCESSFUL"});
        assert_eq!(
            MtnMobileMoney.parse(CallbackType::Collection, payload.to_string().as_bytes()),
            Err(ParseError::MissingField("referenceId"))
        );
    }

    #[test]
    fn statuses_map_to_closed_values() {
        let table = [
            ("SUCCESSFUL", None, Status::Successful),
            ("PENDING", None, Status::Pending),
            ("CREATED", None, Status::Pending),
            ("FAILED", Some("INTERNAL_PROCESSING_ERROR"), Status::Failed),
            ("FAILED", Some("TRANSACTION_CANCELED"), Status::Cancelled),
            ("EXPIRED", None, Status::Expired),
            ("successful", None, Status::Successful),
            ("WHATEVER", None, Status::Unknown),
        ];
        for (status, reason, expected) in table {
            assert_eq!(status_of(status, reason), expected, "{status} {reason:?}");
        }
    }

    #[test]
    fn every_documented_reason_has_a_normalized_reason() {
        for code in [
            "PAYER_NOT_FOUND",
            "PAYEE_NOT_FOUND",
            "NOT_ENOUGH_FUNDS",
            "PAYER_LIMIT_REACHED",
            "APPROVAL_REJECTED",
            "EXPIRED",
            "INVALID_CURRENCY",
            "NOT_ALLOWED",
            "NOT_ALLOWED_TARGET_ENVIRONMENT",
            "INVALID_CALLBACK_URL_HOST",
            "PAYEE_NOT_ALLOWED_TO_RECEIVE",
            "PAYMENT_NOT_APPROVED",
            "TRANSACTION_CANCELED",
            "COULD_NOT_PERFORM_TRANSACTION",
            "SERVICE_UNAVAILABLE",
            "INTERNAL_PROCESSING_ERROR",
            "RESOURCE_NOT_FOUND",
            "RESOURCE_ALREADY_EXIST",
        ] {
            assert!(reason_of(code).is_some(), "{code}");
        }
        assert_eq!(reason_of("SOMETHING_NEW"), None);
    }
}
