use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use awc::http::header::HeaderMap;
use mmo_actors::journal::Journal;
use mmo_webhooks::configuration::{self, Settings, Sources};
use mmo_webhooks::startup::Application;
use mongodb::bson::{doc, Document};
use mongodb::Collection;
use serde_json::Value;

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct TestApp {
    pub address: String,
    pub callbacks: Collection<Document>,
    pub rejected: Collection<Document>,
    pub transactions: Collection<Document>,
    pub journal: Arc<Journal>,
    client: awc::Client,
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

pub fn mongodb_uri() -> String {
    std::env::var("MMO_TEST_MONGODB_URI").expect(
        "MMO_TEST_MONGODB_URI is not set: run the tests with scripts/test.sh, which starts MongoDB",
    )
}

/// Settings as the service would load them, with environment variables layered over config/default.toml.
pub fn test_settings(overrides: &[(&str, &str)]) -> Settings {
    let database = format!("api_{}", uuid::Uuid::new_v4().simple());
    let mut variables: HashMap<String, String> = [
        ("MMO__SERVER__HOST", "127.0.0.1"),
        ("MMO__SERVER__PORT", "0"),
        ("MMO__SERVER__WORKERS", "2"),
        (
            "MMO__AUTH__BEARER_TOKENS",
            &format!("{TOKEN},second-token-for-rotation"),
        ),
        ("MMO__MONGODB__URI", &mongodb_uri()),
        ("MMO__MONGODB__DATABASE", &database),
        ("MMO__LOG__LEVEL", "warn"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect();
    for (key, value) in overrides {
        variables.insert((*key).to_owned(), (*value).to_owned());
    }
    let sources = Sources {
        variables,
        ..Sources::defaults_only()
    };
    configuration::load(&sources)
        .expect("test configuration loads")
        .settings
}

/// Settings whose MongoDB is unreachable: port 9 (discard) on loopback refuses connections at once, and
/// short timeouts keep each failed attempt brief.
pub fn unreachable_mongodb(extra: &[(&str, &str)]) -> Settings {
    let mut overrides = vec![
        (
            "MMO__MONGODB__URI",
            "mongodb://127.0.0.1:9/?directConnection=true",
        ),
        ("MMO__MONGODB__SERVER_SELECTION_TIMEOUT_MS", "300"),
        ("MMO__MONGODB__CONNECT_TIMEOUT_MS", "300"),
        ("MMO__MONGODB__OPERATION_TIMEOUT_MS", "1000"),
        ("MMO__ACTORS__CALL_TIMEOUT_MS", "2000"),
    ];
    overrides.extend_from_slice(extra);
    test_settings(&overrides)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_settings(&[])).await
}

/// A journal directory of a test's own (each instance has its own, as in production).
pub fn journal_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("mmo-api-journal-{}", uuid::Uuid::new_v4().simple()))
}

/// Starts the app on port 0 with its own journal directory.
pub async fn spawn_app_with(mut settings: Settings) -> TestApp {
    settings.journal.dir = journal_dir();
    let application = Application::build(settings)
        .await
        .expect("application builds");
    serve(application)
}

/// Starts the app on port 0 with its own journal directory, looking endpoints' names up in `names`.
pub async fn spawn_app_resolving(
    mut settings: Settings,
    names: Arc<dyn mmo_webhooks::addresses::Names>,
) -> TestApp {
    settings.journal.dir = journal_dir();
    let application = Application::build_resolving(settings, names)
        .await
        .expect("application builds");
    serve(application)
}

/// Starts the app on port 0 on a journal the test opened.
pub async fn spawn_app_on(settings: Settings, journal: Arc<Journal>) -> TestApp {
    let application = Application::build_on(settings, journal)
        .await
        .expect("application builds");
    serve(application)
}

fn serve(application: Application) -> TestApp {
    let journal = application.journal();
    let address = format!("http://127.0.0.1:{}", application.port());
    let store = application.store();
    actix_web::rt::spawn(application.run_until_stopped());
    TestApp {
        address,
        callbacks: store.callbacks().clone(),
        rejected: store.rejected().clone(),
        transactions: store.transactions().clone(),
        journal,
        client: awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .finish(),
    }
}

impl TestApp {
    /// Sends `body` with the test token.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(
            Method::POST,
            path,
            body.to_string().into_bytes(),
            Some(TOKEN),
            Some("application/json"),
        )
        .await
    }

    /// [`TestApp::mtn_collection`] for a key the future owns (to post many at once).
    pub async fn mtn_collection_owned(&self, key: String, status: &str) {
        self.mtn_collection(&key, status).await
    }

    /// Posts an MTN collection callback for `key` with `status`, and checks it was acknowledged.
    pub async fn mtn_collection(&self, key: &str, status: &str) {
        let body =
            mmo_actors::providers::fixtures::MTNMoMoCallbackFixtures::collection_for(key, status);
        let reply = self.post("/v1/webhooks/mtn/collection", &body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        token: Option<&str>,
        content_type: Option<&str>,
    ) -> Reply {
        let mut headers = Vec::new();
        if let Some(token) = token {
            headers.push(("Authorization", format!("Bearer {token}")));
        }
        if let Some(content_type) = content_type {
            headers.push(("Content-Type", content_type.to_owned()));
        }
        self.request(method, path, body, &headers).await
    }

    /// Any request: `path` may carry a query string; `headers` are sent as given.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{}", self.address, path));
        for (name, value) in headers {
            request = request.insert_header((*name, value.as_str()));
        }
        let mut response = request
            .send_body(body)
            .await
            .expect("request reaches the service");
        let bytes = response.body().limit(1 << 20).await.expect("response body");
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// A GET answered with text (metrics, CSV), with a bearer token.
    pub async fn get_text(&self, path: &str, token: &str) -> String {
        self.get_text_with(path, token, "*/*").await
    }

    pub async fn get_text_with(&self, path: &str, token: &str, accept: &str) -> String {
        let mut response = self
            .client
            .get(format!("{}{}", self.address, path))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .insert_header(("Accept", accept))
            .send()
            .await
            .expect("request reaches the service");
        let bytes = response
            .body()
            .limit(16 << 20)
            .await
            .expect("response body");
        String::from_utf8(bytes.to_vec()).expect("text")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, path, Vec::new(), token, None).await
    }

    /// Journals `callback` as received at `at`, as the provider actor journals what it accepted: how a test
    /// puts callbacks on a day of its choosing (what arrives over HTTP is stamped with the present). The
    /// drain stores it like any other; [`TestApp::drained`] waits for that.
    pub async fn received_at(
        &self,
        callback: &mmo_actors::Callback,
        at: chrono::DateTime<chrono::Utc>,
    ) {
        let delivery = mmo_actors::callback::Delivery::new(at);
        self.journal
            .append(&mmo_actors::store::Entry::record(callback, &delivery))
            .await
            .expect("the journal takes the callback");
    }

    /// Waits until the service has checked MongoDB's reachability once (it does so in the background).
    pub async fn mongodb_checked(&self) {
        for _ in 0..400 {
            if self.get("/readyz", None).await.body["checks"]["mongodb"] != "unknown" {
                return;
            }
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("MongoDB's reachability was never checked");
    }

    /// Waits until everything acknowledged so far has been drained from the journal into MongoDB.
    pub async fn drained(&self) {
        for _ in 0..600 {
            if self.journal.backlog().entries == 0 {
                return;
            }
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the journal did not drain: {:?}", self.journal.backlog());
    }

    /// The stored callbacks with this idempotency key, oldest first (after the journal drained).
    pub async fn stored(&self, key: &str) -> Vec<Document> {
        self.drained().await;
        all(
            &self.callbacks,
            doc! {"provider_transaction_id": key},
            doc! {"received_at": 1, "_id": 1},
        )
        .await
    }

    /// The one stored callback with this key.
    pub async fn stored_one(&self, key: &str) -> Document {
        let mut stored = self.stored(key).await;
        assert_eq!(
            stored.len(),
            1,
            "exactly one document for {key}: {stored:?}"
        );
        stored.remove(0)
    }

    /// The transactions with this key.
    pub async fn transactions_for(&self, key: &str) -> Vec<Document> {
        self.drained().await;
        all(
            &self.transactions,
            doc! {"transaction_key": key},
            doc! {"first_callback_at": 1, "_id": 1},
        )
        .await
    }

    /// The one transaction with this key.
    pub async fn transaction(&self, key: &str) -> Document {
        let mut found = self.transactions_for(key).await;
        assert_eq!(
            found.len(),
            1,
            "exactly one transaction for {key}: {found:?}"
        );
        found.remove(0)
    }

    pub async fn quarantined(&self) -> Vec<Document> {
        self.drained().await;
        all(&self.rejected, doc! {}, doc! {"received_at": 1, "_id": 1}).await
    }

    /// The quarantined bodies, once there are at least `count`: the bodies of unauthenticated requests
    /// are written without the 401 waiting for them.
    pub async fn quarantined_at_least(&self, count: usize) -> Vec<Document> {
        for _ in 0..400 {
            let kept = self.quarantined().await;
            if kept.len() >= count {
                return kept;
            }
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("fewer than {count} bodies were quarantined");
    }
}

/// Every document of `collection` matching `filter`, in `order` (oldest first by the collection's time).
async fn all(
    collection: &Collection<Document>,
    filter: Document,
    order: Document,
) -> Vec<Document> {
    let mut cursor = collection.find(filter).sort(order).await.unwrap();
    let mut documents = Vec::new();
    while cursor.advance().await.unwrap() {
        documents.push(cursor.deserialize_current().unwrap());
    }
    documents
}
