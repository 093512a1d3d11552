//! How long MongoDB takes per write, by collection. A leaf: it imports nothing of the store.

/// Runs a write, recording how long MongoDB took in `mmo_mongodb_write_duration_seconds{collection}`.
pub(super) async fn timed<T>(
    collection: &'static str,
    write: impl std::future::IntoFuture<Output = T>,
) -> T {
    let started = std::time::Instant::now();
    let result = write.await;
    metrics::histogram!("mmo_mongodb_write_duration_seconds", "collection" => collection)
        .record(started.elapsed().as_secs_f64());
    result
}
