//! Safaricom M-Pesa (Daraja): STK Push results, B2C results and queue timeouts, C2B confirmations and
//! validations, and the asynchronous results of Transaction Status queries the reconciler sends.
//!
//! Real shapes handled (see PROVIDERS.md): failed STK results without `CallbackMetadata`, items without
//! `Value`, `ResultCode` as number or string, `ResultParameter`/`ReferenceItem` as array or single object,
//! placeholder B2C `TransactionID`s, C2B `MSISDN` as an opaque digest. Daraja times (`yyyyMMddHHmmss`,
//! `dd.MM.yyyy HH:mm:ss`) are Kenyan local time (UTC+3, no daylight saving) and are stored in UTC.
//!
//! Length: a provider is one file by design (a new operator touches one new file): M-Pesa's parsers for its
//! seven endpoints and its code tables.

pub mod fixtures;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

use super::json::{self, first_text, items, named_value, parse_object, required_text};
use super::{
    note_unknown_code, AcceptanceRules, Decision, Endpoint, Method, ParseError, Provider, Reply,
};
use crate::callback::{Callback, CallbackType, Status};

const ACK: &str = r#"{"ResultCode":0,"ResultDesc":"Accepted"}"#;
/// Daraja serves Kenya only: every amount it reports is in Kenyan shillings.
const CURRENCY: &str = "KES";
const NAME: &str = "mpesa";

pub struct Mpesa;

static ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: "stkpush",
        callback_type: CallbackType::StkPush,
        methods: &[Method::Post],
        reply: Reply::AfterStoring(ACK),
    },
    Endpoint {
        path: "b2c/result",
        callback_type: CallbackType::B2cResult,
        methods: &[Method::Post],
        reply: Reply::AfterStoring(ACK),
    },
    Endpoint {
        path: "b2c/timeout",
        callback_type: CallbackType::B2cTimeout,
        methods: &[Method::Post],
        reply: Reply::AfterStoring(ACK),
    },
    Endpoint {
        path: "c2b/confirmation",
        callback_type: CallbackType::C2bConfirmation,
        methods: &[Method::Post],
        reply: Reply::AfterStoring(ACK),
    },
    Endpoint {
        path: "c2b/validation",
        callback_type: CallbackType::C2bValidation,
        methods: &[Method::Post],
        reply: Reply::Decision,
    },
    // The reconciler's Transaction Status queries name these as their ResultURL and QueueTimeOutURL. Both
    // carry the same envelope; a queue timeout's non-zero ResultCode says nothing about the payment.
    Endpoint {
        path: "transaction-status/result",
        callback_type: CallbackType::TransactionStatusResult,
        methods: &[Method::Post],
        reply: Reply::AfterStoring(ACK),
    },
    Endpoint {
        path: "transaction-status/timeout",
        callback_type: CallbackType::TransactionStatusResult,
        methods: &[Method::Post],
        reply: Reply::AfterStoring(ACK),
    },
];

impl Provider for Mpesa {
    fn slug(&self) -> &'static str {
        "mpesa"
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn endpoints(&self) -> &'static [Endpoint] {
        ENDPOINTS
    }

    fn parse(&self, callback_type: CallbackType, body: &[u8]) -> Result<Callback, ParseError> {
        let payload = parse_object(body)?;
        match callback_type {
            CallbackType::StkPush => parse_stk_push(payload),
            CallbackType::B2cResult | CallbackType::B2cTimeout => parse_b2c(callback_type, payload),
            CallbackType::C2bConfirmation | CallbackType::C2bValidation => {
                parse_c2b(callback_type, payload)
            }
            CallbackType::TransactionStatusResult => parse_transaction_status(payload),
            other => Err(ParseError::UnsupportedType(other)),
        }
    }

    /// C2B validation: accept, or refuse with the matching `C2B000xx` code. Checked in the order Safaricom
    /// lists the codes' causes: short code, amount, account reference, customer number.
    fn decide(&self, callback: &Callback, rules: &AcceptanceRules) -> Decision {
        let payload = &callback.payload;
        let shortcode = json::text(payload.get("BusinessShortCode")).unwrap_or_default();
        let reference = json::text(payload.get("BillRefNumber")).unwrap_or_default();
        let refusal = if !rules.accepted_accounts.is_empty()
            && !rules.accepted_accounts.contains(&shortcode)
        {
            Some(("C2B00015", "invalid_account"))
        } else if callback.amount.is_none_or(|amount| {
            amount <= rust_decimal::Decimal::ZERO
                || rules.min_amount.is_some_and(|min| amount < min)
                || rules.max_amount.is_some_and(|max| amount > max)
        }) {
            Some(("C2B00013", "invalid_amount"))
        } else if rules
            .account_reference
            .as_ref()
            .is_some_and(|pattern| !matches_fully(pattern, &reference))
        {
            Some(("C2B00012", "invalid_account"))
        } else if callback.msisdn.is_none() {
            Some(("C2B00011", "invalid_msisdn"))
        } else {
            None
        };
        match refusal {
            None => Decision {
                accepted: true,
                code: "0",
                reason: None,
                body: r#"{"ResultCode":"0","ResultDesc":"Accepted"}"#.to_owned(),
            },
            Some((code, reason)) => Decision {
                accepted: false,
                code,
                reason: Some(reason),
                body: format!(r#"{{"ResultCode":"{code}","ResultDesc":"Rejected"}}"#),
            },
        }
    }
}

fn matches_fully(pattern: &regex_lite::Regex, text: &str) -> bool {
    pattern
        .find(text)
        .is_some_and(|found| found.start() == 0 && found.end() == text.len())
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
    match code {
        None => (Status::Unknown, None),
        Some(code) => {
            let mapped = result_status(code);
            if mapped.0 == Status::Unknown {
                note_unknown_code(NAME, code);
            }
            mapped
        }
    }
}

/// A Daraja timestamp (`20191219102115` or `19.12.2019 11:45:50`, Kenyan time) in UTC.
pub fn daraja_time(raw: &str) -> Option<DateTime<Utc>> {
    let local = NaiveDateTime::parse_from_str(raw, "%Y%m%d%H%M%S")
        .or_else(|_| NaiveDateTime::parse_from_str(raw, "%d.%m.%Y %H:%M:%S"))
        .ok()?;
    let nairobi = FixedOffset::east_opt(3 * 3600)?;
    nairobi
        .from_local_datetime(&local)
        .single()
        .map(|time| time.with_timezone(&Utc))
}

/// A B2C result's `TransactionID` that stands for none: zeros, after at most three letters.
fn is_placeholder(id: &str) -> bool {
    let digits = id.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    id.len() - digits.len() <= 3 && !digits.is_empty() && digits.chars().all(|c| c == '0')
}

fn time_fields(raw: Option<String>) -> (Option<DateTime<Utc>>, Option<String>) {
    (raw.as_deref().and_then(daraja_time), raw)
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
    let (transaction_time, transaction_time_raw) = time_fields(json::text(item("TransactionDate")));
    Ok(Callback {
        provider: NAME,
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
        transaction_time,
        transaction_time_raw,
        payload,
        queried_flow: None,
    })
}

/// B2C results and queue timeouts share one envelope. A queue timeout is not a final failure: the
/// payment may still go through, so its status stays `pending`.
fn parse_b2c(callback_type: CallbackType, payload: Value) -> Result<Callback, ParseError> {
    let result = payload
        .get("Result")
        .filter(|result| result.is_object())
        .ok_or(ParseError::MissingField("Result"))?;
    let key = first_text(result, &["ConversationID", "OriginatorConversationID"])
        .ok_or(ParseError::MissingField("Result.ConversationID"))?;
    let result_code = json::text(result.get("ResultCode"));
    let (status, reason) = if callback_type == CallbackType::B2cTimeout {
        (Status::Pending, Some("queue_timeout"))
    } else {
        status_of(result_code.as_deref())
    };
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
        // Failed results carry placeholders such as "0000000000000000" or "RDK0000000" (a few letters,
        // then zeros): never a receipt.
        json::text(result.get("TransactionID")).filter(|id| !is_placeholder(id))
    });
    let (transaction_time, transaction_time_raw) =
        time_fields(json::text(parameter("TransactionCompletedDateTime")));
    Ok(Callback {
        provider: NAME,
        callback_type,
        provider_transaction_id: key,
        status,
        reason,
        result_code,
        result_description: json::text(result.get("ResultDesc")),
        currency: amount.map(|_| CURRENCY.to_owned()),
        amount,
        msisdn,
        receipt,
        transaction_time,
        transaction_time_raw,
        payload,
        queried_flow: None,
    })
}

/// A C2B confirmation reports a completed payment; a validation asks whether to accept one (its status
/// is `pending` until [`Mpesa::decide`] answers).
fn parse_c2b(callback_type: CallbackType, payload: Value) -> Result<Callback, ParseError> {
    let key = required_text(&payload, "TransID")?;
    let amount = json::amount(payload.get("TransAmount"), "TransAmount")?;
    let (transaction_time, transaction_time_raw) =
        time_fields(json::text(payload.get("TransTime")));
    let confirmed = callback_type == CallbackType::C2bConfirmation;
    Ok(Callback {
        provider: NAME,
        callback_type,
        status: if confirmed {
            Status::Successful
        } else {
            Status::Pending
        },
        reason: None,
        result_code: None,
        result_description: json::text(payload.get("TransactionType")),
        currency: amount.map(|_| CURRENCY.to_owned()),
        amount,
        // Nowadays a SHA-256 digest, earlier a masked number: opaque text either way.
        msisdn: json::text(payload.get("MSISDN")),
        receipt: confirmed.then(|| key.clone()),
        transaction_time,
        transaction_time_raw,
        provider_transaction_id: key,
        payload,
        queried_flow: None,
    })
}

/// Daraja's `TransactionStatus` of a Transaction Status result → normalized status and reason. Only
/// "Completed", "Cancelled", "Declined" and "Expired" are final.
pub fn transaction_status(text: &str) -> (Status, Option<&'static str>) {
    match text.trim().to_ascii_lowercase().as_str() {
        "completed" => (Status::Successful, None),
        "cancelled" => (Status::Cancelled, Some("cancelled")),
        "declined" => (Status::Failed, Some("declined")),
        "expired" => (Status::Expired, Some("expired")),
        "initiated"
        | "authorized"
        | "pending"
        | "pending authorized"
        | "authorized/pending authorized" => (Status::Pending, None),
        _ => (Status::Unknown, None),
    }
}

/// A Transaction Status result (or its queue timeout), keyed by the query's own `ConversationID`: the
/// reconciler that asked correlates it with the transaction it asked about. Keys are matched with and
/// without spaces (`ConversationID` / `Conversation ID`), values as text or numbers. A non-zero
/// `ResultCode` means the query failed (a timeout, a wrong initiator): nothing is said about the payment,
/// so the status is `unknown` with reason `query_failed`.
fn parse_transaction_status(payload: Value) -> Result<Callback, ParseError> {
    let result = payload
        .get("Result")
        .filter(|result| result.is_object())
        .ok_or(ParseError::MissingField("Result"))?;
    let key = first_text(
        result,
        &[
            "ConversationID",
            "Conversation ID",
            "OriginatorConversationID",
            "Originator Conversation ID",
        ],
    )
    .ok_or(ParseError::MissingField("Result.ConversationID"))?;
    let result_code = json::text(result.get("ResultCode"));
    let parameters = items(
        result
            .get("ResultParameters")
            .and_then(|parameters| parameters.get("ResultParameter")),
    );
    let parameter = |name| named_value(&parameters, "Key", "Value", name);
    let reported = json::text(parameter("TransactionStatus"));
    let (status, reason) = match (result_code.as_deref(), reported.as_deref()) {
        (Some("0"), Some(reported)) => {
            let mapped = transaction_status(reported);
            if mapped.0 == Status::Unknown {
                note_unknown_code(NAME, reported);
            }
            mapped
        }
        (Some("0"), None) => (Status::Unknown, None),
        _ => (Status::Unknown, Some("query_failed")),
    };
    let amount = json::amount(parameter("Amount"), "ResultParameters.Amount")?;
    let (transaction_time, transaction_time_raw) =
        time_fields(json::text(parameter("FinalisedTime")));
    Ok(Callback {
        provider: NAME,
        callback_type: CallbackType::TransactionStatusResult,
        provider_transaction_id: key,
        status,
        reason,
        result_code,
        result_description: json::text(result.get("ResultDesc")),
        currency: amount.map(|_| CURRENCY.to_owned()),
        amount,
        msisdn: None,
        receipt: json::text(parameter("ReceiptNo")),
        transaction_time,
        transaction_time_raw,
        payload,
        queried_flow: None,
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
    fn placeholder_transaction_ids_are_never_receipts() {
        for placeholder in ["0000000000000000", "RDK0000000", "0"] {
            assert!(is_placeholder(placeholder), "{placeholder}");
        }
        for receipt in ["NLJ7RT61SV", "RDK0000001", "ABCD000000", "QKA81LK5CY"] {
            assert!(!is_placeholder(receipt), "{receipt}");
        }
        let failed = parse(CallbackType::B2cResult, &F::b2c_result_insufficient_funds()).unwrap();
        assert_eq!(failed.receipt, None);
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
    fn b2c_queue_timeout_stays_open() {
        let callback = parse(CallbackType::B2cTimeout, &F::b2c_queue_timeout()).unwrap();
        assert_eq!(callback.callback_type, CallbackType::B2cTimeout);
        assert_eq!(callback.status, Status::Pending);
        assert_eq!(callback.reason, Some("queue_timeout"));
        assert_eq!(
            callback.provider_transaction_id,
            "AG_20191219_00005797af5d7d75f652"
        );
    }

    #[test]
    fn daraja_times_are_kenyan_local_time_stored_in_utc() {
        let stk = parse(CallbackType::StkPush, &F::stk_push_success()).unwrap();
        assert_eq!(stk.transaction_time_raw.as_deref(), Some("20191219102115"));
        assert_eq!(
            stk.transaction_time.unwrap().to_rfc3339(),
            "2019-12-19T07:21:15+00:00"
        );
        let b2c = parse(CallbackType::B2cResult, &F::b2c_result_success()).unwrap();
        assert_eq!(
            b2c.transaction_time.unwrap().to_rfc3339(),
            "2019-12-19T08:45:50+00:00"
        );
        assert_eq!(daraja_time("not a time"), None);
        assert_eq!(daraja_time("20191332250000"), None);
    }

    fn rules() -> AcceptanceRules {
        AcceptanceRules {
            accepted_accounts: vec!["600000".into()],
            min_amount: Some(Decimal::from(10)),
            max_amount: Some(Decimal::from(70_000)),
            account_reference: Some(regex_lite::Regex::new("account[0-9]+").unwrap()),
        }
    }

    fn decide(payload: &Value) -> Decision {
        let callback = parse(CallbackType::C2bValidation, payload).unwrap();
        Mpesa.decide(&callback, &rules())
    }

    #[test]
    fn c2b_validation_decisions_follow_the_rules() {
        let accepted = decide(&F::c2b_validation());
        assert!(accepted.accepted);
        assert_eq!(
            accepted.body,
            r#"{"ResultCode":"0","ResultDesc":"Accepted"}"#
        );
        let cases = [
            ("BusinessShortCode", serde_json::json!("999999"), "C2B00015"),
            ("TransAmount", serde_json::json!("5.00"), "C2B00013"),
            ("TransAmount", serde_json::json!("70000.01"), "C2B00013"),
            ("BillRefNumber", serde_json::json!("account12x"), "C2B00012"),
            ("MSISDN", serde_json::json!(""), "C2B00011"),
        ];
        for (field, value, code) in cases {
            let mut payload = F::c2b_validation();
            payload[field] = value;
            let decision = decide(&payload);
            assert!(!decision.accepted, "{field}");
            assert_eq!(decision.code, code, "{field}");
            assert_eq!(
                decision.body,
                format!(r#"{{"ResultCode":"{code}","ResultDesc":"Rejected"}}"#)
            );
        }
        let anything = Mpesa.decide(
            &parse(CallbackType::C2bValidation, &F::c2b_validation()).unwrap(),
            &AcceptanceRules::default(),
        );
        assert!(anything.accepted, "no rules accept any well-formed payment");
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
