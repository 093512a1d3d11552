//! The daily report: one UTC day's **callbacks** per provider and callback type, as JSON, or the day's
//! transactions in CSV.
//!
//! It counts callbacks, not payments: an MTN payment with a PENDING and a SUCCESSFUL callback shows under
//! both statuses, an M-Pesa STK result and its C2B confirmation both count, and amounts without a currency
//! are left out of the sums. It shows what operators sent; the money report (`money.rs`) shows the money.

use super::*;

/// One UTC day's callbacks per provider and callback type: what operators sent (the money report counts
/// transactions).
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
    /// Their amounts by currency then status, as exact decimals (callbacks without a currency are left
    /// out).
    pub amounts: BTreeMap<String, BTreeMap<String, String>>,
    /// Transactions of this callback type's flow, first seen that day, in conflict.
    pub conflicts: i64,
    /// Bodies sent to this endpoint that day and quarantined.
    pub quarantined: i64,
}

impl ReportLine {
    /// A line with nothing counted yet.
    fn empty(provider: String, callback_type: String) -> Self {
        Self {
            provider,
            callback_type,
            counts: BTreeMap::new(),
            amounts: BTreeMap::new(),
            conflicts: 0,
            quarantined: 0,
        }
    }
}

/// One UTC day's callbacks per provider and callback type (not transactions: see [`money_report`]).
pub async fn daily_report(
    store: &MongoStore,
    date: &str,
    provider: Option<&'static str>,
) -> Result<DailyReport, ApiError> {
    let (start, end) = day(date)?;
    let window = doc! {"$gte": mmo_actors::store::bson_time(start), "$lt": mmo_actors::store::bson_time(end)};
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
            .or_insert_with(|| ReportLine::empty(provider, callback_type));
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
            .or_insert_with(|| ReportLine::empty(provider, callback_type))
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
    let mut filter = doc! {"first_callback_at": {"$gte": mmo_actors::store::bson_time(start), "$lt": mmo_actors::store::bson_time(end)}};
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
