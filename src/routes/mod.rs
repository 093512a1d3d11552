//! HTTP routes, generated from the provider registry: every provider's endpoints and its health check.

mod callbacks;
pub(crate) mod endpoints;
pub(crate) mod events;
mod expectations;
mod health;
mod metrics;
mod portal_links;
pub mod probes;
pub(crate) mod rejected;
pub(crate) mod reports;
mod transactions;
mod webhooks;

/// The acknowledgement's header saying what became of a callback: `stored`, `repeat` or `conflict`.
pub const OUTCOME_HEADER: &str = "mmo-outcome";

use actix_web::web::{self, ServiceConfig};
use mmo_actors::providers::Method;
use mmo_actors::{Endpoint, Provider, PROVIDERS};

use crate::error::ApiError;

pub use crate::state::AppState;
pub use health::health;
pub use webhooks::receive_callback;

/// The provider and endpoint a webhook route serves (resource-level app data).
pub struct EndpointRoute {
    pub provider: &'static dyn Provider,
    pub endpoint: &'static Endpoint,
}

/// The provider a health route reports on.
pub struct HealthRoute {
    pub provider: &'static dyn Provider,
}

fn endpoint_path(provider: &dyn Provider, endpoint: &Endpoint) -> String {
    format!("/webhooks/{}/{}", provider.slug(), endpoint.path)
}

/// Registers, for every provider endpoint, `/v1/webhooks/<provider>/<endpoint>` and the same with a URL
/// token as last segment (`…/<endpoint>/<token>`), and `/v1/webhooks/<provider>/health`.
pub fn configure(config: &mut ServiceConfig) {
    let mut scope = web::scope("/v1");
    // Static paths first: the router tries resources in order, and only paths with a URL token segment
    // need its pattern matching.
    for with_token in [false, true] {
        for provider in PROVIDERS.iter().copied() {
            for endpoint in provider.endpoints() {
                let path = endpoint_path(provider, endpoint);
                let pattern = if with_token {
                    format!("{path}/{{url_token}}")
                } else {
                    path
                };
                let mut resource = web::resource(pattern)
                    .app_data(web::Data::new(EndpointRoute { provider, endpoint }));
                for method in endpoint.methods {
                    let route = match method {
                        Method::Post => web::post(),
                        Method::Put => web::put(),
                    };
                    resource = resource.route(route.to(receive_callback));
                }
                scope = scope.service(resource);
            }
            if !with_token {
                scope = scope.service(
                    web::resource(format!("/webhooks/{}/health", provider.slug()))
                        .app_data(web::Data::new(HealthRoute { provider }))
                        .route(web::get().to(health)),
                );
            }
        }
    }
    let scope = scope
        .route("/transactions", web::get().to(transactions::transactions))
        .route(
            "/transactions/{provider}/{transaction_key}",
            web::get().to(transactions::transaction),
        )
        .route("/callbacks", web::get().to(callbacks::callbacks))
        .route("/rejected", web::get().to(rejected::rejected))
        .route("/rejected/{id}", web::get().to(rejected::rejected_one))
        .route("/rejected/{id}/replay", web::post().to(rejected::replay))
        .route("/reports/daily", web::get().to(reports::daily_report))
        .route("/reports/money", web::get().to(reports::money_report))
        .route("/expectations", web::post().to(expectations::expect))
        .route(
            "/expectations/{provider}/{key}",
            web::get().to(expectations::expectation),
        )
        .route(
            "/reports/reconciliation",
            web::get().to(reports::reconciliation),
        )
        .route("/endpoints", web::post().to(endpoints::create))
        .route("/endpoints", web::get().to(endpoints::list))
        .route("/endpoints/{id}", web::get().to(endpoints::get))
        .route("/endpoints/{id}", web::patch().to(endpoints::update))
        .route("/endpoints/{id}", web::delete().to(endpoints::delete))
        .route("/endpoints/{id}/secret", web::get().to(endpoints::secret))
        .route(
            "/endpoints/{id}/secret/rotate",
            web::post().to(endpoints::rotate),
        )
        .route(
            "/endpoints/{id}/recover",
            web::post().to(endpoints::recover),
        )
        .route("/endpoints/{id}/test", web::post().to(endpoints::test))
        .route("/events", web::get().to(events::list))
        .route("/events/{id}", web::get().to(events::get))
        .route("/events/{id}/replay", web::post().to(events::replay))
        .route("/portal/links", web::post().to(portal_links::create));
    config
        .service(scope)
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/openapi.json", web::get().to(crate::openapi::openapi))
        .route("/livez", web::get().to(probes::livez))
        .route("/readyz", web::get().to(probes::readyz))
        .default_service(web::to(not_found));
}

/// A route the service serves: its method and path pattern (`{name}` marks a path parameter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub method: &'static str,
    pub path: String,
}

/// Every route [`configure`] registers, for checks that the OpenAPI document describes them all.
pub fn served() -> Vec<Served> {
    let route = |method, path: &str| Served {
        method,
        path: path.to_owned(),
    };
    let mut routes = Vec::new();
    for provider in PROVIDERS.iter().copied() {
        for endpoint in provider.endpoints() {
            let path = format!("/v1{}", endpoint_path(provider, endpoint));
            for method in endpoint.methods {
                let method = match method {
                    Method::Post => "POST",
                    Method::Put => "PUT",
                };
                routes.push(route(method, &path));
                routes.push(route(method, &format!("{path}/{{url_token}}")));
            }
        }
        routes.push(route(
            "GET",
            &format!("/v1/webhooks/{}/health", provider.slug()),
        ));
    }
    for (method, path) in [
        ("GET", "/v1/transactions"),
        ("GET", "/v1/transactions/{provider}/{transaction_key}"),
        ("GET", "/v1/callbacks"),
        ("GET", "/v1/rejected"),
        ("GET", "/v1/rejected/{id}"),
        ("POST", "/v1/rejected/{id}/replay"),
        ("GET", "/v1/reports/daily"),
        ("GET", "/v1/reports/money"),
        ("POST", "/v1/expectations"),
        ("GET", "/v1/expectations/{provider}/{key}"),
        ("GET", "/v1/reports/reconciliation"),
        ("POST", "/v1/endpoints"),
        ("GET", "/v1/endpoints"),
        ("GET", "/v1/endpoints/{id}"),
        ("PATCH", "/v1/endpoints/{id}"),
        ("DELETE", "/v1/endpoints/{id}"),
        ("GET", "/v1/endpoints/{id}/secret"),
        ("POST", "/v1/endpoints/{id}/secret/rotate"),
        ("POST", "/v1/endpoints/{id}/recover"),
        ("POST", "/v1/endpoints/{id}/test"),
        ("GET", "/v1/events"),
        ("GET", "/v1/events/{id}"),
        ("POST", "/v1/events/{id}/replay"),
        ("POST", "/v1/portal/links"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/livez"),
        ("GET", "/readyz"),
    ] {
        routes.push(route(method, path));
    }
    routes
}

/// A request path fit for logs and audit records: a URL token segment after an endpoint is replaced.
pub fn loggable_path(path: &str) -> String {
    // The endpoint prefixes follow from the registry; computed once, not per request.
    static PREFIXES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let prefixes = PREFIXES.get_or_init(|| {
        PROVIDERS
            .iter()
            .flat_map(|provider| {
                provider
                    .endpoints()
                    .iter()
                    .map(move |endpoint| (*provider, endpoint))
            })
            .map(|(provider, endpoint)| format!("/v1{}/", endpoint_path(provider, endpoint)))
            .collect()
    });
    match prefixes
        .iter()
        .find(|prefix| path.len() > prefix.len() && path.starts_with(prefix.as_str()))
    {
        Some(prefix) => format!("{prefix}<redacted>"),
        None => path.to_owned(),
    }
}

/// The bearer token a request presents, if any.
fn presented_token(request: &actix_web::HttpRequest) -> Option<&str> {
    request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(crate::auth::bearer_token)
}

/// The pseudonymization salt, when configured: the read API looks personal values up by their digest.
pub(crate) fn salt(state: &AppState) -> Option<&[u8]> {
    state.pseudonymization_salt.as_deref()
}

/// Admits a request carrying a token from `auth.admin_tokens` (metrics and the query API).
pub fn require_admin(request: &actix_web::HttpRequest, state: &AppState) -> Result<(), ApiError> {
    admit_admin_token(presented_token(request), state)
}

/// Admits `token` when it is one of `auth.admin_tokens` (compared in constant time): the one check behind
/// the query API's bearer tokens and the console's sign-in form.
pub fn admit_admin_token(token: Option<&str>, state: &AppState) -> Result<(), ApiError> {
    match token {
        Some(token) if state.admin_tokens.contains(token) => Ok(()),
        // Said plainly: the usual cause is a configuration without admin tokens, not a wrong token.
        _ if state.admin_tokens.is_empty() => Err(ApiError::NoAdminToken),
        _ => Err(ApiError::Unauthorized),
    }
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn url_tokens_never_reach_logs() {
        assert_eq!(
            loggable_path("/v1/webhooks/mpesa/stkpush/s3cr3t"),
            "/v1/webhooks/mpesa/stkpush/<redacted>"
        );
        assert_eq!(
            loggable_path("/v1/webhooks/mpesa/b2c/result/s3cr3t"),
            "/v1/webhooks/mpesa/b2c/result/<redacted>"
        );
        assert_eq!(
            loggable_path("/v1/webhooks/mtn/collection/a/b"),
            "/v1/webhooks/mtn/collection/<redacted>"
        );
        assert_eq!(
            loggable_path("/v1/webhooks/mtn/collection"),
            "/v1/webhooks/mtn/collection"
        );
        assert_eq!(
            loggable_path("/v1/webhooks/airtel/health"),
            "/v1/webhooks/airtel/health"
        );
    }
}
