//! API tests: the real application on port 0, over real HTTP, against the real MongoDB started by
//! scripts/test.sh (`MMO_TEST_MONGODB_URI`). Each test gets its own database.

mod authentication;
mod browser;
mod console;
mod delivery;
mod errors;
mod hardening;
mod health;
mod helpers;
mod hostile_input;
mod instances;
mod openapi;
mod operating;
mod portal;
mod probes;
mod quarantine;
mod rate_limits;
mod reports;
mod sharding;
mod test_events;
mod transactions;
mod webhooks;
// The helpers the fault proofs share (tests/faults.rs), for `unsent`.
#[path = "../support/mod.rs"]
mod support;
