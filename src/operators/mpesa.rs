//! Safaricom Daraja: OAuth client credentials, STK Push Query (for `stk_push`), and Transaction Status (for
//! `b2c` and `c2b`, answered asynchronously at `result_url`).
//!
//! Quirks handled: `expires_in` as a string; `ResultCode` as a string or a number; "still processing" as an
//! HTTP 500 with `500.001.1001` "The transaction is being processed" **or** as HTTP 200 with `ResultCode`
//! `4999` — pending both, never failed; the same `500.001.1001` also means wrong credentials or a locked
//! subscriber, so the message decides; `500.003.02` (spike arrest) and `500.003.03` (quota) throttle.

use std::sync::Arc;
use std::time::Duration;

use chrono::{FixedOffset, Utc};
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;
use mmo_actors::providers::mpesa::result_status;
use mmo_actors::reconciler::{Answer, Inquiry, QueryError};
use mmo_actors::{Callback, CallbackType, Status};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::http::{self, basic, error_summary, Reply, TokenCache};
use super::OperatorApi;
use crate::configuration::StatusApiSettings;

const NAME: &str = "mpesa";

pub struct MpesaApi {
    base_url: String,
    consumer_key: String,
    consumer_secret: SecretString,
    shortcode: String,
    passkey: SecretString,
    initiator: String,
    security_credential: SecretString,
    result_url: SecretString,
    queue_timeout_url: SecretString,
    timeout: Duration,
    token: TokenCache,
}

impl MpesaApi {
    /// `tokens`: where instances share the Daraja token (minting one invalidates the previous).
    pub fn new(
        settings: &StatusApiSettings,
        tokens: mongodb::Collection<mongodb::bson::Document>,
        key: Option<mmo_actors::delivery::sealing::SecretsKey>,
    ) -> Self {
        Self {
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            consumer_key: settings.consumer_key.clone(),
            consumer_secret: settings.consumer_secret.clone(),
            shortcode: settings.shortcode.clone(),
            passkey: settings.passkey.clone(),
            initiator: settings.initiator.clone(),
            security_credential: settings.security_credential.clone(),
            result_url: settings.result_url.clone(),
            queue_timeout_url: settings.queue_timeout_url.clone(),
            timeout: Duration::from_secs(settings.request_timeout_secs),
            token: TokenCache::shared(tokens, format!("mpesa:{}", settings.consumer_key), key),
        }
    }

    /// Transaction Status needs an initiator and somewhere for its answer to go.
    fn has_transaction_status(&self) -> bool {
        !self.initiator.is_empty()
            && !self.security_credential.expose_secret().is_empty()
            && !self.result_url.expose_secret().is_empty()
            && !self.queue_timeout_url.expose_secret().is_empty()
    }

    async fn token(&self) -> Result<String, QueryError> {
        self.token
            .get(|| async {
                let request = http::client()
                    .get(format!(
                        "{}/oauth/v1/generate?grant_type=client_credentials",
                        self.base_url
                    ))
                    .insert_header((
                        "Authorization",
                        basic(&self.consumer_key, self.consumer_secret.expose_secret()),
                    ));
                let reply = http::send(request, None, self.timeout).await?;
                http::token_of(&reply, "Daraja")
            })
            .await
    }

    /// Posts with the shared token; a refused token (another application minted a newer one) is
    /// replaced and the request sent once more.
    async fn post(&self, path: &str, body: &serde_json::Value) -> Result<Reply, QueryError> {
        let mut reply = None;
        for _ in 0..2 {
            let token = self.token().await?;
            let request = http::client()
                .post(format!("{}{path}", self.base_url))
                .insert_header(("Authorization", format!("Bearer {token}")));
            let answer = http::send(request, Some(body), self.timeout).await?;
            if !is_invalid_token(&answer) {
                return Ok(answer);
            }
            self.token.reject(&token).await;
            reply = Some(answer);
        }
        Ok(reply.expect("two attempts made"))
    }

    async fn stk_query(&self, key: &str) -> Result<Answer, QueryError> {
        // Daraja wants Kenyan local time, the same in the password and in the body.
        let nairobi = FixedOffset::east_opt(3 * 3600).expect("valid offset");
        let timestamp = Utc::now()
            .with_timezone(&nairobi)
            .format("%Y%m%d%H%M%S")
            .to_string();
        let body = json!({
            "BusinessShortCode": self.shortcode,
            "Password": stk_password(&self.shortcode, self.passkey.expose_secret(), &timestamp),
            "Timestamp": timestamp,
            "CheckoutRequestID": key,
        });
        let reply = self.post("/mpesa/stkpushquery/v1/query", &body).await?;
        interpret_stk_query(&reply, key)
    }

    async fn transaction_status(&self, inquiry: &Inquiry) -> Result<Answer, QueryError> {
        // A C2B payment is known by its receipt (its key); a B2C payment by its ConversationID, and by its
        // receipt when a result brought one.
        let (transaction_id, original_conversation_id) = match inquiry.flow {
            "c2b" => (Some(inquiry.key.clone()), None),
            _ => (inquiry.receipt.clone(), Some(inquiry.key.clone())),
        };
        let mut body = json!({
            "Initiator": self.initiator,
            "SecurityCredential": self.security_credential.expose_secret(),
            "CommandID": "TransactionStatusQuery",
            "PartyA": self.shortcode,
            "IdentifierType": "4",
            "ResultURL": self.result_url.expose_secret(),
            "QueueTimeOutURL": self.queue_timeout_url.expose_secret(),
            "Remarks": "reconciliation",
            "Occasion": "reconciliation",
        });
        if let Some(id) = transaction_id {
            body["TransactionID"] = json!(id);
        }
        if let Some(id) = original_conversation_id {
            body["OriginalConversationID"] = json!(id);
        }
        let reply = self
            .post("/mpesa/transactionstatus/v1/query", &body)
            .await?;
        interpret_transaction_status(&reply)
    }
}

impl OperatorApi for MpesaApi {
    fn provider(&self) -> &'static str {
        NAME
    }

    fn asks(&self, flow: &str) -> bool {
        match flow {
            "stk_push" => true,
            "b2c" | "c2b" => self.has_transaction_status(),
            _ => false,
        }
    }

    fn query(
        self: Arc<Self>,
        inquiry: Inquiry,
    ) -> LocalBoxFuture<'static, Result<Answer, QueryError>> {
        async move {
            match inquiry.flow {
                "stk_push" => self.stk_query(&inquiry.key).await,
                "b2c" | "c2b" if self.has_transaction_status() => {
                    self.transaction_status(&inquiry).await
                }
                flow => Err(QueryError::Failed(format!(
                    "M-Pesa has no status query for {flow}"
                ))),
            }
        }
        .boxed_local()
    }
}

/// `Password` = base64(shortcode + passkey + timestamp).
pub fn stk_password(shortcode: &str, passkey: &str, timestamp: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{shortcode}{passkey}{timestamp}"))
}

fn is_invalid_token(reply: &Reply) -> bool {
    matches!(
        reply.text_of("/errorCode").as_deref(),
        Some("404.001.03" | "400.003.01")
    ) || reply.status == 401
}

/// A Daraja error body that is not about the payment: throttling, or anything else (retried later).
fn daraja_error(reply: &Reply) -> QueryError {
    let code = reply.text_of("/errorCode").unwrap_or_default();
    if reply.status == 429 || matches!(code.as_str(), "500.003.02" | "500.003.03") {
        return QueryError::Throttled(format!("HTTP {} {}", reply.status, error_summary(reply)));
    }
    QueryError::Failed(format!("HTTP {} {}", reply.status, error_summary(reply)))
}

/// "Still processing", in either of its forms.
fn is_still_processing(reply: &Reply) -> bool {
    let code = reply.text_of("/errorCode");
    let message = reply
        .text_of("/errorMessage")
        .unwrap_or_default()
        .to_ascii_lowercase();
    (code.as_deref() == Some("500.001.1001") && message.contains("being processed"))
        || reply.text_of("/ResultCode").as_deref() == Some("4999")
}

pub(super) fn interpret_stk_query(reply: &Reply, key: &str) -> Result<Answer, QueryError> {
    if is_still_processing(reply) {
        return Ok(Answer::Status(Box::new(answer(
            reply,
            key,
            Status::Pending,
            None,
            reply
                .text_of("/ResultCode")
                .or_else(|| reply.text_of("/errorCode")),
            reply
                .text_of("/ResultDesc")
                .or_else(|| reply.text_of("/errorMessage")),
        ))));
    }
    if reply.status != 200 {
        return Err(daraja_error(reply));
    }
    let Some(code) = reply.text_of("/ResultCode") else {
        return Err(QueryError::Failed(format!(
            "STK query answer without ResultCode: {}",
            error_summary(reply)
        )));
    };
    let (status, reason) = result_status(&code);
    if status == Status::Unknown {
        mmo_actors::providers::note_unknown_code(NAME, &code);
    }
    Ok(Answer::Status(Box::new(answer(
        reply,
        key,
        status,
        reason,
        Some(code),
        reply.text_of("/ResultDesc"),
    ))))
}

pub(super) fn interpret_transaction_status(reply: &Reply) -> Result<Answer, QueryError> {
    if reply.status != 200 {
        return Err(daraja_error(reply));
    }
    match (
        reply.text_of("/ResponseCode").as_deref(),
        reply
            .text_of("/ConversationID")
            .or_else(|| reply.text_of("/OriginatorConversationID")),
    ) {
        (Some("0"), Some(correlation)) => Ok(Answer::Requested { correlation }),
        _ => Err(QueryError::Failed(format!(
            "Transaction Status not accepted: {}",
            error_summary(reply)
        ))),
    }
}

fn answer(
    reply: &Reply,
    key: &str,
    status: Status,
    reason: Option<&'static str>,
    result_code: Option<String>,
    result_description: Option<String>,
) -> Callback {
    Callback {
        provider: NAME,
        callback_type: CallbackType::StatusQuery,
        provider_transaction_id: key.to_owned(),
        status,
        reason,
        result_code,
        result_description,
        amount: None,
        currency: None,
        msisdn: None,
        receipt: None,
        transaction_time: None,
        transaction_time_raw: None,
        payload: reply.payload(),
        queried_flow: Some("stk_push"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::status_of;

    fn reply(status: u16, body: &str) -> Reply {
        Reply::from_text(status, body)
    }

    #[test]
    fn stk_query_answers_as_daraja_sends_them() {
        // The documented success, codes as strings.
        let paid = reply(
            200,
            r#"{"ResponseCode":"0","ResponseDescription":"The service request has been accepted successfully","MerchantRequestID":"22205-34066-1","CheckoutRequestID":"ws_CO_13012021093521236557","ResultCode":"0","ResultDesc":"The service request is processed successfully."}"#,
        );
        assert_eq!(
            status_of(interpret_stk_query(&paid, "k")),
            Status::Successful
        );
        // A captured cancellation (with Daraja's "successsfully" typo).
        let cancelled = reply(
            200,
            r#"{"ResponseCode": "0", "ResponseDescription": "The service request has been accepted successsfully", "MerchantRequestID": "25811-34836046-1", "CheckoutRequestID": "ws_CO_290920211026123753", "ResultCode": "1032", "ResultDesc": "Request cancelled by user"}"#,
        );
        assert_eq!(
            status_of(interpret_stk_query(&cancelled, "k")),
            Status::Cancelled
        );
        // A number instead of a string.
        let numeric = reply(200, r#"{"ResultCode":1,"ResultDesc":"insufficient"}"#);
        assert_eq!(
            status_of(interpret_stk_query(&numeric, "k")),
            Status::Failed
        );
    }

    #[test]
    fn still_processing_is_pending_in_both_forms() {
        let http_500 = reply(
            500,
            r#"{"requestId": "ws_CO_20022018230142206", "errorCode": "500.001.1001", "errorMessage": "The transaction is being processed"}"#,
        );
        assert_eq!(
            status_of(interpret_stk_query(&http_500, "k")),
            Status::Pending
        );
        let code_4999 = reply(
            200,
            r#"{"ResultCode":"4999","ResultDesc":"The transaction is still under processing"}"#,
        );
        assert_eq!(
            status_of(interpret_stk_query(&code_4999, "k")),
            Status::Pending
        );
    }

    #[test]
    fn other_errors_are_not_answers_about_the_payment() {
        // The same code with another message: wrong credentials, not a failed payment.
        let credentials = reply(
            500,
            r#"{"requestId":"x","errorCode":"500.001.1001","errorMessage":"Wrong credentials"}"#,
        );
        assert!(matches!(
            interpret_stk_query(&credentials, "k"),
            Err(QueryError::Failed(_))
        ));
        for throttled in [
            reply(
                500,
                r#"{"requestId":"x","errorCode":"500.003.02","errorMessage":"Error Occurred: Spike Arrest Violation"}"#,
            ),
            reply(
                500,
                r#"{"requestId":"x","errorCode":"500.003.03","errorMessage":"Quota Violation"}"#,
            ),
            reply(429, "Too Many Requests"),
        ] {
            assert!(matches!(
                interpret_stk_query(&throttled, "k"),
                Err(QueryError::Throttled(_))
            ));
        }
        let generic = reply(
            500,
            r#"{"requestId":"x","errorCode":"500.003.1001","errorMessage":"Internal Server Error"}"#,
        );
        assert!(
            matches!(
                interpret_stk_query(&generic, "k"),
                Err(QueryError::Failed(_))
            ),
            "a generic 500 is never FAILED"
        );
    }

    #[test]
    fn transaction_status_is_answered_later() {
        let accepted = reply(
            200,
            r#"{"OriginatorConversationID": "1236-7134259-1", "ConversationID": "AG_20210709_1234409f86436c583e3f", "ResponseCode": "0", "ResponseDescription": "Accept the service request successfully."}"#,
        );
        match interpret_transaction_status(&accepted) {
            Ok(Answer::Requested { correlation }) => {
                assert_eq!(correlation, "AG_20210709_1234409f86436c583e3f")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_password_is_shortcode_passkey_timestamp() {
        // Daraja's own example request.
        assert_eq!(
            stk_password(
                "174379",
                "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919",
                "20160216165627"
            ),
            "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMTYwMjE2MTY1NjI3"
        );
    }
}
