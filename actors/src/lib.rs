//! The actor system of mmo-webhooks, free of any HTTP dependency so that it can be tested alone.
//!
//! Data flows one way:
//!
//! ```text
//! HTTP handler ──RouteCallback──▶ Supervisor ──HandleCallback──▶ ProviderActor (pool per provider,
//!                                                                 in-memory idempotency cache)
//!                                                  ──PersistCallback──▶ PersistenceActor (pool)
//!                                                                          ──▶ JournaledStore ──▶ Journal
//!                                                                              (fsync'd; the 200 goes out)
//! Journal ──▶ Drain (batches, in order per transaction) ──▶ MongoStore (MongoDB: transactions, callbacks,
//!                                                                       rejected_callbacks)
//! ```
//!
//! Modules import downwards only (checked by `tests/layering.rs`): the journal imports the store's
//! [`store::Entry`], never the reverse, and [`journaled_store`] sits above both.
//!
//! Parsing and normalization are plain functions in [`providers`], transaction rules in [`transaction`],
//! pseudonymization in [`privacy`]; actors only route, cache and delegate.
//! Restarting failed actors is the job of [`pool::Pool`], owned by the [`supervisor::Supervisor`].

pub mod backoff;
pub mod cache;
pub mod callback;
pub mod delivery;
pub mod drain;
pub mod journal;
pub mod journaled_store;
pub mod persistence;
pub mod pipeline_error;
pub mod pool;
pub mod privacy;
pub mod provider_actor;
pub mod providers;
pub mod reconciler;
pub mod store;
pub mod supervisor;
pub mod transaction;

pub use callback::{Callback, CallbackType, Status};
pub use pipeline_error::PipelineError;
pub use providers::{Endpoint, Provider, PROVIDERS};
pub use store::{CallbackStore, Evidence, RecordOutcome, RejectedCallback, StoreError};
pub use supervisor::{RouteCallback, Supervisor, SupervisorSettings};
