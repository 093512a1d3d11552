//! The command line's nouns — `transactions`, `events`, `endpoints`, `rejected` — with `list`, `show` and,
//! where the API has it, `replay`, against a running service's API with an admin token. People get aligned
//! tables; scripts pass `--json` and get the API's own JSON, unchanged.
//!
//! Every command is one request to a documented route (`/v1/...`): what the command line shows is what
//! the API answers, and an API error is printed as the API states it (its `code` and `message`).

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

/// Where the service is, and how to talk to it.
#[derive(Debug, Args)]
pub struct Service {
    /// The service's address.
    #[arg(
        long,
        global = true,
        env = "MMO_URL",
        default_value = "http://127.0.0.1:8000"
    )]
    pub url: String,
    /// An admin token (auth.admin_tokens). Default: the local configuration's.
    #[arg(
        long,
        global = true,
        env = "MMO_ADMIN_TOKEN",
        default_value = "local-admin-token-0123456789"
    )]
    pub admin_token: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Filters of a list, passed on as the API's query parameters (the API refuses one its list does not
/// take, and says which it takes).
#[derive(Debug, Args, Default)]
pub struct ListFilters {
    /// mpesa, mtn or airtel.
    #[arg(long)]
    pub provider: Option<String>,
    #[arg(long)]
    pub status: Option<String>,
    /// RFC 3339 or YYYY-MM-DD.
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    /// Transactions and callbacks: the payer's number.
    #[arg(long)]
    pub msisdn: Option<String>,
    /// Transactions: only those in conflict (true) or not (false).
    #[arg(long)]
    pub conflict: Option<bool>,
    /// Events: its type (transaction.successful, …).
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Rejected bodies: the callback type of their endpoint.
    #[arg(long)]
    pub callback_type: Option<String>,
    /// At most this many (the API's page size).
    #[arg(long)]
    pub limit: Option<u32>,
    /// The next page: the `next_cursor` a previous list printed.
    #[arg(long)]
    pub cursor: Option<String>,
}

impl ListFilters {
    fn query(&self) -> String {
        let pairs = [
            ("provider", self.provider.clone()),
            ("status", self.status.clone()),
            ("since", self.since.clone()),
            ("until", self.until.clone()),
            ("msisdn", self.msisdn.clone()),
            ("conflict", self.conflict.map(|flag| flag.to_string())),
            ("type", self.event_type.clone()),
            ("callback_type", self.callback_type.clone()),
            ("limit", self.limit.map(|limit| limit.to_string())),
            ("cursor", self.cursor.clone()),
        ];
        let mut query = form_urlencoded(
            pairs
                .iter()
                .filter_map(|(name, value)| value.as_deref().map(|value| (*name, value))),
        );
        if !query.is_empty() {
            query.insert(0, '?');
        }
        query
    }
}

#[derive(Debug, Subcommand)]
pub enum TransactionsAction {
    /// Transactions, newest first.
    List {
        #[command(flatten)]
        filters: ListFilters,
    },
    /// One transaction and its callbacks, oldest first.
    Show {
        /// mpesa, mtn or airtel.
        provider: String,
        /// Its key (CheckoutRequestID, TransID, referenceId, …).
        key: String,
        /// The flow, when the key names transactions of several.
        #[arg(long)]
        flow: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsAction {
    /// Events delivered or waiting, newest first.
    List {
        #[command(flatten)]
        filters: ListFilters,
    },
    /// One event, with each endpoint's state and attempts.
    Show { id: String },
    /// Send an event again (to every endpoint it targets, or one).
    Replay {
        id: String,
        #[arg(long)]
        endpoint: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EndpointsAction {
    /// Every endpoint.
    List,
    /// One endpoint (its secret left out: `GET /v1/endpoints/{id}/secret` reveals it).
    Show { id: String },
}

#[derive(Debug, Subcommand)]
pub enum RejectedAction {
    /// Quarantined bodies, newest first.
    List {
        #[command(flatten)]
        filters: ListFilters,
    },
    /// One quarantined body, with its raw text.
    Show { id: String },
    /// Run a quarantined body through today's parsers and configuration.
    Replay { id: String },
}

/// A list's columns: header, and the item's field (a JSON pointer).
type Columns = &'static [(&'static str, &'static str)];

const TRANSACTION_COLUMNS: Columns = &[
    ("PROVIDER", "/provider"),
    ("FLOW", "/flow"),
    ("KEY", "/transaction_key"),
    ("STATUS", "/status"),
    ("AMOUNT", "/amount"),
    ("CURRENCY", "/currency"),
    ("CONFLICT", "/conflict"),
    ("FIRST SEEN", "/first_callback_at"),
];
const CALLBACK_COLUMNS: Columns = &[
    ("TYPE", "/callback_type"),
    ("STATUS", "/status"),
    ("AMOUNT", "/amount"),
    ("RECEIPT", "/receipt"),
    ("DELIVERIES", "/deliveries"),
    ("RECEIVED", "/received_at"),
];
const EVENT_COLUMNS: Columns = &[
    ("ID", "/id"),
    ("TYPE", "/type"),
    ("PROVIDER", "/provider"),
    ("KEY", "/transaction_key"),
    ("VERSION", "/version"),
    ("STATUS", "/status"),
    ("CREATED", "/created_at"),
];
const ENDPOINT_COLUMNS: Columns = &[
    ("ID", "/id"),
    ("URL", "/url"),
    ("ENABLED", "/enabled"),
    ("OWNER", "/owner"),
    ("EVENT TYPES", "/event_types"),
];
const REJECTED_COLUMNS: Columns = &[
    ("ID", "/id"),
    ("PROVIDER", "/provider"),
    ("TYPE", "/callback_type"),
    ("RECEIVED", "/received_at"),
    ("REPLAYED", "/replayed"),
    ("REASON", "/reason"),
];

pub async fn transactions(service: &Service, action: &TransactionsAction) -> i32 {
    match action {
        TransactionsAction::List { filters } => {
            list(
                service,
                &format!("/v1/transactions{}", filters.query()),
                TRANSACTION_COLUMNS,
            )
            .await
        }
        TransactionsAction::Show {
            provider,
            key,
            flow,
        } => {
            let mut path = format!("/v1/transactions/{}/{}", segment(provider), segment(key));
            if let Some(flow) = flow {
                path.push_str(&format!("?flow={}", segment(flow)));
            }
            show(service, "GET", &path, |detail| {
                // The transaction's own fields (the API flattens them beside its callbacks), then its
                // callbacks as a table.
                let mut transaction = detail.clone();
                let callbacks = transaction
                    .as_object_mut()
                    .and_then(|fields| fields.remove("callbacks"))
                    .unwrap_or_default();
                let mut text = fields(&transaction);
                if let Some(callbacks) = callbacks.as_array() {
                    text.push_str("\ncallbacks:\n");
                    text.push_str(&table(callbacks, CALLBACK_COLUMNS));
                }
                text
            })
            .await
        }
    }
}

pub async fn events(service: &Service, action: &EventsAction) -> i32 {
    match action {
        EventsAction::List { filters } => {
            list(
                service,
                &format!("/v1/events{}", filters.query()),
                EVENT_COLUMNS,
            )
            .await
        }
        EventsAction::Show { id } => {
            show(
                service,
                "GET",
                &format!("/v1/events/{}", segment(id)),
                fields,
            )
            .await
        }
        EventsAction::Replay { id, endpoint } => {
            let mut path = format!("/v1/events/{}/replay", segment(id));
            if let Some(endpoint) = endpoint {
                path.push_str(&format!("?endpoint={}", segment(endpoint)));
            }
            show(service, "POST", &path, fields).await
        }
    }
}

pub async fn endpoints(service: &Service, action: &EndpointsAction) -> i32 {
    match action {
        EndpointsAction::List => list(service, "/v1/endpoints", ENDPOINT_COLUMNS).await,
        EndpointsAction::Show { id } => {
            show(
                service,
                "GET",
                &format!("/v1/endpoints/{}", segment(id)),
                fields,
            )
            .await
        }
    }
}

pub async fn rejected(service: &Service, action: &RejectedAction) -> i32 {
    match action {
        RejectedAction::List { filters } => {
            list(
                service,
                &format!("/v1/rejected{}", filters.query()),
                REJECTED_COLUMNS,
            )
            .await
        }
        RejectedAction::Show { id } => {
            show(
                service,
                "GET",
                &format!("/v1/rejected/{}", segment(id)),
                fields,
            )
            .await
        }
        RejectedAction::Replay { id } => {
            show(
                service,
                "POST",
                &format!("/v1/rejected/{}/replay", segment(id)),
                fields,
            )
            .await
        }
    }
}

/// A list: its items as a table (and the next page's cursor), or the API's JSON.
async fn list(service: &Service, path: &str, columns: Columns) -> i32 {
    show(service, "GET", path, |page| {
        // `/v1/endpoints` answers an array; the other lists a page of `items`.
        let items = page
            .as_array()
            .or_else(|| page["items"].as_array())
            .cloned()
            .unwrap_or_default();
        let mut text = table(&items, columns);
        if let Some(cursor) = page["next_cursor"].as_str() {
            text.push_str(&format!("next page: --cursor {cursor}\n"));
        }
        text
    })
    .await
}

/// One request; prints the answer through `render` (or as JSON with `--json`). Exit codes: 0 answered,
/// 1 the API refused (its error printed), 3 the service could not be reached.
async fn show(
    service: &Service,
    method: &str,
    path: &str,
    render: impl FnOnce(&Value) -> String,
) -> i32 {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let url = format!("{}{path}", service.url.trim_end_matches('/'));
    let request = match method {
        "POST" => client.post(&url),
        _ => client.get(&url),
    }
    .insert_header(("Authorization", format!("Bearer {}", service.admin_token)));
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            eprintln!("mmo-webhooks: {url}: {error}");
            return 3;
        }
    };
    let body = response.body().limit(64 << 20).await.unwrap_or_default();
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !response.status().is_success() {
        eprintln!(
            "mmo-webhooks: {} {}: {}",
            response.status().as_u16(),
            answer["code"].as_str().unwrap_or("ERROR"),
            answer["message"].as_str().map_or_else(
                || String::from_utf8_lossy(&body).into_owned(),
                str::to_owned
            )
        );
        return 1;
    }
    if service.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
    } else {
        print!("{}", render(&answer));
    }
    0
}

/// Items as an aligned table: one header line, one line per item.
fn table(items: &[Value], columns: Columns) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|(_, pointer)| cell(item.pointer(pointer)))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(index, (header, _))| {
            rows.iter()
                .map(|row| row[index].chars().count())
                .chain([header.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut line = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        line.truncate(line.trim_end().len());
        line.push('\n');
        line
    };
    let mut text = line(columns.iter().map(|(header, _)| *header).collect());
    for row in &rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    if rows.is_empty() {
        text.push_str("(none)\n");
    }
    text
}

/// One object's fields, one per line (`name: value`), nested values as compact JSON.
fn fields(value: &Value) -> String {
    let Some(object) = value.as_object() else {
        return format!("{value}\n");
    };
    let width = object.keys().map(String::len).max().unwrap_or(0);
    object
        .iter()
        .map(|(name, value)| format!("{name:<width$}  {}\n", cell(Some(value))))
        .collect()
}

/// A value as a table shows it: text as it is, nothing as `-`, lists joined, objects as JSON. Control
/// characters an operator sent are shown escaped, never written to the terminal.
fn cell(value: Option<&Value>) -> String {
    let text = match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    };
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// A path segment, percent-encoded.
fn segment(text: &str) -> String {
    form_urlencoded([("", text)])
        .trim_start_matches('=')
        .to_owned()
}

/// `name=value&…`, each part percent-encoded.
fn form_urlencoded<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (byte as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .into_iter()
        .map(|(name, value)| {
            if name.is_empty() {
                format!("={}", encode(value))
            } else {
                format!("{}={}", encode(name), encode(value))
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_table_is_aligned_and_shows_missing_values_and_escapes_control_characters() {
        let items = vec![
            json!({"provider": "mpesa", "status": "successful", "amount": "1000.50"}),
            json!({"provider": "mtn_mobile_money", "status": "pending\u{1b}[31m", "amount": null}),
        ];
        let columns: Columns = &[
            ("PROVIDER", "/provider"),
            ("STATUS", "/status"),
            ("AMOUNT", "/amount"),
        ];
        let text = table(&items, columns);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "PROVIDER          STATUS             AMOUNT");
        assert_eq!(lines[1], "mpesa             successful         1000.50");
        assert_eq!(lines[2], "mtn_mobile_money  pending\\u{1b}[31m  -");
        assert_eq!(table(&[], columns).lines().nth(1), Some("(none)"));
    }

    #[test]
    fn filters_become_the_api_query_percent_encoded() {
        let filters = ListFilters {
            provider: Some("mtn".into()),
            since: Some("2026-12-07T10:00:00+03:00".into()),
            conflict: Some(true),
            ..ListFilters::default()
        };
        assert_eq!(
            filters.query(),
            "?provider=mtn&since=2026-12-07T10%3A00%3A00%2B03%3A00&conflict=true"
        );
        assert_eq!(ListFilters::default().query(), "");
        assert_eq!(segment("ws_CO/1 2"), "ws_CO%2F1%202");
    }
}
