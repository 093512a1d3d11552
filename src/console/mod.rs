//! The operators' web console at `/ui/`: pages drawn on the server (maud templates, escaped by default)
//! from the read API's own functions, htmx for the few interactions, every asset compiled into the binary.
//!
//! Sign-in takes a token from `auth.admin_tokens` (checked by the query API's own check) and sets a
//! signed session cookie ([`session`]); every state-changing form carries a CSRF token derived from the
//! session; every answer carries a strict Content-Security-Policy (no inline script or style). See
//! `docs/console.md`.

mod pages;
mod portal;
pub mod session;

pub use session::COOKIE;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::read_api::{self, Filters, REJECTED_FILTERS, TRANSACTION_FILTERS};
use crate::request_context::ClientAddress;
use crate::routes::{admit_admin_token, endpoints, events, rejected, reports, salt};
use crate::state::AppState;
use session::Session;

/// Every console answer's policy: nothing but the service's own scripts, styles and images; never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const HTMX: &[u8] = include_bytes!("assets/htmx.min.js");
const CSS: &[u8] = include_bytes!("assets/console.css");

/// Registers `/ui/…` and `GET /` (which sends a person to the console), beside the query API's routes
/// (their catch-all 404 answers only what nothing matches).
pub fn configure(config: &mut ServiceConfig) {
    config.route("/", web::get().to(to_console)).service(
        web::scope("/ui")
            .wrap(from_fn(console_headers))
            .route("", web::get().to(to_console))
            .route("/", web::get().to(overview))
            .route("/overview", web::get().to(overview_fragment))
            .route("/login", web::get().to(login_form))
            .route("/login", web::post().to(login))
            .route("/logout", web::post().to(logout))
            .route("/transactions", web::get().to(transactions))
            .route("/transactions/{provider}/{key}", web::get().to(transaction))
            .route("/quarantine", web::get().to(quarantine))
            .route("/quarantine/{id}", web::get().to(quarantined))
            .route(
                "/quarantine/{id}/replay",
                web::post().to(replay_quarantined),
            )
            .route("/events", web::get().to(event_list))
            .route("/events/{id}", web::get().to(event))
            .route("/events/{id}/replay", web::post().to(replay_event))
            .route("/endpoints", web::get().to(endpoint_list))
            .route("/endpoints/{id}/enabled", web::post().to(set_enabled))
            .route("/reports", web::get().to(report))
            .route("/reports/daily.csv", web::get().to(report_csv))
            .route("/assets/{name}", web::get().to(asset)),
    );
    portal::configure(config);
}

/// `GET /` and `GET /ui`: to the console.
async fn to_console() -> HttpResponse {
    see_other("/ui/")
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// Middleware on `/ui`: 404 when the console is turned off; the security headers on every answer.
async fn console_headers(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let enabled = request
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.console.enabled);
    let mut response = if enabled {
        next.call(request).await?.map_into_boxed_body()
    } else {
        request.into_response(ApiError::NotFound.error_response())
    };
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("cross-origin-opener-policy", "same-origin"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

/// Why a console request was not answered with its page.
#[derive(Debug, thiserror::Error)]
enum ConsoleError {
    /// No valid session: to the sign-in form.
    #[error("sign in first")]
    SignIn { htmx: bool },
    /// No valid portal session: the portal opens only with a link.
    #[error("open the portal with a link")]
    NoPortalSession,
    /// A state-changing request without its session's CSRF token.
    #[error("the form's CSRF token is missing or wrong")]
    Csrf,
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::SignIn { htmx: false } => StatusCode::SEE_OTHER,
            Self::SignIn { htmx: true } => StatusCode::UNAUTHORIZED,
            Self::Csrf => StatusCode::FORBIDDEN,
            Self::NoPortalSession => StatusCode::UNAUTHORIZED,
            Self::Api(error) => error.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::SignIn { htmx: false } => see_other("/ui/login"),
            // htmx follows a redirect itself and would swap the sign-in page into a fragment.
            Self::SignIn { htmx: true } => HttpResponse::Unauthorized()
                .insert_header(("hx-redirect", "/ui/login"))
                .finish(),
            Self::Csrf => html(
                StatusCode::FORBIDDEN,
                pages::problem(
                    "Refused",
                    "This form's CSRF token is missing or does not belong to your session: reload the \
                     page and try again.",
                ),
            ),
            Self::NoPortalSession => html(
                StatusCode::UNAUTHORIZED,
                pages::problem(
                    "Open the portal with a link",
                    "This portal opens with a link from your dashboard, and the session it opened has \
                     ended or was never there: ask your dashboard for a new link.",
                ),
            ),
            Self::Api(error) => html(
                error.status_code(),
                pages::problem("Not done", &problem_text(error)),
            ),
        }
    }
}

/// What a person reads of an API error.
fn problem_text(error: &ApiError) -> String {
    let text = error.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

fn html(status: StatusCode, markup: maud::Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

fn ok(markup: maud::Markup) -> Result<HttpResponse, ConsoleError> {
    Ok(html(StatusCode::OK, markup))
}

/// A signed-in operator: their session's CSRF token goes into every form.
pub(crate) struct Operator {
    session: Session,
    csrf: String,
}

fn is_htmx(request: &HttpRequest) -> bool {
    request.headers().contains_key("hx-request")
}

fn signed_in(request: &HttpRequest, state: &AppState) -> Result<Operator, ConsoleError> {
    let session = request
        .headers()
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| session::cookie_value(value, COOKIE))
        .find_map(|value| state.console.verify(value))
        .ok_or(ConsoleError::SignIn {
            htmx: is_htmx(request),
        })?;
    let csrf = state.console.csrf(&session);
    Ok(Operator { session, csrf })
}

/// A signed-in operator's form (url-encoded), once its CSRF token is checked (from the form's `csrf`
/// field, or the `X-CSRF-Token` header).
fn checked_form(
    request: &HttpRequest,
    state: &AppState,
    body: &[u8],
) -> Result<(Operator, Vec<(String, String)>), ConsoleError> {
    let operator = signed_in(request, state)?;
    let pairs = read_api::query_pairs(&String::from_utf8_lossy(body))?;
    let presented = pairs
        .iter()
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value.clone())
        .or_else(|| {
            request
                .headers()
                .get("x-csrf-token")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        });
    match presented {
        Some(token) if state.console.csrf_matches(&operator.session, &token) => {
            Ok((operator, pairs))
        }
        _ => Err(ConsoleError::Csrf),
    }
}

/// A query string's non-empty parameters (a filter form sends its empty fields too).
fn filled(request: &HttpRequest) -> Result<Vec<(String, String)>, ApiError> {
    Ok(read_api::query_pairs(request.query_string())?
        .into_iter()
        .filter(|(_, value)| !value.trim().is_empty())
        .collect())
}

fn take(pairs: &mut Vec<(String, String)>, name: &str) -> Option<String> {
    let index = pairs.iter().position(|(key, _)| key == name)?;
    Some(pairs.remove(index).1)
}

fn session_cookie(state: &AppState, value: &str, max_age: u64) -> String {
    format!(
        "{COOKIE}={value}; Path=/ui; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if state.console.secure_cookie {
            "; Secure"
        } else {
            ""
        }
    )
}

async fn login_form(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if signed_in(&request, &state).is_ok() {
        return see_other("/ui/");
    }
    html(StatusCode::OK, pages::login(None))
}

async fn login(request: HttpRequest, state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let client = request
        .extensions()
        .get::<ClientAddress>()
        .map(|address| address.0.to_string())
        .or_else(|| request.peer_addr().map(|peer| peer.ip().to_string()))
        .unwrap_or_default();
    if !state.console.may_try_login(&client) {
        tracing::warn!(client, "console sign-in attempts over the limit");
        let mut response = html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::login(Some(
                "Too many sign-in attempts: wait a minute and try again.",
            )),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return response;
    }
    let token = read_api::query_pairs(&String::from_utf8_lossy(&body))
        .ok()
        .and_then(|mut pairs| take(&mut pairs, "token"));
    match admit_admin_token(token.as_deref(), &state) {
        Ok(()) => {
            tracing::info!(client, "console sign-in");
            let value = state.console.issue();
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/ui/"))
                .insert_header((
                    header::SET_COOKIE,
                    session_cookie(&state, &value, state.console.ttl().as_secs()),
                ))
                .finish()
        }
        Err(error) => {
            tracing::warn!(client, "console sign-in refused");
            let message = match error {
                ApiError::NoAdminToken => {
                    "No admin token is configured: set auth.admin_tokens (MMO__AUTH__ADMIN_TOKENS)."
                }
                _ => "That is not an admin token.",
            };
            html(StatusCode::UNAUTHORIZED, pages::login(Some(message)))
        }
    }
}

async fn logout(
    request: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    checked_form(&request, &state, &body)?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/ui/login"))
        .insert_header((header::SET_COOKIE, session_cookie(&state, "", 0)))
        .finish())
}

async fn overview(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let operator = signed_in(&request, &state)?;
    let figures = overview_figures(&state).await?;
    ok(pages::overview(&operator, &figures))
}

async fn overview_fragment(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    signed_in(&request, &state)?;
    ok(pages::overview_figures(&overview_figures(&state).await?))
}

/// What the overview shows.
pub(crate) struct Figures {
    mongodb: &'static str,
    journal_backlog: u64,
    events_waiting: u64,
    today: read_api::DailyReport,
    yesterday: read_api::DailyReport,
    endpoints: Vec<Value>,
}

async fn overview_figures(state: &AppState) -> Result<Figures, ApiError> {
    let today = chrono::Utc::now().date_naive();
    let yesterday = today - chrono::Duration::days(1);
    let endpoints = endpoints::list_endpoints(
        state,
        &Filters {
            limit: read_api::MAX_LIMIT,
            ..Filters::default()
        },
    )
    .await?;
    Ok(Figures {
        mongodb: state.mongodb.as_str(),
        journal_backlog: state.journal.backlog().entries,
        events_waiting: events::waiting(state).await?,
        today: read_api::daily_report(&state.store, &today.to_string(), None).await?,
        yesterday: read_api::daily_report(&state.store, &yesterday.to_string(), None).await?,
        endpoints: endpoints.items,
    })
}

async fn transactions(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let operator = signed_in(&request, &state)?;
    let mut pairs = filled(&request)?;
    let search = take(&mut pairs, "q").map(|q| q.trim().to_owned());
    let shown = pairs.clone();
    let (items, next) = match &search {
        Some(q) => (search_transactions(&state, q).await?, None),
        None => {
            let filters = Filters::from_pairs(pairs, TRANSACTION_FILTERS)?;
            let page = read_api::transactions(&state.store, &filters, salt(&state)).await?;
            (page.items, page.next_cursor)
        }
    };
    ok(pages::transactions(
        &operator,
        &shown,
        search.as_deref(),
        &items,
        next.as_deref(),
    ))
}

/// Transactions whose key (in any provider) or operator's receipt is `q`.
async fn search_transactions(
    state: &AppState,
    q: &str,
) -> Result<Vec<read_api::TransactionItem>, ApiError> {
    let mut found = Vec::new();
    for provider in mmo_actors::PROVIDERS.iter() {
        match read_api::transaction(&state.store, provider.name(), q, None, false).await {
            Ok(detail) => found.push(detail.transaction),
            Err(ApiError::NoSuch(_)) => {}
            // The key names transactions of several flows: each of them.
            Err(ApiError::InvalidParameter { .. }) => {
                for flow in provider
                    .endpoints()
                    .iter()
                    .filter_map(|endpoint| endpoint.callback_type.flow())
                {
                    if let Ok(detail) =
                        read_api::transaction(&state.store, provider.name(), q, Some(flow), false)
                            .await
                    {
                        if !found.iter().any(|item: &read_api::TransactionItem| {
                            item.flow == detail.transaction.flow
                                && item.provider == detail.transaction.provider
                        }) {
                            found.push(detail.transaction);
                        }
                    }
                }
            }
            Err(other) => return Err(other),
        }
    }
    for item in read_api::by_receipt(&state.store, q, 50).await? {
        let known = found.iter().any(|seen| {
            seen.provider == item.provider
                && seen.flow == item.flow
                && seen.transaction_key == item.transaction_key
        });
        if !known {
            found.push(item);
        }
    }
    Ok(found)
}

async fn transaction(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let operator = signed_in(&request, &state)?;
    let (provider, key) = path.into_inner();
    let flow = take(&mut filled(&request)?, "flow");
    let detail =
        read_api::transaction(&state.store, &provider, &key, flow.as_deref(), true).await?;
    let events = events::events_of_transaction(&state, &detail.stored_id, detail.version).await?;
    ok(pages::transaction(&operator, &detail, &events))
}

async fn quarantine(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let operator = signed_in(&request, &state)?;
    let pairs = filled(&request)?;
    let filters = Filters::from_pairs(pairs.clone(), REJECTED_FILTERS)?;
    let page = read_api::rejected(&state.store, &filters).await?;
    ok(pages::quarantine(&operator, &pairs, &page))
}

async fn quarantined(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let operator = signed_in(&request, &state)?;
    let item = quarantined_item(&state, &path).await?;
    ok(pages::quarantined(&operator, &item, None))
}

async fn quarantined_item(state: &AppState, id: &str) -> Result<read_api::RejectedItem, ApiError> {
    let id = mongodb::bson::oid::ObjectId::parse_str(id)
        .map_err(|_| ApiError::NoSuch("rejected callback"))?;
    read_api::rejected_one(&state.store, id)
        .await?
        .ok_or(ApiError::NoSuch("rejected callback"))
}

/// Runs a quarantined body through today's parsers (the query API's replay) and shows the answer: as a
/// fragment for htmx, else on the body's page.
async fn replay_quarantined(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let (operator, _) = checked_form(&request, &state, &body)?;
    let answer = rejected::replay_rejected(&state, &path)
        .await
        .map_err(|error| problem_text(&error));
    if is_htmx(&request) {
        return ok(pages::replay_answer(&answer));
    }
    let item = quarantined_item(&state, &path).await?;
    ok(pages::quarantined(&operator, &item, Some(&answer)))
}

async fn event_list(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let operator = signed_in(&request, &state)?;
    let pairs = filled(&request)?;
    let page = events::list_events(&state, pairs.clone()).await?;
    ok(pages::events(&operator, &pairs, &page))
}

async fn event(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let operator = signed_in(&request, &state)?;
    let event = events::event_detail(&state, &path).await?;
    ok(pages::event(&operator, &event, None))
}

async fn replay_event(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let (operator, _) = checked_form(&request, &state, &body)?;
    let answer = events::replay_event(&state, &path, None)
        .await
        .map(|_| "Sent again: every endpoint of this event gets it anew.".to_owned())
        .map_err(|error| problem_text(&error));
    if is_htmx(&request) {
        return ok(pages::answer(&answer));
    }
    let event = events::event_detail(&state, &path).await?;
    ok(pages::event(&operator, &event, Some(&answer)))
}

async fn endpoint_list(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let operator = signed_in(&request, &state)?;
    let filters = Filters::from_pairs(filled(&request)?, &["limit", "cursor"])?;
    let page = endpoints::list_endpoints(&state, &filters).await?;
    ok(pages::endpoints(&operator, &page))
}

/// Turns an endpoint on or off (the query API's change), then back to the list.
async fn set_enabled(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let (_, mut pairs) = checked_form(&request, &state, &body)?;
    let enabled = match take(&mut pairs, "enabled").as_deref() {
        Some("true") => true,
        Some("false") => false,
        _ => {
            return Err(ApiError::InvalidParameter {
                parameter: "enabled".into(),
                problem: "must be true or false".into(),
            }
            .into())
        }
    };
    let change = json!({ "enabled": enabled });
    let Value::Object(change) = change else {
        unreachable!("a JSON object")
    };
    endpoints::update_endpoint(&state, &path, &change).await?;
    Ok(see_other("/ui/endpoints"))
}

fn report_date(request: &HttpRequest) -> Result<String, ApiError> {
    let mut pairs = filled(request)?;
    Ok(take(&mut pairs, "date").unwrap_or_else(|| chrono::Utc::now().date_naive().to_string()))
}

async fn report(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let operator = signed_in(&request, &state)?;
    let date = report_date(&request)?;
    let report = read_api::daily_report(&state.store, &date, None).await?;
    ok(pages::report(&operator, &report))
}

/// The day's transactions as CSV: the daily report's own CSV.
async fn report_csv(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    signed_in(&request, &state)?;
    let date = report_date(&request)?;
    Ok(reports::daily_csv(&state, &date, None).await?)
}

/// The console's assets, compiled in; their URLs carry a digest of their content, so they are cached
/// for a year.
async fn asset(name: web::Path<String>) -> HttpResponse {
    let (content, kind) = match name.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "console.css" => (CSS, "text/css; charset=utf-8"),
        _ => return ApiError::NotFound.error_response(),
    };
    HttpResponse::Ok()
        .content_type(kind)
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .body(content)
}

/// An asset's URL, with a digest of its content (a new build with a changed asset gets a new URL).
pub(crate) fn asset_url(name: &'static str) -> &'static str {
    use std::sync::OnceLock;
    static URLS: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    let urls = URLS.get_or_init(|| {
        [("htmx.min.js", HTMX), ("console.css", CSS)]
            .into_iter()
            .map(|(name, content)| {
                let digest = crate::auth::sha256_hex(&String::from_utf8_lossy(content));
                (name, format!("/ui/assets/{name}?v={}", &digest[..12]))
            })
            .collect()
    });
    urls.iter()
        .find(|(known, _)| *known == name)
        .map_or("/ui/assets/missing", |(_, url)| url.as_str())
}

/// Percent-encodes `text` for a URL's path segment or query value.
pub(crate) fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A query string of `pairs`.
pub(crate) fn query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}
