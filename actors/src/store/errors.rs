//! Every MongoDB error, classified in one place: is it the server being unreachable or busy (retry, as
//! long as it takes, without counting attempts), or something about the document itself that retrying
//! cannot fix (count attempts, then quarantine)?

use mongodb::error::{Error, ErrorKind, WriteFailure};

use super::StoreError;

pub const DUPLICATE_KEY: i32 = 11000;

/// Server error codes that mean "not now": elections, step-downs, shutdowns, network trouble, timeouts,
/// write conflicts, and credentials or permissions (a configuration problem an operator fixes; callbacks
/// wait in the journal meanwhile, and are never quarantined because of it).
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    13,    // Unauthorized
    18,    // AuthenticationFailed
    50,    // MaxTimeMSExpired
    64,    // WriteConcernFailed (wtimeout)
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    112,   // WriteConflict
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// Whether a server error code means "retry later".
pub fn is_transient_code(code: i32) -> bool {
    TRANSIENT_CODES.contains(&code)
}

/// A duplicate key on a single write.
pub fn is_duplicate_key(error: &Error) -> bool {
    matches!(
        error.kind.as_ref(),
        ErrorKind::Write(WriteFailure::WriteError(write_error)) if write_error.code == DUPLICATE_KEY
    )
}

/// Classifies any MongoDB error.
pub fn classify(error: &Error) -> StoreError {
    if error.contains_label("RetryableWriteError")
        || error.contains_label("TransientTransactionError")
    {
        return StoreError::Unavailable(error.to_string());
    }
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write_error)) => {
            by_code(write_error.code, &write_error.message)
        }
        ErrorKind::Write(WriteFailure::WriteConcernError(_)) => {
            StoreError::Unavailable(error.to_string())
        }
        ErrorKind::Command(command) => by_code(command.code, &command.message),
        ErrorKind::InsertMany(failure) => match &failure.write_errors {
            // Callers resolve insert_many per document; a whole-batch answer reports the first.
            Some(errors) if !errors.is_empty() => by_code(errors[0].code, &errors[0].message),
            _ => StoreError::Unavailable(error.to_string()),
        },
        ErrorKind::BsonSerialization(_) | ErrorKind::InvalidArgument { .. } => {
            StoreError::Rejected(error.to_string())
        }
        // Network, server selection, pool clearing, shutdown, authentication, DNS, invalid responses:
        // all about reaching the server.
        _ => StoreError::Unavailable(error.to_string()),
    }
}

/// A server's answer by its code: transient codes are unavailability, the rest are about the document.
pub fn by_code(code: i32, message: &str) -> StoreError {
    if is_transient_code(code) {
        StoreError::Unavailable(format!("code {code}: {message}"))
    } else {
        StoreError::Rejected(format!("code {code}: {message}"))
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
        .map_err(|error| classify(&error))?
        .try_collect()
        .await
        .map_err(|error| classify(&error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elections_and_timeouts_are_transient_and_document_errors_are_not() {
        for code in [10107, 11602, 189, 91, 112, 64, 13] {
            assert!(
                matches!(by_code(code, "x"), StoreError::Unavailable(_)),
                "{code}"
            );
        }
        // BSONObjectTooLarge, document validation, bad value, dollar-prefixed field names.
        for code in [10334, 121, 2, 52] {
            assert!(
                matches!(by_code(code, "x"), StoreError::Rejected(_)),
                "{code}"
            );
        }
    }
}
