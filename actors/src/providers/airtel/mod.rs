//! Airtel Money (Africa Open API): payment, disbursement and notification callbacks.
//!
//! Both shapes are understood: the documented `{transaction: {id, message, status_code, airtel_money_id},
//! hash?}` and the API document's `{transaction: {id, status, message}, data: {transaction: {…}}}`.

pub mod fixtures;

use serde_json::Value;

use super::json::{self, parse_object};
use super::{note_unknown_code, Endpoint, Method, ParseError, Provider, Reply, SignedPart};
use crate::callback::{Callback, CallbackType, Status};

const ACK: &str =
    r#"{"status":{"code":"200","message":"Callback received successfully","success":true}}"#;
const NOTIFICATION_ACK: &str =
    r#"{"status":{"code":"200","message":"Notification received","success":true}}"#;

pub struct AirtelMoney;

static ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: "payment",
        callback_type: CallbackType::Payment,
        methods: &[Method::Post],
        reply: Reply::AfterStoring(ACK),
    },
    Endpoint {
        path: "disbursement",
        callback_type: CallbackType::Disbursement,
        methods: &[Method::Post],
        reply: Reply::AfterStoring(ACK),
    },
    Endpoint {
        path: "notification",
        callback_type: CallbackType::Notification,
        methods: &[Method::Post],
        reply: Reply::AfterStoring(NOTIFICATION_ACK),
    },
];

impl Provider for AirtelMoney {
    fn slug(&self) -> &'static str {
        "airtel"
    }

    fn name(&self) -> &'static str {
        "airtel_money"
    }

    fn endpoints(&self) -> &'static [Endpoint] {
        ENDPOINTS
    }

    fn parse(&self, callback_type: CallbackType, body: &[u8]) -> Result<Callback, ParseError> {
        match callback_type {
            CallbackType::Payment | CallbackType::Disbursement | CallbackType::Notification => {
                parse_transaction(callback_type, parse_object(body)?, Trust::WholeBody)
            }
            other => Err(ParseError::UnsupportedType(other)),
        }
    }

    /// A hash that signs only `transaction` vouches for nothing in `data.transaction` (amount, currency,
    /// MSISDN): those are left out of the normalized callback (the payload keeps them, as received).
    fn parse_signed(
        &self,
        callback_type: CallbackType,
        body: &[u8],
        signed: SignedPart,
    ) -> Result<Callback, ParseError> {
        match (callback_type, signed) {
            (
                CallbackType::Payment | CallbackType::Disbursement | CallbackType::Notification,
                SignedPart::Field("transaction"),
            ) => parse_transaction(callback_type, parse_object(body)?, Trust::TransactionOnly),
            _ => self.parse(callback_type, body),
        }
    }
}

/// Which parts of an Airtel body normalized fields may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    WholeBody,
    /// Only the signed `transaction` object.
    TransactionOnly,
}

/// Airtel transaction status or error code → normalized status and reason.
///
/// Callbacks carry `TS`/`TF`; the enquiry codes (`TIP`, `TA`, `TE`, `TU`) and the `DP…`/`ESB…` error codes
/// are mapped as well so that any of them stored is classified the same way.
pub fn status_of(code: &str) -> (Status, Option<&'static str>) {
    let code = code.to_ascii_uppercase();
    match code.as_str() {
        "TS" => return (Status::Successful, None),
        "TF" => return (Status::Failed, None),
        "TIP" => return (Status::Pending, None),
        "TA" => return (Status::Ambiguous, None),
        "TE" => return (Status::Expired, Some("expired")),
        "ESB000001" => return (Status::Ambiguous, None),
        "ESB000010" => return (Status::Successful, None),
        "ESB000011" => return (Status::Failed, None),
        "ESB000041" => return (Status::Failed, Some("duplicate")),
        _ => {}
    }
    // Collections use DP00800001xxx, disbursements DP00900001xxx, with the same suffixes.
    let suffix = code
        .strip_prefix("DP00800001")
        .or_else(|| code.strip_prefix("DP00900001"));
    match suffix {
        Some("000") => (Status::Ambiguous, None),
        Some("001") => (Status::Successful, None),
        Some("002") => (Status::Failed, Some("wrong_pin")),
        Some("003") => (Status::Failed, Some("limit_exceeded")),
        Some("004") => (Status::Failed, Some("invalid_amount")),
        Some("005") => (Status::Failed, Some("timeout")),
        Some("006") => (Status::Pending, None),
        Some("007") => (Status::Failed, Some("insufficient_funds")),
        Some("008") => (Status::Failed, Some("declined")),
        Some("010") => (Status::Failed, Some("not_allowed")),
        Some("024") => (Status::Failed, Some("timeout")),
        Some("025") => (Status::Failed, Some("not_found")),
        Some("026") => (Status::Failed, Some("signature_mismatch")),
        Some("029") => (Status::Expired, Some("expired")),
        // Codes the API document lists beside PROVIDERS.md's (where both name a suffix, the operator's
        // documentation above wins).
        Some("009") => (Status::Failed, Some("invalid_msisdn")),
        Some("011") => (Status::Failed, Some("limit_exceeded")),
        Some("013") => (Status::Failed, Some("duplicate")),
        Some("014") => (Status::Failed, Some("not_found")),
        Some("015") => (Status::Expired, Some("expired")),
        Some("016") => (Status::Failed, Some("invalid_account")),
        Some("017") => (Status::Failed, Some("invalid_currency")),
        Some("018") => (Status::Failed, Some("declined")),
        Some("019") => (Status::Failed, Some("service_unavailable")),
        Some("020") => (Status::Failed, Some("internal_error")),
        _ => (Status::Unknown, None),
    }
}

fn parse_transaction(
    callback_type: CallbackType,
    payload: Value,
    trust: Trust,
) -> Result<Callback, ParseError> {
    let transaction = payload.get("transaction").filter(|t| t.is_object());
    let merchant = payload
        .get("data")
        .and_then(|data| data.get("transaction"))
        .filter(|t| t.is_object() && trust == Trust::WholeBody);
    // A field from the top-level transaction, else from the API document's `data.transaction`.
    let field = |names: &[&str]| {
        [transaction, merchant]
            .into_iter()
            .flatten()
            .find_map(|object| json::first_text(object, names))
    };
    let key = field(&["id"]).ok_or(ParseError::MissingField("transaction.id"))?;
    let result_code = field(&["status_code", "status"]);
    let (status, reason) = result_code
        .as_deref()
        .map_or((Status::Unknown, None), status_of);
    if let (Status::Unknown, Some(code)) = (status, result_code.as_deref()) {
        note_unknown_code("airtel_money", code);
    }
    let amount_field = [transaction, merchant]
        .into_iter()
        .flatten()
        .find_map(|object| object.get("amount").filter(|amount| !amount.is_null()));
    let amount = json::amount(amount_field, "transaction.amount")?;
    Ok(Callback {
        provider: "airtel_money",
        callback_type,
        provider_transaction_id: key,
        status,
        reason,
        result_code,
        result_description: field(&["message"]),
        amount,
        currency: field(&["currency"]),
        msisdn: field(&["msisdn"]),
        receipt: field(&["airtel_money_id"]),
        transaction_time: None,
        transaction_time_raw: None,
        payload,
        queried_flow: None,
    })
}

#[cfg(test)]
mod tests {
    use super::fixtures::AirtelMoneyCallbackFixtures as F;
    use super::*;

    fn parse(kind: CallbackType, payload: &Value) -> Callback {
        AirtelMoney
            .parse(kind, payload.to_string().as_bytes())
            .unwrap()
    }

    #[test]
    fn api_document_payment_shape() {
        let callback = parse(CallbackType::Payment, &F::payment_success());
        assert_eq!(callback.provider_transaction_id, "airtel_txn_123456789");
        assert_eq!(callback.status, Status::Successful);
        assert_eq!(callback.amount.unwrap().to_string(), "1000.00");
        assert_eq!(callback.currency.as_deref(), Some("KES"));
    }

    #[test]
    fn documented_shape_with_status_code_and_hash() {
        let callback = parse(
            CallbackType::Payment,
            &F::payment_documented_shape("A1", "TF"),
        );
        assert_eq!(callback.provider_transaction_id, "A1");
        assert_eq!(callback.status, Status::Failed);
        assert_eq!(callback.result_code.as_deref(), Some("TF"));
        assert_eq!(callback.receipt.as_deref(), Some("MP210603.1234.L06941"));
    }

    #[test]
    fn a_hash_over_the_transaction_alone_vouches_for_nothing_in_data() {
        let body = serde_json::json!({
            "transaction": {"id": "A9", "status_code": "TS", "airtel_money_id": "MP9"},
            "data": {"transaction": {"id": "A9", "amount": "999999", "currency": "KES", "msisdn": "254700000000"}},
        });
        let bytes = body.to_string();
        let trusting = AirtelMoney
            .parse(CallbackType::Payment, bytes.as_bytes())
            .unwrap();
        assert_eq!(trusting.amount.unwrap().to_string(), "999999");
        let signed = AirtelMoney
            .parse_signed(
                CallbackType::Payment,
                bytes.as_bytes(),
                SignedPart::Field("transaction"),
            )
            .unwrap();
        assert_eq!(signed.provider_transaction_id, "A9");
        assert_eq!(signed.status, Status::Successful);
        assert_eq!(
            (signed.amount, signed.currency, signed.msisdn),
            (None, None, None)
        );
        assert_eq!(signed.payload, body, "the payload is kept as received");
    }

    #[test]
    fn notification_without_data_block() {
        let callback = parse(CallbackType::Notification, &F::notification());
        assert_eq!(callback.provider_transaction_id, "notification_123");
        assert_eq!(callback.amount, None);
    }

    #[test]
    fn codes_map_to_closed_statuses() {
        let table = [
            ("TS", Status::Successful),
            ("TF", Status::Failed),
            ("TIP", Status::Pending),
            ("TA", Status::Ambiguous),
            ("TE", Status::Expired),
            ("TU", Status::Unknown),
            ("DP00800001000", Status::Ambiguous),
            ("DP00800001001", Status::Successful),
            ("DP00800001006", Status::Pending),
            ("DP00800001007", Status::Failed),
            ("DP00900001029", Status::Expired),
            ("DP00800001015", Status::Expired),
            ("DP00800001019", Status::Failed),
            ("ESB000010", Status::Successful),
            ("ESB000041", Status::Failed),
            ("DP00800001999", Status::Unknown),
            ("DP00800001012", Status::Unknown),
            ("XYZ", Status::Unknown),
        ];
        for (code, status) in table {
            assert_eq!(status_of(code).0, status, "{code}");
        }
    }
}
