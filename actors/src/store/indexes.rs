//! Index shapes the store's collections share: listing newest first, finding by MSISDN, partial indexes.
//! A leaf: it imports nothing of the store.

use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;

/// Listing newest first, by `field` then `_id` (keyset pagination), scanned backwards.
pub(super) fn newest(field: &str) -> IndexModel {
    IndexModel::builder()
        .keys(doc! {field: 1, "_id": 1})
        .options(IndexOptions::builder().name("newest".to_owned()).build())
        .build()
}

/// Finding by MSISDN, newest first; only documents that have one.
pub(super) fn by_msisdn(field: &str) -> IndexModel {
    partial(
        doc! {"msisdn": 1, field: 1, "_id": 1},
        "by_msisdn",
        doc! {"msisdn": {"$type": "string"}},
    )
}

/// An index named `name` holding only the documents that match `filter`: an index entry costs every
/// insert and a share of MongoDB's cache, so documents no query looks for stay out.
pub(super) fn partial(keys: Document, name: &str, filter: Document) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(
            IndexOptions::builder()
                .name(name.to_owned())
                .partial_filter_expression(filter)
                .build(),
        )
        .build()
}
