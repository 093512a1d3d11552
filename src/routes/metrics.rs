//! `GET /metrics`: Prometheus' text exposition format, for a token from `auth.admin_tokens` (Prometheus
//! scrapes with `authorization: {credentials: …}`). Gauges that describe the journal are read at scrape
//! time.

use actix_web::http::header::ContentType;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;

use super::{require_admin, AppState};
use crate::error::ApiError;

pub async fn metrics(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let backlog = state.journal.backlog();
    metrics::gauge!("mmo_journal_backlog_entries").set(backlog.entries as f64);
    metrics::gauge!("mmo_journal_backlog_bytes").set(backlog.bytes as f64);
    metrics::gauge!("mmo_journal_healthy").set(f64::from(u8::from(state.journal.is_healthy())));
    let journal = std::sync::Arc::clone(&state.journal);
    // Reading the oldest entry touches the journal's file: off the worker thread.
    let oldest = web::block(move || journal.oldest_received_at())
        .await
        .ok()
        .flatten();
    let age = oldest.map_or(0.0, |at| {
        (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0
    });
    metrics::gauge!("mmo_journal_oldest_entry_age_seconds").set(age);
    Ok(HttpResponse::Ok()
        .insert_header(ContentType(
            "text/plain; version=0.0.4; charset=utf-8"
                .parse()
                .expect("a valid content type"),
        ))
        .body(crate::metrics::handle().render()))
}
