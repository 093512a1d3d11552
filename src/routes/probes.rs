//! `GET /livez` and `GET /readyz`, unauthenticated and not rate limited, for load balancers and
//! orchestrators. Liveness: the process answers HTTP. Readiness: MongoDB answers a ping and no actor pool
//! is failing beyond its restart policy — a service that cannot store is taken out of rotation rather than
//! answering 503 to every operator.

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
    let ready = mongodb.is_ok() && failing.is_empty();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {
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
