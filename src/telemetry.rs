//! Logging: `tracing` to stdout, as JSON lines (production) or human-readable text (development),
//! written by a background thread so that a slow stdout never blocks a worker.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::configuration::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the configured level. Keep the
/// returned guard for the life of the process: dropping it flushes the lines still queued.
///
/// Under extreme load the queue (128k lines) may overflow; lines are then dropped (and counted by the
/// writer) rather than blocking workers. What a callback was is in MongoDB, not only in the logs.
pub fn init(settings: &LogSettings) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(writer);
    // A second call (tests start several apps in one process) keeps the first subscriber.
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    guard
}
