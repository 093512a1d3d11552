//! The service's side of delivery (the actors' side is `mmo_actors::delivery`): the HTTP transport that
//! posts events, with its guard against non-public addresses (`addresses`), endpoint URL checks, and the endpoints kept in
//! configuration, written to the `endpoints` collection at start so that one collection holds them all.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_tls::connect::{Connector as TcpConnector, Resolver};
use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use mmo_actors::delivery::{self, sealing, DeliveryStore, EventLog, Request, Response, Transport};
use mongodb::bson::{doc, Document};
use secrecy::ExposeSecret;

use crate::addresses::{AddressPolicy, Guarded, Names};
use crate::configuration::DeliveryConfig;

/// Checks an endpoint URL's shape: absolute `http` or `https` with a host, no credentials.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: actix_web::http::Uri = url
        .parse()
        .map_err(|_| "must be an absolute http(s) URL".to_owned())?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("must be an absolute http(s) URL".to_owned()),
    }
    let authority = uri.authority().ok_or("must name a host")?;
    if authority.as_str().contains('@') {
        return Err("must not carry credentials".to_owned());
    }
    if authority.host().is_empty() {
        return Err("must name a host".to_owned());
    }
    Ok(())
}

/// Posts events with the service's HTTP client (`awc`), one client per sender thread. Redirects are not
/// followed (a 3xx is a failure). Unless the policy is [`AddressPolicy::Anywhere`], the client resolves
/// through [`Guarded`]: every connection checks the addresses the name resolves to then.
pub struct HttpTransport {
    policy: AddressPolicy,
    names: Arc<dyn Names>,
    /// Tells this transport's clients from another's in the thread's cache (tests run several services,
    /// with their own policies and resolvers, in one process).
    id: u64,
}

impl HttpTransport {
    pub fn new(policy: AddressPolicy, names: Arc<dyn Names>) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            policy,
            names,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn client(&self) -> awc::Client {
        thread_local! {
            static CLIENTS: RefCell<HashMap<u64, awc::Client>> = RefCell::default();
        }
        CLIENTS.with(|clients| {
            clients
                .borrow_mut()
                .entry(self.id)
                .or_insert_with(|| {
                    let connect_timeout = Duration::from_secs(10);
                    let builder = awc::Client::builder().disable_redirects();
                    if self.policy == AddressPolicy::Anywhere {
                        builder
                            .connector(awc::Connector::new().timeout(connect_timeout))
                            .finish()
                    } else {
                        let guarded = TcpConnector::new(Resolver::custom(Guarded {
                            policy: self.policy,
                            names: Arc::clone(&self.names),
                        }))
                        .service();
                        builder
                            .connector(
                                awc::Connector::new()
                                    .connector(guarded)
                                    .timeout(connect_timeout),
                            )
                            .finish()
                    }
                })
                .clone()
        })
    }
}

impl Transport for HttpTransport {
    fn post(&self, request: Request) -> LocalBoxFuture<'static, Result<Response, String>> {
        // The resolver is not asked about literal addresses: they are checked here.
        if let Err(refused) = self.policy.check_literal_host(&request.url) {
            return Box::pin(async move { Err(refused) });
        }
        let client = self.client();
        Box::pin(async move {
            let mut sending = client.post(&request.url).timeout(request.timeout);
            for (name, value) in &request.headers {
                sending = sending.insert_header((*name, value.as_str()));
            }
            let mut answer = sending
                .send_body(request.body.to_string())
                .await
                .map_err(|error| error.to_string())?;
            let retry_after = answer
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| delivery::verdict::retry_after(value, SystemTime::now()));
            let body = answer.body().limit(64 * 1024).await.unwrap_or_default();
            Ok(Response {
                status: answer.status().as_u16(),
                retry_after,
                body: delivery::truncate(&String::from_utf8_lossy(&body), 1024),
            })
        })
    }
}

/// Writes the endpoints declared in configuration to `endpoints` (marked `source: "config"`), so that
/// the dispatcher and the API see one list; an endpoint once declared and now gone is removed.
pub async fn sync_configured_endpoints(
    store: &DeliveryStore,
    config: &DeliveryConfig,
) -> Result<(), mongodb::error::Error> {
    let now = mongodb::bson::DateTime::from_chrono(Utc::now());
    let mut ids = Vec::new();
    let key = config.sealing_key();
    for endpoint in &config.endpoints {
        ids.push(endpoint.id.clone());
        let update = doc! {
            "$set": {
                "url": &endpoint.url,
                "secrets": [{"secret": sealing::store(key.as_ref(), &endpoint.id, endpoint.secret.expose_secret())}],
                "event_types": &endpoint.event_types,
                "providers": endpoint.providers.iter().filter_map(|name| crate::stored::provider_name(name)).collect::<Vec<_>>(),
                "description": endpoint.description.as_deref(),
                "source": "config",
            },
            "$setOnInsert": {"enabled": true, "created_at": now},
        };
        store
            .endpoints()
            .update_one(doc! {"_id": &endpoint.id}, update)
            .upsert(true)
            .await?;
    }
    store
        .endpoints()
        .delete_many(doc! {"source": "config", "_id": {"$nin": ids}})
        .await?;
    Ok(())
}

/// How long start-up waits for MongoDB to check `delivery.secrets_key` before it goes on without (the
/// driver gives up sooner, after `mongodb.server_selection_timeout_ms`, when MongoDB is down).
const KEY_CHECK_WAIT: Duration = Duration::from_secs(10);

/// The endpoints (declared through the API) with a signing secret, still signing, that is sealed and
/// does not open with `key`: sealed with another key, or a key is missing. Endpoints declared in
/// configuration are left out: they are written again, sealed with today's key, at every start.
pub async fn unopened_secrets(
    store: &DeliveryStore,
    key: Option<&sealing::SecretsKey>,
) -> Result<Vec<String>, mongodb::error::Error> {
    let now = Utc::now();
    let mut unopened = Vec::new();
    let mut endpoints = store
        .endpoints()
        .find(doc! {"source": {"$ne": "config"}})
        .projection(doc! {"secrets": 1})
        .await?;
    while endpoints.advance().await? {
        let endpoint = endpoints.deserialize_current()?;
        let id = endpoint.get_str("_id").unwrap_or_default();
        let signing = endpoint
            .get_array("secrets")
            .into_iter()
            .flatten()
            .filter_map(|secret| secret.as_document())
            .filter(|secret| {
                secret
                    .get_datetime("expires_at")
                    .map_or(true, |until| until.to_chrono() > now)
            });
        if signing
            .filter_map(|secret| secret.get_str("secret").ok())
            .any(|stored| sealing::load(key, id, stored).is_none())
        {
            unopened.push(id.to_owned());
        }
    }
    Ok(unopened)
}

/// Why an instance refuses to start: naming `delivery.secrets_key` and the endpoints it cannot sign for.
fn refusal(unopened: &[String], key: Option<&sealing::SecretsKey>) -> String {
    let shown: Vec<&str> = unopened.iter().take(5).map(String::as_str).collect();
    let more = unopened.len().saturating_sub(shown.len());
    format!(
        "delivery.secrets_key {} the signing secrets stored sealed for {} endpoint(s) ({}{}): start with the key \
         they were sealed with (an instance that cannot open them would turn their events into dead letters)",
        if key.is_some() {
            "does not open"
        } else {
            "is empty and cannot open"
        },
        unopened.len(),
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        },
    )
}

/// Checks at start-up that `delivery.secrets_key` opens every endpoint's stored secrets that still sign:
/// `Err` (the instance refuses to start) when one does not open; `Ok(false)` when MongoDB did not answer
/// in time, in which case delivery checks again before its first round (see [`start`]).
pub async fn check_secrets_key(
    database: &mongodb::Database,
    config: &DeliveryConfig,
) -> anyhow::Result<bool> {
    let key = config.sealing_key();
    let checked = tokio::time::timeout(
        KEY_CHECK_WAIT,
        unopened_secrets(&DeliveryStore::new(database), key.as_ref()),
    )
    .await;
    match checked {
        Ok(Ok(unopened)) if unopened.is_empty() => Ok(true),
        Ok(Ok(unopened)) => Err(anyhow::anyhow!(refusal(&unopened, key.as_ref()))),
        Ok(Err(error)) => {
            tracing::warn!(%error, "delivery.secrets_key not checked at start-up (MongoDB did not answer); delivery waits for the check");
            Ok(false)
        }
        Err(_) => {
            tracing::warn!("delivery.secrets_key not checked at start-up (MongoDB did not answer in time); delivery waits for the check");
            Ok(false)
        }
    }
}

/// Starts delivery: configured endpoints written, then the sender pool and the dispatcher; endpoints'
/// names are looked up through `names` (the system's resolver in service). When `key_checked` is false
/// (MongoDB did not answer at start-up), the dispatcher starts only once [`unopened_secrets`] finds every
/// stored secret opens; if one does not, delivery never starts (events stay pending, never dead letters)
/// and says why, as an error, every minute. Returns the started delivery (for a clean stop), or `None`
/// when it starts later.
pub fn start(
    config: &DeliveryConfig,
    database: &mongodb::Database,
    names: Arc<dyn Names>,
    key_checked: bool,
) -> Option<delivery::Delivery> {
    let store = DeliveryStore::new(database);
    let events = EventLog::new(database);
    {
        let (store, config) = (store.clone(), config.clone());
        actix_web::rt::spawn(async move {
            let mut wait = Duration::from_millis(200);
            while let Err(error) = sync_configured_endpoints(&store, &config).await {
                tracing::warn!(%error, "configured endpoints not written yet; retrying");
                tokio::time::sleep(wait).await;
                wait = mmo_actors::backoff::doubled(wait, 1, Duration::from_secs(10));
            }
        });
    }
    let transport: Arc<dyn Transport> =
        Arc::new(HttpTransport::new(config.address_policy(), names));
    if key_checked {
        return Some(delivery::start(config.settings(), store, events, transport));
    }
    let config = config.clone();
    actix_web::rt::spawn(async move {
        let key = config.sealing_key();
        let mut wait = Duration::from_millis(200);
        loop {
            match unopened_secrets(&store, key.as_ref()).await {
                Ok(unopened) if unopened.is_empty() => break,
                Ok(unopened) => {
                    tracing::error!("delivery not started: {}", refusal(&unopened, key.as_ref()));
                    wait = Duration::from_secs(60);
                }
                Err(error) => {
                    tracing::warn!(%error, "delivery.secrets_key not checked yet; delivery waits");
                    wait = mmo_actors::backoff::doubled(wait, 1, Duration::from_secs(10));
                }
            }
            tokio::time::sleep(wait).await;
        }
        // Started late: not stopped cleanly (its lease runs out by itself at exit).
        delivery::start(config.settings(), store, events, transport);
    });
    None
}

/// An endpoint document as the API shows it (secrets left out).
pub fn public_view(document: &Document) -> serde_json::Value {
    let texts = |field| delivery::store::texts_of(document, field);
    serde_json::json!({
        "id": document.get_str("_id").unwrap_or_default(),
        "url": document.get_str("url").unwrap_or_default(),
        "description": document.get_str("description").ok(),
        "owner": document.get_str("owner").ok(),
        "event_types": texts("event_types"),
        "providers": texts("providers"),
        "enabled": document.get_bool("enabled").unwrap_or(true),
        "disabled_reason": document.get_str("disabled_reason").ok(),
        "failing_since": crate::stored::rfc3339(document, "failing_since"),
        "source": document.get_str("source").unwrap_or("api"),
        "created_at": crate::stored::rfc3339(document, "created_at"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_must_be_absolute_http() {
        assert!(check_url("https://orders.example.com/hooks").is_ok());
        assert!(check_url("http://127.0.0.1:9000/").is_ok());
        for refused in [
            "ftp://example.com/",
            "/relative",
            "example.com",
            "https://user:pw@example.com/",
            "",
        ] {
            assert!(check_url(refused).is_err(), "{refused}");
        }
    }

    /// A receiver on loopback that counts the requests reaching it and answers 204.
    fn counting_receiver() -> (u16, Arc<AtomicU64>) {
        let arrived = Arc::new(AtomicU64::new(0));
        let counting = Arc::clone(&arrived);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().unwrap().port();
        let server = actix_web::HttpServer::new(move || {
            let counting = Arc::clone(&counting);
            actix_web::App::new().default_service(actix_web::web::to(move || {
                counting.fetch_add(1, Ordering::SeqCst);
                async { actix_web::HttpResponse::NoContent().finish() }
            }))
        })
        .workers(1)
        .listen(listener)
        .expect("listens")
        .run();
        actix_web::rt::spawn(server);
        (port, arrived)
    }

    fn request(url: &str) -> Request {
        Request {
            url: url.to_owned(),
            headers: Vec::new(),
            body: Arc::from("{}"),
            timeout: Duration::from_secs(5),
        }
    }

    /// Issue 27: a name that resolves to a public address when the endpoint is registered and to this
    /// machine or the metadata address when the event is sent is refused at the connection, and nothing
    /// reaches the listener the name now points at. A control first proves the transport asks the test's
    /// resolver (with loopback allowed the same re-pointed name is delivered to), so the refusal is the
    /// guard's, not a name that does not resolve.
    #[actix_web::test]
    async fn a_name_re_pointed_inside_after_registration_is_refused_at_connection() {
        let (port, arrived) = counting_receiver();
        let names = Arc::new(crate::addresses::NamesTable::default());
        let url = format!("http://merchant.example:{port}/hooks");
        let loopback: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let metadata: std::net::IpAddr = "169.254.169.254".parse().unwrap();

        // Registration: the name is public then.
        names.set("merchant.example", &["93.184.215.14".parse().unwrap()]);
        for policy in [AddressPolicy::PublicOnly, AddressPolicy::PublicAndLoopback] {
            assert_eq!(policy.check_host(&url, names.as_ref()).await, Ok(()));
        }

        // The control: loopback allowed, the name re-pointed at the listener is delivered to.
        names.set("merchant.example", &[loopback]);
        let allowed = HttpTransport::new(AddressPolicy::PublicAndLoopback, names.clone());
        let answer = allowed.post(request(&url)).await.expect("delivered");
        assert_eq!(answer.status, 204);
        assert_eq!(arrived.load(Ordering::SeqCst), 1);

        // Public only: the name now resolving to loopback is refused at the connection.
        let public_only = HttpTransport::new(AddressPolicy::PublicOnly, names.clone());
        let refused = public_only.post(request(&url)).await.unwrap_err();
        assert!(
            refused.contains("merchant.example resolves to 127.0.0.1, which is loopback"),
            "{refused}"
        );
        // Loopback allowed or not, the metadata address is refused; behind a loopback answer too (any
        // address refused refuses the name).
        for (answer, transports) in [
            (vec![metadata], vec![&allowed, &public_only]),
            (vec![loopback, metadata], vec![&allowed]),
        ] {
            names.set("merchant.example", &answer);
            for transport in transports {
                let refused = transport.post(request(&url)).await.unwrap_err();
                assert!(
                    refused.contains("resolves to 169.254.169.254, which is link-local"),
                    "{refused}"
                );
            }
        }
        // The one request of the control is all the listener ever got (a request refused before its
        // connection cannot arrive later: the transport's future has finished).
        assert_eq!(arrived.load(Ordering::SeqCst), 1);
    }
}
