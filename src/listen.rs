//! `mmo-webhooks listen`: a local receiver for the merchant's developer. It verifies each delivery as a
//! receiver should (the signature, and a timestamp within five minutes) and prints one line per event,
//! answering 2xx unless told to fail.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use mmo_actors::delivery::signature::{secret_key, verify};

/// How the receiver answers.
#[derive(Debug, Clone)]
pub struct Listening {
    /// The endpoint's signing secret (`whsec_…`); without it deliveries are printed unverified.
    pub secret: Option<String>,
    /// The status to answer once the first `fail_first` deliveries were refused.
    pub status: u16,
    /// Deliveries answered 500 first (to watch the retries).
    pub fail_first: u64,
}

struct Receiver {
    key: Option<Vec<u8>>,
    status: StatusCode,
    fail_first: u64,
    seen: AtomicU64,
}

/// One printed line for a delivery: its verdict, type, transaction, version and id.
pub fn describe(verdict: &str, id: &str, body: &[u8]) -> String {
    let event: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let data = &event["data"];
    let text = |value: &serde_json::Value| value.as_str().unwrap_or("?").to_owned();
    format!(
        "{verdict:<13} {:<24} {}/{}/{} v{} {id}",
        text(&event["type"]),
        text(&data["provider"]),
        text(&data["flow"]),
        text(&data["transaction_key"]),
        data["version"].as_i64().unwrap_or(0),
    )
}

async fn receive(
    request: HttpRequest,
    body: web::Bytes,
    receiver: web::Data<Receiver>,
) -> HttpResponse {
    let header = |name| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let verdict = match &receiver.key {
        None => "unverified".to_owned(),
        Some(key) => match verify(
            key,
            &id,
            &timestamp,
            &signature,
            &body,
            chrono::Utc::now().timestamp(),
        ) {
            Ok(()) => "ok".to_owned(),
            Err(error) => format!("BAD SIGNATURE ({error})"),
        },
    };
    let seen = receiver.seen.fetch_add(1, Ordering::Relaxed);
    let status = if seen < receiver.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else if verdict.starts_with("BAD") {
        StatusCode::UNAUTHORIZED
    } else {
        receiver.status
    };
    println!("{} -> {}", describe(&verdict, &id, &body), status.as_u16());
    HttpResponse::build(status).finish()
}

/// Serves the receiver on `listener` until Ctrl-C.
pub fn serve(
    listener: TcpListener,
    listening: Listening,
) -> anyhow::Result<actix_web::dev::Server> {
    let key = match &listening.secret {
        Some(secret) => Some(
            secret_key(secret)
                .ok_or_else(|| anyhow::anyhow!("--secret must be whsec_ and base64"))?,
        ),
        None => None,
    };
    let status = StatusCode::from_u16(listening.status)
        .map_err(|_| anyhow::anyhow!("--status must be an HTTP status"))?;
    let receiver = web::Data::new(Receiver {
        key,
        status,
        fail_first: listening.fail_first,
        seen: AtomicU64::new(0),
    });
    let receiver = Arc::new(receiver);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(web::Data::clone(&receiver))
            .default_service(web::post().to(receive))
    })
    .workers(1)
    .listen(listener)?
    .run())
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn a_line_names_type_transaction_version_and_id() {
        let body = br#"{"type":"transaction.successful","timestamp":"2026-01-01T00:00:00.000Z","data":{"provider":"mpesa","flow":"stk_push","transaction_key":"ws_CO_1","version":2}}"#;
        let line = describe("ok", "evt_1", body);
        assert!(line.starts_with("ok "), "{line}");
        assert!(line.contains("transaction.successful"), "{line}");
        assert!(line.contains("mpesa/stk_push/ws_CO_1 v2 evt_1"), "{line}");
    }
}
