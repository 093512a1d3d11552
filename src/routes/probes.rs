//! `GET /livez` and `GET /readyz`, unauthenticated and not rate limited, for load balancers and
//! orchestrators. Liveness: the process answers HTTP. Readiness: the journal's writer is healthy (alive,
//! its last commit succeeded), the journal can accept callbacks, and no actor pool is failing beyond its
//! restart policy. MongoDB's reachability (checked in the background every `mongodb.ping_interval_ms`:
//! a probe never waits on MongoDB) and the journal's backlog are reported, but an unreachable MongoDB
//! does not make the service unready: callbacks are still kept (in the journal) and acknowledged, and
//! reach MongoDB when it returns.

use actix_web::{web, HttpResponse};
use chrono::{SecondsFormat, Utc};
use mmo_actors::supervisor::GetStats;
use serde_json::json;

use super::AppState;

pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "alive"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    // Bounded: a supervisor that does not answer within a second is reported, not waited on.
    let stats = state
        .supervisor
        .send(GetStats)
        .timeout(std::time::Duration::from_secs(1))
        .await;
    let failing: Vec<&str> = match stats {
        Ok(stats) => stats
            .pools
            .iter()
            .filter(|pool| pool.failing)
            .map(|pool| pool.name)
            .collect(),
        Err(_) => vec!["supervisor"],
    };
    let backlog = state.journal.backlog();
    let (healthy, accepting) = (state.journal.is_healthy(), state.journal.is_accepting());
    let ready = healthy && accepting && failing.is_empty();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {
            "journal": match (healthy, accepting) {
                (false, _) => "failing",
                (true, false) => "full",
                (true, true) => "accepting",
            },
            "journal_backlog": {"entries": backlog.entries, "bytes": backlog.bytes},
            "mongodb": state.mongodb.as_str(),
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
