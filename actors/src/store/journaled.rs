//! The [`CallbackStore`] the actors write to in service: every operation is appended to the local
//! [`Journal`] and is durable once that append returns; the drain applies it to MongoDB afterwards.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::{CallbackStore, RecordOutcome, RejectedCallback, StoreError};
use crate::callback::{Callback, CallbackKey, Delivery};
use crate::journal::{Entry, Journal};

#[derive(Clone)]
pub struct JournaledStore {
    journal: Arc<Journal>,
}

impl JournaledStore {
    pub fn new(journal: Arc<Journal>) -> Self {
        Self { journal }
    }
}

impl CallbackStore for JournaledStore {
    fn record(
        &self,
        callback: Arc<Callback>,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<RecordOutcome, StoreError>> {
        let journal = Arc::clone(&self.journal);
        async move {
            let entry = Entry::Record {
                callback: Box::new(Callback::clone(&callback)),
                delivery,
            };
            journal
                .append(&entry)
                .await
                .map(|()| RecordOutcome::Journaled)
        }
        .boxed()
    }

    fn count_delivery(
        &self,
        key: CallbackKey,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let journal = Arc::clone(&self.journal);
        async move {
            journal
                .append(&Entry::CountDelivery { key, delivery })
                .await
        }
        .boxed()
    }

    fn quarantine(
        &self,
        rejected: Arc<RejectedCallback>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let journal = Arc::clone(&self.journal);
        async move {
            journal
                .append(&Entry::Quarantine {
                    rejected: RejectedCallback::clone(&rejected),
                })
                .await
        }
        .boxed()
    }
}
