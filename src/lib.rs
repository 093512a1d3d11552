//! mmo-webhooks: receives mobile-money operators' callbacks over HTTP, keeps each one durably before
//! acknowledging it (a local fsync'd journal, drained to MongoDB), and answers every operator in the shape
//! it expects.
//!
//! This crate is the HTTP face; the actor system, parsers and stores live in `mmo-actors`.

pub mod addresses;
pub mod auth;
pub mod callback_minutes;
pub mod cli;
pub mod configuration;
pub mod console;
pub mod delivery;
pub mod error;
pub mod listen;
pub mod metrics;
pub mod openapi;
pub mod operators;
pub mod rate_limit;
pub mod read_api;
pub mod reconciler_api;
pub mod request_context;
pub mod routes;
pub mod simulator;
pub mod startup;
pub mod state;
pub mod stored;
pub mod telemetry;
