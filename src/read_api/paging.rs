//! Filters, cursors and pages: how the read API's lists are asked for (strictly checked query strings)
//! and cut (newest first, keyset pagination with an opaque cursor).

use super::*;

pub const DEFAULT_LIMIT: i64 = 50;

pub const MAX_LIMIT: i64 = 500;

/// A page of a list, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// What a list may be filtered by, read from a query string.
#[derive(Debug, Default)]
pub struct Filters {
    pub provider: Option<&'static str>,
    pub status: Option<Status>,
    pub callback_type: Option<CallbackType>,
    /// A transaction's flow (`stk_push`, `c2b`, `collection`, …).
    pub flow: Option<&'static str>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub msisdn: Option<String>,
    pub conflict: Option<bool>,
    pub limit: i64,
    pub cursor: Option<(i64, Bson)>,
}

pub(super) fn time(parameter: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
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
                "flow" => {
                    filters.flow = Some(
                        PROVIDERS
                            .iter()
                            .flat_map(|provider| provider.endpoints())
                            .filter_map(|endpoint| endpoint.callback_type.flow())
                            .find(|flow| *flow == value)
                            .ok_or_else(|| invalid("flow", "is not a flow (stk_push, b2c, c2b, collection, …)"))?,
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
        if let Some(flow) = self.flow {
            filter.insert("flow", flow);
        }
        if let Some(msisdn) = &self.msisdn {
            let stored = match salt {
                Some(salt) => mmo_actors::privacy::digest(salt, msisdn),
                None => msisdn.clone(),
            };
            // With the partial index's own condition, so MongoDB may use `by_msisdn` (the planner only
            // picks a partial index whose filter the query implies, and an equality does not imply `$type`).
            filter.insert("msisdn", doc! {"$eq": stored, "$type": "string"});
        }
        if let Some(conflict) = self.conflict {
            filter.insert("conflict", conflict);
        }
        let mut range = Document::new();
        if let Some(since) = self.since {
            range.insert("$gte", mmo_actors::store::bson_time(since));
        }
        if let Some(until) = self.until {
            range.insert("$lt", mmo_actors::store::bson_time(until));
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
pub(super) fn encode_cursor(millis: i64, id: &Bson) -> Option<String> {
    let id = match id {
        Bson::ObjectId(id) => id.to_hex(),
        Bson::String(id) => format!("s:{id}"),
        _ => return None,
    };
    Some(URL_SAFE_NO_PAD.encode(format!("{millis}:{id}")))
}

pub(super) fn decode_cursor(text: &str) -> Result<(i64, Bson), ApiError> {
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

/// Reads one page of `collection` with `filters`, newest first by `time_field`.
pub(super) async fn page<T>(
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

/// The query parameters each listing accepts (also what `/openapi.json` documents).
pub(crate) const TRANSACTION_FILTERS: &[&str] = &[
    "provider", "flow", "status", "since", "until", "msisdn", "conflict", "limit", "cursor",
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
