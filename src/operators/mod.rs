//! Clients of the operators' token and status APIs, for the reconciler: one file per operator, each
//! turning the operator's real answers (with their quirks) into a [`mmo_actors::reconciler::Answer`].
//!
//! Tokens are cached and shared (Daraja invalidates the previous token when a new one is minted, so one
//! token per application is a must) and refreshed before they expire; a token the operator refuses is
//! dropped and fetched again on the next question. Secrets are never logged.

mod airtel;
mod http;
mod mpesa;
mod mtn;

use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;
use mmo_actors::reconciler::{Answer, Inquiry, QueryError, StatusApi};

use crate::configuration::Settings;

pub use airtel::AirtelApi;
pub use mpesa::MpesaApi;
pub use mtn::MtnApi;

/// One operator's status API.
trait OperatorApi: Send + Sync + 'static {
    /// Stored provider name.
    fn provider(&self) -> &'static str;
    fn asks(&self, flow: &str) -> bool;
    fn query(
        self: Arc<Self>,
        inquiry: Inquiry,
    ) -> LocalBoxFuture<'static, Result<Answer, QueryError>>;
}

/// Every configured operator's status API.
#[derive(Clone, Default)]
pub struct Operators {
    apis: Vec<Arc<dyn OperatorApi>>,
}

impl Operators {
    /// The operators whose `[providers.<name>.api]` has a `base_url`. Tokens that instances must share
    /// are kept in `database`'s `operator_tokens`.
    pub fn from_settings(settings: &Settings, database: &mongodb::Database) -> Self {
        let mut apis: Vec<Arc<dyn OperatorApi>> = Vec::new();
        for (slug, provider) in &settings.providers {
            if !provider.api.is_configured() {
                continue;
            }
            match slug.as_str() {
                "mpesa" => apis.push(Arc::new(MpesaApi::new(
                    &provider.api,
                    database.collection("operator_tokens"),
                    settings.delivery.sealing_key(),
                ))),
                "mtn" => apis.push(Arc::new(MtnApi::new(&provider.api))),
                "airtel" => apis.push(Arc::new(AirtelApi::new(&provider.api))),
                _ => {}
            }
        }
        Self { apis }
    }

    /// Stored names of the operators that can be asked.
    pub fn configured(&self) -> Vec<&'static str> {
        self.apis.iter().map(|api| api.provider()).collect()
    }

    fn api(&self, provider: &str) -> Option<&Arc<dyn OperatorApi>> {
        self.apis.iter().find(|api| api.provider() == provider)
    }
}

impl StatusApi for Operators {
    fn asks(&self, provider: &str, flow: &str) -> bool {
        self.api(provider).is_some_and(|api| api.asks(flow))
    }

    fn query(&self, inquiry: Inquiry) -> LocalBoxFuture<'static, Result<Answer, QueryError>> {
        match self.api(inquiry.provider) {
            Some(api) => Arc::clone(api).query(inquiry),
            None => {
                let provider = inquiry.provider;
                async move {
                    Err(QueryError::Failed(format!(
                        "no status API configured for {provider}"
                    )))
                }
                .boxed_local()
            }
        }
    }
}

/// The status an interpreted reply reports (tests of the interpreters); panics on any other answer.
#[cfg(test)]
fn status_of(answer: Result<Answer, QueryError>) -> mmo_actors::Status {
    match answer {
        Ok(Answer::Status(callback)) => callback.status,
        other => panic!("not a status: {other:?}"),
    }
}
