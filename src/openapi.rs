//! `GET /openapi.json`: an OpenAPI 3.1 description of everything the service serves, generated from the
//! code — the webhook endpoints from the provider registry (with each one's acknowledgement), the query
//! API's item types through their `utoipa` schemas, and the error body every failure shares.
//!
//! Length: the OpenAPI document is declarations, one per route and schema; a test matches it against every
//! served route.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use mmo_actors::providers::{Method, Reply};
use mmo_actors::PROVIDERS;
use serde_json::{json, Map, Value};
use utoipa::PartialSchema;

use crate::read_api::{
    CallbackItem, DailyReport, MoneyLine, MoneyReport, RejectedItem, Replayed, ReportLine,
    TransactionDetail, TransactionItem, TransactionReference, CALLBACK_FILTERS, REJECTED_FILTERS,
    TRANSACTION_FILTERS,
};
use crate::reconciler_api::{
    ExpectationItem, ExpectationView, ReconciliationItem, ReconciliationReport, Tally,
};
use mmo_actors::store::events::EventType;

pub async fn openapi() -> HttpResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let document = DOCUMENT.get_or_init(|| document().to_string());
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.as_str())
}

fn schema<T: PartialSchema>() -> Value {
    serde_json::to_value(T::schema()).unwrap_or(Value::Null)
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": reference("Error")}}})
}

/// The errors a callback endpoint may answer, besides its acknowledgement.
fn callback_errors() -> Map<String, Value> {
    let mut responses = Map::new();
    for (status, description) in [
        ("400", "Not understood (INVALID_FORMAT): the body was quarantined first"),
        ("401", "A required proof is missing or wrong (AUTH_REQUIRED), or a signature does not verify (INVALID_SIGNATURE)"),
        ("408", "The body did not arrive in time (REQUEST_TIMEOUT)"),
        ("413", "The body is too large (PAYLOAD_TOO_LARGE)"),
        ("429", "Over the client's rate limit (RATE_LIMIT_EXCEEDED)"),
        ("500", "Unexpected (INTERNAL_ERROR)"),
        ("503", "Not stored: retry later (STORAGE_UNAVAILABLE, OVERLOADED)"),
    ] {
        responses.insert(status.to_owned(), error_response(description));
    }
    responses
}

fn admin_errors(responses: &mut Map<String, Value>) {
    responses.insert(
        "400".into(),
        error_response("A parameter is invalid (INVALID_PARAMETER); the message names it"),
    );
    responses.insert(
        "401".into(),
        error_response("No admin token (AUTH_REQUIRED)"),
    );
    responses.insert(
        "503".into(),
        error_response("MongoDB could not answer (STORAGE_UNAVAILABLE)"),
    );
}

fn parameter(name: &str, location: &str, description: &str, schema: Value) -> Value {
    json!({
        "name": name,
        "in": location,
        "required": location == "path",
        "description": description,
        "schema": schema,
    })
}

fn list_parameters(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|name| match *name {
            "provider" => parameter(name, "query", "mpesa, mtn, airtel, or a stored name (mtn_mobile_money)", json!({"type": "string"})),
            "status" => parameter(name, "query", "Normalized status", json!({"type": "string", "enum": ["successful", "failed", "pending", "cancelled", "expired", "ambiguous", "unknown"]})),
            "callback_type" => parameter(name, "query", "Callback type (stk_push, collection, …)", json!({"type": "string"})),
            "flow" => parameter(name, "query", "A transaction's flow (stk_push, b2c, c2b, collection, disbursement, remittance, payment)", json!({"type": "string"})),
            "since" | "until" => parameter(name, "query", "RFC 3339 time or YYYY-MM-DD (since inclusive, until exclusive)", json!({"type": "string"})),
            "msisdn" => parameter(name, "query", "The payer's or payee's number, as sent (hashed like the stored ones when personal data is hashed)", json!({"type": "string"})),
            "conflict" => parameter(name, "query", "Only transactions in conflict (true) or not (false)", json!({"type": "boolean"})),
            "limit" => parameter(name, "query", "Items per page, 1 to 500 (default 50)", json!({"type": "integer", "minimum": 1, "maximum": 500})),
            "cursor" => parameter(name, "query", "The next_cursor of the previous page", json!({"type": "string"})),
            _ => parameter(name, "query", "", json!({"type": "string"})),
        })
        .collect()
}

fn page_of(item: &str) -> Value {
    json!({
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": reference(item)},
            "next_cursor": {"type": ["string", "null"]},
        },
    })
}

fn get_json(summary: &str, security: &str, parameters: Vec<Value>, body: Value) -> Value {
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({"description": summary, "content": {"application/json": {"schema": body}}}),
    );
    if security == "admin" {
        admin_errors(&mut responses);
    }
    let mut operation = json!({
        "summary": summary,
        "parameters": parameters,
        "responses": responses,
    });
    if security == "admin" {
        operation["security"] = json!([{"adminToken": []}]);
    }
    operation
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for provider in PROVIDERS {
        for endpoint in provider.endpoints() {
            let ack = match endpoint.reply {
                Reply::AfterStoring(ack) => serde_json::from_str(ack).unwrap_or(Value::Null),
                Reply::Decision => json!({"ResultCode": "0", "ResultDesc": "Accepted"}),
            };
            let mut responses = callback_errors();
            responses.insert(
                "200".into(),
                json!({
                    "description": match endpoint.reply {
                        Reply::AfterStoring(_) => "Journaled (fsync'd) before this acknowledgement",
                        Reply::Decision => "Decided at once from local rules; accepted, or rejected with a C2B000xx code",
                    },
                    "content": {"application/json": {"schema": {"type": "object"}, "example": ack}},
                }),
            );
            let operation = json!({
                "summary": format!("{} {} callback", provider.name(), endpoint.callback_type),
                "tags": ["webhooks"],
                "security": [{"bearerToken": []}, {}],
                "requestBody": {
                    "required": true,
                    "description": "The operator's callback, as it sends it (see docs/providers.md)",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": responses,
            });
            let path = format!("/v1/webhooks/{}/{}", provider.slug(), endpoint.path);
            for (pattern, with_token) in [
                (path.clone(), false),
                (format!("{path}/{{url_token}}"), true),
            ] {
                let mut item = Map::new();
                for method in endpoint.methods {
                    let mut operation = operation.clone();
                    if with_token {
                        operation["parameters"] = json!([parameter(
                            "url_token",
                            "path",
                            "The secret registered in the callback URL (providers.<name>.url_tokens)",
                            json!({"type": "string"}),
                        )]);
                    }
                    let method = match method {
                        Method::Post => "post",
                        Method::Put => "put",
                    };
                    item.insert(method.to_owned(), operation);
                }
                paths.insert(pattern, Value::Object(item));
            }
        }
        let mut health = get_json(
            &format!("{} health", provider.name()),
            "bearer",
            Vec::new(),
            json!({
                "type": "object",
                "properties": {
                    "status": {"type": "string", "const": "healthy"},
                    "provider": {"type": "string", "const": provider.name()},
                    "timestamp": {"type": "string", "format": "date-time"},
                },
            }),
        );
        health["tags"] = json!(["health"]);
        health["security"] = json!([{"bearerToken": []}]);
        paths.insert(
            format!("/v1/webhooks/{}/health", provider.slug()),
            json!({"get": health}),
        );
    }

    let list = |summary: &str, names: &[&str], item: &str| json!({"get": get_json(summary, "admin", list_parameters(names), page_of(item))});
    paths.insert(
        "/v1/transactions".into(),
        list(
            "Transactions, newest first",
            TRANSACTION_FILTERS,
            "TransactionItem",
        ),
    );
    let mut detail = get_json(
        "A transaction and its callbacks, oldest first",
        "admin",
        vec![
            parameter(
                "provider",
                "path",
                "mpesa, mtn, airtel, or a stored name",
                json!({"type": "string"}),
            ),
            parameter(
                "transaction_key",
                "path",
                "The transaction's key",
                json!({"type": "string"}),
            ),
            parameter(
                "flow",
                "query",
                "Needed when the key names transactions of several flows",
                json!({"type": "string"}),
            ),
        ],
        reference("TransactionDetail"),
    );
    detail["responses"]["404"] = error_response("No such transaction (NOT_FOUND)");
    paths.insert(
        "/v1/transactions/{provider}/{transaction_key}".into(),
        json!({"get": detail}),
    );
    paths.insert(
        "/v1/callbacks".into(),
        list("Callbacks, newest first", CALLBACK_FILTERS, "CallbackItem"),
    );
    paths.insert(
        "/v1/rejected".into(),
        list(
            "Quarantined bodies, newest first",
            REJECTED_FILTERS,
            "RejectedItem",
        ),
    );
    let mut one = get_json(
        "One quarantined body, with its raw text",
        "admin",
        vec![parameter(
            "id",
            "path",
            "The rejected body's id",
            json!({"type": "string"}),
        )],
        reference("RejectedItem"),
    );
    one["responses"]["404"] = error_response("No such rejected callback (NOT_FOUND)");
    paths.insert("/v1/rejected/{id}".into(), json!({"get": one}));
    let mut replay = get_json(
        "Runs a quarantined body through today's parsers and configuration; stored as a callback, as received when it first arrived, when understood (and, for a sender that did not authenticate, when what it presented passes today's authentication)",
        "admin",
        vec![parameter(
            "id",
            "path",
            "The rejected body's id",
            json!({"type": "string"}),
        )],
        reference("Replayed"),
    );
    replay["responses"]["404"] = error_response("No such rejected callback (NOT_FOUND)");
    replay["responses"]["409"] =
        error_response("Not replayable (NOT_REPLAYABLE: the sender is still not authenticated under today's configuration, only part of the body was kept, or its endpoint is not known) or replayed already (ALREADY_REPLAYED)");
    replay["responses"]["422"] =
        error_response("Still not understood (REPLAY_FAILED); nothing changed");
    paths.insert("/v1/rejected/{id}/replay".into(), json!({"post": replay}));
    let mut report = get_json(
        "One UTC day's callbacks (not transactions) per provider and callback type: counts by status, sums by currency; with Accept: text/csv, the day's transactions as CSV",
        "admin",
        vec![
            json!({"name": "date", "in": "query", "required": true, "description": "The UTC day, YYYY-MM-DD", "schema": {"type": "string", "format": "date"}}),
            parameter("provider", "query", "mpesa, mtn, airtel, or a stored name", json!({"type": "string"})),
        ],
        reference("DailyReport"),
    );
    report["description"] = json!(
        "Counts callbacks, as operators sent them: a payment with a pending and a successful callback shows under both statuses, an M-Pesa STK result and its C2B confirmation both count, and callbacks without a currency are left out of the sums. For money, use /v1/reports/money."
    );
    report["responses"]["200"]["content"]["text/csv"] = json!({"schema": {"type": "string"}});
    paths.insert("/v1/reports/daily".into(), json!({"get": report}));
    let mut money = get_json(
        "One settlement day's transactions (not callbacks) per provider, flow, currency and end-of-day status, with exact sums; with Accept: text/csv, the same lines as CSV",
        "admin",
        vec![
            json!({"name": "date", "in": "query", "required": true, "description": "The local day, YYYY-MM-DD", "schema": {"type": "string", "format": "date"}}),
            parameter("tz", "query", "IANA time zone the day is cut in (Africa/Nairobi). Optional with provider (then its settlement zone, reports.settlement_zones); required without", json!({"type": "string"})),
            parameter("provider", "query", "mpesa, mtn, airtel, or a stored name", json!({"type": "string"})),
        ],
        reference("MoneyReport"),
    );
    money["description"] = json!(
        "Transactions first seen within the day (first_callback_at), each counted once by the status it had when the day ended (folded from its callbacks and status-query answers received before then). An M-Pesa C2B confirmation linked to an STK result counts under the STK transaction. A transaction without a currency is counted on an `unknown` line. Amounts are exact decimal text."
    );
    money["responses"]["200"]["content"]["text/csv"] = json!({"schema": {"type": "string"}});
    paths.insert("/v1/reports/money".into(), json!({"get": money}));

    let expect = json!({
        "summary": "Registers a payment the merchant started and expects a callback for (idempotent on provider, callback type and key)",
        "tags": ["reconciliation"],
        "security": [{"clientToken": []}],
        "requestBody": {
            "required": true,
            "content": {"application/json": {"schema": {
                "type": "object",
                "additionalProperties": false,
                "required": ["provider", "callback_type", "key", "amount", "currency"],
                "properties": {
                    "provider": {"type": "string", "enum": ["mpesa", "mtn_mobile_money", "airtel_money", "mtn", "airtel"]},
                    "callback_type": {"type": "string", "description": "stk_push, b2c_result, c2b_confirmation (mpesa); collection, disbursement, remittance (mtn); payment, disbursement (airtel)"},
                    "key": {"type": "string", "maxLength": 200, "description": "STK CheckoutRequestID, B2C ConversationID, C2B TransID, MTN X-Reference-Id, Airtel transaction id"},
                    "amount": {"type": "string", "description": "Exact positive decimal, e.g. \"100.00\""},
                    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                    "msisdn": {"type": "string", "pattern": "^[0-9]{1,20}$"},
                    "expected_within_secs": {"type": "integer", "minimum": 1, "maximum": 604800, "default": 300},
                },
            }}},
        },
        "responses": {
            "201": {"description": "Registered", "content": {"application/json": {"schema": reference("ExpectationItem")}}},
            "200": {"description": "Registered already: the stored expectation", "content": {"application/json": {"schema": reference("ExpectationItem")}}},
            "400": error_response("A field is missing or invalid (INVALID_PARAMETER; the message names it)"),
            "401": error_response("No client token (AUTH_REQUIRED)"),
            "503": error_response("MongoDB could not answer (STORAGE_UNAVAILABLE)"),
        },
    });
    paths.insert("/v1/expectations".into(), json!({"post": expect}));
    let mut expectation = get_json(
        "An expectation, its transaction's status and the reconciler's progress (client or admin token)",
        "admin",
        vec![
            parameter("provider", "path", "mpesa, mtn, airtel, or a stored name", json!({"type": "string"})),
            parameter("key", "path", "The expected transaction's key", json!({"type": "string"})),
        ],
        reference("ExpectationView"),
    );
    expectation["security"] = json!([{"clientToken": []}, {"adminToken": []}]);
    expectation["tags"] = json!(["reconciliation"]);
    expectation["responses"]["404"] = error_response("No such expectation (NOT_FOUND)");
    paths.insert(
        "/v1/expectations/{provider}/{key}".into(),
        json!({"get": expectation}),
    );
    let mut reconciliation = get_json(
        "What the reconciler found for the transactions it opened work on that UTC day: counts and exact sums per currency",
        "admin",
        vec![
            json!({"name": "date", "in": "query", "required": true, "description": "The UTC day, YYYY-MM-DD", "schema": {"type": "string", "format": "date"}}),
            parameter("provider", "query", "mpesa, mtn, airtel, or a stored name", json!({"type": "string"})),
        ],
        reference("ReconciliationReport"),
    );
    reconciliation["tags"] = json!(["reconciliation"]);
    paths.insert(
        "/v1/reports/reconciliation".into(),
        json!({"get": reconciliation}),
    );

    delivery_paths(&mut paths);

    let mut metrics = get_json(
        "Prometheus metrics",
        "admin",
        Vec::new(),
        json!({"type": "string"}),
    );
    metrics["responses"]["200"]["content"] = json!({"text/plain": {"schema": {"type": "string"}}});
    paths.insert("/metrics".into(), json!({"get": metrics}));
    let probe = |summary: &str| {
        json!({"get": {
            "summary": summary,
            "tags": ["probes"],
            "responses": {
                "200": {"description": summary, "content": {"application/json": {"schema": {"type": "object"}}}},
                "503": {"description": "Not ready", "content": {"application/json": {"schema": {"type": "object"}}}},
            },
        }})
    };
    paths.insert("/livez".into(), probe("The process answers"));
    paths.insert(
        "/readyz".into(),
        probe("The journal accepts callbacks and no actor pool is failing"),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({"get": {
            "summary": "This document",
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}},
        }}),
    );

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "mmo-webhooks",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Receives mobile-money operators' callbacks, keeps each one durably before acknowledging it, and lets its operators query what it keeps.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerToken": {"type": "http", "scheme": "bearer", "description": "auth.bearer_tokens"},
                "adminToken": {"type": "http", "scheme": "bearer", "description": "auth.admin_tokens"},
                "clientToken": {"type": "http", "scheme": "bearer", "description": "auth.client_tokens"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message", "code"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "code": {"type": "string"},
                        "retry_after": {"type": "integer"},
                        "request_id": {"type": "string"},
                    },
                },
                "TransactionItem": schema::<TransactionItem>(),
                "TransactionReference": schema::<TransactionReference>(),
                "ReportLine": schema::<ReportLine>(),
                "TransactionDetail": schema::<TransactionDetail>(),
                "CallbackItem": schema::<CallbackItem>(),
                "RejectedItem": schema::<RejectedItem>(),
                "DailyReport": schema::<DailyReport>(),
                "MoneyReport": schema::<MoneyReport>(),
                "MoneyLine": schema::<MoneyLine>(),
                "Replayed": schema::<Replayed>(),
                "ExpectationItem": schema::<ExpectationItem>(),
                "ExpectationView": schema::<ExpectationView>(),
                "ReconciliationItem": schema::<ReconciliationItem>(),
                "ReconciliationReport": schema::<ReconciliationReport>(),
                "Tally": schema::<Tally>(),
                "Endpoint": endpoint_schema(false),
                "EndpointCreated": endpoint_schema(true),
                "EndpointSecret": {
                    "type": "object",
                    "required": ["secret", "previous"],
                    "properties": {
                        "secret": {"type": "string", "description": "whsec_ and base64: signs every delivery"},
                        "previous": {"type": "array", "items": {"type": "object", "properties": {
                            "secret": {"type": "string"},
                            "expires_at": {"type": ["string", "null"]},
                        }}, "description": "Rotated-out secrets still signing until expires_at"},
                    },
                },
                "Event": event_schema(false),
                "EventDetail": event_schema(true),
            },
        },
    })
}

fn endpoint_schema(with_secret: bool) -> Value {
    let mut schema = json!({
        "type": "object",
        "required": ["id", "url", "event_types", "providers", "enabled", "source"],
        "properties": {
            "id": {"type": "string", "description": "ep_… (or the id given in configuration)"},
            "url": {"type": "string"},
            "description": {"type": ["string", "null"]},
            "owner": {"type": ["string", "null"], "description": "The merchant's id a portal link names (POST /v1/portal/links)"},
            "event_types": {"type": "array", "items": {"type": "string", "enum": EventType::ALL}, "description": "Empty: every type"},
            "providers": {"type": "array", "items": {"type": "string"}, "description": "Stored provider names; empty: every provider"},
            "enabled": {"type": "boolean"},
            "disabled_reason": {"type": ["string", "null"]},
            "source": {"type": "string", "enum": ["api", "config"]},
            "created_at": {"type": ["string", "null"]},
        },
    });
    if with_secret {
        schema["properties"]["secret"] =
            json!({"type": "string", "description": "whsec_ and base64 of 32 random bytes"});
        schema["required"] = json!([
            "id",
            "url",
            "event_types",
            "providers",
            "enabled",
            "source",
            "secret"
        ]);
    }
    schema
}

fn event_schema(detail: bool) -> Value {
    let mut schema = json!({
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "evt_…: the webhook-id header, the same on every attempt"},
            "type": {"type": "string", "enum": EventType::ALL},
            "provider": {"type": "string"},
            "flow": {"type": "string"},
            "transaction_key": {"type": "string"},
            "version": {"type": "integer", "description": "The transaction's version this event shows"},
            "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
            "created_at": {"type": "string"},
            "targets": {"type": "array", "items": {"type": "object", "properties": {
                "endpoint": {"type": "string"},
                "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
                "attempts": {"type": "integer"},
                "next_attempt_at": {"type": ["string", "null"]},
            }}},
        },
    });
    if detail {
        schema["properties"]["payload"] = json!({"type": "object", "description": "The exact JSON delivered: {type, timestamp, data}"});
        schema["properties"]["attempts"] = json!({"type": "array", "items": {"type": "object", "properties": {
            "endpoint": {"type": "string"},
            "attempt": {"type": "integer"},
            "at": {"type": "string"},
            "status_code": {"type": ["integer", "null"]},
            "duration_ms": {"type": "integer"},
            "response": {"type": ["string", "null"], "description": "The first 1 KiB of the answer"},
            "error": {"type": ["string", "null"]},
        }}});
    }
    schema
}

/// Endpoints and events: delivery to the merchant's systems.
fn delivery_paths(paths: &mut Map<String, Value>) {
    let id = |what: &str| parameter("id", "path", what, json!({"type": "string"}));
    let with_tag = |mut operation: Value| {
        operation["tags"] = json!(["delivery"]);
        operation
    };
    let body = |required: bool| {
        json!({"required": true, "content": {"application/json": {"schema": {
            "type": "object",
            "additionalProperties": false,
            "required": if required { json!(["url"]) } else { json!([]) },
            "properties": {
                "url": {"type": "string", "description": "Absolute http(s) URL on the public internet. Refused, when the endpoint is registered and again at every connection: loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10), link-local and cloud metadata (169.254/16, fe80::/10), carrier-grade NAT (100.64/10), benchmarking, documentation, reserved, multicast, broadcast and unspecified addresses, Teredo, and IPv4-mapped, NAT64 or 6to4 addresses carrying any of those. delivery.allow_loopback allows loopback (local development); delivery.allow_private_networks allows everything"},
                "event_types": {"type": "array", "items": {"type": "string", "enum": EventType::ALL}},
                "providers": {"type": "array", "items": {"type": "string"}},
                "description": {"type": "string"},
                "owner": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,100}$", "description": "The merchant's id: a portal link for it shows this endpoint"},
                "max_in_flight": {"type": "integer", "minimum": 1, "maximum": 256},
                "rate_limit_per_sec": {"type": "integer", "minimum": 1},
                "enabled": {"type": "boolean", "description": "PATCH only"},
            },
        }}}})
    };
    let not_found = |operation: &mut Value, what: &str| {
        operation["responses"]["404"] = error_response(&format!("No such {what} (NOT_FOUND)"));
    };
    let configured = |operation: &mut Value| {
        operation["responses"]["409"] =
            error_response("Declared in configuration; change it there (CONFIGURED_ENDPOINT)");
    };

    let mut create = get_json(
        "Registers an endpoint; the answer carries its signing secret",
        "admin",
        Vec::new(),
        reference("EndpointCreated"),
    );
    let created = create["responses"]["200"].take();
    create["responses"]
        .as_object_mut()
        .map(|responses| responses.remove("200"));
    create["responses"]["201"] = created;
    create["requestBody"] = body(true);
    let listing = get_json(
        "Endpoints, newest first",
        "admin",
        list_parameters(&["limit", "cursor"]),
        page_of("Endpoint"),
    );
    paths.insert(
        "/v1/endpoints".into(),
        json!({"post": with_tag(create), "get": with_tag(listing)}),
    );

    let mut one = get_json(
        "One endpoint",
        "admin",
        vec![id("The endpoint's id")],
        reference("Endpoint"),
    );
    not_found(&mut one, "endpoint");
    let mut patch = get_json(
        "Changes an endpoint (enabled: true turns a disabled one on again)",
        "admin",
        vec![id("The endpoint's id")],
        reference("Endpoint"),
    );
    patch["requestBody"] = body(false);
    not_found(&mut patch, "endpoint");
    configured(&mut patch);
    let mut delete = get_json(
        "Deletes an endpoint",
        "admin",
        vec![id("The endpoint's id")],
        json!({}),
    );
    delete["responses"]
        .as_object_mut()
        .map(|responses| responses.remove("200"));
    delete["responses"]["204"] = json!({"description": "Deleted"});
    not_found(&mut delete, "endpoint");
    configured(&mut delete);
    paths.insert(
        "/v1/endpoints/{id}".into(),
        json!({"get": with_tag(one), "patch": with_tag(patch), "delete": with_tag(delete)}),
    );
    let mut secret = get_json(
        "The endpoint's signing secrets",
        "admin",
        vec![id("The endpoint's id")],
        reference("EndpointSecret"),
    );
    not_found(&mut secret, "endpoint");
    paths.insert(
        "/v1/endpoints/{id}/secret".into(),
        json!({"get": with_tag(secret)}),
    );
    let mut rotate = get_json("A new signing secret; the old one keeps signing beside it for delivery.secret_overlap_secs", "admin", vec![id("The endpoint's id")], reference("EndpointSecret"));
    not_found(&mut rotate, "endpoint");
    configured(&mut rotate);
    paths.insert(
        "/v1/endpoints/{id}/secret/rotate".into(),
        json!({"post": with_tag(rotate)}),
    );
    let mut recover = get_json(
        "Sends again every event that failed for this endpoint since a time",
        "admin",
        vec![
            id("The endpoint's id"),
            json!({"name": "since", "in": "query", "required": true, "description": "RFC 3339 time or YYYY-MM-DD", "schema": {"type": "string"}}),
        ],
        json!({"type": "object", "properties": {"requeued": {"type": "integer"}}}),
    );
    let requeued = recover["responses"]["200"].take();
    recover["responses"]
        .as_object_mut()
        .map(|responses| responses.remove("200"));
    recover["responses"]["202"] = requeued;
    not_found(&mut recover, "endpoint");
    paths.insert(
        "/v1/endpoints/{id}/recover".into(),
        json!({"post": with_tag(recover)}),
    );
    let mut test = get_json(
        "Queues a test event (type endpoint.test) for this endpoint only, delivered and signed as any event",
        "admin",
        vec![id("The endpoint's id")],
        json!({"type": "object", "properties": {
            "id": {"type": "string", "description": "The test event's id (evt_…)"},
            "type": {"type": "string", "enum": ["endpoint.test"]},
            "endpoint": {"type": "string"},
            "status": {"type": "string", "enum": ["pending"]},
            "event_url": {"type": "string", "description": "GET it for its attempts"},
            "console_url": {"type": "string", "description": "Its page in the console"},
        }}),
    );
    let queued = test["responses"]["200"].take();
    test["responses"]
        .as_object_mut()
        .map(|responses| responses.remove("200"));
    test["responses"]["202"] = queued;
    not_found(&mut test, "endpoint");
    test["responses"]["409"] = error_response("The endpoint is disabled (ENDPOINT_DISABLED)");
    paths.insert(
        "/v1/endpoints/{id}/test".into(),
        json!({"post": with_tag(test)}),
    );

    let mut filters = list_parameters(&["provider", "since", "until", "limit", "cursor"]);
    filters.push(parameter(
        "type",
        "query",
        "Event type",
        json!({"type": "string", "enum": EventType::ALL}),
    ));
    filters.push(parameter(
        "status",
        "query",
        "Delivery status",
        json!({"type": "string", "enum": ["pending", "delivered", "failed"]}),
    ));
    let events = get_json("Events, newest first", "admin", filters, page_of("Event"));
    paths.insert("/v1/events".into(), json!({"get": with_tag(events)}));
    let mut event = get_json(
        "One event, its payload and every attempt",
        "admin",
        vec![id("The event's id (evt_…)")],
        reference("EventDetail"),
    );
    not_found(&mut event, "event");
    paths.insert("/v1/events/{id}".into(), json!({"get": with_tag(event)}));
    let mut replay = get_json(
        "Sends an event again, to every endpoint it went to or to the one named",
        "admin",
        vec![
            id("The event's id (evt_…)"),
            parameter(
                "endpoint",
                "query",
                "Only this endpoint (added when the event did not go to it)",
                json!({"type": "string"}),
            ),
        ],
        json!({"type": "object", "properties": {"id": {"type": "string"}, "status": {"type": "string"}}}),
    );
    let accepted = replay["responses"]["200"].take();
    replay["responses"]
        .as_object_mut()
        .map(|responses| responses.remove("200"));
    replay["responses"]["202"] = accepted;
    not_found(&mut replay, "event");
    replay["responses"]["409"] =
        error_response("The event went to no endpoint: name one (NO_TARGETS)");
    paths.insert(
        "/v1/events/{id}/replay".into(),
        json!({"post": with_tag(replay)}),
    );

    let mut link = get_json(
        "A short-lived signed link to the portal of one owner's endpoints, their events and attempts",
        "admin",
        Vec::new(),
        json!({"type": "object", "required": ["url", "owner", "expires_at"], "properties": {
            "url": {"type": "string", "description": "Opens /portal/ for this owner until expires_at (portal.link_ttl_secs)"},
            "owner": {"type": "string"},
            "expires_at": {"type": "string", "description": "RFC 3339"},
        }}),
    );
    link["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {
        "type": "object",
        "additionalProperties": false,
        "required": ["owner"],
        "properties": {"owner": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,100}$", "description": "The endpoints' owner (a merchant's id)"}},
    }}}});
    let created = link["responses"]["200"].take();
    link["responses"]
        .as_object_mut()
        .map(|responses| responses.remove("200"));
    link["responses"]["201"] = created;
    paths.insert("/v1/portal/links".into(), json!({"post": with_tag(link)}));
}
