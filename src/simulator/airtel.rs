//! Airtel Money as the simulator serves it: tokens of 180 s (`expires_in` a string), enquiries whose
//! errors come inside HTTP 200, `status.success` describing the call (and, as in Airtel's own example,
//! sometimes `false` next to a success), `TIP` then `TA` while pending, and the callback.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{receipt_of, Script, Simulator, Stage};

const OPERATOR: &str = "airtel";

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/auth/oauth2/token", web::post().to(token))
        .route("/standard/v1/payments/{id}", web::get().to(enquiry))
        .route("/standard/v1/disbursements/{id}", web::get().to(enquiry));
}

async fn token(simulator: web::Data<Simulator>, body: web::Json<Value>) -> HttpResponse {
    let filled = |name| {
        body.get(name)
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
    };
    if !filled("client_id") || !filled("client_secret") {
        return HttpResponse::BadRequest().json(
            json!({"error_description": "Invalid client authentication", "error": "invalid_client"}),
        );
    }
    let token = simulator.mint(OPERATOR, false);
    HttpResponse::Ok()
        .json(json!({"access_token": token, "expires_in": "180", "token_type": "bearer"}))
}

fn code(outcome: &str) -> &'static str {
    match outcome {
        "successful" => "TS",
        "expired" => "TE",
        _ => "TF",
    }
}

async fn enquiry(
    simulator: web::Data<Simulator>,
    request: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    if !simulator.authorized(OPERATOR, &request) {
        return HttpResponse::Forbidden().json(
            json!({"error_description": "The access token is invalid or has expired", "error": "invalid_token"}),
        );
    }
    if request.headers().get("X-Country").is_none() {
        return HttpResponse::BadRequest()
            .json(json!({"status_message": "Partner not found", "status_code": "ROUTER110"}));
    }
    let not_found = || {
        HttpResponse::Ok().json(json!({"status": {"code": "400", "message": "No Transaction Found", "result_code": "ESB000045", "response_code": "DP00800001025", "success": false}}))
    };
    let Some((script, stage)) = simulator.ask(&id).await else {
        return not_found();
    };
    let asked = {
        let state = simulator.state.lock().expect("simulator lock");
        state
            .payments
            .get(id.as_str())
            .map_or(0, |record| record.queries)
    };
    simulator.done(&id);
    let transaction = |status: &str| {
        let mut transaction = json!({"id": script.key, "message": "simulated", "status": status});
        if status == "TS" {
            transaction["airtel_money_id"] = json!(receipt_of(&script.key));
        }
        transaction
    };
    match stage {
        Stage::Throttled => HttpResponse::TooManyRequests().json(
            json!({"status": {"code": "429", "message": "Too Many Requests", "success": false}}),
        ),
        Stage::NotFound => not_found(),
        Stage::Pending => {
            // In progress first, then ambiguous ("enquire again later").
            let status = if asked % 2 == 1 { "TIP" } else { "TA" };
            HttpResponse::Ok().json(json!({"data": {"transaction": transaction(status)}, "status": {"code": "200", "message": "SUCCESS", "result_code": "ESB000010", "response_code": "DP00800001006", "success": true}}))
        }
        Stage::Final => {
            let status = code(&script.outcome);
            // Airtel's own success example says `"success": false`: the transaction status decides.
            HttpResponse::Ok().json(json!({"data": {"transaction": transaction(status)}, "status": {"code": "200", "message": "SUCCESS", "result_code": "ESB000010", "response_code": "DP00800001001", "success": status != "TS"}}))
        }
    }
}

/// The scripted payment's callback.
pub fn callback(script: &Script, outcome: &str) -> (String, Value, bool) {
    let status = code(outcome);
    let mut transaction = json!({"id": script.key, "message": format!("Simulated {outcome} payment"), "status_code": status});
    if status == "TS" {
        transaction["airtel_money_id"] = json!(receipt_of(&script.key));
    }
    (
        format!("airtel/{}", script.flow),
        json!({"transaction": transaction}),
        false,
    )
}
