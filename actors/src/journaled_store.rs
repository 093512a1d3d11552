//! The [`CallbackStore`] the actors write to in service: every operation is appended to the local
//! [`Journal`] and is durable once that append returns; the drain applies it to MongoDB afterwards.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use crate::callback::{Callback, CallbackKey, Delivery};
use crate::journal::{Budget, Journal};
use crate::store::{
    callback_document, CallbackStore, EntryRef, RecordOutcome, RejectedCallback, StoreError,
};

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
        // The document MongoDB will store, built and encoded here once, on the caller's thread: the
        // writer thread only commits bytes, and the drain inserts them as they are.
        let document = callback_document(&callback, &delivery);
        let bytes = EntryRef::Record {
            document: &document,
        }
        .encode();
        async move {
            journal.append_bytes(bytes?).await?;
            Ok(RecordOutcome::Journaled)
        }
        .boxed()
    }

    fn count_delivery(
        &self,
        key: CallbackKey,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let journal = Arc::clone(&self.journal);
        let bytes = EntryRef::CountDelivery {
            key: &key,
            delivery: &delivery,
        }
        .encode();
        async move { journal.append_bytes(bytes?).await }.boxed()
    }

    fn quarantine(
        &self,
        rejected: Arc<RejectedCallback>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let journal = Arc::clone(&self.journal);
        let bytes = EntryRef::Quarantine {
            rejected: &rejected,
        }
        .encode();
        // Unauthenticated senders' bodies have a budget of their own: they never crowd out callbacks.
        let budget = if rejected.authenticated {
            Budget::Callbacks
        } else {
            Budget::Unauthenticated {
                client: rejected.client,
            }
        };
        async move { journal.append_in(bytes?, budget).await }.boxed()
    }
}
