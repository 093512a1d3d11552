//! Load benchmark (not a test): posts a realistic mix of all nine callback types — unique ids plus some
//! repeats — at a running service, then prints throughput, latency percentiles and whether MongoDB holds
//! exactly what was acknowledged. Bounded by request count and by time; targets loopback by default.
//!
//! ```text
//! cargo run --release --example load -- --url http://127.0.0.1:8000 --token local-development-token \
//!     --mongodb-uri 'mongodb://127.0.0.1:27057/?replicaSet=rs0' --database mmo_webhooks_local
//! ```
//! `scripts/bench.sh` starts MongoDB and the service, runs this, and stops both.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mmo_actors::providers::fixtures::{
    AirtelMoneyCallbackFixtures as Airtel, MTNMoMoCallbackFixtures as Mtn,
    MpesaCallbackFixtures as Mpesa,
};
use mongodb::bson::{doc, Regex};
use serde_json::{json, Value};

struct Options {
    url: String,
    token: String,
    requests: usize,
    concurrency: usize,
    repeat_percent: usize,
    max_seconds: u64,
    mongodb_uri: String,
    database: String,
}

fn options() -> Options {
    let mut options = Options {
        url: "http://127.0.0.1:8000".into(),
        token: "local-development-token".into(),
        requests: 20_000,
        concurrency: 64,
        repeat_percent: 10,
        max_seconds: 120,
        mongodb_uri: "mongodb://127.0.0.1:27057/?replicaSet=rs0".into(),
        database: "mmo_webhooks_local".into(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--url" => options.url = value,
            "--token" => options.token = value,
            "--requests" => options.requests = value.parse().expect("--requests N"),
            "--concurrency" => options.concurrency = value.parse().expect("--concurrency N"),
            "--repeat-percent" => {
                options.repeat_percent = value.parse().expect("--repeat-percent N")
            }
            "--max-seconds" => options.max_seconds = value.parse().expect("--max-seconds N"),
            "--mongodb-uri" => options.mongodb_uri = value,
            "--database" => options.database = value,
            other => panic!("unknown option {other}"),
        }
    }
    options
}

/// One request of the mix: path and body. `n` makes the idempotency key unique within the run.
fn callback(run: &str, n: usize) -> (&'static str, Value) {
    let id = format!("{run}-{n}");
    match n % 9 {
        0 => (
            "/v1/webhooks/mpesa/stkpush",
            Mpesa::stk_push_success_for(&id, &format!("R{n:09}")),
        ),
        1 => (
            "/v1/webhooks/mpesa/b2c/result",
            Mpesa::b2c_result_success_for(&id, &format!("B{n:09}")),
        ),
        2 => (
            "/v1/webhooks/mpesa/c2b/confirmation",
            Mpesa::c2b_confirmation_for(&id),
        ),
        3 => (
            "/v1/webhooks/mtn/collection",
            Mtn::collection_for(&id, "SUCCESSFUL"),
        ),
        4 => (
            "/v1/webhooks/mtn/disbursement",
            with(Mtn::disbursement_success(), "referenceId", &id),
        ),
        5 => (
            "/v1/webhooks/mtn/remittance",
            with(Mtn::remittance_success(), "referenceId", &id),
        ),
        6 => (
            "/v1/webhooks/airtel/payment",
            Airtel::payment_for(&id, "TS"),
        ),
        7 => (
            "/v1/webhooks/airtel/disbursement",
            json!({"transaction": {"id": id, "status": "TF", "message": "Failed"}}),
        ),
        _ => (
            "/v1/webhooks/airtel/notification",
            json!({"transaction": {"id": id, "status": "TS", "message": "n"}}),
        ),
    }
}

fn with(mut payload: Value, field: &str, value: &str) -> Value {
    payload[field] = json!(value);
    payload
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[actix_web::main]
async fn main() {
    let options = options();
    let run = format!("bench{}", chrono::Utc::now().timestamp_millis());
    // Every `repeat_percent`-th request in a hundred repeats an earlier callback.
    let plan: Vec<usize> = (0..options.requests)
        .map(|i| {
            if i > 0 && (i * 37) % 100 < options.repeat_percent {
                ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16) as usize % i
            } else {
                i
            }
        })
        .collect();
    let unique: std::collections::HashSet<usize> = plan.iter().copied().collect();

    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let next = Rc::new(RefCell::new(0_usize));
    let latencies = Rc::new(RefCell::new(Vec::with_capacity(options.requests)));
    let failures = Rc::new(RefCell::new(
        std::collections::BTreeMap::<String, usize>::new(),
    ));
    let acknowledged_unique = Rc::new(RefCell::new(std::collections::HashSet::new()));
    let deadline = Instant::now() + Duration::from_secs(options.max_seconds);
    let started = Instant::now();

    let workers = (0..options.concurrency).map(|_| {
        let (client, next, latencies, failures, acknowledged, plan) = (
            client.clone(),
            next.clone(),
            latencies.clone(),
            failures.clone(),
            acknowledged_unique.clone(),
            &plan,
        );
        let (url, token, run) = (&options.url, &options.token, &run);
        async move {
            loop {
                let index = {
                    let mut next = next.borrow_mut();
                    *next += 1;
                    *next - 1
                };
                if index >= plan.len() || Instant::now() > deadline {
                    break;
                }
                let (path, body) = callback(run, plan[index]);
                let sent = Instant::now();
                let result = client
                    .post(format!("{url}{path}"))
                    .insert_header(("Authorization", format!("Bearer {token}")))
                    .content_type("application/json")
                    .send_body(body.to_string())
                    .await;
                let elapsed = sent.elapsed();
                match result {
                    Ok(response) if response.status().is_success() => {
                        latencies.borrow_mut().push(elapsed);
                        acknowledged.borrow_mut().insert(plan[index]);
                    }
                    Ok(response) => {
                        *failures
                            .borrow_mut()
                            .entry(response.status().to_string())
                            .or_default() += 1
                    }
                    Err(error) => *failures.borrow_mut().entry(error.to_string()).or_default() += 1,
                }
            }
        }
    });
    futures_util::future::join_all(workers).await;
    let wall = started.elapsed();

    let mut latencies = latencies.borrow().clone();
    latencies.sort();
    let acknowledged = latencies.len();
    let sent = acknowledged + failures.borrow().values().sum::<usize>();
    let acknowledged_unique = acknowledged_unique.borrow().len();

    let client = mongodb::Client::with_uri_str(&options.mongodb_uri)
        .await
        .expect("MongoDB URI");
    let callbacks = client
        .database(&options.database)
        .collection::<mongodb::bson::Document>("callbacks");
    let filter = doc! {"provider_transaction_id": Regex { pattern: format!("^{run}-"), options: String::new() }};
    // Callbacks are acknowledged once journaled; wait (bounded) for the drain to bring them all to MongoDB,
    // the repeats' delivery counts included (they drain after the callbacks they repeat).
    let drain_started = Instant::now();
    let (mut stored, mut deliveries) = (0_usize, 0_i64);
    while drain_started.elapsed() < Duration::from_secs(180) {
        (stored, deliveries) = (0, 0);
        let mut cursor = callbacks
            .find(filter.clone())
            .await
            .expect("read stored callbacks");
        while cursor.advance().await.expect("cursor") {
            stored += 1;
            deliveries += cursor.current().get_i64("deliveries").unwrap_or(0);
        }
        if stored >= acknowledged_unique && deliveries as usize >= acknowledged {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let drain_time = drain_started.elapsed();

    println!("run                 {run}");
    println!(
        "requests sent       {sent} ({} unique callbacks planned, concurrency {})",
        unique.len(),
        options.concurrency
    );
    println!("acknowledged (2xx)  {acknowledged}");
    println!("failures            {:?}", failures.borrow());
    println!("wall time           {:.2} s", wall.as_secs_f64());
    println!(
        "throughput          {:.0} requests/s",
        acknowledged as f64 / wall.as_secs_f64()
    );
    println!(
        "latency p50         {:.2} ms",
        percentile(&latencies, 50.0).as_secs_f64() * 1000.0
    );
    println!(
        "latency p99         {:.2} ms",
        percentile(&latencies, 99.0).as_secs_f64() * 1000.0
    );
    println!(
        "latency max         {:.2} ms",
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    println!(
        "drained to MongoDB  {:.2} s after the last request",
        drain_time.as_secs_f64()
    );
    // What a user can sustain: callbacks in MongoDB per second, from the first request until MongoDB
    // held the last one (acknowledgements alone can outrun MongoDB for a while).
    println!(
        "durable throughput  {:.0} callbacks/s in MongoDB",
        stored as f64 / (wall + drain_time).as_secs_f64()
    );
    println!("stored documents    {stored} (acknowledged unique callbacks: {acknowledged_unique})");
    println!("stored deliveries   {deliveries} (acknowledged requests: {acknowledged})");
    let consistent = stored == acknowledged_unique && deliveries as usize == acknowledged;
    println!(
        "stored matches sent {}",
        if consistent { "yes" } else { "NO" }
    );
    if !consistent {
        std::process::exit(1);
    }
}
