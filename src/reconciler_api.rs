//! Expectations (payments a merchant started) and the reconciliation report, over the collections the
//! reconciler works on (see `mmo_actors::store::reconciliations`).
//!
//! Length: expectations (parsing, views) and the report share the same views of work items and transactions;
//! split, each half would import the other.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use futures_util::TryStreamExt;
use mmo_actors::store::{transaction_id, Expectation, MongoStore};
use mmo_actors::{CallbackType, PROVIDERS};
use mongodb::bson::{doc, Bson, Document};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::stored::{
    all, day, decimal, invalid, object_id, provider_name, rfc3339, text, unavailable,
};

/// Fields an expectation may carry.
const FIELDS: &[&str] = &[
    "provider",
    "callback_type",
    "key",
    "amount",
    "currency",
    "msisdn",
    "expected_within_secs",
];
/// Longest `expected_within_secs`: a week.
const MAX_EXPECTED_WITHIN_SECS: u64 = 7 * 86_400;
const DEFAULT_EXPECTED_WITHIN_SECS: u64 = 300;

/// A stored expectation, as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExpectationItem {
    pub id: String,
    /// Stored provider name.
    pub provider: String,
    pub callback_type: String,
    pub flow: String,
    pub key: String,
    /// Exact decimal, as text.
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub msisdn: Option<String>,
    pub expected_within_secs: i64,
    /// RFC 3339.
    pub created_at: Option<String>,
    /// When a callback is due; past it, the reconciler asks the operator.
    pub due_at: Option<String>,
}

/// Where the reconciler stands on one transaction.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationItem {
    /// `open`, `resolved` or `unresolved`.
    pub state: String,
    /// Why it is reconciled: `expectation`, `pending`, `confirm`.
    pub reasons: Vec<String>,
    /// Questions asked so far (an asynchronous one counts when sent).
    pub attempts: i32,
    pub opened_at: Option<String>,
    /// Next look (while open).
    pub due_at: Option<String>,
    pub give_up_at: Option<String>,
    pub resolved_at: Option<String>,
    /// Final status and who settled it (`callback`, `status_query`, `both`, `conflict`).
    pub outcome: Option<Value>,
    /// The last answer: `{at, outcome, status, detail}`; `outcome` is `final`, `pending`, `not_found`,
    /// `requested` (an asynchronous answer is awaited), `throttled`, `error`, `callback` (settled by a
    /// callback, nothing asked) or `no_status_api`.
    pub last_answer: Option<Value>,
}

/// An expectation with what became of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExpectationView {
    #[serde(flatten)]
    pub expectation: ExpectationItem,
    /// The transaction's current status, once any callback or answer arrived.
    pub transaction_status: Option<String>,
    pub reconciliation: Option<ReconciliationItem>,
}

/// Reads and checks a `POST /v1/expectations` body: every problem names its field.
pub fn parse_expectation(body: &[u8], salt: Option<&[u8]>) -> Result<Expectation, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| invalid("body", format!("is not valid JSON: {error}")))?;
    let Value::Object(fields) = value else {
        return Err(invalid("body", "must be a JSON object"));
    };
    if let Some(unknown) = fields.keys().find(|name| !FIELDS.contains(&name.as_str())) {
        return Err(invalid(unknown, "is not a field of an expectation"));
    }
    let string = |name: &str| -> Result<Option<String>, ApiError> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.trim().to_owned())),
            Some(_) => Err(invalid(name, "must be a string")),
        }
    };
    let required = |name: &str| {
        string(name)?
            .filter(|text| !text.is_empty())
            .ok_or_else(|| invalid(name, "is required"))
    };

    let provider_text = required("provider")?;
    let provider = provider_name(&provider_text).ok_or_else(|| {
        invalid(
            "provider",
            "must be one of mpesa, mtn_mobile_money, airtel_money",
        )
    })?;
    let callback_type_text = required("callback_type")?;
    let expectable = expectable_types(provider);
    let callback_type = CallbackType::parse(&callback_type_text)
        .filter(|kind| expectable.contains(kind))
        .ok_or_else(|| {
            let names: Vec<&str> = expectable.iter().map(|kind| kind.as_str()).collect();
            invalid(
                "callback_type",
                format!("must be one of {} for {provider}", names.join(", ")),
            )
        })?;
    let key = required("key")?;
    if key.len() > 200 {
        return Err(invalid("key", "must be at most 200 characters"));
    }
    // The amount is exact: a string (or a JSON number, read from its exact text), never a float.
    let amount_text = match fields.get("amount") {
        Some(Value::String(text)) => text.trim().to_owned(),
        Some(Value::Number(number)) => number.to_string(),
        None | Some(Value::Null) => return Err(invalid("amount", "is required")),
        Some(_) => {
            return Err(invalid(
                "amount",
                "must be a decimal string such as \"100.00\"",
            ))
        }
    };
    let amount = Decimal::from_str(&amount_text)
        .ok()
        .filter(|amount| *amount > Decimal::ZERO)
        .ok_or_else(|| invalid("amount", "must be a positive decimal such as \"100.00\""))?;
    let currency = required("currency")?;
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(invalid("currency", "must be an ISO 4217 code such as KES"));
    }
    let msisdn = string("msisdn")?.filter(|text| !text.is_empty());
    if let Some(number) = &msisdn {
        if number.len() > 20 || !number.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid("msisdn", "must be digits only, at most 20"));
        }
    }
    let within = match fields.get("expected_within_secs") {
        None | Some(Value::Null) => DEFAULT_EXPECTED_WITHIN_SECS,
        Some(value) => value
            .as_u64()
            .filter(|secs| (1..=MAX_EXPECTED_WITHIN_SECS).contains(secs))
            .ok_or_else(|| {
                invalid(
                    "expected_within_secs",
                    format!(
                        "must be a whole number of seconds from 1 to {MAX_EXPECTED_WITHIN_SECS}"
                    ),
                )
            })?,
    };
    Ok(Expectation {
        provider,
        callback_type,
        key,
        amount,
        currency,
        // Stored like every other MSISDN: as a digest when personal data is hashed.
        msisdn: msisdn.map(|number| match salt {
            Some(salt) => mmo_actors::privacy::digest(salt, &number),
            None => number,
        }),
        expected_within: Duration::from_secs(within),
    })
}

/// Callback types a merchant can expect from `provider`: its endpoints that report a transaction.
fn expectable_types(provider: &str) -> Vec<CallbackType> {
    let mut types: Vec<CallbackType> = PROVIDERS
        .iter()
        .filter(|candidate| candidate.name() == provider)
        .flat_map(|candidate| candidate.endpoints())
        .map(|endpoint| endpoint.callback_type)
        .filter(|kind| kind.flow().is_some() && *kind != CallbackType::B2cTimeout)
        .collect();
    types.dedup();
    types
}

pub fn expectation_item(document: &Document) -> ExpectationItem {
    ExpectationItem {
        // Its id before identities became `_id`s (0.3.0), kept as `expectation_id`.
        id: object_id(document, "expectation_id")
            .or_else(|| object_id(document, "_id"))
            .unwrap_or_default(),
        provider: text(document, "provider").unwrap_or_default(),
        callback_type: text(document, "callback_type").unwrap_or_default(),
        flow: text(document, "flow").unwrap_or_default(),
        key: text(document, "key").unwrap_or_default(),
        amount: decimal(document, "amount"),
        currency: text(document, "currency"),
        msisdn: text(document, "msisdn"),
        expected_within_secs: document.get_i64("expected_within_secs").unwrap_or(0),
        created_at: rfc3339(document, "created_at"),
        due_at: rfc3339(document, "due_at"),
    }
}

pub fn reconciliation_item(document: &Document) -> ReconciliationItem {
    let json = |field: &str| {
        document
            .get(field)
            .filter(|value| !matches!(value, Bson::Null))
            .map(|value| value.clone().into_relaxed_extjson())
    };
    ReconciliationItem {
        state: text(document, "state").unwrap_or_default(),
        reasons: mmo_actors::store::reconciliations::reasons(document),
        attempts: document.get_i32("attempts").unwrap_or(0),
        opened_at: rfc3339(document, "opened_at"),
        due_at: (text(document, "state").as_deref() == Some("open"))
            .then(|| rfc3339(document, "due_at"))
            .flatten(),
        give_up_at: rfc3339(document, "give_up_at"),
        resolved_at: rfc3339(document, "resolved_at"),
        outcome: json("outcome"),
        last_answer: document.get_document("last_answer").ok().map(|answer| {
            serde_json::json!({
                "at": rfc3339(answer, "at"),
                "outcome": text(answer, "outcome"),
                "status": text(answer, "status"),
                "detail": text(answer, "detail"),
            })
        }),
    }
}

/// The reconciler's item for a transaction, if it has one.
pub async fn reconciliation_of(
    store: &MongoStore,
    provider: &str,
    flow: &str,
    key: &str,
) -> Result<Option<ReconciliationItem>, ApiError> {
    Ok(store
        .reconciliations()
        .items()
        .find_one(doc! {"_id": transaction_id(provider, flow, key)})
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(reconciliation_item))
}

/// The expectation registered for a transaction, if any.
pub async fn expectation_of(
    store: &MongoStore,
    provider: &str,
    flow: &str,
    key: &str,
) -> Result<Option<ExpectationItem>, ApiError> {
    Ok(store
        .reconciliations()
        .expectations()
        .find_one(doc! {"provider": provider, "key": key, "flow": flow})
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(expectation_item))
}

/// `GET /v1/expectations/{provider}/{key}`: the expectation, its transaction's status and the
/// reconciler's progress.
pub async fn expectation_view(
    store: &MongoStore,
    provider: &str,
    key: &str,
) -> Result<ExpectationView, ApiError> {
    let provider = provider_name(provider).ok_or(ApiError::NoSuch("expectation"))?;
    let found = store
        .reconciliations()
        .expectations()
        .find_one(doc! {"provider": provider, "key": key})
        .await
        .map_err(unavailable)?
        .ok_or(ApiError::NoSuch("expectation"))?;
    let expectation = expectation_item(&found);
    let transaction_status = store
        .transactions()
        .find_one(doc! {"_id": transaction_id(provider, &expectation.flow, key)})
        .projection(doc! {"status": 1})
        .await
        .map_err(unavailable)?
        .and_then(|transaction| text(&transaction, "status"));
    let reconciliation = reconciliation_of(store, provider, &expectation.flow, key).await?;
    Ok(ExpectationView {
        expectation,
        transaction_status,
        reconciliation,
    })
}

/// How one reconciled transaction ended, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    ConfirmedByCallback,
    RecoveredByQuery,
    ConfirmedByBoth,
    Unresolved,
    Open,
}

impl Ending {
    fn name(self) -> &'static str {
        match self {
            Self::ConfirmedByCallback => "confirmed_by_callback",
            Self::RecoveredByQuery => "recovered_by_query",
            Self::ConfirmedByBoth => "confirmed_by_both",
            Self::Unresolved => "unresolved",
            Self::Open => "open",
        }
    }
}

/// Counts and exact sums of one category.
#[derive(Debug, Default, Clone, Serialize, ToSchema)]
pub struct Tally {
    pub count: u64,
    /// Exact sums per currency, as text.
    pub amounts: BTreeMap<String, String>,
}

/// `GET /v1/reports/reconciliation`: every transaction the reconciler opened work on that UTC day.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationReport {
    pub date: String,
    /// Stored provider name, or null for all.
    pub provider: Option<String>,
    /// Transactions the reconciler looked at (expected, pending, or to confirm).
    pub reconciled: Tally,
    /// Those a merchant registered an expectation for.
    pub expected: Tally,
    /// Final status from the operator's callback (not confirmed by a query).
    pub confirmed_by_callback: Tally,
    /// Final status from a status query: the callback never came.
    pub recovered_by_query: Tally,
    /// A callback and a query agree (`verified`).
    pub confirmed_by_both: Tally,
    /// A callback and a query (or two callbacks) disagree: a person must look. Overlaps the others.
    pub in_conflict: Tally,
    /// No final answer before the reconciler gave up.
    pub unresolved: Tally,
    /// Still being worked on.
    pub open: Tally,
}

/// Transactions looked up per MongoDB query while building the report.
const LOOKUP_BATCH: usize = 200;

pub async fn report(
    store: &MongoStore,
    date: &str,
    provider: Option<&str>,
) -> Result<ReconciliationReport, ApiError> {
    let (start, end) = day(date)?;
    let provider = match provider {
        Some(text) => Some(
            provider_name(text)
                .ok_or_else(|| invalid("provider", "must be mpesa, mtn or airtel"))?,
        ),
        None => None,
    };
    let mut filter = doc! {"opened_at": {"$gte": mmo_actors::store::bson_time(start), "$lt": mmo_actors::store::bson_time(end)}};
    if let Some(provider) = provider {
        filter.insert("provider", provider);
    }
    // Read a chunk at a time: a busy day's items are never all in memory at once.
    let mut items = store
        .reconciliations()
        .items()
        .find(filter)
        .projection(doc! {"provider": 1, "flow": 1, "key": 1, "state": 1, "reasons": 1})
        .batch_size(LOOKUP_BATCH as u32)
        .await
        .map_err(unavailable)?
        .try_chunks(LOOKUP_BATCH);

    let mut tallies: HashMap<&'static str, Tally> = HashMap::new();
    let mut sums: HashMap<(&'static str, String), Decimal> = HashMap::new();
    let mut add = |category: &'static str, money: &Option<(Decimal, String)>| {
        tallies.entry(category).or_default().count += 1;
        if let Some((amount, currency)) = money {
            *sums.entry((category, currency.clone())).or_default() += amount;
        }
    };
    while let Some(chunk) = items
        .try_next()
        .await
        .map_err(|failed| unavailable(failed.1))?
    {
        let ids: Vec<String> = chunk
            .iter()
            .map(|item| {
                let text = |field| item.get_str(field).unwrap_or_default();
                transaction_id(text("provider"), text("flow"), text("key"))
            })
            .collect();
        let transactions = by_identity(
            store.transactions(),
            doc! {"_id": {"$in": ids}},
            "transaction_key",
            doc! {"status": 1, "settled_by": 1, "verified": 1, "conflict": 1, "amount": 1, "currency": 1, "provider": 1, "flow": 1, "transaction_key": 1},
        )
        .await?;
        let expectation_filter: Vec<Document> = chunk
            .iter()
            .map(|item| {
                let field = |name| item.get(name).cloned().unwrap_or(Bson::Null);
                doc! {"provider": field("provider"), "flow": field("flow"), "key": field("key")}
            })
            .collect();
        let expectations = by_identity(
            store.reconciliations().expectations(),
            doc! {"$or": expectation_filter},
            "key",
            doc! {"amount": 1, "currency": 1, "provider": 1, "flow": 1, "key": 1},
        )
        .await?;
        for item in &chunk {
            let identity = (
                text(item, "provider").unwrap_or_default(),
                text(item, "flow").unwrap_or_default(),
                text(item, "key").unwrap_or_default(),
            );
            let transaction = transactions.get(&identity);
            let expectation = expectations.get(&identity);
            let money = [transaction, expectation]
                .into_iter()
                .flatten()
                .find_map(|document| {
                    let amount = decimal(document, "amount")?.parse::<Decimal>().ok()?;
                    Some((amount, text(document, "currency")?))
                });
            let expected = item.get_array("reasons").is_ok_and(|reasons| {
                reasons
                    .iter()
                    .any(|reason| reason.as_str() == Some("expectation"))
            });
            add("reconciled", &money);
            if expected {
                add("expected", &money);
            }
            let flag = |field| transaction.is_some_and(|t| t.get_bool(field).unwrap_or(false));
            if flag("conflict") {
                add("in_conflict", &money);
            }
            add(ending(item, transaction).name(), &money);
        }
    }
    for ((category, currency), sum) in sums {
        tallies
            .entry(category)
            .or_default()
            .amounts
            .insert(currency, sum.normalize().to_string());
    }
    let mut take = |name: &str| tallies.remove(name).unwrap_or_default();
    Ok(ReconciliationReport {
        date: date.to_owned(),
        provider: provider.map(str::to_owned),
        reconciled: take("reconciled"),
        expected: take("expected"),
        confirmed_by_callback: take(Ending::ConfirmedByCallback.name()),
        recovered_by_query: take(Ending::RecoveredByQuery.name()),
        confirmed_by_both: take(Ending::ConfirmedByBoth.name()),
        in_conflict: take("in_conflict"),
        unresolved: take(Ending::Unresolved.name()),
        open: take(Ending::Open.name()),
    })
}

fn ending(item: &Document, transaction: Option<&Document>) -> Ending {
    if text(item, "state").as_deref() == Some("unresolved") {
        return Ending::Unresolved;
    }
    let Some(transaction) = transaction else {
        return Ending::Open;
    };
    let terminal = text(transaction, "status")
        .and_then(|status| mmo_actors::Status::parse(&status))
        .is_some_and(|status| status.is_terminal());
    if !terminal {
        return Ending::Open;
    }
    if transaction.get_bool("verified").unwrap_or(false) {
        return Ending::ConfirmedByBoth;
    }
    match text(transaction, "settled_by").as_deref() {
        Some("status_query") => Ending::RecoveredByQuery,
        _ => Ending::ConfirmedByCallback,
    }
}

/// Documents matching `filter`, by (provider, flow, key field).
async fn by_identity(
    collection: &mongodb::Collection<Document>,
    filter: Document,
    key_field: &str,
    projection: Document,
) -> Result<HashMap<(String, String, String), Document>, ApiError> {
    let found = all(collection.find(filter).projection(projection)).await?;
    Ok(found
        .into_iter()
        .map(|document| {
            let identity = (
                text(&document, "provider").unwrap_or_default(),
                text(&document, "flow").unwrap_or_default(),
                text(&document, key_field).unwrap_or_default(),
            );
            (identity, document)
        })
        .collect())
}
