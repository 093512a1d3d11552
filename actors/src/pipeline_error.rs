//! [`PipelineError`]: why the actor system could not confirm a callback as stored. In a module of its own,
//! because every actor on the path returns it.

use crate::pool::PoolError;
use crate::store::StoreError;

/// Why a callback could not be confirmed as stored. None of these may be acknowledged with a 2xx.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    #[error("a mailbox is full")]
    Busy,
    #[error("no answer in time")]
    Timeout,
    #[error("an actor failed twice on this callback")]
    ActorFailed,
    #[error("storage unavailable: {0}")]
    StorageUnavailable(String),
    #[error("storage refused the callback: {0}")]
    StorageRejected(String),
    #[error("no pool serves provider `{0}`")]
    UnknownProvider(String),
}

impl From<PoolError> for PipelineError {
    fn from(error: PoolError) -> Self {
        match error {
            PoolError::Busy => Self::Busy,
            PoolError::Timeout => Self::Timeout,
            PoolError::Failed => Self::ActorFailed,
        }
    }
}

impl From<StoreError> for PipelineError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) | StoreError::Timeout(_) | StoreError::Full(_) => {
                Self::StorageUnavailable(error.to_string())
            }
            StoreError::Rejected(reason) => Self::StorageRejected(reason),
        }
    }
}
