//! The persistence actor: the only actor that talks to the [`CallbackStore`].
//!
//! Messages: [`PersistCallback`], [`CountDelivery`], [`QuarantineCallback`]. It owns nothing but a handle to
//! the store, so a fresh actor started after a failure (see [`crate::pool`]) is as good as the old one.
//! Store operations run concurrently. In service the store is the journal, whose appends wait only for
//! their fsync; the caller's `actors.call_timeout_ms` bounds how long anyone waits for an answer.

use std::sync::Arc;

use actix::{Actor, Context, Handler, Message, ResponseFuture};

use crate::callback::{Callback, CallbackKey, Delivery};
use crate::store::{CallbackStore, RecordOutcome, RejectedCallback, StoreError};

pub struct PersistenceActor {
    store: Arc<dyn CallbackStore>,
}

impl PersistenceActor {
    pub fn new(store: Arc<dyn CallbackStore>) -> Self {
        Self { store }
    }
}

impl Actor for PersistenceActor {
    type Context = Context<Self>;
}

/// Store a callback durably (once per key; a repeat counts a delivery).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<RecordOutcome, StoreError>")]
pub struct PersistCallback {
    pub callback: Arc<Callback>,
    pub delivery: Delivery,
}

/// Count one more delivery of a callback known to be stored.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct CountDelivery {
    pub key: CallbackKey,
    pub delivery: Delivery,
}

/// Keep a rejected body for audit.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct QuarantineCallback {
    pub rejected: Arc<RejectedCallback>,
}

impl Handler<PersistCallback> for PersistenceActor {
    type Result = ResponseFuture<Result<RecordOutcome, StoreError>>;

    fn handle(&mut self, message: PersistCallback, _ctx: &mut Context<Self>) -> Self::Result {
        self.store.record(message.callback, message.delivery)
    }
}

impl Handler<CountDelivery> for PersistenceActor {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, message: CountDelivery, _ctx: &mut Context<Self>) -> Self::Result {
        self.store.count_delivery(message.key, message.delivery)
    }
}

impl Handler<QuarantineCallback> for PersistenceActor {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, message: QuarantineCallback, _ctx: &mut Context<Self>) -> Self::Result {
        self.store.quarantine(message.rejected)
    }
}
