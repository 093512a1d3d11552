//! Every MongoDB error, classified in one place: is it "not now" (retry, as long as it takes, without
//! counting attempts: the journal holds the callback meanwhile), or provably about the document being
//! written, which retrying cannot fix (count attempts, then quarantine)?
//!
//! Unavailable unless proven otherwise: only a short allow-list of write errors is the document's fault.
//! Everything else — elections, step-downs, shutdowns, `Interrupted` (11601, what a killed operation or a
//! busy node answers), `StaleConfig` (13388, routine on a sharded cluster during chunk migrations), read
//! concern not yet available, network trouble, credentials, codes this list has never heard of — is
//! unavailability. A read never counts toward quarantine ([`classify_read`]): whatever a read fails
//! with, the document being written is not the cause.

use mongodb::error::{Error, ErrorKind, WriteFailure};

use super::StoreError;

pub const DUPLICATE_KEY: i32 = 11000;

/// Server error codes of a write that are about the document itself. Duplicate keys are mostly handled
/// by their callers (an idempotent insert); one that reaches here is about the document too.
const DOCUMENT_FAULTS: &[i32] = &[
    2,     // BadValue: a value MongoDB will not store
    14,    // TypeMismatch: an update applied to a field of another type
    52,    // DollarPrefixedFieldName
    56,    // EmptyFieldName
    121,   // DocumentValidationFailure
    10334, // BSONObjectTooLarge
    17280, // KeyTooLong (servers before 4.2)
    17419, // the document after an update would be larger than 16 MiB
    DUPLICATE_KEY,
];

/// Whether a write's server error code is about the document (retrying cannot fix it).
pub fn is_document_fault(code: i32) -> bool {
    DOCUMENT_FAULTS.contains(&code)
}

/// A duplicate key on a single write: a write error, or a `findAndModify` (an upsert racing another)
/// refused as a whole.
pub fn is_duplicate_key(error: &Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write_error)) => {
            write_error.code == DUPLICATE_KEY
        }
        ErrorKind::Command(command) => command.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// Classifies the error of a write: rejected only when provably about the document. A whole command
/// refused (`ok: 0`) is not about one document of a batch — the server names a document's fault in
/// `writeErrors` — so it is unavailability here; [`classify_single`] is for writes of one document.
pub fn classify(error: &Error) -> StoreError {
    match error.kind.as_ref() {
        ErrorKind::Command(_) => StoreError::Unavailable(error.to_string()),
        _ => classify_single(error),
    }
}

/// Classifies the error of a write of one document (`findAndModify`, `update_one`): a refused command
/// is then about that document when its code is on the allow-list.
pub fn classify_single(error: &Error) -> StoreError {
    if error.contains_label("RetryableWriteError")
        || error.contains_label("TransientTransactionError")
    {
        return StoreError::Unavailable(error.to_string());
    }
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write_error)) => {
            by_code(write_error.code, &write_error.message)
        }
        ErrorKind::Command(command) => by_code(command.code, &command.message),
        ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => {
            match &failure.write_errors {
                // Callers resolve insert_many per document; a whole-batch answer reports the first.
                Some(errors) if !errors.is_empty() => by_code(errors[0].code, &errors[0].message),
                _ => StoreError::Unavailable(error.to_string()),
            }
        }
        // What the driver refuses to send (a document it cannot serialize, one over the size limit).
        ErrorKind::BsonSerialization(_) | ErrorKind::InvalidArgument { .. } => {
            StoreError::Rejected(error.to_string())
        }
        // Write concern failures, network, server selection, pool clearing, shutdown, authentication,
        // DNS, invalid responses: all about reaching the server.
        _ => StoreError::Unavailable(error.to_string()),
    }
}

/// Classifies the error of a read: never the document's fault, so always "not now".
pub fn classify_read(error: &Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// A write's answer by its server code: the allow-listed codes are about the document, the rest are
/// unavailability.
pub fn by_code(code: i32, message: &str) -> StoreError {
    if is_document_fault(code) {
        StoreError::Rejected(format!("code {code}: {message}"))
    } else {
        StoreError::Unavailable(format!("code {code}: {message}"))
    }
}

/// Every document a find returns, or why not (classified): the read the stores and delivery repeat.
pub async fn all(
    find: impl std::future::IntoFuture<
        Output = mongodb::error::Result<mongodb::Cursor<mongodb::bson::Document>>,
    >,
) -> Result<Vec<mongodb::bson::Document>, StoreError> {
    use futures_util::TryStreamExt;
    find.await
        .map_err(|error| classify_read(&error))?
        .try_collect()
        .await
        .map_err(|error| classify_read(&error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allow_listed_write_codes_are_about_the_document() {
        // Interrupted, StaleConfig, ReadConcernMajorityNotAvailableYet, ShutdownInProgress,
        // NotWritablePrimary, elections, write conflicts, credentials, and codes never heard of.
        for code in [
            11601, 13388, 134, 91, 10107, 11602, 189, 112, 64, 13, 999_999,
        ] {
            assert!(
                matches!(by_code(code, "x"), StoreError::Unavailable(_)),
                "{code}"
            );
        }
        // BSONObjectTooLarge, document validation, bad value, dollar-prefixed field names.
        for code in [10334, 121, 2, 52, 17419] {
            assert!(
                matches!(by_code(code, "x"), StoreError::Rejected(_)),
                "{code}"
            );
        }
    }
}
