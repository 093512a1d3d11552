//! MTN MoMo as the simulator serves it: a token per product (`expires_in` a number), status GETs whose
//! values are all strings, `reason` as a string (default) or an object, 404 `RESOURCE_NOT_FOUND`, and the
//! callback — a PUT of the same body, sent once.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{receipt_of, Script, Simulator, Stage};

const OPERATOR: &str = "mtn";

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/{product}/token/", web::post().to(token))
        .route(
            "/collection/v1_0/requesttopay/{reference}",
            web::get().to(status),
        )
        .route(
            "/disbursement/v1_0/transfer/{reference}",
            web::get().to(status),
        )
        .route(
            "/remittance/v1_0/transfer/{reference}",
            web::get().to(status),
        );
}

async fn token(simulator: web::Data<Simulator>, request: HttpRequest) -> HttpResponse {
    let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok());
    if header("Ocp-Apim-Subscription-Key").is_none_or(str::is_empty) {
        return HttpResponse::Unauthorized().json(
            json!({"statusCode": 401, "message": "Access denied due to missing subscription key."}),
        );
    }
    if !header("Authorization").is_some_and(|value| value.starts_with("Basic ")) {
        return HttpResponse::Unauthorized().json(json!({"error": "login_failed"}));
    }
    let token = simulator.mint(OPERATOR, false);
    HttpResponse::Ok()
        .json(json!({"access_token": token, "token_type": "access_token", "expires_in": 3600}))
}

fn reason(script: &Script, outcome: &str) -> Value {
    let code = match outcome {
        "cancelled" => "TRANSACTION_CANCELED",
        "expired" => "EXPIRED",
        _ => "NOT_ENOUGH_FUNDS",
    };
    if script.reason_form.as_deref() == Some("object") {
        json!({"code": code, "message": "Simulated failure"})
    } else {
        json!(code)
    }
}

/// The body MTN returns (and puts as the callback), every value a string.
fn body(script: &Script, status: &str, outcome: &str) -> Value {
    let party = if script.flow == "collection" {
        "payer"
    } else {
        "payee"
    };
    let mut body = json!({
        "externalId": format!("ext-{}", script.key),
        "amount": script.amount,
        "currency": script.currency.clone().unwrap_or_else(|| "EUR".into()),
        party: {"partyIdType": "MSISDN", "partyId": script.msisdn},
        "payerMessage": "Simulated payment",
        "payeeNote": "Simulated payment",
        "status": status,
    });
    match status {
        "SUCCESSFUL" => body["financialTransactionId"] = json!(receipt_of(&script.key)),
        "FAILED" => body["reason"] = reason(script, outcome),
        _ => {}
    }
    body
}

async fn status(
    simulator: web::Data<Simulator>,
    request: HttpRequest,
    reference: web::Path<String>,
) -> HttpResponse {
    if !simulator.authorized(OPERATOR, &request) {
        return HttpResponse::Unauthorized()
            .json(json!({"code": "UNAUTHORIZED", "message": "Invalid access token"}));
    }
    let not_found = || {
        HttpResponse::NotFound().json(
            json!({"code": "RESOURCE_NOT_FOUND", "message": "Requested resource was not found."}),
        )
    };
    let Some((script, stage)) = simulator.ask(&reference).await else {
        return not_found();
    };
    simulator.done(&reference);
    match stage {
        Stage::Throttled => HttpResponse::TooManyRequests()
            .json(json!({"statusCode": 429, "message": "Rate limit is exceeded."})),
        Stage::NotFound => not_found(),
        Stage::Pending => HttpResponse::Ok().json(body(&script, "PENDING", "")),
        Stage::Final => {
            let status = if script.outcome == "successful" {
                "SUCCESSFUL"
            } else {
                "FAILED"
            };
            HttpResponse::Ok().json(body(&script, status, &script.outcome))
        }
    }
}

/// The scripted payment's callback (a PUT, with the reference so the receiver can key it).
pub fn callback(script: &Script, outcome: &str) -> (String, Value, bool) {
    let status = if outcome == "successful" {
        "SUCCESSFUL"
    } else {
        "FAILED"
    };
    let mut body = body(script, status, outcome);
    body["referenceId"] = json!(script.key);
    (format!("mtn/{}", script.flow), body, true)
}
