//! The console's pages: maud templates, checked at compile time. Every value spliced in is escaped
//! (maud's default), so what an operator sent shows as text, never as markup.

use std::collections::BTreeMap;

use maud::{html, Markup, DOCTYPE};
use mmo_actors::store::events::EventType;
use serde_json::Value;

use super::{asset_url, chart, encode, query, Figures, Operator};
use crate::read_api::{
    CallbackItem, DailyReport, Page, RejectedItem, Replayed, TransactionDetail, TransactionItem,
};
use crate::routes::events::{Health, HEALTH_WINDOW};

/// htmx without what a strict Content-Security-Policy forbids: no injected `<style>`, no `eval`.
const HTMX_CONFIG: &str =
    r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;

const NAV: &[(&str, &str)] = &[
    ("/ui/", "Overview"),
    ("/ui/transactions", "Transactions"),
    ("/ui/quarantine", "Quarantine"),
    ("/ui/events", "Events"),
    ("/ui/endpoints", "Endpoints"),
    ("/ui/reports", "Reports"),
];

pub(super) const PROVIDERS: &[(&str, &str)] = &[
    ("mpesa", "M-Pesa"),
    ("mtn_mobile_money", "MTN MoMo"),
    ("airtel_money", "Airtel Money"),
];

const STATUSES: &[&str] = &[
    "successful",
    "failed",
    "pending",
    "cancelled",
    "expired",
    "ambiguous",
    "unknown",
];

const FLOWS: &[&str] = &[
    "stk_push",
    "b2c",
    "c2b",
    "collection",
    "disbursement",
    "remittance",
    "payment",
];

pub(super) fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="htmx-config" content=(HTMX_CONFIG);
            title { (title) " · mmo-webhooks" }
            link rel="stylesheet" href=(asset_url("console.css"));
            script src=(asset_url("htmx.min.js")) defer {}
        }
    }
}

fn layout(operator: &Operator, current: &str, title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header {
                    span.brand { "mmo-webhooks" }
                    nav aria-label="Console" {
                        @for (href, label) in NAV {
                            a href=(href) aria-current=[(*href == current).then_some("page")] { (label) }
                        }
                    }
                    form.inline method="post" action="/ui/logout" {
                        input type="hidden" name="csrf" value=(operator.csrf);
                        button.secondary type="submit" { "Sign out" }
                    }
                }
                main { h1 { (title) } (content) }
            }
        }
    }
}

/// A page without the console's navigation (sign-in, errors).
pub(super) fn bare(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { main { (content) } }
        }
    }
}

pub fn login(problem: Option<&str>) -> Markup {
    bare(
        "Sign in",
        html! {
            form.login method="post" action="/ui/login" {
                h1 { "mmo-webhooks console" }
                @if let Some(problem) = problem {
                    p.answer.bad role="alert" { (problem) }
                }
                label {
                    "Admin token"
                    input type="password" name="token" autocomplete="current-password" required autofocus;
                }
                button type="submit" { "Sign in" }
                p.muted { "A token from auth.admin_tokens, as the query API takes it." }
            }
        },
    )
}

pub(super) fn problem(title: &str, message: &str) -> Markup {
    bare(
        title,
        html! {
            h1 { (title) }
            p.answer.bad role="alert" { (message) }
            p { a href="/ui/" { "Back to the console" } }
        },
    )
}

pub(super) fn or_dash(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("—")
}

/// A JSON value's field as text ("—" when absent).
pub(super) fn field(value: &Value, name: &str) -> String {
    match value.get(name) {
        None | Some(Value::Null) => "—".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

pub(super) fn status(status: &str) -> Markup {
    html! { span class=(format!("status-{status}")) { (status) } }
}

pub(super) fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

pub(super) fn transaction_url(provider: &str, flow: &str, key: &str) -> String {
    format!(
        "/ui/transactions/{}/{}?flow={}",
        encode(provider),
        encode(key),
        encode(flow)
    )
}

fn current<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn select(name: &str, label: &str, options: &[(&str, &str)], pairs: &[(String, String)]) -> Markup {
    let chosen = current(pairs, name);
    html! {
        label {
            (label)
            select name=(name) {
                option value="" { "any" }
                @for (value, text) in options {
                    option value=(value) selected[chosen == Some(*value)] { (text) }
                }
            }
        }
    }
}

fn text_input(name: &str, label: &str, placeholder: &str, pairs: &[(String, String)]) -> Markup {
    html! {
        label {
            (label)
            input type="text" name=(name) value=[current(pairs, name)] placeholder=(placeholder);
        }
    }
}

fn next_page(base: &str, pairs: &[(String, String)], next: Option<&str>) -> Markup {
    let href = next.map(|cursor| {
        let mut pairs: Vec<(String, String)> = pairs
            .iter()
            .filter(|(key, _)| key != "cursor")
            .cloned()
            .collect();
        pairs.push(("cursor".to_owned(), cursor.to_owned()));
        format!("{base}?{}", query(&pairs))
    });
    html! {
        @if let Some(href) = href {
            p.pager { a href=(href) { "Older →" } }
        }
    }
}

pub fn overview(operator: &Operator, figures: &Figures) -> Markup {
    layout(operator, "/ui/", "Overview", overview_figures(figures))
}

fn total_by_status(report: &DailyReport) -> BTreeMap<String, i64> {
    let mut totals = BTreeMap::new();
    for line in &report.lines {
        for (status, count) in &line.counts {
            *totals.entry(status.clone()).or_insert(0) += count;
        }
    }
    totals
}

/// The overview's figures: replaced by themselves every 30 seconds (htmx), or on reload.
pub fn overview_figures(figures: &Figures) -> Markup {
    let quarantined: i64 = figures.today.lines.iter().map(|l| l.quarantined).sum();
    let conflicts: i64 = figures.today.lines.iter().map(|l| l.conflicts).sum();
    let disabled = figures
        .endpoints
        .iter()
        .filter(|e| e["enabled"] == Value::Bool(false))
        .count();
    let failing = figures
        .endpoints
        .iter()
        .filter(|e| !e["failing_since"].is_null())
        .count();
    let callbacks = |report: &DailyReport| -> i64 {
        report
            .lines
            .iter()
            .flat_map(|line| line.counts.values())
            .sum()
    };
    html! {
        div #overview hx-get="/ui/overview" hx-trigger="every 30s" hx-swap="outerHTML" {
            div.cards {
                div.card { div.label { "MongoDB" } div.value.(if figures.mongodb == "reachable" { "good" } else { "bad" }) { (figures.mongodb) } }
                div.card { div.label { "Journal backlog (entries)" } div.value { (figures.journal_backlog) } }
                div.card { div.label { "Callbacks today (UTC)" } div.value { (callbacks(&figures.today)) } }
                div.card { div.label { "Callbacks yesterday" } div.value { (callbacks(&figures.yesterday)) } }
                div.card { div.label { "New conflicts today" } div.value { (conflicts) } }
                div.card { div.label { a href="/ui/quarantine" { "Quarantined today" } } div.value { (quarantined) } }
                div.card { div.label { a href="/ui/events?status=pending" { "Events waiting" } } div.value { (figures.events_waiting) } }
                div.card { div.label { a href="/ui/endpoints" { "Endpoints failing / disabled" } } div.value { (failing) " / " (disabled) } }
            }
            h2 { "Callbacks per provider" }
            div.charts {
                (chart::chart(PROVIDERS, &figures.minutes, figures.now_minute, &chart::Span {
                    id: "chart-hour", title: "Last hour", unit: "per minute", buckets: 60,
                    minutes_per_bucket: 1, x_labels: ["−60 min", "−30 min", "now"],
                }))
                (chart::chart(PROVIDERS, &figures.minutes, figures.now_minute, &chart::Span {
                    id: "chart-day", title: "Last day", unit: "per 10 minutes", buckets: 144,
                    minutes_per_bucket: 10, x_labels: ["−24 h", "−12 h", "now"],
                }))
            }
            h2 { "Status mix today" }
            @let totals = total_by_status(&figures.today);
            @if totals.is_empty() {
                p.muted { "No callbacks yet today." }
            } @else {
                div.scroll { table {
                    thead { tr { @for status_name in totals.keys() { th { (status(status_name)) } } } }
                    tbody { tr { @for count in totals.values() { td { (count) } } } }
                } }
            }
            h2 { "Callbacks per provider today (" (figures.today.date) ")" }
            (report_table(&figures.today))
            p.muted { "Refreshed every 30 seconds. Last day: " a href=(format!("/ui/reports?date={}", figures.yesterday.date)) { (figures.yesterday.date) } "." }
        }
    }
}

fn report_table(report: &DailyReport) -> Markup {
    html! {
        @if report.lines.is_empty() {
            p.muted { "Nothing received on " (report.date) "." }
        } @else {
            div.scroll { table {
                thead { tr { th { "Provider" } th { "Callback type" } th { "By status" } th { "Amounts" } th { "Conflicts" } th { "Quarantined" } } }
                tbody {
                    @for line in &report.lines {
                        tr {
                            td { (line.provider) }
                            td { (line.callback_type) }
                            td { @for (name, count) in &line.counts { (status(name)) " " (count) br; } }
                            td { @for (currency, by_status) in &line.amounts { @for (name, amount) in by_status { (currency) " " (amount) " (" (name) ")" br; } } }
                            td { (line.conflicts) }
                            td { (line.quarantined) }
                        }
                    }
                }
            } }
        }
    }
}

pub fn transactions(
    operator: &Operator,
    pairs: &[(String, String)],
    search: Option<&str>,
    items: &[TransactionItem],
    next: Option<&str>,
) -> Markup {
    let flows: Vec<(&str, &str)> = FLOWS.iter().map(|f| (*f, *f)).collect();
    let statuses: Vec<(&str, &str)> = STATUSES.iter().map(|s| (*s, *s)).collect();
    let content = html! {
        form.filters method="get" action="/ui/transactions" role="search" {
            label { "Key or receipt" input type="search" name="q" value=[search] placeholder="ws_CO_…, receipt"; }
            button type="submit" { "Find" }
        }
        form.filters method="get" action="/ui/transactions" {
            (select("provider", "Provider", PROVIDERS, pairs))
            (select("flow", "Flow", &flows, pairs))
            (select("status", "Status", &statuses, pairs))
            (text_input("since", "Since", "YYYY-MM-DD or RFC 3339", pairs))
            (text_input("until", "Until", "YYYY-MM-DD or RFC 3339", pairs))
            (text_input("msisdn", "MSISDN", "2547…", pairs))
            (select("conflict", "Conflict", &[("true", "in conflict"), ("false", "none")], pairs))
            button type="submit" { "Filter" }
            a href="/ui/transactions" { "Clear" }
        }
        @if let Some(search) = search {
            p { (items.len()) " transaction(s) with key or receipt " code { (search) } "." }
        }
        @if items.is_empty() {
            p.muted { "No transactions." }
        } @else {
            div.scroll { table {
                thead { tr { th { "First callback" } th { "Provider" } th { "Flow" } th { "Key" } th { "Status" } th { "Amount" } th { "MSISDN" } th { "Receipt" } th { "Flags" } } }
                tbody {
                    @for item in items {
                        tr {
                            td { (or_dash(&item.first_callback_at)) }
                            td { (item.provider) }
                            td { (item.flow) }
                            td { a href=(transaction_url(&item.provider, &item.flow, &item.transaction_key)) { (item.transaction_key) } }
                            td { (status(&item.status)) }
                            td { (or_dash(&item.amount)) " " (item.currency.as_deref().unwrap_or("")) }
                            td { (or_dash(&item.msisdn)) }
                            td { (or_dash(&item.receipt)) }
                            td { (flags(item)) }
                        }
                    }
                }
            } }
        }
        (next_page("/ui/transactions", pairs, next))
    };
    layout(operator, "/ui/transactions", "Transactions", content)
}

fn flags(item: &TransactionItem) -> Markup {
    html! {
        @if item.conflict { span.bad { "conflict" } " " }
        @if item.verified { span.good { "verified" } " " }
        @if item.unresolved { span.warn { "unresolved" } " " }
        @if let Some(by) = &item.settled_by { span.muted { "settled by " (by) } }
    }
}

pub fn transaction(operator: &Operator, detail: &TransactionDetail, events: &[Value]) -> Markup {
    let item = &detail.transaction;
    let content = html! {
        dl.fields {
            dt { "Provider" } dd { (item.provider) }
            dt { "Flow" } dd { (item.flow) }
            dt { "Key" } dd { code { (item.transaction_key) } }
            dt { "Status" } dd { (status(&item.status)) @if let Some(reason) = &item.reason { " — " (reason) } }
            dt { "Amount" } dd { (or_dash(&item.amount)) " " (item.currency.as_deref().unwrap_or("")) }
            dt { "MSISDN" } dd { (or_dash(&item.msisdn)) }
            dt { "Receipt" } dd { (or_dash(&item.receipt)) }
            dt { "Flags" } dd { (flags(item)) " conflicts recorded: " (item.conflict_count) }
            dt { "First / last callback" } dd { (or_dash(&item.first_callback_at)) " / " (or_dash(&item.last_callback_at)) }
            @if !item.linked_transactions.is_empty() {
                dt { "Linked" } dd {
                    @for link in &item.linked_transactions {
                        a href=(transaction_url(&link.provider, &link.flow, &link.transaction_key)) { (link.provider) " " (link.flow) " " (link.transaction_key) } br;
                    }
                }
            }
        }
        h2 { "Status history" }
        ol {
            @for callback in &detail.callbacks {
                li { (or_dash(&callback.received_at)) ": " (status(&callback.status)) " (" (callback.callback_type) ")" }
            }
        }
        h2 { "Callbacks (" (detail.callbacks.len()) ")" }
        @for callback in &detail.callbacks { (callback_section(callback)) }
        h2 { "Expectation and reconciliation" }
        @match (&detail.expectation, &detail.reconciliation) {
            (None, None) => p.muted { "No expectation was registered and the reconciler has not worked on it." },
            (expectation, reconciliation) => {
                @if let Some(expectation) = expectation { h3 { "Expectation" } pre { (pretty(expectation)) } }
                @if let Some(reconciliation) = reconciliation { h3 { "Reconciler (status-query answers)" } pre { (pretty(reconciliation)) } }
            }
        }
        h2 { "Events (" (events.len()) ")" }
        @if events.is_empty() {
            p.muted { "No event was written for this transaction (no endpoint wanted one)." }
        }
        @for event in events { (event_section(operator, event)) }
    };
    layout(
        operator,
        "/ui/transactions",
        &format!("Transaction {}", item.transaction_key),
        content,
    )
}

fn callback_section(callback: &CallbackItem) -> Markup {
    html! {
        section.answer {
            p {
                strong { (callback.callback_type) } " — " (status(&callback.status))
                " — received " (or_dash(&callback.received_at))
                @if callback.deliveries > 1 { " (" (callback.deliveries) " deliveries, last " (or_dash(&callback.last_received_at)) ")" }
            }
            p.muted {
                "result code " (or_dash(&callback.result_code)) ": " (or_dash(&callback.result_description))
                @if let Some(from) = &callback.replayed_from { " — replayed from quarantined " a href=(format!("/ui/quarantine/{}", encode(from))) { (from) } }
            }
            details {
                summary { "Payload as received" }
                pre { (callback.callback_data.as_ref().map(pretty).unwrap_or_default()) }
            }
        }
    }
}

/// A button that posts to `action`; with htmx, its answer replaces `target` (`swap`: `outerHTML` when the
/// answer is the target itself, `innerHTML` when it goes inside).
pub(super) fn replay_form(
    action: &str,
    target: &str,
    swap: &str,
    csrf: &str,
    label: &str,
) -> Markup {
    html! {
        form.inline method="post" action=(action) hx-post=(action) hx-target=(target) hx-swap=(swap) {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" { (label) }
        }
    }
}

pub(super) fn attempts_table(event: &Value) -> Markup {
    let attempts = event["attempts"].as_array().cloned().unwrap_or_default();
    html! {
        @if attempts.is_empty() {
            p.muted { "No attempt yet." }
        } @else {
            div.scroll { table {
                thead { tr { th { "At" } th { "Endpoint" } th { "#" } th { "HTTP status" } th { "Duration (ms)" } th { "Answer or error" } } }
                tbody {
                    @for attempt in &attempts {
                        tr {
                            td { (field(attempt, "at")) }
                            td { (field(attempt, "endpoint")) }
                            td { (field(attempt, "attempt")) }
                            td { (field(attempt, "status_code")) }
                            td { (field(attempt, "duration_ms")) }
                            td { @if !attempt["error"].is_null() { span.bad { (field(attempt, "error")) } } @else { (field(attempt, "response")) } }
                        }
                    }
                }
            } }
        }
    }
}

pub(super) fn targets_list(event: &Value) -> Markup {
    let targets = event["targets"].as_array().cloned().unwrap_or_default();
    html! {
        ul {
            @for target in &targets {
                li { (field(target, "endpoint")) ": " (status(&field(target, "status"))) ", " (field(target, "attempts")) " attempt(s)"
                    @if !target["next_attempt_at"].is_null() { ", next at " (field(target, "next_attempt_at")) } }
            }
        }
    }
}

fn event_section(operator: &Operator, event: &Value) -> Markup {
    let id = field(event, "id");
    let answer_id = format!("answer-{}", encode(&id));
    html! {
        section.answer {
            p {
                a href=(format!("/ui/events/{}", encode(&id))) { code { (id) } } " "
                strong { (field(event, "type")) } " — " (status(&field(event, "status"))) " — " (field(event, "created_at"))
            }
            (targets_list(event))
            (attempts_table(event))
            (replay_form(&format!("/ui/events/{}/replay", encode(&id)), &format!("#{answer_id}"), "innerHTML", &operator.csrf, "Send again"))
            div id=(answer_id) {}
        }
    }
}

pub fn quarantine(
    operator: &Operator,
    pairs: &[(String, String)],
    page: &Page<RejectedItem>,
) -> Markup {
    let content = html! {
        form.filters method="get" action="/ui/quarantine" {
            (select("provider", "Provider", PROVIDERS, pairs))
            (text_input("callback_type", "Callback type", "stk_push, collection…", pairs))
            (text_input("since", "Since", "YYYY-MM-DD or RFC 3339", pairs))
            (text_input("until", "Until", "YYYY-MM-DD or RFC 3339", pairs))
            button type="submit" { "Filter" }
            a href="/ui/quarantine" { "Clear" }
        }
        @if page.items.is_empty() {
            p.muted { "Nothing quarantined." }
        } @else {
            div.scroll { table {
                thead { tr { th { "Received" } th { "Path" } th { "Reason" } th { "Sender proved itself" } th { "Replayed" } th { "Body (beginning)" } } }
                tbody {
                    @for item in &page.items {
                        tr {
                            td { a href=(format!("/ui/quarantine/{}", encode(&item.id))) { (or_dash(&item.received_at)) } }
                            td { (item.path) }
                            td { (item.reason) }
                            td { (if item.authenticated { "yes" } else { "no" }) }
                            td { (if item.replayed { "yes" } else { "no" }) }
                            td { code { (item.raw.chars().take(80).collect::<String>()) } }
                        }
                    }
                }
            } }
        }
        (next_page("/ui/quarantine", pairs, page.next_cursor.as_deref()))
    };
    layout(operator, "/ui/quarantine", "Quarantine", content)
}

pub fn quarantined(
    operator: &Operator,
    item: &RejectedItem,
    answer: Option<&Result<Replayed, String>>,
) -> Markup {
    let action = format!("/ui/quarantine/{}/replay", encode(&item.id));
    let content = html! {
        dl.fields {
            dt { "Received" } dd { (or_dash(&item.received_at)) }
            dt { "Path" } dd { (item.path) }
            dt { "Provider / type" } dd { (or_dash(&item.provider)) " / " (or_dash(&item.callback_type)) }
            dt { "Reason" } dd { (item.reason) }
            dt { "Sender proved itself" } dd { (if item.authenticated { "yes" } else { "no" }) }
            dt { "Client" } dd { (or_dash(&item.client)) }
            dt { "Request id" } dd { code { (item.request_id) } }
            dt { "Replayed" } dd { (if item.replayed { "yes" } else { "no" }) }
        }
        h2 { "Body as received" }
        pre { (item.raw) }
        @if !item.replayed {
            (replay_form(&action, "#replay-answer", "outerHTML", &operator.csrf, "Replay through today's parsers"))
        }
        @match answer {
            Some(answer) => (replay_answer(answer)),
            None => div #replay-answer {},
        }
    };
    layout(operator, "/ui/quarantine", "Quarantined body", content)
}

/// What a replay answered.
pub fn replay_answer(answer: &Result<Replayed, String>) -> Markup {
    html! {
        @match answer {
            Ok(replayed) => div #replay-answer .answer.good role="status" {
                "Stored: " (replayed.provider) " " (replayed.callback_type) " "
                a href=(format!("/ui/transactions/{}/{}", encode(&replayed.provider), encode(&replayed.provider_transaction_id))) { (replayed.provider_transaction_id) }
                " is " (status(&replayed.status)) "."
            },
            Err(problem) => div #replay-answer .answer.bad role="alert" { "Not replayed: " (problem) },
        }
    }
}

/// What an action answered, in a fragment.
pub(super) fn answer(answer: &Result<String, String>) -> Markup {
    html! {
        @match answer {
            Ok(text) => div.answer.good role="status" { (text) },
            Err(problem) => div.answer.bad role="alert" { (problem) },
        }
    }
}

pub fn events(operator: &Operator, pairs: &[(String, String)], page: &Page<Value>) -> Markup {
    let types: Vec<(&str, &str)> = EventType::ALL.iter().map(|t| (*t, *t)).collect();
    let content = html! {
        form.filters method="get" action="/ui/events" {
            (select("type", "Type", &types, pairs))
            (select("provider", "Provider", PROVIDERS, pairs))
            (select("status", "Status", &[("pending", "pending"), ("delivered", "delivered"), ("failed", "failed")], pairs))
            (text_input("since", "Since", "YYYY-MM-DD or RFC 3339", pairs))
            (text_input("until", "Until", "YYYY-MM-DD or RFC 3339", pairs))
            button type="submit" { "Filter" }
            a href="/ui/events" { "Clear" }
        }
        @if page.items.is_empty() {
            p.muted { "No events." }
        } @else {
            div.scroll { table {
                thead { tr { th { "Created" } th { "Type" } th { "Transaction" } th { "Status" } th { "Endpoints" } } }
                tbody {
                    @for event in &page.items {
                        tr {
                            td { a href=(format!("/ui/events/{}", encode(&field(event, "id")))) { (field(event, "created_at")) } }
                            td { (field(event, "type")) }
                            td { (event_transaction(event)) }
                            td { (status(&field(event, "status"))) }
                            td { (targets_list(event)) }
                        }
                    }
                }
            } }
        }
        (next_page("/ui/events", pairs, page.next_cursor.as_deref()))
    };
    layout(operator, "/ui/events", "Events", content)
}

pub fn event(
    operator: &Operator,
    event: &Value,
    answer: Option<&Result<String, String>>,
) -> Markup {
    let id = field(event, "id");
    let content = html! {
        dl.fields {
            dt { "Type" } dd { (field(event, "type")) }
            dt { "Status" } dd { (status(&field(event, "status"))) }
            dt { "Transaction" } dd { (event_transaction(event)) }
            dt { "Version" } dd { (field(event, "version")) }
            dt { "Created" } dd { (field(event, "created_at")) }
        }
        h2 { "Endpoints" }
        (targets_list(event))
        h2 { "Attempts" }
        (attempts_table(event))
        (replay_form(&format!("/ui/events/{}/replay", encode(&id)), "#event-answer", "innerHTML", &operator.csrf, "Send again"))
        div #event-answer { @if let Some(answer) = answer { (self::answer(answer)) } }
        h2 { "Payload" }
        pre { (pretty(&event["payload"])) }
    };
    layout(operator, "/ui/events", &format!("Event {id}"), content)
}

/// An endpoint form's content: what was typed (or is stored), and the problem the query API's check
/// found, shown at its field.
pub(super) struct EndpointForm<'a> {
    pub(super) values: &'a [(String, String)],
    pub(super) problem: Option<(String, String)>,
}

impl EndpointForm<'_> {
    pub(super) const EMPTY: EndpointForm<'static> = EndpointForm {
        values: &[],
        problem: None,
    };
}

/// The fields of an endpoint's form (registration or change), for the console and the portal: URL,
/// description, owner (`with_owner`: the console's; the portal's owner is its link's), event types and
/// providers; each problem next to its field.
pub(super) fn endpoint_form(
    action: &str,
    csrf: &str,
    form: &EndpointForm<'_>,
    submit: &str,
    with_owner: bool,
) -> Markup {
    let value = |name: &str| {
        form.values
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let chosen = |name: &str, option: &str| {
        form.values
            .iter()
            .any(|(key, value)| key == name && value == option)
    };
    let problem = |name: &str| {
        form.problem
            .as_ref()
            .filter(|(field, _)| field == name)
            .map(|(_, problem)| problem.as_str())
    };
    let at_a_field: &[&str] = &["url", "description", "owner", "event_types", "providers"];
    html! {
        form.filters method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            label {
                "URL"
                input type="url" name="url" required value=[value("url")] placeholder="https://orders.example.com/hooks" aria-invalid=[problem("url").map(|_| "true")];
                @if let Some(problem) = problem("url") { span.bad.problem data-field="url" role="alert" { (problem) } }
            }
            label {
                "Description"
                input type="text" name="description" value=[value("description")] aria-invalid=[problem("description").map(|_| "true")];
                @if let Some(problem) = problem("description") { span.bad.problem data-field="description" role="alert" { (problem) } }
            }
            @if with_owner {
                label {
                    "Owner (a merchant's id, for the portal)"
                    input type="text" name="owner" value=[value("owner")] aria-invalid=[problem("owner").map(|_| "true")];
                    @if let Some(problem) = problem("owner") { span.bad.problem data-field="owner" role="alert" { (problem) } }
                }
            }
            label {
                "Events (none chosen: every event)"
                select name="event_types" multiple size="4" {
                    @for kind in EventType::ALL { option value=(kind) selected[chosen("event_types", kind)] { (kind) } }
                }
                @if let Some(problem) = problem("event_types") { span.bad.problem data-field="event_types" role="alert" { (problem) } }
            }
            label {
                "Providers (none chosen: every provider)"
                select name="providers" multiple size="3" {
                    @for (name, label) in PROVIDERS { option value=(name) selected[chosen("providers", name)] { (label) } }
                }
                @if let Some(problem) = problem("providers") { span.bad.problem data-field="providers" role="alert" { (problem) } }
            }
            button type="submit" { (submit) }
            @if let Some((field, problem)) = form.problem.as_ref().filter(|(field, _)| !at_a_field.contains(&field.as_str())) {
                p.answer.bad role="alert" { (field) ": " (problem) }
            }
        }
    }
}

/// An endpoint's stored fields as its form's values (to change them).
pub(super) fn endpoint_values(view: &Value) -> Vec<(String, String)> {
    let mut values = Vec::new();
    for name in ["url", "description", "owner"] {
        if let Some(text) = view[name].as_str() {
            values.push((name.to_owned(), text.to_owned()));
        }
    }
    for list in ["event_types", "providers"] {
        for item in view[list].as_array().into_iter().flatten() {
            if let Some(text) = item.as_str() {
                values.push((list.to_owned(), text.to_owned()));
            }
        }
    }
    values
}

/// An endpoint's signing secret (`endpoints::secret_of` or `endpoints::rotate_secret`), and those still
/// signing until their overlap ends: shown only on request, in the answer to that request.
pub(super) fn secret_section(secret: &Value) -> Markup {
    html! {
        h2 { "Signing secret" }
        pre.secret { (field(secret, "secret")) }
        @if let Some(previous) = secret["previous"].as_array().filter(|previous| !previous.is_empty()) {
            p { "Still signing until their overlap ends (rotating):" }
            ul { @for old in previous { li { code { (field(old, "secret")) } " until " (field(old, "expires_at")) } } }
        }
    }
}

/// An endpoint's state: enabled or disabled (and why), failing since when.
pub(super) fn endpoint_state(view: &Value) -> Markup {
    html! {
        @if view["enabled"] != Value::Bool(false) { span.good { "enabled" } } @else { span.bad { "disabled" } " " (field(view, "disabled_reason")) }
        @if !view["failing_since"].is_null() { br; span.bad { "failing since " (field(view, "failing_since")) } }
    }
}

/// An endpoint's failure rate and last success from the attempts of recent events (`None`: it had no
/// attempt among them).
pub(super) fn health_cells(health: Option<&Health>) -> (Markup, Markup) {
    match health {
        Some(health) if health.attempts > 0 => {
            let percent = (health.failed * 100 + health.attempts / 2) / health.attempts;
            let rate = html! {
                span class=(if health.failed == 0 { "good" } else if health.failed == health.attempts { "bad" } else { "warn" }) data-failure-rate=(percent) {
                    (percent) "%"
                }
                " " span.muted { "(" (health.failed) " of " (health.attempts) " attempts failed)" }
            };
            let last = html! {
                @match &health.last_success { Some(at) => (at), None => span.bad { "none" } }
            };
            (rate, last)
        }
        _ => (
            html! { span.muted { "no attempt" } },
            html! { span.muted { "—" } },
        ),
    }
}

pub fn endpoints(
    operator: &Operator,
    page: &Page<Value>,
    health: &BTreeMap<String, Health>,
    form: &EndpointForm<'_>,
    created: Option<&Value>,
) -> Markup {
    let content = html! {
        @if let Some(created) = created {
            div.answer.good role="status" {
                p { "Endpoint " a href=(format!("/ui/endpoints/{}", encode(&field(created, "id")))) { code { (field(created, "id")) } } " registered. Its signing secret, shown this once (reveal it again on its page):" }
                pre.secret { (field(created, "secret")) }
            }
        }
        @if page.items.is_empty() {
            p.muted { "No endpoints yet: register one below, with POST /v1/endpoints or [[delivery.endpoints]]." }
        } @else {
            div.scroll { table {
                thead { tr { th { "Id" } th { "URL" } th { "Events / providers" } th { "State" } th { "Failure rate" } th { "Last success" } th { "Source" } th {} } }
                tbody {
                    @for endpoint in &page.items {
                        @let id = field(endpoint, "id");
                        @let enabled = endpoint["enabled"] != Value::Bool(false);
                        tr {
                            td { a href=(format!("/ui/endpoints/{}", encode(&id))) { code { (id) } } br; span.muted { (field(endpoint, "description")) } }
                            td { (field(endpoint, "url")) }
                            td { (field(endpoint, "event_types")) br; (field(endpoint, "providers")) }
                            td { (endpoint_state(endpoint)) }
                            @let (rate, last) = health_cells(health.get(&id));
                            td { (rate) }
                            td { (last) }
                            td { (field(endpoint, "source")) }
                            td {
                                @if field(endpoint, "source") != "config" {
                                    form.inline method="post" action=(format!("/ui/endpoints/{}/enabled", encode(&id))) {
                                        input type="hidden" name="csrf" value=(operator.csrf);
                                        input type="hidden" name="enabled" value=(if enabled { "false" } else { "true" });
                                        button.secondary type="submit" { (if enabled { "Disable" } else { "Enable" }) }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
        }
        p.muted { "Failure rate and last success: from the attempts recorded on the newest " (HEALTH_WINDOW) " events." }
        (next_page("/ui/endpoints", &[], page.next_cursor.as_deref()))
        h2 { "Register an endpoint" }
        (endpoint_form("/ui/endpoints", &operator.csrf, form, "Register", true))
    };
    layout(operator, "/ui/endpoints", "Endpoints", content)
}

/// What an endpoint's page shows besides its fields: a secret asked for, an action's answer.
pub(super) struct EndpointExtras<'a> {
    pub(super) secret: Option<&'a Value>,
    pub(super) answer: Option<&'a Result<String, String>>,
    /// The id of a test event just queued.
    pub(super) test_event: Option<&'a str>,
    /// Its delivery health over recent events.
    pub(super) health: Option<&'a Health>,
}

/// "Send a test event" (`action`), and the event just queued, linked to its page under `events`
/// (`/ui/events/` or `/portal/events/`), where its attempt appears.
pub(super) fn test_event_section(
    action: &str,
    csrf: &str,
    sent: Option<&str>,
    events: &str,
) -> Markup {
    html! {
        h2 { "Test event" }
        form.filters method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" { "Send a test event" }
            span.muted { "An endpoint.test event, signed and sent to this endpoint only." }
        }
        @if let Some(id) = sent {
            div.answer.good role="status" #test-event {
                "Test event " a href=(format!("{events}{}", encode(id))) { code { (id) } }
                " queued for this endpoint: its attempt appears on its page."
            }
        }
    }
}

/// An event's transaction, linked (`None` for a test event, which has none).
fn event_transaction(event: &Value) -> Markup {
    html! {
        @if event["transaction_key"].is_string() {
            a href=(transaction_url(&field(event, "provider"), &field(event, "flow"), &field(event, "transaction_key"))) { (field(event, "provider")) " " (field(event, "flow")) " " (field(event, "transaction_key")) }
        } @else {
            span.muted { "none (a test event)" }
        }
    }
}

pub fn endpoint(
    operator: &Operator,
    view: &Value,
    form: &EndpointForm<'_>,
    extras: &EndpointExtras<'_>,
) -> Markup {
    let id = field(view, "id");
    let enabled = view["enabled"] != Value::Bool(false);
    let configured = field(view, "source") == "config";
    let action = |what: &str| format!("/ui/endpoints/{}/{what}", encode(&id));
    let content = html! {
        @if let Some(answer) = extras.answer { (self::answer(answer)) }
        dl.fields {
            dt { "URL" } dd { (field(view, "url")) }
            dt { "Description" } dd { (field(view, "description")) }
            dt { "Owner" } dd { (field(view, "owner")) }
            dt { "Events" } dd { (field(view, "event_types")) }
            dt { "Providers" } dd { (field(view, "providers")) }
            dt { "State" } dd { (endpoint_state(view)) }
            @let (rate, last) = health_cells(extras.health);
            dt { "Failure rate" } dd { (rate) }
            dt { "Last success" } dd { (last) }
            dt { "Source" } dd { (field(view, "source")) }
            dt { "Created" } dd { (field(view, "created_at")) }
        }
        p {
            @if !configured {
                form.inline method="post" action=(action("enabled")) {
                    input type="hidden" name="csrf" value=(operator.csrf);
                    input type="hidden" name="enabled" value=(if enabled { "false" } else { "true" });
                    button.secondary type="submit" { (if enabled { "Disable" } else { "Enable" }) }
                }
                " "
            }
            form.inline method="post" action=(action("secret")) {
                input type="hidden" name="csrf" value=(operator.csrf);
                button.secondary type="submit" { "Reveal the signing secret" }
            }
            @if !configured {
                " "
                form.inline method="post" action=(action("rotate")) {
                    input type="hidden" name="csrf" value=(operator.csrf);
                    button type="submit" { "Rotate the secret" }
                }
            }
        }
        @if let Some(secret) = extras.secret { (secret_section(secret)) }
        (test_event_section(&action("test"), &operator.csrf, extras.test_event, "/ui/events/"))
        h2 { "Failed events" }
        form.filters method="post" action=(action("replay-failed")) {
            input type="hidden" name="csrf" value=(operator.csrf);
            button type="submit" { "Send again every failed event" }
        }
        form.filters method="post" action=(action("recover")) {
            input type="hidden" name="csrf" value=(operator.csrf);
            label { "Failed events created since (a UTC day, or an RFC 3339 time)" input type="text" name="since" required placeholder="2026-01-31"; }
            button type="submit" { "Recover" }
        }
        @if !configured {
            h2 { "Change" }
            (endpoint_form(&format!("/ui/endpoints/{}", encode(&id)), &operator.csrf, form, "Save", true))
        }
    };
    layout(
        operator,
        "/ui/endpoints",
        &format!("Endpoint {id}"),
        content,
    )
}

pub fn report(operator: &Operator, report: &DailyReport) -> Markup {
    let content = html! {
        form.filters method="get" action="/ui/reports" {
            label { "Day (UTC)" input type="date" name="date" value=(report.date); }
            button type="submit" { "Show" }
            a href=(format!("/ui/reports/daily.csv?date={}", encode(&report.date))) { "The day's transactions (CSV)" }
        }
        h2 { "Callbacks on " (report.date) }
        (report_table(report))
    };
    layout(operator, "/ui/reports", "Daily report", content)
}
