//! The portal of a merchant's developer at `/portal/`: opened by a short-lived signed link
//! (`POST /v1/portal/links`), it shows only the endpoints whose `owner` the link names, their events and
//! those endpoints' attempts; there they add endpoints, turn them on and off, and rotate and reveal their
//! secrets. An endpoint or event of another owner answers 404, as one that does not exist.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use maud::{html, Markup, DOCTYPE};
use mongodb::bson::Document;
use serde_json::{json, Map, Value};

use super::pages::{self, attempts_table, field, pretty, status, targets_list, EndpointForm};
use super::session::Session;
use super::{encode, html as page, ok, see_other, take, ConsoleError};
use crate::error::ApiError;
use crate::read_api;
use crate::routes::{endpoints, events};
use crate::state::AppState;

/// The portal session cookie's name.
pub const COOKIE: &str = "mmo_portal";

pub(super) fn configure(config: &mut ServiceConfig) {
    config.service(
        web::scope("/portal")
            .wrap(from_fn(portal_headers))
            .route("", web::get().to(|| async { see_other("/portal/") }))
            .route("/enter", web::get().to(enter))
            .route("/", web::get().to(home))
            .route("/logout", web::post().to(logout))
            .route("/endpoints", web::post().to(create))
            .route("/endpoints/{id}", web::get().to(endpoint))
            .route("/endpoints/{id}/enabled", web::post().to(set_enabled))
            .route("/endpoints/{id}/rotate", web::post().to(rotate))
            .route("/endpoints/{id}/secret", web::post().to(reveal))
            .route("/endpoints/{id}/test", web::post().to(send_test_event))
            .route("/events/{id}", web::get().to(event)),
    );
}

/// The portal's Content-Security-Policy: the console's, framed only by the configured origins.
fn policy(frame_ancestors: &[String]) -> String {
    let ancestors = if frame_ancestors.is_empty() {
        "'none'".to_owned()
    } else {
        frame_ancestors.join(" ")
    };
    super::CONTENT_SECURITY_POLICY.replace(
        "frame-ancestors 'none'",
        &format!("frame-ancestors {ancestors}"),
    )
}

async fn portal_headers(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let (enabled, ancestors) = state
        .as_ref()
        .map(|state| (state.portal.enabled, state.portal.frame_ancestors.clone()))
        .unwrap_or_default();
    let mut response = if enabled {
        next.call(request).await?.map_into_boxed_body()
    } else {
        request.into_response(ApiError::NotFound.error_response())
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&policy(&ancestors)) {
        headers.insert(HeaderName::from_static("content-security-policy"), value);
    }
    if ancestors.is_empty() {
        headers.insert(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        );
    }
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    Ok(response)
}

/// A developer in the portal: whose endpoints they see, and their session's CSRF token.
struct Developer {
    owner: String,
    session: Session,
    csrf: String,
}

fn signed_in(request: &HttpRequest, state: &AppState) -> Result<Developer, ConsoleError> {
    let (owner, session) = request
        .headers()
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| super::session::cookie_value(value, COOKIE))
        .find_map(|value| state.console.open_portal_session(value))
        .ok_or(ConsoleError::NoPortalSession)?;
    let csrf = state.console.csrf(&session);
    Ok(Developer {
        owner,
        session,
        csrf,
    })
}

/// A developer's form, once its CSRF token is checked (the console's own check).
fn checked_form(
    request: &HttpRequest,
    state: &AppState,
    body: &[u8],
) -> Result<(Developer, Vec<(String, String)>), ConsoleError> {
    let developer = signed_in(request, state)?;
    let pairs = super::csrf_checked(request, state, &developer.session, body)?;
    Ok((developer, pairs))
}

fn cookie(state: &AppState, value: &str, max_age: u64) -> String {
    // A cross-site iframe gets only a `SameSite=None` cookie, which browsers take only when `Secure`.
    let same_site = if state.portal.frame_ancestors.is_empty() {
        if state.console.secure_cookie {
            "SameSite=Strict; Secure"
        } else {
            "SameSite=Strict"
        }
    } else {
        "SameSite=None; Secure"
    };
    format!("{COOKIE}={value}; Path=/portal; Max-Age={max_age}; HttpOnly; {same_site}")
}

/// `GET /portal/enter?link=…`: opens a session for the link's owner. The answer is a page that moves on
/// to `/portal/` by itself: a `SameSite=Strict` cookie set while arriving from another site is sent only
/// on the next navigation that starts here.
async fn enter(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let link = read_api::query_pairs(request.query_string())
        .ok()
        .and_then(|mut pairs| take(&mut pairs, "link"));
    let Some(owner) = link.and_then(|link| state.console.open_portal_link(&link)) else {
        return page(
            StatusCode::UNAUTHORIZED,
            pages::problem(
                "This link does not open the portal",
                "The link is not one this service gave, or it has expired: ask your dashboard for a new one.",
            ),
        );
    };
    let value = state
        .console
        .portal_session(&owner, state.portal.session_ttl);
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content="0;url=/portal/";
                title { "Opening the portal" }
            }
            body { p { a href="/portal/" { "Open the portal" } } }
        }
    };
    let mut response = page(StatusCode::OK, markup);
    if let Ok(value) =
        HeaderValue::from_str(&cookie(&state, &value, state.portal.session_ttl.as_secs()))
    {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn logout(
    request: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    checked_form(&request, &state, &body)?;
    let mut response = page(
        StatusCode::OK,
        pages::problem(
            "Signed out",
            "Open the portal again with a new link from your dashboard.",
        ),
    );
    if let Ok(value) = HeaderValue::from_str(&cookie(&state, "", 0)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

fn layout(developer: &Developer, title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (pages::head(title))
            body {
                header {
                    span.brand { "Webhooks portal" }
                    nav aria-label="Portal" { a href="/portal/" { "Endpoints and events" } }
                    span.muted { (developer.owner) }
                    form.inline method="post" action="/portal/logout" {
                        input type="hidden" name="csrf" value=(developer.csrf);
                        button.secondary type="submit" { "Sign out" }
                    }
                }
                main { h1 { (title) } (content) }
            }
        }
    }
}

/// The owner's endpoints (their documents) and their ids.
async fn owned_endpoints(
    state: &AppState,
    owner: &str,
) -> Result<(Vec<Document>, Vec<String>), ApiError> {
    let documents = endpoints::endpoints_of_owner(state, owner).await?;
    let ids = documents
        .iter()
        .filter_map(|document| document.get_str("_id").ok().map(str::to_owned))
        .collect();
    Ok((documents, ids))
}

/// An endpoint of `owner`; another owner's is "no such endpoint", as one that does not exist.
async fn owned(state: &AppState, owner: &str, id: &str) -> Result<Document, ApiError> {
    let document = endpoints::find(state, id).await?;
    if document.get_str("owner") != Ok(owner) {
        return Err(ApiError::NoSuch("endpoint"));
    }
    Ok(document)
}

/// `event` with only the targets and attempts of `ids` (an event may also go to other owners'
/// endpoints: those are never shown).
fn only_for(mut event: Value, ids: &[String]) -> Value {
    let mine = |item: &Value| {
        item["endpoint"]
            .as_str()
            .is_some_and(|endpoint| ids.iter().any(|id| id == endpoint))
    };
    for list in ["targets", "attempts"] {
        if let Some(items) = event[list].as_array_mut() {
            items.retain(mine);
        }
    }
    event
}

async fn home(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let developer = signed_in(&request, &state)?;
    ok(home_page(&state, &developer, &EndpointForm::EMPTY, None).await?)
}

async fn home_page(
    state: &AppState,
    developer: &Developer,
    form: &EndpointForm<'_>,
    created: Option<&Value>,
) -> Result<Markup, ApiError> {
    let (documents, ids) = owned_endpoints(state, &developer.owner).await?;
    let recent: Vec<Value> = events::events_of_owner(state, &developer.owner, 50)
        .await?
        .into_iter()
        .map(|event| only_for(event, &ids))
        .collect();
    let views: Vec<Value> = documents.iter().map(crate::delivery::public_view).collect();
    // From the attempts on the events listed below (already read): nothing more to ask MongoDB.
    let health = events::health_of(&recent);
    let content = html! {
        @if let Some(created) = created {
            div.answer.good role="status" {
                p { "Endpoint " code { (field(created, "id")) } " added. Its signing secret, shown this once (you can reveal it again on its page):" }
                pre { (field(created, "secret")) }
            }
        }
        h2 { "Endpoints" }
        @if views.is_empty() {
            p.muted { "No endpoints yet." }
        } @else {
            div.scroll { table {
                thead { tr { th { "Endpoint" } th { "URL" } th { "Events" } th { "State" } th { "Failure rate" } th { "Last success" } } }
                tbody {
                    @for view in &views {
                        tr {
                            td { a href=(format!("/portal/endpoints/{}", encode(&field(view, "id")))) { (field(view, "id")) } br; span.muted { (field(view, "description")) } }
                            td { (field(view, "url")) }
                            td { (field(view, "event_types")) }
                            td {
                                @if view["enabled"] == Value::Bool(false) { span.bad { "disabled" } } @else { span.good { "enabled" } }
                                @if !view["failing_since"].is_null() { br; span.bad { "failing since " (field(view, "failing_since")) } }
                            }
                            @let (rate, last) = pages::health_cells(health.get(&field(view, "id")));
                            td { (rate) }
                            td { (last) }
                        }
                    }
                }
            } }
        }
        p.muted { "Failure rate and last success: from the attempts on your recent events below." }
        h2 { "Add an endpoint" }
        (pages::endpoint_form("/portal/endpoints", &developer.csrf, form, "Add", false))
        h2 { "Recent events" }
        @if recent.is_empty() {
            p.muted { "No events for your endpoints yet." }
        } @else {
            div.scroll { table {
                thead { tr { th { "Created" } th { "Type" } th { "Transaction" } th { "Delivery" } } }
                tbody {
                    @for event in &recent {
                        tr {
                            td { a href=(format!("/portal/events/{}", encode(&field(event, "id")))) { (field(event, "created_at")) } }
                            td { (field(event, "type")) }
                            td { @if event["transaction_key"].is_string() { (field(event, "provider")) " " (field(event, "transaction_key")) } @else { span.muted { "none (a test event)" } } }
                            td { (targets_list(event)) }
                        }
                    }
                }
            } }
        }
    };
    Ok(layout(developer, "Your webhooks", content))
}

/// `POST /portal/endpoints`: an endpoint of the link's owner (the query API's registration, its
/// `owner` set by the portal, never by the form).
async fn create(
    request: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let (developer, pairs) = checked_form(&request, &state, &body)?;
    let mut object = super::endpoint_object(&pairs, true, false);
    object.insert("owner".into(), json!(developer.owner));
    let shown = super::typed(pairs);
    match endpoints::create_endpoint(&state, &object).await {
        Ok(created) => {
            tracing::info!(owner = developer.owner, "endpoint added in the portal");
            ok(home_page(&state, &developer, &EndpointForm::EMPTY, Some(&created)).await?)
        }
        Err(ApiError::InvalidParameter { parameter, problem }) => {
            let form = EndpointForm {
                values: &shown,
                problem: Some((parameter, problem)),
            };
            Ok(page(
                StatusCode::BAD_REQUEST,
                home_page(&state, &developer, &form, None).await?,
            ))
        }
        Err(other) => Err(other.into()),
    }
}

async fn endpoint(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let developer = signed_in(&request, &state)?;
    let document = owned(&state, &developer.owner, &path).await?;
    ok(endpoint_page(&developer, &document, None, None))
}

fn endpoint_page(
    developer: &Developer,
    document: &Document,
    secret: Option<&Value>,
    test_event: Option<&str>,
) -> Markup {
    let view = crate::delivery::public_view(document);
    let id = field(&view, "id");
    let enabled = view["enabled"] != Value::Bool(false);
    let action = |what: &str| format!("/portal/endpoints/{}/{what}", encode(&id));
    let content = html! {
        dl.fields {
            dt { "URL" } dd { (field(&view, "url")) }
            dt { "Description" } dd { (field(&view, "description")) }
            dt { "Events" } dd { (field(&view, "event_types")) }
            dt { "Providers" } dd { (field(&view, "providers")) }
            dt { "State" } dd {
                @if enabled { span.good { "enabled" } } @else { span.bad { "disabled" } " " (field(&view, "disabled_reason")) }
                @if !view["failing_since"].is_null() { " — " span.bad { "failing since " (field(&view, "failing_since")) } }
            }
            dt { "Created" } dd { (field(&view, "created_at")) }
        }
        p {
            form.inline method="post" action=(action("enabled")) {
                input type="hidden" name="csrf" value=(developer.csrf);
                input type="hidden" name="enabled" value=(if enabled { "false" } else { "true" });
                button.secondary type="submit" { (if enabled { "Disable" } else { "Enable" }) }
            }
            " "
            form.inline method="post" action=(action("secret")) {
                input type="hidden" name="csrf" value=(developer.csrf);
                button.secondary type="submit" { "Reveal the signing secret" }
            }
            " "
            form.inline method="post" action=(action("rotate")) {
                input type="hidden" name="csrf" value=(developer.csrf);
                button type="submit" { "Rotate the secret" }
            }
        }
        @if let Some(secret) = secret { (pages::secret_section(secret)) }
        @if enabled { (pages::test_event_section(&action("test"), &developer.csrf, test_event, "/portal/events/")) }
    };
    layout(developer, &format!("Endpoint {id}"), content)
}

async fn set_enabled(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let (developer, mut pairs) = checked_form(&request, &state, &body)?;
    owned(&state, &developer.owner, &path).await?;
    let enabled = super::enabled_field(&mut pairs)?;
    let mut change = Map::new();
    change.insert("enabled".into(), Value::Bool(enabled));
    endpoints::update_endpoint(&state, &path, &change).await?;
    Ok(see_other(&format!("/portal/endpoints/{}", encode(&path))))
}

async fn rotate(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let (developer, _) = checked_form(&request, &state, &body)?;
    owned(&state, &developer.owner, &path).await?;
    let secret = endpoints::rotate_secret(&state, &path).await?;
    let document = owned(&state, &developer.owner, &path).await?;
    ok(endpoint_page(&developer, &document, Some(&secret), None))
}

async fn reveal(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let (developer, _) = checked_form(&request, &state, &body)?;
    let document = owned(&state, &developer.owner, &path).await?;
    let secret = endpoints::secret_of(&state, &path).await?;
    ok(endpoint_page(&developer, &document, Some(&secret), None))
}

/// "Send a test event" to one of the owner's endpoints (the query API's own function).
async fn send_test_event(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let (developer, _) = checked_form(&request, &state, &body)?;
    owned(&state, &developer.owner, &path).await?;
    let sent = endpoints::send_test_event(&state, &path).await?;
    let document = owned(&state, &developer.owner, &path).await?;
    ok(endpoint_page(&developer, &document, None, Some(&sent)))
}

async fn event(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let developer = signed_in(&request, &state)?;
    let (_, ids) = owned_endpoints(&state, &developer.owner).await?;
    let event = only_for(events::event_detail(&state, &path).await?, &ids);
    if event["targets"].as_array().is_none_or(Vec::is_empty) {
        return Err(ApiError::NoSuch("event").into());
    }
    let content = html! {
        dl.fields {
            dt { "Type" } dd { (field(&event, "type")) }
            dt { "Status" } dd { (status(&field(&event, "status"))) }
            dt { "Transaction" } dd { @if event["transaction_key"].is_string() { (field(&event, "provider")) " " (field(&event, "flow")) " " (field(&event, "transaction_key")) } @else { span.muted { "none (a test event)" } } }
            dt { "Created" } dd { (field(&event, "created_at")) }
        }
        h2 { "Your endpoints" }
        (targets_list(&event))
        h2 { "Attempts" }
        (attempts_table(&event))
        h2 { "Payload" }
        pre { (pretty(&event["payload"])) }
    };
    ok(layout(
        &developer,
        &format!("Event {}", field(&event, "id")),
        content,
    ))
}
