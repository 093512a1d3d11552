//! The read side: what the query API lists and reports, from the collections the drain writes.
//!
//! Lists are newest first with keyset pagination (an opaque cursor holding the last item's time and id),
//! and every filter is served by an index created at start-up (see `mmo_actors::store`). Parameters are
//! checked strictly: an unknown or malformed one is a 400 naming it.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use mmo_actors::store::{transaction_id, MongoStore};
use mmo_actors::{CallbackType, Status, PROVIDERS};
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime as BsonDateTime, Document};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::stored::{
    all, day, decimal, invalid, object_id, provider_name, rfc3339, text, unavailable,
};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

/// A page of a list, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// A transaction as the `transactions` collection holds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionItem {
    /// Stored provider name: `mpesa`, `mtn_mobile_money`, `airtel_money`.
    pub provider: String,
    /// `stk_push`, `b2c`, `c2b`, `collection`, `disbursement`, `remittance`, `payment`.
    pub flow: String,
    pub transaction_key: String,
    pub status: String,
    pub reason: Option<String>,
    /// Exact decimal, as text.
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub msisdn: Option<String>,
    pub receipt: Option<String>,
    pub linked_transactions: Vec<TransactionReference>,
    pub conflict: bool,
    /// All conflicts recorded (the transaction keeps the first ones in full).
    pub conflict_count: i64,
    /// What set the final status: `callback` (the operator's callback) or `status_query` (the
    /// reconciler's question: the callback never came); null while not final.
    pub settled_by: Option<String>,
    /// A callback and a status query agree on the final status.
    pub verified: bool,
    /// The reconciler gave up without a final answer: a person must look.
    pub unresolved: bool,
    /// RFC 3339.
    pub first_callback_at: Option<String>,
    pub last_callback_at: Option<String>,
}

/// Another transaction reporting the same payment.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionReference {
    pub provider: String,
    pub flow: String,
    pub transaction_key: String,
}

/// A transaction with the history of its callbacks, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionDetail {
    #[serde(flatten)]
    pub transaction: TransactionItem,
    pub callbacks: Vec<CallbackItem>,
    /// The merchant's expectation of this payment, if one was registered.
    pub expectation: Option<crate::reconciler_api::ExpectationItem>,
    /// The reconciler's work on it, if any.
    pub reconciliation: Option<crate::reconciler_api::ReconciliationItem>,
}

/// A callback as the `callbacks` collection holds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackItem {
    /// The id of the delivery that stored it (hex ObjectId).
    pub id: String,
    pub provider: String,
    pub callback_type: String,
    pub provider_transaction_id: String,
    pub status: String,
    pub reason: Option<String>,
    pub result_code: Option<String>,
    pub result_description: Option<String>,
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub msisdn: Option<String>,
    pub receipt: Option<String>,
    pub received_at: Option<String>,
    pub last_received_at: Option<String>,
    pub deliveries: i64,
    /// The quarantined body this callback was recovered from, when replayed.
    pub replayed_from: Option<String>,
    /// The payload as received (relaxed extended JSON: exact decimals as `{"$numberDecimal": …}`).
    #[schema(value_type = Object)]
    pub callback_data: Option<serde_json::Value>,
}

/// A body that was refused and kept for audit.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedItem {
    pub id: String,
    pub provider: Option<String>,
    pub callback_type: Option<String>,
    pub path: String,
    pub reason: String,
    pub request_id: String,
    pub received_at: Option<String>,
    /// Whether the sender proved who it was; unauthenticated bodies expire.
    pub authenticated: bool,
    pub client: Option<String>,
    /// The body as text (a prefix, for refused unauthenticated and oversized requests).
    pub raw: String,
    pub replayed: bool,
}

/// One day's figures per provider and callback type, as a finance team reconciles them.
#[derive(Debug, Serialize, ToSchema)]
pub struct DailyReport {
    pub date: String,
    pub lines: Vec<ReportLine>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportLine {
    pub provider: String,
    pub callback_type: String,
    /// Callbacks received that day, by status.
    pub counts: BTreeMap<String, i64>,
    /// Their amounts by currency then status, as exact decimals.
    pub amounts: BTreeMap<String, BTreeMap<String, String>>,
    /// Transactions of this callback type's flow, first seen that day, in conflict.
    pub conflicts: i64,
    /// Bodies sent to this endpoint that day and quarantined.
    pub quarantined: i64,
}

/// What a list may be filtered by, read from a query string.
#[derive(Debug, Default)]
pub struct Filters {
    pub provider: Option<&'static str>,
    pub status: Option<Status>,
    pub callback_type: Option<CallbackType>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub msisdn: Option<String>,
    pub conflict: Option<bool>,
    pub limit: i64,
    pub cursor: Option<(i64, Bson)>,
}

fn time(parameter: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc())
        .ok_or_else(|| invalid(parameter, "must be an RFC 3339 time or a date (YYYY-MM-DD)"))
}

/// A query string's name-value pairs, in order.
pub(crate) fn query_pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    actix_web::web::Query::<Vec<(String, String)>>::from_query(query)
        .map(actix_web::web::Query::into_inner)
        .map_err(|error| invalid("query", error.to_string()))
}

impl Filters {
    /// Reads `query`, accepting only the parameters in `allowed`.
    pub fn parse(query: &str, allowed: &[&str]) -> Result<Self, ApiError> {
        Self::from_pairs(query_pairs(query)?, allowed)
    }

    /// Like [`Filters::parse`], from a query string read already (a route that takes some parameters
    /// itself).
    pub fn from_pairs(pairs: Vec<(String, String)>, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut filters = Self {
            limit: DEFAULT_LIMIT,
            ..Self::default()
        };
        for (name, value) in pairs {
            if !allowed.contains(&name.as_str()) {
                return Err(invalid(
                    &name,
                    format!("is not known here (accepted: {})", allowed.join(", ")),
                ));
            }
            match name.as_str() {
                "provider" => {
                    filters.provider = Some(provider_name(&value).ok_or_else(|| {
                        invalid("provider", "must be mpesa, mtn, airtel or their stored names")
                    })?)
                }
                "status" => {
                    filters.status = Some(Status::parse(&value).ok_or_else(|| {
                        invalid(
                            "status",
                            "must be successful, failed, pending, cancelled, expired, ambiguous or unknown",
                        )
                    })?)
                }
                "callback_type" => {
                    filters.callback_type = Some(
                        CallbackType::parse(&value)
                            .ok_or_else(|| invalid("callback_type", "is not a callback type"))?,
                    )
                }
                "since" => filters.since = Some(time("since", &value)?),
                "until" => filters.until = Some(time("until", &value)?),
                "msisdn" if !value.trim().is_empty() => filters.msisdn = Some(value.trim().to_owned()),
                "msisdn" => return Err(invalid("msisdn", "is empty")),
                "conflict" => {
                    filters.conflict = Some(match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(invalid("conflict", "must be true or false")),
                    })
                }
                "limit" => {
                    filters.limit = value
                        .parse::<i64>()
                        .ok()
                        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                        .ok_or_else(|| {
                            invalid("limit", format!("must be a whole number from 1 to {MAX_LIMIT}"))
                        })?
                }
                "cursor" => filters.cursor = Some(decode_cursor(&value)?),
                _ => {}
            }
        }
        if let (Some(since), Some(until)) = (filters.since, filters.until) {
            if since >= until {
                return Err(invalid("until", "must be later than since"));
            }
        }
        Ok(filters)
    }

    /// The MongoDB filter on a collection whose time field is `time_field`. MSISDNs are compared as stored
    /// (digests, when personal data is hashed).
    pub fn filter(&self, time_field: &str, salt: Option<&[u8]>) -> Document {
        let mut filter = Document::new();
        if let Some(provider) = self.provider {
            filter.insert("provider", provider);
        }
        if let Some(status) = self.status {
            filter.insert("status", status.as_str());
        }
        if let Some(callback_type) = self.callback_type {
            filter.insert("callback_type", callback_type.as_str());
        }
        if let Some(msisdn) = &self.msisdn {
            let stored = match salt {
                Some(salt) => mmo_actors::privacy::digest(salt, msisdn),
                None => msisdn.clone(),
            };
            filter.insert("msisdn", stored);
        }
        if let Some(conflict) = self.conflict {
            filter.insert("conflict", conflict);
        }
        let mut range = Document::new();
        if let Some(since) = self.since {
            range.insert("$gte", bson_time(since));
        }
        if let Some(until) = self.until {
            range.insert("$lt", bson_time(until));
        }
        if !range.is_empty() {
            filter.insert(time_field, range);
        }
        if let Some((millis, id)) = &self.cursor {
            let at = BsonDateTime::from_millis(*millis);
            filter.insert(
                "$or",
                vec![
                    doc! {time_field: {"$lt": at}},
                    doc! {time_field: at, "_id": {"$lt": id}},
                ],
            );
        }
        filter
    }
}

/// Newest first: what every list sorts by.
pub fn newest_first(time_field: &str) -> Document {
    doc! {time_field: -1, "_id": -1}
}

/// The last item's time and `_id`: an ObjectId (rejected bodies) or a text identity (callbacks and
/// transactions), told apart by the `s:` before a text.
fn encode_cursor(millis: i64, id: &Bson) -> Option<String> {
    let id = match id {
        Bson::ObjectId(id) => id.to_hex(),
        Bson::String(id) => format!("s:{id}"),
        _ => return None,
    };
    Some(URL_SAFE_NO_PAD.encode(format!("{millis}:{id}")))
}

fn decode_cursor(text: &str) -> Result<(i64, Bson), ApiError> {
    let bad = || invalid("cursor", "is not a cursor this service gave");
    let decoded = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (millis, id) = decoded.split_once(':').ok_or_else(bad)?;
    let id = match id.strip_prefix("s:") {
        Some(identity) => Bson::String(identity.to_owned()),
        None => Bson::ObjectId(ObjectId::parse_str(id).map_err(|_| bad())?),
    };
    Ok((millis.parse().map_err(|_| bad())?, id))
}

fn bson_time(at: DateTime<Utc>) -> BsonDateTime {
    BsonDateTime::from_millis(at.timestamp_millis())
}

/// Reads one page of `collection` with `filters`, newest first by `time_field`.
async fn page<T>(
    collection: &mongodb::Collection<Document>,
    filters: &Filters,
    time_field: &str,
    salt: Option<&[u8]>,
    projection: Option<Document>,
    item: impl Fn(&Document) -> T,
) -> Result<Page<T>, ApiError> {
    let filter = filters.filter(time_field, salt);
    page_with(collection, filter, filters, time_field, projection, item).await
}

/// A page of `collection` matching `filter` (which holds `filters`' own conditions and any more),
/// newest first by `time_field`.
pub(crate) async fn page_with<T>(
    collection: &mongodb::Collection<Document>,
    filter: Document,
    filters: &Filters,
    time_field: &str,
    projection: Option<Document>,
    item: impl Fn(&Document) -> T,
) -> Result<Page<T>, ApiError> {
    let mut found = collection
        .find(filter)
        .sort(newest_first(time_field))
        .limit(filters.limit + 1);
    if let Some(projection) = projection {
        found = found.projection(projection);
    }
    let mut documents = all(found).await?;
    let more = documents.len() as i64 > filters.limit;
    documents.truncate(filters.limit as usize);
    let next_cursor = more.then(|| documents.last()).flatten().and_then(|last| {
        let at = last.get_datetime(time_field).ok()?.timestamp_millis();
        encode_cursor(at, last.get("_id")?)
    });
    Ok(Page {
        items: documents.iter().map(item).collect(),
        next_cursor,
    })
}

pub async fn transactions(
    store: &MongoStore,
    filters: &Filters,
    salt: Option<&[u8]>,
) -> Result<Page<TransactionItem>, ApiError> {
    page(
        store.transactions(),
        filters,
        "first_callback_at",
        salt,
        Some(doc! {"conflicts": 0, "callback_ids": 0}),
        transaction_item,
    )
    .await
}

pub async fn callbacks(
    store: &MongoStore,
    filters: &Filters,
    salt: Option<&[u8]>,
) -> Result<Page<CallbackItem>, ApiError> {
    page(
        store.callbacks(),
        filters,
        "received_at",
        salt,
        Some(doc! {"delivery_ids": 0}),
        callback_item,
    )
    .await
}

pub async fn rejected(
    store: &MongoStore,
    filters: &Filters,
) -> Result<Page<RejectedItem>, ApiError> {
    page(
        store.rejected(),
        filters,
        "received_at",
        None,
        Some(doc! {"raw_bytes": 0}),
        rejected_item,
    )
    .await
}

/// A transaction of `provider` with `key` (in `flow`, when given), and its callbacks.
pub async fn transaction(
    store: &MongoStore,
    provider: &str,
    key: &str,
    flow: Option<&str>,
) -> Result<TransactionDetail, ApiError> {
    let provider = provider_name(provider).ok_or(ApiError::NoSuch("transaction"))?;
    // A transaction's `_id` is its identity: look each flow up by it.
    // Only the provider's own flows: any other text could spell another transaction's `_id`.
    let ids: Vec<String> = flows_of(provider)
        .into_iter()
        .filter(|known| flow.is_none_or(|flow| flow == *known))
        .map(|flow| transaction_id(provider, flow, key))
        .collect();
    let filter = doc! {"_id": {"$in": ids}};
    let query = store
        .transactions()
        .find(filter)
        .projection(doc! {"conflicts": 0});
    let mut found = all(query).await?;
    let transaction = match found.len() {
        0 => return Err(ApiError::NoSuch("transaction")),
        1 => found.remove(0),
        _ => {
            let flows: Vec<String> = found.iter().filter_map(|t| text(t, "flow")).collect();
            return Err(invalid(
                "flow",
                format!(
                    "is needed: the key names transactions of several flows ({})",
                    flows.join(", ")
                ),
            ));
        }
    };
    let ids = transaction
        .get_array("callback_ids")
        .cloned()
        .unwrap_or_default();
    let query = store
        .callbacks()
        .find(doc! {"_id": {"$in": ids}})
        .sort(doc! {"received_at": 1, "_id": 1})
        .projection(doc! {"delivery_ids": 0, "callback_data": 0});
    let callbacks = all(query).await?;
    let item = transaction_item(&transaction);
    let expectation =
        crate::reconciler_api::expectation_of(store, provider, &item.flow, key).await?;
    let reconciliation =
        crate::reconciler_api::reconciliation_of(store, provider, &item.flow, key).await?;
    Ok(TransactionDetail {
        transaction: item,
        callbacks: callbacks.iter().map(callback_item).collect(),
        expectation,
        reconciliation,
    })
}

fn transaction_item(document: &Document) -> TransactionItem {
    let reference = |link: &Bson| {
        let link = link.as_document()?;
        Some(TransactionReference {
            provider: text(link, "provider")?,
            flow: text(link, "flow")?,
            transaction_key: text(link, "transaction_key")?,
        })
    };
    TransactionItem {
        provider: text(document, "provider").unwrap_or_default(),
        flow: text(document, "flow").unwrap_or_default(),
        transaction_key: text(document, "transaction_key").unwrap_or_default(),
        status: text(document, "status").unwrap_or_default(),
        reason: text(document, "reason"),
        amount: decimal(document, "amount"),
        currency: text(document, "currency"),
        msisdn: text(document, "msisdn"),
        receipt: text(document, "receipt"),
        linked_transactions: document
            .get_array("linked_transactions")
            .map(|links| links.iter().filter_map(reference).collect())
            .unwrap_or_default(),
        conflict: document.get_bool("conflict").unwrap_or(false),
        conflict_count: document.get_i64("conflict_count").unwrap_or(0),
        settled_by: text(document, "settled_by"),
        verified: document.get_bool("verified").unwrap_or(false),
        unresolved: document.get_bool("unresolved").unwrap_or(false),
        first_callback_at: rfc3339(document, "first_callback_at"),
        last_callback_at: rfc3339(document, "last_callback_at"),
    }
}

/// The flows a provider's transactions can have.
fn flows_of(provider: &str) -> Vec<&'static str> {
    let mut flows: Vec<&'static str> = PROVIDERS
        .iter()
        .filter(|candidate| candidate.name() == provider)
        .flat_map(|candidate| candidate.endpoints())
        .filter_map(|endpoint| endpoint.callback_type.flow())
        .collect();
    flows.sort_unstable();
    flows.dedup();
    flows
}

fn callback_item(document: &Document) -> CallbackItem {
    CallbackItem {
        // The first delivery's id: the callback's `_id` is its identity, shown field by field.
        id: object_id(document, "delivery_id").unwrap_or_default(),
        provider: text(document, "provider").unwrap_or_default(),
        callback_type: text(document, "callback_type").unwrap_or_default(),
        provider_transaction_id: text(document, "provider_transaction_id").unwrap_or_default(),
        status: text(document, "status").unwrap_or_default(),
        reason: text(document, "reason"),
        result_code: text(document, "result_code"),
        result_description: text(document, "result_description"),
        amount: decimal(document, "amount"),
        currency: text(document, "currency"),
        msisdn: text(document, "msisdn"),
        receipt: text(document, "receipt"),
        received_at: rfc3339(document, "received_at"),
        last_received_at: rfc3339(document, "last_received_at"),
        deliveries: document.get_i64("deliveries").unwrap_or(1),
        replayed_from: object_id(document, "replayed_from"),
        callback_data: document
            .get("callback_data")
            .map(|payload| payload.clone().into_relaxed_extjson()),
    }
}

fn rejected_item(document: &Document) -> RejectedItem {
    RejectedItem {
        id: object_id(document, "_id").unwrap_or_default(),
        provider: text(document, "provider"),
        callback_type: text(document, "callback_type"),
        path: text(document, "path").unwrap_or_default(),
        reason: text(document, "reason").unwrap_or_default(),
        request_id: text(document, "request_id").unwrap_or_default(),
        received_at: rfc3339(document, "received_at"),
        authenticated: document.get_bool("authenticated").unwrap_or(true),
        client: text(document, "client"),
        raw: text(document, "raw").unwrap_or_default(),
        replayed: document.get_bool("replayed").unwrap_or(false),
    }
}

/// One day's figures per provider and callback type.
pub async fn daily_report(
    store: &MongoStore,
    date: &str,
    provider: Option<&'static str>,
) -> Result<DailyReport, ApiError> {
    let (start, end) = day(date)?;
    let window = doc! {"$gte": bson_time(start), "$lt": bson_time(end)};
    let mut on_day = doc! {"received_at": window.clone()};
    if let Some(provider) = provider {
        on_day.insert("provider", provider);
    }
    let pipeline = vec![
        doc! {"$match": on_day.clone()},
        doc! {"$group": {
            "_id": {"provider": "$provider", "callback_type": "$callback_type", "status": "$status", "currency": "$currency"},
            "count": {"$sum": 1},
            "amount": {"$sum": "$amount"},
        }},
    ];
    let groups = all(store.callbacks().aggregate(pipeline)).await?;
    let mut lines: BTreeMap<(String, String), ReportLine> = BTreeMap::new();
    for group in &groups {
        let Ok(id) = group.get_document("_id") else {
            continue;
        };
        let (provider, callback_type) = (
            text(id, "provider").unwrap_or_default(),
            text(id, "callback_type").unwrap_or_default(),
        );
        let status = text(id, "status").unwrap_or_default();
        let line = lines
            .entry((provider.clone(), callback_type.clone()))
            .or_insert_with(|| ReportLine {
                provider,
                callback_type,
                counts: BTreeMap::new(),
                amounts: BTreeMap::new(),
                conflicts: 0,
                quarantined: 0,
            });
        let count = group
            .get_i32("count")
            .map(i64::from)
            .or_else(|_| group.get_i64("count"))
            .unwrap_or(0);
        *line.counts.entry(status.clone()).or_default() += count;
        if let (Some(currency), Some(amount)) = (text(id, "currency"), decimal(group, "amount")) {
            line.amounts
                .entry(currency)
                .or_default()
                .insert(status, amount);
        }
    }

    // Conflicts, per flow: transactions first seen that day.
    let mut conflicts_on_day = doc! {"first_callback_at": window.clone(), "conflict": true};
    if let Some(provider) = provider {
        conflicts_on_day.insert("provider", provider);
    }
    let query = store.transactions().aggregate(vec![
        doc! {"$match": conflicts_on_day},
        doc! {"$group": {"_id": {"provider": "$provider", "flow": "$flow"}, "count": {"$sum": 1}}},
    ]);
    let conflicts = all(query).await?;
    for group in &conflicts {
        let Ok(id) = group.get_document("_id") else {
            continue;
        };
        let count = group.get_i32("count").map(i64::from).unwrap_or(0);
        for line in lines.values_mut() {
            let flow = CallbackType::parse(&line.callback_type).and_then(CallbackType::flow);
            if Some(line.provider.as_str()) == id.get_str("provider").ok()
                && flow == id.get_str("flow").ok()
            {
                line.conflicts += count;
            }
        }
    }

    // Quarantined bodies, per endpoint.
    let query = store.rejected().aggregate(vec![
        doc! {"$match": on_day},
        doc! {"$group": {"_id": {"provider": "$provider", "callback_type": "$callback_type"}, "count": {"$sum": 1}}},
    ]);
    let quarantined = all(query).await?;
    for group in &quarantined {
        let Ok(id) = group.get_document("_id") else {
            continue;
        };
        let provider = text(id, "provider").unwrap_or_else(|| "unknown".to_owned());
        let callback_type = text(id, "callback_type").unwrap_or_else(|| "unknown".to_owned());
        let count = group.get_i32("count").map(i64::from).unwrap_or(0);
        lines
            .entry((provider.clone(), callback_type.clone()))
            .or_insert_with(|| ReportLine {
                provider,
                callback_type,
                counts: BTreeMap::new(),
                amounts: BTreeMap::new(),
                conflicts: 0,
                quarantined: 0,
            })
            .quarantined += count;
    }
    Ok(DailyReport {
        date: date.to_owned(),
        lines: lines.into_values().collect(),
    })
}

/// The transactions first seen on `date`, oldest first, as a cursor (streamed out as CSV).
pub async fn transactions_of_day(
    store: &MongoStore,
    date: &str,
    provider: Option<&'static str>,
) -> Result<mongodb::Cursor<Document>, ApiError> {
    let (start, end) = day(date)?;
    let mut filter = doc! {"first_callback_at": {"$gte": bson_time(start), "$lt": bson_time(end)}};
    if let Some(provider) = provider {
        filter.insert("provider", provider);
    }
    store
        .transactions()
        .find(filter)
        .sort(doc! {"first_callback_at": 1, "_id": 1})
        .projection(doc! {"conflicts": 0, "callback_ids": 0})
        .await
        .map_err(unavailable)
}

/// The CSV header of [`csv_row`].
pub const CSV_COLUMNS: &[&str] = &[
    "provider",
    "flow",
    "transaction_key",
    "status",
    "reason",
    "amount",
    "currency",
    "msisdn",
    "receipt",
    "conflict",
    "first_callback_at",
    "last_callback_at",
];

/// One transaction as a CSV line (quoted as needed), ending with a newline.
pub fn csv_row(document: &Document) -> Vec<u8> {
    let item = transaction_item(document);
    let fields = [
        item.provider,
        item.flow,
        item.transaction_key,
        item.status,
        item.reason.unwrap_or_default(),
        item.amount.unwrap_or_default(),
        item.currency.unwrap_or_default(),
        item.msisdn.unwrap_or_default(),
        item.receipt.unwrap_or_default(),
        item.conflict.to_string(),
        item.first_callback_at.unwrap_or_default(),
        item.last_callback_at.unwrap_or_default(),
    ];
    csv_line(fields.iter().map(String::as_str))
}

/// Fields as one CSV record.
pub fn csv_line<'a>(fields: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    // Writing to memory cannot fail.
    let _ = writer.write_record(fields);
    writer.into_inner().unwrap_or_default()
}

/// The query parameters each listing accepts (also what `/openapi.json` documents).
pub(crate) const TRANSACTION_FILTERS: &[&str] = &[
    "provider", "status", "since", "until", "msisdn", "conflict", "limit", "cursor",
];
pub(crate) const CALLBACK_FILTERS: &[&str] = &[
    "provider",
    "callback_type",
    "status",
    "since",
    "until",
    "msisdn",
    "limit",
    "cursor",
];
pub(crate) const REJECTED_FILTERS: &[&str] = &[
    "provider",
    "callback_type",
    "since",
    "until",
    "limit",
    "cursor",
];

/// What a successful replay stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    pub replayed: bool,
    pub provider: String,
    pub callback_type: String,
    pub provider_transaction_id: String,
    pub status: String,
}
