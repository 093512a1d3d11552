//! What the tests that run the real service binary share: starting it on a port of its own choosing,
//! signalling and stopping it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "fault-test-token-0123456789";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A port for a `mongod` of a test's own (mongod cannot be told to pick one itself, as the service can).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `N` distinct free ports (held open together while chosen, so no two are the same).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|index| listeners[index].local_addr().unwrap().port())
}

pub fn unique(name: &str) -> String {
    format!("{name}_{}", mongodb::bson::oid::ObjectId::new().to_hex())
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mmo-faults-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One run of the real service binary.
pub struct Service {
    pub child: Child,
    pub url: String,
}

impl Service {
    /// Starts the binary on a port it picks itself (port 0), and learns the port from its start-up line.
    pub async fn start(journal: &Path, mongodb_uri: &str, database: &str) -> Self {
        Self::start_with(journal, mongodb_uri, database, &[]).await
    }

    /// Like [`Service::start`], with more configuration (`MMO__…` variables).
    pub async fn start_with(
        journal: &Path,
        mongodb_uri: &str,
        database: &str,
        settings: &[(&str, &str)],
    ) -> Self {
        let log = std::fs::File::create(journal.with_extension("log")).unwrap();
        let out = journal.with_extension("out");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mmo-webhooks"))
            .env("MMO_CONFIG_DIR", root().join("config"))
            .env("MMO__SERVER__HOST", "127.0.0.1")
            .env("MMO__SERVER__PORT", "0")
            .env("MMO__SERVER__SHUTDOWN_TIMEOUT_SECS", "10")
            .env("MMO__AUTH__BEARER_TOKENS", TOKEN)
            .env("MMO__MONGODB__URI", mongodb_uri)
            .env("MMO__MONGODB__DATABASE", database)
            .env("MMO__MONGODB__SERVER_SELECTION_TIMEOUT_MS", "1000")
            .env("MMO__JOURNAL__DIR", journal)
            .env("MMO__RATE_LIMIT__WEBHOOKS_PER_MINUTE", "100000000")
            .env("MMO__LOG__FORMAT", "json")
            // The start-up line, and warnings; not a line per request.
            .env(
                "RUST_LOG",
                "warn,mmo_webhooks=info,mmo_webhooks::request_context=warn",
            )
            .envs(settings.iter().copied())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(log)
            .spawn()
            .expect("service binary starts");
        for _ in 0..600 {
            let written = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(port) = written
                .lines()
                .filter(|line| line.contains("mmo-webhooks listening"))
                .find_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .and_then(|line| line["port"].as_u64())
            {
                return Self {
                    child,
                    url: format!("http://127.0.0.1:{port}"),
                };
            }
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the service did not report its port: {}", out.display());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`; returns its exit code and how long it took.
    pub fn wait(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the service did not exit within {limit:?}");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn mongodb_uri() -> String {
    std::env::var("MMO_TEST_MONGODB_URI")
        .expect("MMO_TEST_MONGODB_URI: run the tests with scripts/test.sh")
}

/// How many transactions' latest events are not in `events` yet: 0 once the sender has read the feed up
/// to every change and recorded what it read.
pub async fn unsent(database: &mongodb::Database) -> u64 {
    use futures_util::TryStreamExt;
    use mongodb::bson::{doc, Document};
    let ids: Vec<String> = database
        .collection::<Document>("transactions")
        .find(doc! {"event": {"$exists": true}})
        .projection(doc! {"event._id": 1})
        .await
        .unwrap()
        .try_collect::<Vec<Document>>()
        .await
        .unwrap()
        .iter()
        .filter_map(|transaction| {
            Some(
                transaction
                    .get_document("event")
                    .ok()?
                    .get_str("_id")
                    .ok()?
                    .to_owned(),
            )
        })
        .collect();
    let recorded = database
        .collection::<Document>("events")
        .count_documents(doc! {"_id": {"$in": &ids}})
        .await
        .unwrap();
    ids.len() as u64 - recorded
}
