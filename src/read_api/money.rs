//! The money report: one settlement day's **transactions** (not callbacks) per provider, flow, currency and
//! the status each had when that day ended, with exact sums — what a finance team matches against an
//! operator's statement. The daily report (`daily.rs`) counts callbacks; this one counts payments.
//!
//! What belongs to a day, and how it is counted:
//! - **The day** is `date` in a time zone (the operator's settlement zone unless the request names one):
//!   from that local day's first instant to the next day's, whatever their length (23 or 25 hours across a
//!   daylight-saving change; a midnight the clocks skip starts the day at the first minute that exists).
//! - **Its transactions** are those first seen (`first_callback_at`) within it: one document per provider,
//!   flow and key, so an MTN payment's PENDING and SUCCESSFUL callbacks, or a B2C result and its time-out,
//!   are one transaction.
//! - **Each is counted by the status it had at the end of the day.** Transactions keep no history, so it is
//!   derived: one whose last callback came before the day's end still says what it said then (its stored
//!   state); one that changed since is folded again from its callbacks received before the day's end
//!   (operators' callbacks and the reconciler's `status_query` answers alike), oldest first, by the rules
//!   the store applies ([`mmo_actors::transaction::transition`]).
//! - **A payment reported by two linked transactions is counted once**: an M-Pesa C2B confirmation linked
//!   to an STK result (the STK result's receipt is its key, see [`RECEIPT_LINKS`]) is left out, and the
//!   payment counts under the STK transaction's line, on the STK transaction's day — even when the
//!   confirmation was first seen on another day.
//! - **Nothing vanishes**: a transaction whose callbacks carried no currency is counted on a line whose
//!   currency is `unknown`; amounts are summed exactly (rust_decimal) and rendered as decimal text.
//!
//! Queries (both served by an index; a test asks MongoDB's planner): the day's transactions by
//! `first_callback_at` (the `newest` index), then, per batch of transactions that changed after the day's
//! end, their callbacks by `_id` (the `_id` index, hinted: the `received_at` bound must not tempt the
//! planner into the `newest` index, which would scan every earlier callback).

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{Duration, TimeZone};
use chrono_tz::Tz;
use futures_util::TryStreamExt;
use mmo_actors::store::{recorded, RECEIPT_LINKS};
use mmo_actors::transaction::{transition, Snapshot};
use mongodb::bson::RawDocumentBuf;
use rust_decimal::Decimal;

use super::*;

/// Transactions whose end-of-day status is folded again per query of their callbacks.
const FOLD_BATCH: usize = 500;

/// One settlement day's transactions per provider, flow, currency and end-of-day status.
#[derive(Debug, Serialize, ToSchema)]
pub struct MoneyReport {
    pub date: String,
    /// The IANA time zone the day was cut in.
    pub tz: String,
    /// The day's first instant (RFC 3339, UTC).
    pub from: String,
    /// The next day's first instant (RFC 3339, UTC): the day ends just before it.
    pub until: String,
    pub lines: Vec<MoneyLine>,
}

/// Transactions of one provider, flow and currency that had one status when the day ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct MoneyLine {
    /// Stored provider name: `mpesa`, `mtn_mobile_money`, `airtel_money`.
    pub provider: String,
    /// `stk_push`, `b2c`, `c2b`, `collection`, `disbursement`, `remittance`, `payment`.
    pub flow: String,
    /// As the operator sent it; `unknown` when none of the transaction's callbacks carried one.
    pub currency: String,
    /// The status the transactions had at the end of the day.
    pub status: String,
    /// Transactions (not callbacks).
    pub count: i64,
    /// The exact sum of their amounts, as decimal text (a transaction without an amount adds nothing).
    pub amount: String,
}

/// The instants `[from, until)` that `date` spans in `zone`.
pub fn settlement_day(date: &str, zone: Tz) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let day = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_err(|_| invalid("date", "must be a date (YYYY-MM-DD)"))?;
    let next = day
        .succ_opt()
        .ok_or_else(|| invalid("date", "is out of range"))?;
    Ok((first_instant(day, zone)?, first_instant(next, zone)?))
}

/// The first instant of `day` in `zone`: its midnight, the earlier one when clocks turned back over it,
/// or, when clocks skipped it, the first minute after that exists.
fn first_instant(day: NaiveDate, zone: Tz) -> Result<DateTime<Utc>, ApiError> {
    let midnight = day.and_time(chrono::NaiveTime::MIN);
    (0..=24 * 60)
        .find_map(|minutes| {
            zone.from_local_datetime(&(midnight + Duration::minutes(minutes)))
                .earliest()
        })
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(|| invalid("date", "has no first instant in this time zone"))
}

/// The day's transactions: first seen within `[from, until)`, of `provider` when given. Served by the
/// `newest` index (`first_callback_at`, `_id`).
pub fn first_seen_within(
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    provider: Option<&str>,
) -> Document {
    let mut filter = doc! {"first_callback_at": {
        "$gte": mmo_actors::store::bson_time(from),
        "$lt": mmo_actors::store::bson_time(until),
    }};
    if let Some(provider) = provider {
        filter.insert("provider", provider);
    }
    filter
}

/// Callbacks among `ids` received before `until`. Run with [`by_id`] as hint.
pub fn received_before(ids: Vec<Bson>, until: DateTime<Utc>) -> Document {
    doc! {"_id": {"$in": ids}, "received_at": {"$lt": mmo_actors::store::bson_time(until)}}
}

/// The index [`received_before`] is run with: MongoDB's own on `_id`.
pub fn by_id() -> Document {
    doc! {"_id": 1}
}

/// The money report of `date` in `zone`, of `provider` when given.
pub async fn money_report(
    store: &MongoStore,
    date: &str,
    zone: Tz,
    provider: Option<&'static str>,
) -> Result<MoneyReport, ApiError> {
    let (from, until) = settlement_day(date, zone)?;
    let mut cursor = store
        .transactions()
        .find(first_seen_within(from, until, provider))
        .sort(doc! {"first_callback_at": 1, "_id": 1})
        .projection(doc! {
            "provider": 1, "flow": 1, "transaction_key": 1, "status": 1, "amount": 1, "currency": 1,
            "last_callback_at": 1, "callback_ids": 1, "linked_transactions": 1,
        })
        .await
        .map_err(unavailable)?;
    let mut tally = Tally::default();
    let mut changed_since = Vec::new();
    while let Some(transaction) = cursor.try_next().await.map_err(unavailable)? {
        if counted_with_its_link(&transaction) {
            continue;
        }
        let unchanged = transaction
            .get_datetime("last_callback_at")
            .is_ok_and(|last| last.to_chrono() < until);
        if unchanged {
            tally.count(&transaction, &stored_state(&transaction)?)?;
            continue;
        }
        changed_since.push(transaction);
        if changed_since.len() == FOLD_BATCH {
            fold_at_day_end(store, &changed_since, until, &mut tally).await?;
            changed_since.clear();
        }
    }
    fold_at_day_end(store, &changed_since, until, &mut tally).await?;
    Ok(MoneyReport {
        // The date as read (the day's first instant lies within it), never the request's text.
        date: from.with_timezone(&zone).date_naive().to_string(),
        tz: zone.name().to_owned(),
        from: from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        until: until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        lines: tally.lines(),
    })
}

/// Whether the payment `transaction` reports is counted under another transaction: a flow keyed by
/// another flow's receipt (an M-Pesa C2B confirmation) linked to a transaction of that flow (its STK
/// result).
fn counted_with_its_link(transaction: &Document) -> bool {
    let provider = transaction.get_str("provider").unwrap_or_default();
    let flow = transaction.get_str("flow").unwrap_or_default();
    let links = transaction
        .get_array("linked_transactions")
        .map(|links| {
            links
                .iter()
                .filter_map(Bson::as_document)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    RECEIPT_LINKS
        .iter()
        .filter(|(linked_provider, _, keyed_flow)| {
            *linked_provider == provider && *keyed_flow == flow
        })
        .any(|(linked_provider, receipt_flow, _)| {
            links.iter().any(|link| {
                link.get_str("provider") == Ok(*linked_provider)
                    && link.get_str("flow") == Ok(*receipt_flow)
            })
        })
}

/// What is counted of a transaction at the end of the day.
struct DayEnd {
    status: String,
    currency: Option<String>,
    amount: Option<Decimal>,
}

/// A transaction as stored: what it said when its last callback came.
fn stored_state(transaction: &Document) -> Result<DayEnd, ApiError> {
    let amount = match transaction.get("amount") {
        None | Some(Bson::Null) => None,
        Some(Bson::Decimal128(amount)) => Some(
            exact(&amount.to_string())
                .ok_or_else(|| unreadable_amount(transaction, &amount.to_string()))?,
        ),
        Some(other) => return Err(unreadable_amount(transaction, &other.to_string())),
    };
    Ok(DayEnd {
        status: text(transaction, "status").unwrap_or_else(|| Status::Unknown.as_str().to_owned()),
        currency: text(transaction, "currency"),
        amount,
    })
}

/// A Decimal128's text as an exact decimal (plain, or in the exponent form Decimal128 may print).
fn exact(text: &str) -> Option<Decimal> {
    Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
}

/// An amount the report cannot add exactly: said, rather than left out of a sum.
fn unreadable_amount(transaction: &Document, amount: &str) -> ApiError {
    ApiError::QueryFailed(format!(
        "transaction {} holds an amount that is not an exact decimal ({amount}): the report refuses to \
         leave it out of its sum",
        text(transaction, "_id").unwrap_or_default()
    ))
}

/// Folds each of `transactions` (changed after the day's end) again from its callbacks received before
/// `until`, and counts what that says.
async fn fold_at_day_end(
    store: &MongoStore,
    transactions: &[Document],
    until: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<(), ApiError> {
    if transactions.is_empty() {
        return Ok(());
    }
    let ids: Vec<Bson> = transactions
        .iter()
        .flat_map(|transaction| {
            transaction
                .get_array("callback_ids")
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let query = store
        .callbacks()
        .find(received_before(ids, until))
        .hint(mongodb::options::Hint::Keys(by_id()))
        .projection(doc! {"callback_data": 0, "delivery_ids": 0});
    let mut received = HashMap::new();
    for document in all(query).await? {
        let Some(id) = text(&document, "_id") else {
            continue;
        };
        let raw = RawDocumentBuf::from_document(&document).map_err(|error| {
            ApiError::QueryFailed(format!("callback {id} cannot be read: {error}"))
        })?;
        let (callback, delivery) = recorded(&raw).ok_or_else(|| {
            ApiError::QueryFailed(format!("callback {id} is not one this version can read"))
        })?;
        received.insert(id, (delivery.received_at, delivery.id, callback));
    }
    for transaction in transactions {
        let mut callbacks: Vec<_> = transaction
            .get_array("callback_ids")
            .map(|ids| ids.iter().filter_map(Bson::as_str).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|id| received.get(id))
            .collect();
        // In the order they arrived: the order the store folded them in.
        callbacks.sort_by_key(|(at, delivery, _)| (*at, *delivery));
        let Some(((_, _, first), later)) = callbacks.split_first() else {
            // First seen that day, yet none of its callbacks is stored as received before the day's end:
            // a callback folded but not yet written (the store writes it right after). What the
            // transaction says is all there is to count.
            tally.count(transaction, &stored_state(transaction)?)?;
            continue;
        };
        let mut snapshot = Snapshot::from_callback(first);
        for (_, _, callback) in later {
            snapshot = transition(&snapshot, callback).next;
        }
        let at_day_end = DayEnd {
            status: snapshot.status.as_str().to_owned(),
            currency: snapshot.currency,
            amount: snapshot.amount,
        };
        tally.count(transaction, &at_day_end)?;
    }
    Ok(())
}

/// The lines being added up: (provider, flow, currency, status) → (transactions, exact sum).
#[derive(Default)]
struct Tally(BTreeMap<(String, String, String, String), (i64, Decimal)>);

impl Tally {
    fn count(&mut self, transaction: &Document, state: &DayEnd) -> Result<(), ApiError> {
        let key = (
            text(transaction, "provider").unwrap_or_default(),
            text(transaction, "flow").unwrap_or_default(),
            state
                .currency
                .clone()
                .unwrap_or_else(|| "unknown".to_owned()),
            state.status.clone(),
        );
        let (count, sum) = self.0.entry(key).or_insert((0, Decimal::ZERO));
        *count += 1;
        if let Some(amount) = state.amount {
            *sum = sum.checked_add(amount).ok_or_else(|| {
                ApiError::QueryFailed("a sum exceeds what an exact decimal holds".into())
            })?;
        }
        Ok(())
    }

    fn lines(self) -> Vec<MoneyLine> {
        self.0
            .into_iter()
            .map(
                |((provider, flow, currency, status), (count, amount))| MoneyLine {
                    provider,
                    flow,
                    currency,
                    status,
                    count,
                    amount: amount.to_string(),
                },
            )
            .collect()
    }
}

/// The CSV header of [`money_csv`].
pub const MONEY_CSV_COLUMNS: &[&str] = &[
    "date", "tz", "provider", "flow", "currency", "status", "count", "amount",
];

/// The report as CSV: a header, then one row per line, each carrying the day and zone it belongs to.
pub fn money_csv(report: &MoneyReport) -> Vec<u8> {
    let mut bytes = csv_line(MONEY_CSV_COLUMNS.iter().copied());
    for line in &report.lines {
        let count = line.count.to_string();
        bytes.extend(csv_line([
            report.date.as_str(),
            report.tz.as_str(),
            &line.provider,
            &line.flow,
            &line.currency,
            &line.status,
            &count,
            &line.amount,
        ]));
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_day_is_cut_in_its_zone() {
        let nairobi: Tz = "Africa/Nairobi".parse().unwrap();
        assert_eq!(
            settlement_day("2026-03-01", nairobi).unwrap(),
            (at("2026-02-28T21:00:00Z"), at("2026-03-01T21:00:00Z"))
        );
        assert_eq!(
            settlement_day("2026-03-01", Tz::UTC).unwrap(),
            (at("2026-03-01T00:00:00Z"), at("2026-03-02T00:00:00Z"))
        );
    }

    #[test]
    fn days_across_clock_changes_have_their_real_length() {
        // London springs forward on 2026-03-29 (23 hours) and falls back on 2026-10-25 (25 hours).
        let london: Tz = "Europe/London".parse().unwrap();
        let (from, until) = settlement_day("2026-03-29", london).unwrap();
        assert_eq!(until - from, Duration::hours(23));
        let (from, until) = settlement_day("2026-10-25", london).unwrap();
        assert_eq!(until - from, Duration::hours(25));
        // Santiago's clocks skip midnight on 2026-09-06: the day starts at 01:00 local (04:00 UTC).
        let santiago: Tz = "America/Santiago".parse().unwrap();
        let (from, _) = settlement_day("2026-09-06", santiago).unwrap();
        assert_eq!(from, at("2026-09-06T04:00:00Z"));
    }

    #[test]
    fn a_bad_date_is_named() {
        assert!(matches!(
            settlement_day("01-03-2026", Tz::UTC),
            Err(ApiError::InvalidParameter { parameter, .. }) if parameter == "date"
        ));
    }

    #[test]
    fn decimal128_text_reads_exactly() {
        assert_eq!(exact("1000.50").unwrap().to_string(), "1000.50");
        assert_eq!(exact("1.0E+3").unwrap(), Decimal::from(1000));
        assert!(exact("NaN").is_none());
    }
}
