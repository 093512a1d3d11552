//! Safaricom M-Pesa (Daraja): STK Push results, B2C results and C2B confirmations.
//!
//! Real shapes handled (see PROVIDERS.md): failed STK results without `CallbackMetadata`, items without
//! `Value`, `ResultCode` as number or string, `ResultParameter`/`ReferenceItem` as array or single object,
//! placeholder B2C `TransactionID`s, C2B `MSISDN` as an opaque digest.

pub mod fixtures;

use serde_json::Value;

use super::json::{self, first_text, items, named_value, parse_object, required_text};
use super::{Endpoint, Method, ParseError, Provider};
use crate::callback::{Callback, CallbackType, Status};

const ACK: &str = r#"{"ResultCode":0,"ResultDesc":"Accepted"}"#;
/// Daraja serves Kenya only: every amount it reports is in Kenyan shillings.
const CURRENCY: &str = "KES";

pub struct Mpesa;

static ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: "stkpush",
        callback_type: CallbackType::StkPush,
        methods: &[Method::Post],
        acknowledgement: ACK,
    },
    Endpoint {
        path: "b2c/result",
        callback_type: CallbackType::B2cResult,
        methods: &[Method::Post],
        acknowledgement: ACK,
    },
    Endpoint {
        path: "c2b/confirmation",
        callback_type: CallbackType::C2bConfirmation,
        methods: &[Method::Post],
        acknowledgement: ACK,
    },
];

impl Provider for Mpesa {
    fn slug(&self) -> &'static str {
        "mpesa"
    }

    fn name(&self) -> &'static str {
        "mpesa"
    }

    fn endpoints(&self) -> &'static [Endpoint] {
        ENDPOINTS
    }

    fn parse(&self, callback_type: CallbackType, body: &[u8]) -> Result<Callback, ParseError> {
        let payload = parse_object(body)?;
        match callback_type {
            CallbackType::StkPush => parse_stk_push(payload),
            CallbackType::B2cResult => parse_b2c_result(payload),
            CallbackType::C2bConfirmation => parse_c2b_confirmation(payload),
            other => Err(ParseError::UnsupportedType(other)),
        }
    }
}

/// Daraja `ResultCode` → normalized status and reason. Codes 17, 26, 1025 and 9999 say nothing certain
/// about money movement; they are failures with their reason, not "safe to retry".
pub fn result_status(code: &str) -> (Status, Option<&'static str>) {
    match code {
        "0" => (Status::Successful, None),
        "1" => (Status::Failed, Some("insufficient_funds")),
        "17" => (Status::Failed, Some("internal_error")),
        "26" => (Status::Failed, Some("service_unavailable")),
        "1001" => (Status::Failed, Some("subscriber_busy")),
        "1019" => (Status::Expired, Some("expired")),
        "1025" | "9999" => (Status::Failed, Some("push_not_delivered")),
        "1032" => (Status::Cancelled, Some("cancelled_by_user")),
        "1037" => (Status::Failed, Some("timeout")),
        "2001" => (Status::Failed, Some("wrong_pin")),
        "8006" => (Status::Failed, Some("credential_locked")),
        _ => (Status::Unknown, None),
    }
}

fn status_of(code: Option<&str>) -> (Status, Option<&'static str>) {
    code.map_or((Status::Unknown, None), result_status)
}

fn parse_stk_push(payload: Value) -> Result<Callback, ParseError> {
    let stk = payload
        .get("Body")
        .and_then(|body| body.get("stkCallback"))
        .filter(|stk| stk.is_object())
        .ok_or(ParseError::MissingField("Body.stkCallback"))?;
    let key = text_field(
        stk,
        "CheckoutRequestID",
        "Body.stkCallback.CheckoutRequestID",
    )?;
    let result_code = json::text(stk.get("ResultCode"));
    let (status, reason) = status_of(result_code.as_deref());
    // A failed STK result has no CallbackMetadata at all; a successful one may hold items without `Value`.
    let metadata = items(
        stk.get("CallbackMetadata")
            .and_then(|meta| meta.get("Item")),
    );
    let item = |name| named_value(&metadata, "Name", "Value", name);
    let amount = json::amount(item("Amount"), "CallbackMetadata.Item.Amount")?;
    Ok(Callback {
        provider: "mpesa",
        callback_type: CallbackType::StkPush,
        provider_transaction_id: key,
        status,
        reason,
        result_code,
        result_description: json::text(stk.get("ResultDesc")),
        currency: amount.map(|_| CURRENCY.to_owned()),
        amount,
        msisdn: json::text(item("PhoneNumber")),
        receipt: json::text(item("MpesaReceiptNumber")),
        payload,
    })
}

fn parse_b2c_result(payload: Value) -> Result<Callback, ParseError> {
    let result = payload
        .get("Result")
        .filter(|result| result.is_object())
        .ok_or(ParseError::MissingField("Result"))?;
    let key = first_text(result, &["ConversationID", "OriginatorConversationID"])
        .ok_or(ParseError::MissingField("Result.ConversationID"))?;
    let result_code = json::text(result.get("ResultCode"));
    let (status, reason) = status_of(result_code.as_deref());
    let parameters = items(
        result
            .get("ResultParameters")
            .and_then(|parameters| parameters.get("ResultParameter")),
    );
    let parameter = |name| named_value(&parameters, "Key", "Value", name);
    let amount = json::amount(
        parameter("TransactionAmount"),
        "ResultParameters.TransactionAmount",
    )?;
    // "254708374149 - John Doe": the number is what precedes the separator.
    let msisdn = json::text(parameter("ReceiverPartyPublicName"))
        .and_then(|name| {
            name.split(" - ")
                .next()
                .map(|number| number.trim().to_owned())
        })
        .filter(|number| !number.is_empty());
    let receipt = json::text(parameter("TransactionReceipt")).or_else(|| {
        // Failed results carry placeholders such as "0000000000000000": never a receipt.
        json::text(result.get("TransactionID")).filter(|id| id.chars().any(|c| c != '0'))
    });
    Ok(Callback {
        provider: "mpesa",
        callback_type: CallbackType::B2cResult,
        provider_transaction_id: key,
        status,
        reason,
        result_code,
        result_description: json::text(result.get("ResultDesc")),
        currency: amount.map(|_| CURRENCY.to_owned()),
        amount,
        msisdn,
        receipt,
        payload,
    })
}

fn parse_c2b_confirmation(payload: Value) -> Result<Callback, ParseError> {
    let key = required_text(&payload, "TransID")?;
    let amount = json::amount(payload.get("TransAmount"), "TransAmount")?;
    Ok(Callback {
        provider: "mpesa",
        callback_type: CallbackType::C2bConfirmation,
        // Safaricom confirms only completed payments.
        status: Status::Successful,
        reason: None,
        result_code: None,
        result_description: json::text(payload.get("TransactionType")),
        currency: amount.map(|_| CURRENCY.to_owned()),
        amount,
        // Nowadays a SHA-256 digest, earlier a masked number: opaque text either way.
        msisdn: json::text(payload.get("MSISDN")),
        receipt: Some(key.clone()),
        provider_transaction_id: key,
        payload,
    })
}

fn text_field(object: &Value, name: &str, path: &'static str) -> Result<String, ParseError> {
    json::text(object.get(name)).ok_or(ParseError::MissingField(path))
}

#[cfg(test)]
mod tests {
    use super::fixtures::MpesaCallbackFixtures as F;
    use super::*;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn parse(kind: CallbackType, payload: &Value) -> Result<Callback, ParseError> {
        Mpesa.parse(kind, payload.to_string().as_bytes())
    }

    fn dec(text: &str) -> Option<Decimal> {
        Some(Decimal::from_str(text).unwrap())
    }

    #[test]
    fn stk_success_reads_metadata() {
        let callback = parse(CallbackType::StkPush, &F::stk_push_success()).unwrap();
        assert_eq!(callback.provider_transaction_id, "ws_CO_191220191020363925");
        assert_eq!(callback.status, Status::Successful);
        assert_eq!(callback.result_code.as_deref(), Some("0"));
        assert_eq!(callback.amount, dec("1000.00"));
        assert_eq!(callback.currency.as_deref(), Some("KES"));
        assert_eq!(callback.receipt.as_deref(), Some("NLJ7RT61SV"));
        assert_eq!(callback.msisdn.as_deref(), Some("254708374149"));
    }

    #[test]
    fn stk_failure_without_metadata_is_understood() {
        let callback = parse(CallbackType::StkPush, &F::stk_push_cancelled()).unwrap();
        assert_eq!(callback.status, Status::Cancelled);
        assert_eq!(callback.reason, Some("cancelled_by_user"));
        assert_eq!(callback.amount, None);
        assert_eq!(callback.receipt, None);
    }

    #[test]
    fn stk_variant_with_strings_single_item_and_valueless_balance() {
        let callback = parse(CallbackType::StkPush, &F::stk_push_success_string_values()).unwrap();
        assert_eq!(callback.status, Status::Successful);
        assert_eq!(callback.amount, dec("1.00"));
        assert_eq!(callback.msisdn.as_deref(), Some("254708374149"));
        let single = parse(CallbackType::StkPush, &F::stk_push_single_item()).unwrap();
        assert_eq!(single.amount, dec("50"));
    }

    #[test]
    fn stk_without_checkout_request_id_is_rejected() {
        let payload = serde_json::json!({"Body": {"stkCallback": {"ResultCode": 0}}});
        assert_eq!(
            parse(CallbackType::StkPush, &payload),
            Err(ParseError::MissingField(
                "Body.stkCallback.CheckoutRequestID"
            ))
        );
    }

    #[test]
    fn b2c_success_reads_parameters() {
        let callback = parse(CallbackType::B2cResult, &F::b2c_result_success()).unwrap();
        assert_eq!(
            callback.provider_transaction_id,
            "AG_20191219_00004e48cf7e3533f581"
        );
        assert_eq!(callback.status, Status::Successful);
        assert_eq!(callback.amount, dec("5000.00"));
        assert_eq!(callback.receipt.as_deref(), Some("NLJ41HAY6Q"));
        assert_eq!(callback.msisdn.as_deref(), Some("254708374149"));
    }

    #[test]
    fn b2c_failure_with_single_parameter_and_placeholder_id() {
        let callback = parse(
            CallbackType::B2cResult,
            &F::b2c_result_failed_single_parameter(),
        )
        .unwrap();
        assert_eq!(callback.status, Status::Failed);
        assert_eq!(callback.reason, Some("wrong_pin"));
        assert_eq!(
            callback.receipt, None,
            "a placeholder TransactionID is not a receipt"
        );
        assert_eq!(callback.amount, None);
    }

    #[test]
    fn b2c_falls_back_to_the_originator_conversation_id() {
        let payload = serde_json::json!({"Result": {"ResultCode": "0", "OriginatorConversationID": "orig-1"}});
        let callback = parse(CallbackType::B2cResult, &payload).unwrap();
        assert_eq!(callback.provider_transaction_id, "orig-1");
        assert_eq!(callback.status, Status::Successful);
    }

    #[test]
    fn c2b_confirmation_is_a_successful_payment() {
        let callback = parse(CallbackType::C2bConfirmation, &F::c2b_confirmation()).unwrap();
        assert_eq!(callback.provider_transaction_id, "NLJ41HAY6Q");
        assert_eq!(callback.status, Status::Successful);
        assert_eq!(callback.amount, dec("1500.00"));
        assert_eq!(callback.receipt.as_deref(), Some("NLJ41HAY6Q"));
        let hashed = parse(
            CallbackType::C2bConfirmation,
            &F::c2b_confirmation_hashed_msisdn(),
        )
        .unwrap();
        assert_eq!(hashed.msisdn.as_deref().map(str::len), Some(64));
    }

    #[test]
    fn result_codes_map_to_closed_statuses() {
        let table = [
            ("0", Status::Successful),
            ("1", Status::Failed),
            ("17", Status::Failed),
            ("26", Status::Failed),
            ("1001", Status::Failed),
            ("1019", Status::Expired),
            ("1025", Status::Failed),
            ("9999", Status::Failed),
            ("1032", Status::Cancelled),
            ("1037", Status::Failed),
            ("2001", Status::Failed),
            ("8006", Status::Failed),
            ("4242", Status::Unknown),
        ];
        for (code, status) in table {
            assert_eq!(result_status(code).0, status, "code {code}");
        }
    }
}
