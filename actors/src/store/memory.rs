//! An in-memory [`CallbackStore`] with the same idempotency rules as MongoDB (one record per key, one
//! count per delivery id), for isolating actors in tests. It keeps no transactions view and nothing across
//! restarts: never use it to serve traffic.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures_util::future::{self, BoxFuture};
use futures_util::FutureExt;

use super::{CallbackStore, RecordOutcome, RejectedCallback, StoreError};
use crate::callback::{Callback, CallbackKey, Delivery};

/// A stored callback and how many times it arrived.
#[derive(Debug, Clone)]
pub struct StoredCallback {
    pub callback: Arc<Callback>,
    pub deliveries: u64,
    delivery_ids: HashSet<mongodb::bson::oid::ObjectId>,
}

#[derive(Default, Clone)]
pub struct InMemoryStore {
    callbacks: Arc<Mutex<HashMap<CallbackKey, StoredCallback>>>,
    rejected: Arc<Mutex<Vec<Arc<RejectedCallback>>>>,
}

impl InMemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &CallbackKey) -> Option<StoredCallback> {
        self.callbacks.lock().expect("store lock").get(key).cloned()
    }

    pub fn len(&self) -> usize {
        self.callbacks.lock().expect("store lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn rejected(&self) -> Vec<Arc<RejectedCallback>> {
        self.rejected.lock().expect("store lock").clone()
    }
}

impl StoredCallback {
    fn count(&mut self, delivery: &Delivery) {
        if self.delivery_ids.insert(delivery.id) {
            self.deliveries += 1;
        }
    }
}

impl CallbackStore for InMemoryStore {
    fn record(
        &self,
        callback: Arc<Callback>,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<RecordOutcome, StoreError>> {
        let mut callbacks = self.callbacks.lock().expect("store lock");
        let outcome = match callbacks.get_mut(&callback.key()) {
            Some(stored) => {
                stored.count(&delivery);
                RecordOutcome::Duplicate
            }
            None => {
                let delivery_ids = HashSet::from([delivery.id]);
                callbacks.insert(
                    callback.key(),
                    StoredCallback {
                        callback,
                        deliveries: 1,
                        delivery_ids,
                    },
                );
                RecordOutcome::Stored
            }
        };
        future::ready(Ok(outcome)).boxed()
    }

    fn count_delivery(
        &self,
        key: CallbackKey,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let result = match self.callbacks.lock().expect("store lock").get_mut(&key) {
            Some(stored) => {
                stored.count(&delivery);
                Ok(())
            }
            None => Err(StoreError::Rejected(
                "no stored callback to count a delivery on".into(),
            )),
        };
        future::ready(result).boxed()
    }

    fn quarantine(
        &self,
        rejected: Arc<RejectedCallback>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut kept = self.rejected.lock().expect("store lock");
        if !kept.iter().any(|existing| existing.id == rejected.id) {
            kept.push(rejected);
        }
        future::ready(Ok(())).boxed()
    }
}
