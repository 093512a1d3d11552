//! `mmo-webhooks simulate`: the three operators' token and status APIs on loopback, with their real
//! shapes and quirks, and scripted payments whose callbacks it sends to a receiver (this service) — on
//! time, late, twice, never, or disagreeing with what the status API says.
//!
//! Control API (JSON):
//! - `POST /simulator/payments` — script a payment (see [`Script`]); its callback is sent as scripted.
//! - `GET /simulator/payments/{key}` — what happened to it: questions asked, the most asked at once,
//!   callbacks sent.
//! - `GET /simulator/stats` — totals, tokens minted per operator.
//!
//! Operator APIs: Daraja (`/oauth/v1/generate`, `/mpesa/stkpushquery/v1/query`,
//! `/mpesa/transactionstatus/v1/query` answered later at its `ResultURL`), MTN (`/{product}/token/`,
//! `/{product}/v1_0/requesttopay|transfer/{id}`), Airtel (`/auth/oauth2/token`,
//! `/standard/v1/payments|disbursements/{id}`). Tokens are checked; a Daraja token dies when the next one
//! is minted, as on the real API.

mod airtel;
mod mpesa;
mod mtn;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// How a scripted payment's callback reaches the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// At once.
    #[default]
    Send,
    /// After `callback_delay_ms`.
    Late,
    /// Twice, at once.
    Twice,
    /// Never: only a status query can tell.
    Never,
}

/// A scripted payment.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// `mpesa`, `mtn`, `airtel` (or the stored names).
    pub provider: String,
    /// `stk_push`, `b2c`, `c2b` (M-Pesa); `collection`, `disbursement`, `remittance` (MTN); `payment`,
    /// `disbursement` (Airtel).
    pub flow: String,
    pub key: String,
    /// Final outcome: `successful`, `failed`, `cancelled`, `expired`.
    #[serde(default = "successful")]
    pub outcome: String,
    #[serde(default = "default_amount")]
    pub amount: String,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default = "default_msisdn")]
    pub msisdn: String,
    /// Questions answered "still processing" before the final answer.
    #[serde(default)]
    pub pending_queries: u32,
    /// Questions answered "not found" first (MTN's 404 right after a 202).
    #[serde(default)]
    pub not_found_queries: u32,
    /// Questions answered with throttling first (Daraja spike arrest, HTTP 429).
    #[serde(default)]
    pub throttled_queries: u32,
    #[serde(default)]
    pub callback: Delivery,
    #[serde(default)]
    pub callback_delay_ms: u64,
    /// The callback claims the opposite outcome (a forged or mistaken callback).
    #[serde(default)]
    pub callback_disagrees: bool,
    /// M-Pesa "still processing": `http_500` (500.001.1001) or `result_4999` (HTTP 200, ResultCode 4999).
    #[serde(default)]
    pub pending_form: Option<String>,
    /// MTN `reason`: `string` (production) or `object` (the schema).
    #[serde(default)]
    pub reason_form: Option<String>,
    /// M-Pesa Transaction Status results with the older keys with spaces and numeric values.
    #[serde(default)]
    pub legacy_keys: bool,
}

fn successful() -> String {
    "successful".into()
}
fn default_amount() -> String {
    "100.00".into()
}
fn default_msisdn() -> String {
    "254708374149".into()
}

/// What happened to a scripted payment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record {
    pub script: Option<Script>,
    pub queries: u32,
    /// Questions being answered right now, and the most at once.
    pub active: u32,
    pub max_concurrent: u32,
    pub callbacks_sent: u32,
    pub results_sent: u32,
}

#[derive(Default)]
struct State {
    payments: HashMap<String, Record>,
    /// Valid tokens per operator.
    tokens: HashMap<&'static str, Vec<String>>,
    tokens_minted: HashMap<&'static str, u32>,
    queries_total: u32,
    conversations: u32,
}

/// The simulator's shared state and settings.
pub struct Simulator {
    state: Mutex<State>,
    /// The service's base URL (`http://127.0.0.1:8000`) and bearer token.
    receiver: String,
    receiver_token: String,
    /// How long each status answer takes: long enough for duplicate questions to overlap.
    latency: Duration,
}

/// What one status question gets, from a payment's script and how often it was asked.
pub(crate) enum Stage {
    Throttled,
    NotFound,
    Pending,
    Final,
}

/// Starts the simulator on `listener` (in the current actix system); returns once bound.
pub fn serve(
    listener: TcpListener,
    receiver: String,
    receiver_token: String,
    latency: Duration,
) -> std::io::Result<actix_web::dev::Server> {
    let simulator = web::Data::new(Simulator {
        state: Mutex::new(State::default()),
        receiver: receiver.trim_end_matches('/').to_owned(),
        receiver_token,
        latency,
    });
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(simulator.clone())
            .app_data(web::JsonConfig::default().error_handler(|error, _| {
                let message = error.to_string();
                actix_web::error::InternalError::from_response(
                    error,
                    HttpResponse::BadRequest().json(json!({"error": message})),
                )
                .into()
            }))
            .route("/simulator/payments", web::post().to(script))
            .route("/simulator/payments/{key}", web::get().to(record))
            .route("/simulator/stats", web::get().to(stats))
            .configure(mpesa::routes)
            .configure(mtn::routes)
            .configure(airtel::routes)
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}

async fn script(simulator: web::Data<Simulator>, body: web::Json<Script>) -> HttpResponse {
    let script = body.into_inner();
    let provider = match script.provider.as_str() {
        "mpesa" => "mpesa",
        "mtn" | "mtn_mobile_money" => "mtn",
        "airtel" | "airtel_money" => "airtel",
        other => {
            return HttpResponse::BadRequest()
                .json(json!({"error": format!("unknown provider {other}")}))
        }
    };
    let flows: &[&str] = match provider {
        "mpesa" => &["stk_push", "b2c", "c2b"],
        "mtn" => &["collection", "disbursement", "remittance"],
        _ => &["payment", "disbursement"],
    };
    if !flows.contains(&script.flow.as_str()) {
        return HttpResponse::BadRequest()
            .json(json!({"error": format!("{provider} has no flow {}", script.flow)}));
    }
    if !["successful", "failed", "cancelled", "expired"].contains(&script.outcome.as_str()) {
        return HttpResponse::BadRequest()
            .json(json!({"error": "outcome must be successful, failed, cancelled or expired"}));
    }
    let mut script = script;
    script.provider = provider.to_owned();
    simulator.payments_insert(script.clone());
    let key = script.key.clone();
    if script.callback != Delivery::Never {
        let simulator = simulator.clone();
        actix_web::rt::spawn(async move {
            if script.callback == Delivery::Late {
                tokio::time::sleep(Duration::from_millis(script.callback_delay_ms)).await;
            }
            let times = if script.callback == Delivery::Twice {
                2
            } else {
                1
            };
            for _ in 0..times {
                simulator.send_callback(&script).await;
            }
        });
    }
    HttpResponse::Created().json(json!({"key": key, "scripted": true}))
}

async fn record(simulator: web::Data<Simulator>, key: web::Path<String>) -> HttpResponse {
    let state = simulator.state.lock().expect("simulator lock");
    match state.payments.get(key.as_str()) {
        Some(record) => HttpResponse::Ok().json(record),
        None => HttpResponse::NotFound().json(json!({"error": "no such payment"})),
    }
}

async fn stats(simulator: web::Data<Simulator>) -> HttpResponse {
    let state = simulator.state.lock().expect("simulator lock");
    HttpResponse::Ok().json(json!({
        "payments": state.payments.len(),
        "queries_total": state.queries_total,
        "tokens_minted": state.tokens_minted,
        "max_concurrent_per_payment": state.payments.values().map(|record| record.max_concurrent).max().unwrap_or(0),
    }))
}

impl Simulator {
    fn payments_insert(&self, script: Script) {
        let mut state = self.state.lock().expect("simulator lock");
        let record = state.payments.entry(script.key.clone()).or_default();
        record.script = Some(script);
    }

    /// Mints a token for `operator`. Daraja's replaces the previous one; others add to the valid set.
    fn mint(&self, operator: &'static str, replaces: bool) -> String {
        let mut state = self.state.lock().expect("simulator lock");
        let token = format!("sim-{operator}-{}", uuid::Uuid::new_v4().simple());
        let valid = state.tokens.entry(operator).or_default();
        if replaces {
            valid.clear();
        }
        valid.push(token.clone());
        *state.tokens_minted.entry(operator).or_default() += 1;
        token
    }

    /// Whether `request` carries a valid bearer token of `operator`.
    fn authorized(&self, operator: &'static str, request: &HttpRequest) -> bool {
        let presented = request
            .headers()
            .get("Authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let state = self.state.lock().expect("simulator lock");
        presented.is_some_and(|token| {
            state
                .tokens
                .get(operator)
                .is_some_and(|valid| valid.iter().any(|known| known == token))
        })
    }

    /// Starts answering a question about `key`: its script and the stage this question is at, or
    /// `None` for an unknown payment. Pair with [`Simulator::done`].
    async fn ask(&self, key: &str) -> Option<(Script, Stage)> {
        let answer = {
            let mut state = self.state.lock().expect("simulator lock");
            state.queries_total += 1;
            let record = state.payments.get_mut(key)?;
            let script = record.script.clone()?;
            record.queries += 1;
            record.active += 1;
            record.max_concurrent = record.max_concurrent.max(record.active);
            let asked = record.queries;
            let throttled = script.throttled_queries;
            let not_found = throttled + script.not_found_queries;
            let pending = not_found + script.pending_queries;
            let stage = if asked <= throttled {
                Stage::Throttled
            } else if asked <= not_found {
                Stage::NotFound
            } else if asked <= pending {
                Stage::Pending
            } else {
                Stage::Final
            };
            (script, stage)
        };
        // Answering takes a while, as over a real network: concurrent questions overlap here.
        tokio::time::sleep(self.latency).await;
        Some(answer)
    }

    fn done(&self, key: &str) {
        let mut state = self.state.lock().expect("simulator lock");
        if let Some(record) = state.payments.get_mut(key) {
            record.active = record.active.saturating_sub(1);
        }
    }

    fn next_conversation(&self) -> u32 {
        let mut state = self.state.lock().expect("simulator lock");
        state.conversations += 1;
        state.conversations
    }

    /// Posts (or, for MTN, puts) the payment's callback to the receiver.
    async fn send_callback(&self, script: &Script) {
        let outcome = if script.callback_disagrees {
            opposite(&script.outcome)
        } else {
            script.outcome.as_str()
        };
        let (path, body, put) = match script.provider.as_str() {
            "mpesa" => mpesa::callback(script, outcome),
            "mtn" => mtn::callback(script, outcome),
            _ => airtel::callback(script, outcome),
        };
        let url = format!("{}/v1/webhooks/{path}", self.receiver);
        if self.post(&url, &body, put).await {
            let mut state = self.state.lock().expect("simulator lock");
            if let Some(record) = state.payments.get_mut(&script.key) {
                record.callbacks_sent += 1;
            }
        }
    }

    /// Sends a JSON body to the receiver with its bearer token; true on a 2xx.
    async fn post(&self, url: &str, body: &Value, put: bool) -> bool {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .finish();
        let request = if put {
            client.put(url)
        } else {
            client.post(url)
        }
        .insert_header(("Authorization", format!("Bearer {}", self.receiver_token)));
        match request.send_json(body).await {
            Ok(response) if response.status().is_success() => true,
            Ok(response) => {
                eprintln!("simulator: {url} answered {}", response.status());
                false
            }
            Err(error) => {
                eprintln!("simulator: {url}: {error}");
                false
            }
        }
    }
}

/// The outcome a disagreeing callback claims.
fn opposite(outcome: &str) -> &'static str {
    if outcome == "successful" {
        "failed"
    } else {
        "successful"
    }
}

/// A fake receipt for a key, stable across questions and callbacks.
pub(crate) fn receipt_of(key: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    format!("SIM{:07X}", hasher.finish() % 0xFFF_FFFF)
}
