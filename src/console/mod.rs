//! The operators' web console at `/ui/`: pages drawn on the server (maud templates, escaped by default)
//! from the read API's own functions, htmx for the few interactions, every asset compiled into the binary.
//!
//! Sign-in takes a token from `auth.admin_tokens` (checked by the query API's own check) and sets a
//! signed session cookie ([`session`]); every state-changing form carries a CSRF token derived from the
//! session; every answer carries a strict Content-Security-Policy (no inline script or style). See
//! `docs/console.md`.

mod chart;
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
use serde_json::{json, Map, Value};

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
            .route("/endpoints", web::post().to(create_endpoint))
            .route("/endpoints/{id}", web::get().to(endpoint))
            .route("/endpoints/{id}", web::post().to(update_endpoint))
            .route("/endpoints/{id}/enabled", web::post().to(set_enabled))
            .route("/endpoints/{id}/rotate", web::post().to(rotate_secret))
            .route("/endpoints/{id}/secret", web::post().to(reveal_secret))
            .route("/endpoints/{id}/recover", web::post().to(recover_since))
            .route("/endpoints/{id}/test", web::post().to(send_test_event))
            .route(
                "/endpoints/{id}/replay-failed",
                web::post().to(replay_failed),
            )
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

/// A form (url-encoded) of a signed-in person (an operator or a portal developer) whose session is
/// `session`, once its CSRF token is checked (from the form's `csrf` field, or the `X-CSRF-Token`
/// header): the console's and the portal's one check.
fn csrf_checked(
    request: &HttpRequest,
    state: &AppState,
    session: &Session,
    body: &[u8],
) -> Result<Vec<(String, String)>, ConsoleError> {
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
        Some(token) if state.console.csrf_matches(session, &token) => Ok(pairs),
        _ => Err(ConsoleError::Csrf),
    }
}

/// A signed-in operator's form, once its CSRF token is checked.
fn checked_form(
    request: &HttpRequest,
    state: &AppState,
    body: &[u8],
) -> Result<(Operator, Vec<(String, String)>), ConsoleError> {
    let operator = signed_in(request, state)?;
    let pairs = csrf_checked(request, state, &operator.session, body)?;
    Ok((operator, pairs))
}

/// The `enabled` field of an "Enable" / "Disable" form.
fn enabled_field(pairs: &mut Vec<(String, String)>) -> Result<bool, ApiError> {
    match take(pairs, "enabled").as_deref() {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        _ => Err(ApiError::InvalidParameter {
            parameter: "enabled".into(),
            problem: "must be true or false".into(),
        }),
    }
}

/// An endpoint form's fields as the JSON object the query API's registration and change take (they
/// check it: `endpoints::create_endpoint` and `endpoints::update_endpoint`). A list none of whose
/// options is chosen is empty (every event type, every provider); an empty text is left out when
/// `creating`, and clears the description when changing. `owner` is taken only when `with_owner` (the
/// portal sets its link's owner itself).
fn endpoint_object(
    pairs: &[(String, String)],
    creating: bool,
    with_owner: bool,
) -> Map<String, Value> {
    let mut object = Map::new();
    let mut lists: [(&str, Vec<Value>); 2] =
        [("event_types", Vec::new()), ("providers", Vec::new())];
    for (name, value) in pairs {
        let value = value.trim();
        match name.as_str() {
            "url" => {
                object.insert("url".into(), json!(value));
            }
            "description" if !(creating && value.is_empty()) => {
                object.insert("description".into(), json!(value));
            }
            "owner" if with_owner && !value.is_empty() => {
                object.insert("owner".into(), json!(value));
            }
            other => {
                if let Some((_, list)) = lists.iter_mut().find(|(list, _)| *list == other) {
                    list.push(json!(value));
                }
            }
        }
    }
    for (name, list) in lists {
        object.insert(name.into(), Value::Array(list));
    }
    object
}

/// A form's pairs without its CSRF token (to show the form again with what was typed).
fn typed(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .filter(|(name, _)| name != "csrf")
        .collect()
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
    /// Callbacks per provider and minute over the last day (`callback_minutes`), and the current minute.
    minutes: std::collections::BTreeMap<String, std::collections::BTreeMap<i64, u64>>,
    now_minute: i64,
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
    let now_minute = crate::callback_minutes::minute_of(chrono::Utc::now());
    let minutes = crate::callback_minutes::read(
        state.store.database(),
        &state.callback_minutes,
        now_minute - 24 * 60 + 1,
        now_minute,
    )
    .await
    .map_err(crate::stored::unavailable)?;
    Ok(Figures {
        minutes,
        now_minute,
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
    ok(endpoints_page(
        &request,
        &state,
        &operator,
        &pages::EndpointForm::EMPTY,
        None,
    )
    .await?)
}

async fn endpoints_page(
    request: &HttpRequest,
    state: &AppState,
    operator: &Operator,
    form: &pages::EndpointForm<'_>,
    created: Option<&Value>,
) -> Result<maud::Markup, ApiError> {
    let filters = Filters::from_pairs(filled(request)?, &["limit", "cursor"])?;
    let page = endpoints::list_endpoints(state, &filters).await?;
    let health = events::delivery_health(state).await?;
    Ok(pages::endpoints(operator, &page, &health, form, created))
}

/// Registers an endpoint (the query API's registration and its checks); a problem is shown at its
/// field, with what was typed, and nothing is registered.
async fn create_endpoint(
    request: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let (operator, pairs) = checked_form(&request, &state, &body)?;
    let object = endpoint_object(&pairs, true, true);
    let typed = typed(pairs);
    match endpoints::create_endpoint(&state, &object).await {
        Ok(created) => {
            tracing::info!(
                endpoint = field_text(&created, "id"),
                "endpoint registered in the console"
            );
            ok(endpoints_page(
                &request,
                &state,
                &operator,
                &pages::EndpointForm::EMPTY,
                Some(&created),
            )
            .await?)
        }
        Err(ApiError::InvalidParameter { parameter, problem }) => {
            let form = pages::EndpointForm {
                values: &typed,
                problem: Some((parameter, problem)),
            };
            Ok(html(
                StatusCode::BAD_REQUEST,
                endpoints_page(&request, &state, &operator, &form, None).await?,
            ))
        }
        Err(other) => Err(other.into()),
    }
}

fn field_text(value: &Value, name: &str) -> String {
    value[name].as_str().unwrap_or_default().to_owned()
}

/// An endpoint's page, its change form filled with what is stored.
async fn endpoint_page(
    state: &AppState,
    operator: &Operator,
    id: &str,
    extras: &pages::EndpointExtras<'_>,
) -> Result<maud::Markup, ApiError> {
    let view = crate::delivery::public_view(&endpoints::find(state, id).await?);
    let values = pages::endpoint_values(&view);
    let form = pages::EndpointForm {
        values: &values,
        problem: None,
    };
    let health = events::delivery_health(state).await?;
    let extras = pages::EndpointExtras {
        health: health.get(id),
        ..*extras
    };
    Ok(pages::endpoint(operator, &view, &form, &extras))
}

const NO_EXTRAS: pages::EndpointExtras<'static> = pages::EndpointExtras {
    secret: None,
    answer: None,
    test_event: None,
    health: None,
};

async fn endpoint(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let operator = signed_in(&request, &state)?;
    ok(endpoint_page(&state, &operator, &path, &NO_EXTRAS).await?)
}

/// Changes an endpoint (the query API's change and its checks); a problem is shown at its field, with
/// what was typed, and nothing is changed.
async fn update_endpoint(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let (operator, pairs) = checked_form(&request, &state, &body)?;
    let object = endpoint_object(&pairs, false, true);
    match endpoints::update_endpoint(&state, &path, &object).await {
        Ok(_) => {
            let answer = Ok("Saved.".to_owned());
            let extras = pages::EndpointExtras {
                secret: None,
                answer: Some(&answer),
                test_event: None,
                health: None,
            };
            ok(endpoint_page(&state, &operator, &path, &extras).await?)
        }
        Err(ApiError::InvalidParameter { parameter, problem }) => {
            let typed = typed(pairs);
            let view = crate::delivery::public_view(&endpoints::find(&state, &path).await?);
            let form = pages::EndpointForm {
                values: &typed,
                problem: Some((parameter, problem)),
            };
            Ok(html(
                StatusCode::BAD_REQUEST,
                pages::endpoint(&operator, &view, &form, &NO_EXTRAS),
            ))
        }
        Err(other) => Err(other.into()),
    }
}

/// A new signing secret (the query API's rotation), shown once in the answer with those still signing.
async fn rotate_secret(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let (operator, _) = checked_form(&request, &state, &body)?;
    let secret = endpoints::rotate_secret(&state, &path).await?;
    tracing::info!(
        endpoint = path.as_str(),
        "endpoint secret rotated in the console"
    );
    let extras = pages::EndpointExtras {
        secret: Some(&secret),
        answer: None,
        test_event: None,
        health: None,
    };
    ok(endpoint_page(&state, &operator, &path, &extras).await?)
}

/// The signing secrets, on request (a POST with the CSRF token: never in a page's URL or a GET).
async fn reveal_secret(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let (operator, _) = checked_form(&request, &state, &body)?;
    let secret = endpoints::secret_of(&state, &path).await?;
    let extras = pages::EndpointExtras {
        secret: Some(&secret),
        answer: None,
        test_event: None,
        health: None,
    };
    ok(endpoint_page(&state, &operator, &path, &extras).await?)
}

/// Every failed event of the endpoint sent again, all of them or those created since the form's
/// `since` (`endpoints::recover_failed`, what `POST /v1/endpoints/{id}/recover` does); the answer says
/// how many.
async fn recover_failed(
    request: &HttpRequest,
    state: &AppState,
    id: &str,
    body: &[u8],
    with_since: bool,
) -> Result<HttpResponse, ConsoleError> {
    let (operator, mut pairs) = checked_form(request, state, body)?;
    let answer = match since_field(&mut pairs, with_since) {
        Ok(since) => endpoints::recover_failed(state, id, since)
            .await
            .map(|count| {
                let since = since.map_or(String::new(), |since| {
                    format!(" created since {}", since.to_rfc3339())
                });
                format!("Sent again: {count} failed event(s){since}.")
            }),
        Err(error) => Err(error),
    }
    .map_err(|error| problem_text(&error));
    if answer.is_ok() {
        tracing::info!(endpoint = id, "failed events sent again from the console");
    }
    if is_htmx(request) {
        return ok(pages::answer(&answer));
    }
    let extras = pages::EndpointExtras {
        secret: None,
        answer: Some(&answer),
        test_event: None,
        health: None,
    };
    let status = if answer.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(html(
        status,
        endpoint_page(state, &operator, id, &extras).await?,
    ))
}

/// The recover form's `since`, read as the query API reads it (a date or an RFC 3339 time).
fn since_field(
    pairs: &mut Vec<(String, String)>,
    with_since: bool,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    if !with_since {
        return Ok(None);
    }
    let required = || ApiError::InvalidParameter {
        parameter: "since".into(),
        problem: "is required".into(),
    };
    let since = take(pairs, "since")
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
        .ok_or_else(required)?;
    Filters::from_pairs(vec![("since".to_owned(), since)], &["since"])?
        .since
        .map(Some)
        .ok_or_else(required)
}

async fn recover_since(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    recover_failed(&request, &state, &path, &body, true).await
}

async fn replay_failed(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    recover_failed(&request, &state, &path, &body, false).await
}

/// "Send a test event": the query API's `POST /v1/endpoints/{id}/test`; the endpoint's page then links
/// to the event's, where its attempt appears.
async fn send_test_event(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let (operator, _) = checked_form(&request, &state, &body)?;
    let (status, answer, sent) = match endpoints::send_test_event(&state, &path).await {
        Ok(id) => (StatusCode::OK, None, Some(id)),
        Err(ApiError::Conflict { message, .. }) => (StatusCode::CONFLICT, Some(Err(message)), None),
        Err(other) => return Err(other.into()),
    };
    let extras = pages::EndpointExtras {
        secret: None,
        answer: answer.as_ref(),
        test_event: sent.as_deref(),
        health: None,
    };
    Ok(html(
        status,
        endpoint_page(&state, &operator, &path, &extras).await?,
    ))
}

/// Turns an endpoint on or off (the query API's change), then back to where the form was.
async fn set_enabled(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let (_, mut pairs) = checked_form(&request, &state, &body)?;
    let enabled = enabled_field(&mut pairs)?;
    let mut change = Map::new();
    change.insert("enabled".into(), Value::Bool(enabled));
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
