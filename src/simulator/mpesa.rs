//! Daraja as the simulator serves it: OAuth (`expires_in` as a string, each mint invalidating the last
//! token), STK Push Query (codes as strings; "still processing" as HTTP 500 `500.001.1001` or HTTP 200
//! `ResultCode` 4999; spike arrest as `500.003.02`), Transaction Status (accepted at once, answered later
//! at its `ResultURL`), and the STK, B2C and C2B callbacks.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{receipt_of, Script, Simulator, Stage};

const OPERATOR: &str = "mpesa";

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/oauth/v1/generate", web::get().to(token))
        .route("/mpesa/stkpushquery/v1/query", web::post().to(stk_query))
        .route(
            "/mpesa/transactionstatus/v1/query",
            web::post().to(transaction_status),
        );
}

fn error(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("valid status")).json(
        json!({"requestId": format!("sim-{}", uuid::Uuid::new_v4().simple()), "errorCode": code, "errorMessage": message}),
    )
}

async fn token(simulator: web::Data<Simulator>, request: HttpRequest) -> HttpResponse {
    let basic = request
        .headers()
        .get("Authorization")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("Basic ") && value.len() > 6);
    if !basic {
        return error(400, "400.008.01", "Invalid authentication type passed");
    }
    let token = simulator.mint(OPERATOR, true);
    // A string, as Daraja really sends it.
    HttpResponse::Ok().json(json!({"access_token": token, "expires_in": "3599"}))
}

/// `ResultCode` and description for an outcome.
fn result_of(outcome: &str) -> (&'static str, &'static str) {
    match outcome {
        "successful" => ("0", "The service request is processed successfully."),
        "cancelled" => ("1032", "Request cancelled by user"),
        "expired" => ("1019", "Transaction has expired"),
        _ => ("1", "The balance is insufficient for the transaction."),
    }
}

async fn stk_query(
    simulator: web::Data<Simulator>,
    request: HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    if !simulator.authorized(OPERATOR, &request) {
        return error(404, "404.001.03", "Invalid Access Token");
    }
    let Some(key) = body.get("CheckoutRequestID").and_then(Value::as_str) else {
        return error(400, "400.002.02", "Bad Request - Invalid CheckoutRequestID");
    };
    if body
        .get("Password")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return error(500, "500.001.1001", "Wrong credentials");
    }
    let key = key.to_owned();
    let Some((script, stage)) = simulator.ask(&key).await else {
        return error(400, "400.002.02", "Bad Request - Invalid CheckoutRequestID");
    };
    simulator.done(&key);
    match stage {
        Stage::Throttled => error(500, "500.003.02", "Error Occurred: Spike Arrest Violation"),
        // STK Query has no "not found" of its own: an unknown push is still being processed.
        Stage::NotFound | Stage::Pending => {
            if script.pending_form.as_deref() == Some("result_4999") {
                stk_query_result(&key, "4999", "The transaction is still under processing")
            } else {
                error(500, "500.001.1001", "The transaction is being processed")
            }
        }
        Stage::Final => {
            let (code, description) = result_of(&script.outcome);
            stk_query_result(&key, code, description)
        }
    }
}

/// An STK Query answer carrying a result (Daraja's "successsfully" typo included).
fn stk_query_result(key: &str, code: &str, description: &str) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successsfully",
        "MerchantRequestID": "29115-34620561-1",
        "CheckoutRequestID": key,
        "ResultCode": code,
        "ResultDesc": description,
    }))
}

async fn transaction_status(
    simulator: web::Data<Simulator>,
    request: HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    if !simulator.authorized(OPERATOR, &request) {
        return error(404, "404.001.03", "Invalid Access Token");
    }
    let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
    let (Some(result_url), Some(timeout_url)) = (text("ResultURL"), text("QueueTimeOutURL")) else {
        return error(400, "400.002.05", "Invalid Request Payload");
    };
    // Known by its ConversationID (B2C) or its receipt (C2B: the receipt is the key).
    let key = text("OriginalConversationID").or_else(|| text("TransactionID"));
    let Some(key) = key else {
        return error(400, "400.002.05", "Invalid Request Payload");
    };
    let Some((script, stage)) = simulator.ask(&key).await else {
        return error(400, "400.002.02", "Bad Request - Invalid TransactionID");
    };
    simulator.done(&key);
    if matches!(stage, Stage::Throttled) {
        return error(500, "500.003.02", "Error Occurred: Spike Arrest Violation");
    }
    let number = simulator.next_conversation();
    let conversation = format!("AG_20261128_sim{number:012}");
    let originator = format!("{number}-7134259-1");
    let answer = json!({
        "OriginatorConversationID": originator,
        "ConversationID": conversation,
        "ResponseCode": "0",
        "ResponseDescription": "Accept the service request successfully.",
    });
    // The real answer comes later, to ResultURL (or, when "not found", a queue timeout).
    let simulator = simulator.clone();
    actix_web::rt::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (url, result) = match stage {
            Stage::NotFound => (timeout_url, queue_timeout(&conversation, &originator)),
            Stage::Pending => (
                result_url,
                result(&script, &conversation, &originator, "Pending"),
            ),
            _ => {
                let status = match script.outcome.as_str() {
                    "successful" => "Completed",
                    "cancelled" => "Cancelled",
                    "expired" => "Expired",
                    _ => "Declined",
                };
                (
                    result_url,
                    result(&script, &conversation, &originator, status),
                )
            }
        };
        if simulator.post(&url, &result, false).await {
            let mut state = simulator.state.lock().expect("simulator lock");
            if let Some(record) = state.payments.get_mut(&script.key) {
                record.results_sent += 1;
            }
        }
    });
    HttpResponse::Ok().json(answer)
}

/// A Transaction Status result, in the current form or (with `legacy_keys`) the older one.
fn result(script: &Script, conversation: &str, originator: &str, status: &str) -> Value {
    let receipt = if script.flow == "c2b" {
        script.key.clone()
    } else {
        receipt_of(&script.key)
    };
    let parameters = if script.legacy_keys {
        json!([
            {"Key": "ReceiptNo", "Value": receipt},
            {"Key": "Conversation ID", "Value": script.key},
            {"Key": "FinalisedTime", "Value": 20261128101415_u64},
            {"Key": "Amount", "Value": serde_json::from_str::<Value>(&script.amount).unwrap_or(Value::Null)},
            {"Key": "TransactionStatus", "Value": status},
            {"Key": "TransactionReason"},
            {"Key": "Originator Conversation ID", "Value": "19455-773836-1"},
        ])
    } else {
        json!([
            {"Key": "DebitPartyName", "Value": "600310 - Safaricom333"},
            {"Key": "OriginatorConversationID", "Value": "3211-416020-3"},
            {"Key": "TransactionReason"},
            {"Key": "TransactionStatus", "Value": status},
            {"Key": "FinalisedTime", "Value": "20261128101415"},
            {"Key": "Amount", "Value": script.amount},
            {"Key": "ConversationID", "Value": script.key},
            {"Key": "ReceiptNo", "Value": receipt},
        ])
    };
    json!({"Result": {
        "ConversationID": conversation,
        "OriginatorConversationID": originator,
        "ReferenceData": {"ReferenceItem": {"Key": "Occasion"}},
        "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "ResultParameters": {"ResultParameter": parameters},
        "ResultType": 0,
        "TransactionID": "MBN0000000",
    }})
}

fn queue_timeout(conversation: &str, originator: &str) -> Value {
    json!({"Result": {
        "ResultType": 1,
        "ResultCode": 1,
        "ResultDesc": "The service request timed out.",
        "OriginatorConversationID": originator,
        "ConversationID": conversation,
        "TransactionID": "MBN0000000",
    }})
}

/// The scripted payment's callback: endpoint path, body, and whether it is a PUT.
pub fn callback(script: &Script, outcome: &str) -> (String, Value, bool) {
    let receipt = receipt_of(&script.key);
    let (code, description) = result_of(outcome);
    let code_number: u32 = code.parse().unwrap_or(1);
    let amount: Value = serde_json::from_str(&script.amount).unwrap_or(Value::Null);
    match script.flow.as_str() {
        "b2c" => {
            let parameters = if outcome == "successful" {
                json!({"ResultParameter": [
                    {"Key": "TransactionAmount", "Value": amount},
                    {"Key": "TransactionReceipt", "Value": receipt},
                    {"Key": "ReceiverPartyPublicName", "Value": format!("{} - Simulated Customer", script.msisdn)},
                    {"Key": "TransactionCompletedDateTime", "Value": "28.11.2026 10:14:15"},
                ]})
            } else {
                Value::Null
            };
            let mut result = json!({
                "ResultType": 0,
                "ResultCode": code_number,
                "ResultDesc": description,
                "OriginatorConversationID": "10571-7910404-1",
                "ConversationID": script.key,
                "TransactionID": if outcome == "successful" { receipt.clone() } else { "0000000000000000".to_owned() },
            });
            if !parameters.is_null() {
                result["ResultParameters"] = parameters;
            }
            ("mpesa/b2c/result".into(), json!({"Result": result}), false)
        }
        "c2b" => (
            "mpesa/c2b/confirmation".into(),
            json!({
                "TransactionType": "Pay Bill",
                "TransID": script.key,
                "TransTime": "20261128101415",
                "TransAmount": script.amount,
                "BusinessShortCode": "600638",
                "BillRefNumber": "invoice-1",
                "MSISDN": script.msisdn,
                "FirstName": "Simulated",
            }),
            false,
        ),
        _ => {
            let mut stk = json!({
                "MerchantRequestID": "29115-34620561-1",
                "CheckoutRequestID": script.key,
                "ResultCode": code_number,
                "ResultDesc": description,
            });
            if outcome == "successful" {
                stk["CallbackMetadata"] = json!({"Item": [
                    {"Name": "Amount", "Value": amount},
                    {"Name": "MpesaReceiptNumber", "Value": receipt},
                    {"Name": "TransactionDate", "Value": 20261128101415_u64},
                    {"Name": "PhoneNumber", "Value": script.msisdn.parse::<u64>().map(Value::from).unwrap_or(Value::Null)},
                ]});
            }
            (
                "mpesa/stkpush".into(),
                json!({"Body": {"stkCallback": stk}}),
                false,
            )
        }
    }
}
