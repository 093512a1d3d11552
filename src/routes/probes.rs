//! `GET /livez` and `GET /readyz`, unauthenticated and not rate limited, for load balancers and
//! orchestrators. Liveness: the process answers HTTP. Readiness: the journal can accept callbacks and no
//! actor pool is failing beyond its restart policy. MongoDB's reachability and the journal's backlog are
//! reported, but an unreachable MongoDB does not make the service unready: callbacks are still kept (in
//! the journal) and acknowledged, and reach MongoDB when it returns.

use actix_web::{web, HttpResponse};
use chrono::{SecondsFormat, Utc};
use mmo_actors::supervisor::GetStats;
use serde_json::json;

use super::AppState;

pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "alive"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mongodb = state.store.ping().await;
    let failing: Vec<&str> = match state.supervisor.send(GetStats).await {
        Ok(stats) => stats
            .pools
            .iter()
            .filter(|pool| pool.failing)
            .map(|pool| pool.name)
            .collect(),
        Err(_) => vec!["supervisor"],
    };
    let backlog = state.journal.backlog();
    let accepting = state.journal.is_accepting();
    let ready = accepting && failing.is_empty();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {
            "journal": if accepting { "accepting" } else { "full" },
            "journal_backlog": {"entries": backlog.entries, "bytes": backlog.bytes},
            "mongodb": if mongodb.is_ok() { "reachable" } else { "unreachable" },
            "failing_actor_pools": failing,
        },
        "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
