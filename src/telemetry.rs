//! Logging: `tracing` to stdout, as JSON lines (production) or human-readable text (development),
//! written by a background thread so that a slow stdout never blocks a worker.

use std::io::Write;

use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::configuration::{LogFormat, LogSettings};

/// The log's writer, kept for the life of the process: dropping it flushes the lines still queued.
pub struct Logging {
    writer: NonBlocking,
    format: LogFormat,
    _guard: WorkerGuard,
}

impl Logging {
    /// Prints `line` as it is, for a person: with text logs, into the log's stream after the lines
    /// queued before it (so it is the last line at start); with JSON logs, on stderr, so that stdout stays
    /// JSON lines for collectors.
    pub fn announce(&self, line: &str) {
        match self.format {
            LogFormat::Pretty => {
                let _ = writeln!(self.writer.clone(), "{line}");
            }
            LogFormat::Json => eprintln!("{line}"),
        }
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the configured level.
///
/// Under extreme load the queue (128k lines) may overflow; lines are then dropped (and counted by the
/// writer) rather than blocking workers. What a callback was is in MongoDB, not only in the logs.
pub fn init(settings: &LogSettings) -> Logging {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    // Colours only for a person at a terminal: a file, a pipe or a log collector gets plain text.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colours)
        .with_writer(writer.clone());
    // A second call (tests start several apps in one process) keeps the first subscriber.
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    Logging {
        writer,
        format: settings.format,
        _guard: guard,
    }
}
