//! How each collection would be sharded: one table, explained in `docs/mongodb.md` ("Sharding"), and
//! the two rules a sharded cluster imposes, which the tests hold every index and every single-document
//! write to (`tests/api/sharding.rs`):
//!
//! 1. a unique index must start with the collection's shard key (MongoDB cannot enforce uniqueness
//!    across shards otherwise);
//! 2. a single-document update, delete or findAndModify must filter on the shard key by equality, so
//!    that it goes to the one shard holding the document.
//!
//! Every sharded collection is keyed by its hashed `_id`, which is each document's identity (a callback's,
//! a transaction's, an event's, an expectation's, a work item's): writes spread evenly over the shards and
//! every write and lookup by identity reaches one shard. The small collections stay unsharded.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Database;

/// A collection's shard key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardKey {
    /// `{_id: "hashed"}`.
    HashedId,
    /// Not sharded: a handful of documents, kept on the database's primary shard.
    Unsharded,
}

/// Every collection the service writes, with its shard key.
pub const SHARD_KEYS: &[(&str, ShardKey)] = &[
    ("callbacks", ShardKey::HashedId),
    ("transactions", ShardKey::HashedId),
    ("events", ShardKey::HashedId),
    ("rejected_callbacks", ShardKey::HashedId),
    ("expectations", ShardKey::HashedId),
    ("reconciliations", ShardKey::HashedId),
    ("endpoints", ShardKey::Unsharded),
    ("leases", ShardKey::Unsharded),
    ("operator_tokens", ShardKey::Unsharded),
    // The console's callbacks per minute and provider (at most two days of them; `src/callback_minutes.rs`).
    ("callback_minutes", ShardKey::Unsharded),
];

/// The shard key of `collection`; `None` for a collection the table does not list.
pub fn shard_key(collection: &str) -> Option<ShardKey> {
    SHARD_KEYS
        .iter()
        .find(|(name, _)| *name == collection)
        .map(|(_, key)| *key)
}

/// Why a unique index with these `keys` could not exist on `collection` once it is sharded, if it could not.
pub fn unique_index_problem(collection: &str, keys: &Document) -> Option<String> {
    match shard_key(collection) {
        None => Some(format!("`{collection}` is not in the shard key table")),
        Some(ShardKey::Unsharded) => None,
        Some(ShardKey::HashedId) => (keys.keys().next().map(String::as_str) != Some("_id"))
            .then(|| format!("unique index {keys} on `{collection}` does not start with `_id`")),
    }
}

/// Why a single-document write filtered by `filter` would not reach exactly one shard of `collection`,
/// if it would not.
pub fn single_write_problem(collection: &str, filter: &Document) -> Option<String> {
    match shard_key(collection) {
        None => Some(format!("`{collection}` is not in the shard key table")),
        Some(ShardKey::Unsharded) => None,
        Some(ShardKey::HashedId) => (!equality_on(filter, "_id")).then(|| {
            format!("a single-document write to `{collection}` filtered by {filter} names no `_id`")
        }),
    }
}

/// Whether `filter` pins `field` to one value: `{field: value}`, `{field: {$eq: value}}`, or either
/// inside a top-level `$and`.
fn equality_on(filter: &Document, field: &str) -> bool {
    let pinned = |value: &Bson| match value {
        Bson::Document(condition) => condition.contains_key("$eq"),
        Bson::Array(_) | Bson::RegularExpression(_) => false,
        _ => true,
    };
    filter.get(field).is_some_and(pinned)
        || filter.get_array("$and").is_ok_and(|clauses| {
            clauses
                .iter()
                .filter_map(Bson::as_document)
                .any(|clause| equality_on(clause, field))
        })
}

/// What in `database` breaks the rules above: a collection the table does not list, a unique index that
/// does not start with the shard key, and — from MongoDB's profiler (`system.profile`, which records
/// every operation at profiling level 2) — each single-document write that does not pin the shard key.
/// Run it on a test or staging database the service has worked on with profiling on; an empty answer
/// means the data model shards as `docs/mongodb.md` says.
pub async fn problems(database: &Database) -> mongodb::error::Result<Vec<String>> {
    let mut problems = Vec::new();
    for name in database.list_collection_names().await? {
        if name.starts_with("system.") {
            continue;
        }
        if shard_key(&name).is_none() {
            problems.push(format!("`{name}` is not in the shard key table"));
            continue;
        }
        let indexes: Vec<mongodb::IndexModel> = database
            .collection::<Document>(&name)
            .list_indexes()
            .await?
            .try_collect()
            .await?;
        for index in indexes {
            if index.options.as_ref().and_then(|options| options.unique) == Some(true) {
                problems.extend(unique_index_problem(&name, &index.keys));
            }
        }
    }
    let mut profiled = database
        .collection::<Document>("system.profile")
        .find(doc! {"op": {"$in": ["update", "remove", "command"]}})
        .await?;
    while let Some(entry) = profiled.try_next().await? {
        if let Some((collection, filter)) = single_write(&entry) {
            problems.extend(single_write_problem(collection, filter));
        }
    }
    problems.sort();
    problems.dedup();
    Ok(problems)
}

/// The collection and filter of a profiled single-document write (`updateOne`, `deleteOne`,
/// `findAndModify`); `None` for anything else (a multi-document write goes to every shard by design).
pub fn single_write(entry: &Document) -> Option<(&str, &Document)> {
    let collection = entry.get_str("ns").ok()?.split_once('.')?.1;
    let command = entry.get_document("command").ok()?;
    let filter = match entry.get_str("op").ok()? {
        "update" if !command.get_bool("multi").unwrap_or(false) => command.get_document("q"),
        "remove" if matches!(command.get("limit"), Some(Bson::Int32(1) | Bson::Int64(1))) => {
            command.get_document("q")
        }
        "command" if command.contains_key("findAndModify") => command.get_document("query"),
        _ => return None,
    };
    Some((collection, filter.ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn a_unique_index_must_start_with_the_shard_key() {
        assert_eq!(unique_index_problem("callbacks", &doc! {"_id": 1}), None);
        assert!(unique_index_problem("expectations", &doc! {"provider": 1, "key": 1}).is_some());
        assert_eq!(unique_index_problem("endpoints", &doc! {"url": 1}), None);
        assert!(unique_index_problem("somewhere_new", &doc! {"_id": 1}).is_some());
    }

    #[test]
    fn a_single_write_must_pin_the_shard_key() {
        let targeted = [
            doc! {"_id": "mpesa|c2b|X", "version": 3},
            doc! {"_id": {"$eq": "x"}},
            doc! {"$and": [{"_id": "x"}, {"state": "open"}]},
        ];
        for filter in targeted {
            assert_eq!(
                single_write_problem("transactions", &filter),
                None,
                "{filter}"
            );
        }
        let scattered = [
            doc! {"provider": "mpesa", "state": "open"},
            doc! {"_id": {"$in": ["a", "b"]}},
            doc! {"_id": {"$gt": "a"}},
        ];
        for filter in scattered {
            assert!(
                single_write_problem("reconciliations", &filter).is_some(),
                "{filter}"
            );
        }
        assert_eq!(single_write_problem("leases", &doc! {"owner": "x"}), None);
    }
}
