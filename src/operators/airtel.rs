//! Airtel Money Open API: `POST /auth/oauth2/token` (client credentials in a JSON body; tokens live
//! 180 s), and `GET /standard/v1/payments/{id}` or `/standard/v1/disbursements/{id}` with `X-Country` and
//! `X-Currency`.
//!
//! Quirks handled: `expires_in` as a string or a number; errors inside HTTP 200 (`status.code` "400");
//! `status.success` describes the API call, not the payment — only `data.transaction.status` (`TS`, `TF`,
//! `TA`, `TIP`, `TE`) is read; `TA` and `TIP` are pending (asked again); "No Transaction Found"
//! (`ESB000045`, `DP…025`) and HTTP 404 are not found; 429 throttles.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;
use mmo_actors::providers::AirtelMoney;
use mmo_actors::reconciler::{Answer, Inquiry, QueryError};
use mmo_actors::{CallbackType, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::http::{self, error_summary, Reply, TokenCache};
use super::OperatorApi;
use crate::configuration::StatusApiSettings;

const NAME: &str = "airtel_money";

pub struct AirtelApi {
    base_url: String,
    client_id: String,
    client_secret: SecretString,
    country: String,
    currency: String,
    timeout: Duration,
    token: TokenCache,
}

impl AirtelApi {
    pub fn new(settings: &StatusApiSettings) -> Self {
        Self {
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            country: settings.country.clone(),
            currency: settings.currency.clone(),
            timeout: Duration::from_secs(settings.request_timeout_secs),
            token: TokenCache::default(),
        }
    }

    async fn token(&self) -> Result<String, QueryError> {
        self.token
            .get(|| async {
                let request = http::client()
                    .post(format!("{}/auth/oauth2/token", self.base_url))
                    .insert_header(("Accept", "*/*"));
                let body = json!({
                    "client_id": self.client_id,
                    "client_secret": self.client_secret.expose_secret(),
                    "grant_type": "client_credentials",
                });
                let reply = http::send(request, Some(&body), self.timeout).await?;
                http::token_of(&reply, "Airtel")
            })
            .await
    }

    async fn enquire(&self, inquiry: &Inquiry) -> Result<Answer, QueryError> {
        let (path, callback_type) = match inquiry.flow {
            "payment" => ("payments", CallbackType::Payment),
            _ => ("disbursements", CallbackType::Disbursement),
        };
        let token = self.token().await?;
        let request = http::client()
            .get(format!(
                "{}/standard/v1/{path}/{}",
                self.base_url, inquiry.key
            ))
            .insert_header(("Accept", "*/*"))
            .insert_header(("X-Country", self.country.as_str()))
            .insert_header(("X-Currency", self.currency.as_str()))
            .insert_header(("Authorization", format!("Bearer {token}")));
        let reply = http::send(request, None, self.timeout).await?;
        if matches!(reply.status, 401 | 403) {
            self.token.reject(&token).await;
        }
        interpret(&reply, callback_type)
    }
}

impl OperatorApi for AirtelApi {
    fn provider(&self) -> &'static str {
        NAME
    }

    fn asks(&self, flow: &str) -> bool {
        matches!(flow, "payment" | "disbursement")
    }

    fn query(
        self: Arc<Self>,
        inquiry: Inquiry,
    ) -> LocalBoxFuture<'static, Result<Answer, QueryError>> {
        async move { self.enquire(&inquiry).await }.boxed_local()
    }
}

fn is_not_found(reply: &Reply) -> bool {
    let result_code = reply.text_of("/status/result_code").unwrap_or_default();
    let response_code = reply.text_of("/status/response_code").unwrap_or_default();
    let message = reply
        .text_of("/status/message")
        .unwrap_or_default()
        .to_ascii_lowercase();
    result_code == "ESB000045" || response_code.ends_with("001025") || message.contains("not found")
}

pub(super) fn interpret(reply: &Reply, callback_type: CallbackType) -> Result<Answer, QueryError> {
    match reply.status {
        200 => {}
        404 => return Ok(Answer::NotFound(error_summary(reply))),
        429 => return Err(QueryError::Throttled(error_summary(reply))),
        status => {
            return Err(QueryError::Failed(format!(
                "HTTP {status} {}",
                error_summary(reply)
            )))
        }
    }
    // Errors come inside HTTP 200: `status.code` is the real answer code.
    let code = reply.text_of("/status/code").unwrap_or_default();
    let transaction_status = reply.text_of("/data/transaction/status");
    if code != "200" || transaction_status.is_none() {
        if is_not_found(reply) {
            return Ok(Answer::NotFound(error_summary(reply)));
        }
        return Err(QueryError::Failed(format!(
            "enquiry refused: {}",
            error_summary(reply)
        )));
    }
    // The enquiry's `data.transaction` is what the callback parser reads for the API document's shape.
    let body = reply
        .json
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let mut callback = AirtelMoney
        .parse(callback_type, body.as_bytes())
        .map_err(|error| QueryError::Failed(format!("unreadable enquiry answer: {error}")))?;
    callback.payload = reply.payload();
    Ok(Answer::Status(Box::new(callback)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::status_of;
    use mmo_actors::Status;

    fn answer(status: u16, body: &str) -> Result<Answer, QueryError> {
        interpret(&Reply::from_text(status, body), CallbackType::Payment)
    }

    #[test]
    fn the_transaction_status_decides_not_status_success() {
        // The doc's TS example carries `"success": false`: still a success.
        let paid = r#"{"data": {"transaction": {"airtel_money_id": "C36*****67", "id": "83****88", "message": "success", "status": "TS"}}, "status": {"code": "200", "message": "SUCCESS", "result_code": "ESB000010", "response_code": "DP00800001006", "success": false}}"#;
        assert_eq!(status_of(answer(200, paid)), Status::Successful);
        // A real TF with `"success": true`: still a failure.
        let failed = r#"{"data": {"transaction": {"airtel_money_id": "18395651726", "id": "890007655444445", "message": "Initiator is invalid", "status": "TF"}}, "status": {"response_code": "DP00800001010", "code": "200", "success": true, "result_code": "ESB000010", "message": "SUCCESS"}}"#;
        assert_eq!(status_of(answer(200, failed)), Status::Failed);
        let ambiguous = r#"{"data": {"transaction": {"id": "1", "status": "TA"}}, "status": {"code": "200", "success": true}}"#;
        assert!(!status_of(answer(200, ambiguous)).is_terminal());
        let in_progress = r#"{"data": {"transaction": {"id": "1", "status": "TIP"}}, "status": {"code": "200", "success": true}}"#;
        assert_eq!(status_of(answer(200, in_progress)), Status::Pending);
        let expired = r#"{"data": {"transaction": {"id": "1", "status": "TE"}}, "status": {"code": "200", "success": true}}"#;
        assert_eq!(status_of(answer(200, expired)), Status::Expired);
    }

    #[test]
    fn errors_inside_http_200() {
        let not_found = r#"{"status":{"code":"400","message":"No Transaction Found","result_code":"ESB000045","response_code":"DP00800001025","success":false}}"#;
        assert!(matches!(answer(200, not_found), Ok(Answer::NotFound(_))));
        let currency = r#"{"status":{"code":"400","message":"Invalid/Missing Currency","success":false,"response_code":"DP00900001013"}}"#;
        assert!(matches!(answer(200, currency), Err(QueryError::Failed(_))));
        assert!(matches!(answer(429, ""), Err(QueryError::Throttled(_))));
        assert!(matches!(answer(404, ""), Ok(Answer::NotFound(_))));
    }
}
