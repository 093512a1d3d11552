//! MTN MoMo Open API: one token per product (`POST /{product}/token/`, Basic api user:key plus the
//! product's subscription key, no body), and `GET /collection/v1_0/requesttopay/{referenceId}` or
//! `GET /{disbursement|remittance}/v1_0/transfer/{referenceId}`.
//!
//! MTN sends each callback once and never retries: this GET is how a lost one is recovered. Quirks
//! handled: the answer has the callback's shape (so the callback parser reads it) but no `referenceId`;
//! `reason` as a string or an object; HTTP 404 `RESOURCE_NOT_FOUND` for an unknown (or silently rejected)
//! reference — not found, asked again until the reconciler gives up, never taken for a failure.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;
use mmo_actors::providers::MtnMobileMoney;
use mmo_actors::reconciler::{Answer, Inquiry, QueryError};
use mmo_actors::{CallbackType, Provider};
use secrecy::{ExposeSecret, SecretString};

use super::http::{self, basic, error_summary, Reply, TokenCache};
use super::OperatorApi;
use crate::configuration::StatusApiSettings;

const NAME: &str = "mtn_mobile_money";

/// A product: its flow, the path of its status GET, its callback type and subscription key.
struct Product {
    name: &'static str,
    status_path: &'static str,
    callback_type: CallbackType,
    subscription_key: SecretString,
    token: TokenCache,
}

pub struct MtnApi {
    base_url: String,
    api_user: String,
    api_key: SecretString,
    target_environment: String,
    timeout: Duration,
    /// By flow (`collection`, `disbursement`, `remittance`); only products with a subscription key.
    products: HashMap<&'static str, Product>,
}

impl MtnApi {
    pub fn new(settings: &StatusApiSettings) -> Self {
        let keys = &settings.subscription_keys;
        let products = [
            (
                "collection",
                "requesttopay",
                CallbackType::Collection,
                &keys.collection,
            ),
            (
                "disbursement",
                "transfer",
                CallbackType::Disbursement,
                &keys.disbursement,
            ),
            (
                "remittance",
                "transfer",
                CallbackType::Remittance,
                &keys.remittance,
            ),
        ]
        .into_iter()
        .filter(|(_, _, _, key)| !key.expose_secret().is_empty())
        .map(|(name, status_path, callback_type, key)| {
            let product = Product {
                name,
                status_path,
                callback_type,
                subscription_key: key.clone(),
                token: TokenCache::default(),
            };
            (name, product)
        })
        .collect();
        Self {
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            api_user: settings.api_user.clone(),
            api_key: settings.api_key.clone(),
            target_environment: settings.target_environment.clone(),
            timeout: Duration::from_secs(settings.request_timeout_secs),
            products,
        }
    }

    async fn token(&self, product: &Product) -> Result<String, QueryError> {
        product
            .token
            .get(|| async {
                let request = http::client()
                    .post(format!("{}/{}/token/", self.base_url, product.name))
                    .insert_header((
                        "Authorization",
                        basic(&self.api_user, self.api_key.expose_secret()),
                    ))
                    .insert_header((
                        "Ocp-Apim-Subscription-Key",
                        product.subscription_key.expose_secret(),
                    ));
                let reply = http::send(request, None, self.timeout).await?;
                http::token_of(&reply, "MTN")
            })
            .await
    }

    async fn status(&self, product: &Product, key: &str) -> Result<Answer, QueryError> {
        let token = self.token(product).await?;
        let request = http::client()
            .get(format!(
                "{}/{}/v1_0/{}/{key}",
                self.base_url, product.name, product.status_path
            ))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .insert_header(("X-Target-Environment", self.target_environment.as_str()))
            .insert_header((
                "Ocp-Apim-Subscription-Key",
                product.subscription_key.expose_secret(),
            ));
        let reply = http::send(request, None, self.timeout).await?;
        if reply.status == 401 {
            product.token.reject(&token).await;
        }
        interpret(&reply, product.callback_type, key)
    }
}

impl OperatorApi for MtnApi {
    fn provider(&self) -> &'static str {
        NAME
    }

    fn asks(&self, flow: &str) -> bool {
        self.products.contains_key(flow)
    }

    fn query(
        self: Arc<Self>,
        inquiry: Inquiry,
    ) -> LocalBoxFuture<'static, Result<Answer, QueryError>> {
        async move {
            let Some(product) = self.products.get(inquiry.flow) else {
                return Err(QueryError::Failed(format!(
                    "no MTN subscription key for {}",
                    inquiry.flow
                )));
            };
            self.status(product, &inquiry.key).await
        }
        .boxed_local()
    }
}

pub(super) fn interpret(
    reply: &Reply,
    callback_type: CallbackType,
    key: &str,
) -> Result<Answer, QueryError> {
    match reply.status {
        200 => {
            let Some(mut body) = reply.json.clone().filter(serde_json::Value::is_object) else {
                return Err(QueryError::Failed(format!(
                    "status answer is not a JSON object: {}",
                    error_summary(reply)
                )));
            };
            // The answer has the callback's shape without its reference: read it as the callback it
            // stands for, keyed by the reference asked about; the payload stays the raw answer.
            body["referenceId"] = serde_json::Value::String(key.to_owned());
            let mut callback = MtnMobileMoney
                .parse(callback_type, body.to_string().as_bytes())
                .map_err(|error| {
                    QueryError::Failed(format!("unreadable status answer: {error}"))
                })?;
            callback.payload = reply.payload();
            Ok(Answer::Status(Box::new(callback)))
        }
        404 => Ok(Answer::NotFound(error_summary(reply))),
        429 => Err(QueryError::Throttled(error_summary(reply))),
        status => Err(QueryError::Failed(format!(
            "HTTP {status} {}",
            error_summary(reply)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mmo_actors::Status;

    fn reply(status: u16, body: &str) -> Reply {
        Reply::from_text(status, body)
    }

    fn answer(status: u16, body: &str) -> Result<Answer, QueryError> {
        interpret(&reply(status, body), CallbackType::Collection, "ref-1")
    }

    #[test]
    fn status_answers_in_their_real_shapes() {
        // MTN's own sandbox notebook: every value a string.
        let paid = answer(
            200,
            r#"{"financialTransactionId": "1195582132", "externalId": "79853abc-9f6a-11ef-9077-00155d27efc1", "amount": "50000", "currency": "EUR", "payer": {"partyIdType": "MSISDN", "partyId": "56733123452"}, "payerMessage": "MoMo Debit API", "payeeNote": "MoMo Debit API", "status": "SUCCESSFUL"}"#,
        );
        match paid {
            Ok(Answer::Status(callback)) => {
                assert_eq!(callback.status, Status::Successful);
                assert_eq!(callback.provider_transaction_id, "ref-1");
                assert_eq!(callback.amount.unwrap().to_string(), "50000");
                assert_eq!(callback.payload["http_status"], 200);
                assert!(
                    callback.payload["response"].get("referenceId").is_none(),
                    "the raw answer is kept"
                );
            }
            other => panic!("{other:?}"),
        }
        // `reason` as a plain string (production) and as an object (the schema).
        for body in [
            r#"{"externalId": "c1f4687688585858a173f12", "amount": "500", "currency": "UGX", "payer": {"partyIdType": "MSISDN", "partyId": "25677000000"}, "status": "FAILED", "reason": "NOT_ENOUGH_FUNDS"}"#,
            r#"{"amount": "500", "currency": "UGX", "status": "FAILED", "reason": {"code": "NOT_ENOUGH_FUNDS", "message": "Not enough funds"}}"#,
        ] {
            match answer(200, body) {
                Ok(Answer::Status(callback)) => {
                    assert_eq!(callback.status, Status::Failed);
                    assert_eq!(callback.reason, Some("insufficient_funds"));
                }
                other => panic!("{other:?}"),
            }
        }
        // The portal's example, numbers where the schema says strings.
        match answer(
            200,
            r#"{"amount": 100, "currency": "UGX", "financialTransactionId": 23503452, "externalId": 947354, "payer": {"partyIdType": "MSISDN", "partyId": 4656473839}, "status": "SUCCESSFUL"}"#,
        ) {
            Ok(Answer::Status(callback)) => assert_eq!(callback.status, Status::Successful),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn not_found_pending_and_errors() {
        assert!(matches!(
            answer(
                404,
                r#"{"code":"RESOURCE_NOT_FOUND","message":"Requested resource was not found."}"#
            ),
            Ok(Answer::NotFound(_))
        ));
        match answer(
            200,
            r#"{"amount": "5", "currency": "EUR", "status": "PENDING"}"#,
        ) {
            Ok(Answer::Status(callback)) => assert_eq!(callback.status, Status::Pending),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            answer(
                500,
                r#"{"code":"INTERNAL_PROCESSING_ERROR","message":"An internal error occurred while processing."}"#
            ),
            Err(QueryError::Failed(_))
        ));
        assert!(matches!(
            answer(503, "Service Unavailable"),
            Err(QueryError::Failed(_))
        ));
        assert!(matches!(answer(429, ""), Err(QueryError::Throttled(_))));
    }
}
