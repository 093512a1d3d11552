//! The service's side of delivery (the actors' side is `mmo_actors::delivery`): the HTTP transport that
//! posts events, with its guard against private addresses, endpoint URL checks, and the endpoints kept in
//! configuration, written to the `endpoints` collection at start so that one collection holds them all.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_tls::connect::{Connector as TcpConnector, Resolve, Resolver};
use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use mmo_actors::delivery::{self, sealing, Outbox, Request, Response, Transport};
use mongodb::bson::{doc, Document};
use secrecy::ExposeSecret;

use crate::configuration::DeliveryConfig;

/// Whether `ip` is an address on the public internet: not loopback, private, link-local (cloud
/// metadata services live there), shared (carrier-grade NAT), unspecified or broadcast.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

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

/// Refuses a URL whose host is a literal non-public address (hostnames are checked as they resolve,
/// at every connection).
pub fn check_literal_host(url: &str) -> Result<(), String> {
    let uri: actix_web::http::Uri = url.parse().map_err(|_| "not a URL".to_owned())?;
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) if !is_public(ip) => Err(format!(
            "{ip} is a loopback, private, link-local or metadata address (delivery.allow_private_networks is off)"
        )),
        _ => Ok(()),
    }
}

/// Resolves hostnames and refuses any that resolves to a non-public address: checked at every
/// connection, so a name that later points inside the network is refused then.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn StdError>>> {
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
            if let Some(refused) = addresses.iter().find(|address| !is_public(address.ip())) {
                return Err(format!(
                    "{host} resolves to {}, a loopback, private, link-local or metadata address",
                    refused.ip()
                )
                .into());
            }
            Ok(addresses)
        })
    }
}

/// Posts events with the service's HTTP client (`awc`), one client per sender thread. Redirects are not
/// followed (a 3xx is a failure).
pub struct HttpTransport {
    allow_private_networks: bool,
}

impl HttpTransport {
    pub fn new(allow_private_networks: bool) -> Self {
        Self {
            allow_private_networks,
        }
    }

    fn client(&self) -> awc::Client {
        thread_local! {
            static CLIENTS: std::cell::RefCell<[Option<awc::Client>; 2]> = const { std::cell::RefCell::new([None, None]) };
        }
        let slot = usize::from(self.allow_private_networks);
        let allow = self.allow_private_networks;
        CLIENTS.with(|clients| {
            clients.borrow_mut()[slot]
                .get_or_insert_with(|| {
                    let connect_timeout = Duration::from_secs(10);
                    let builder = awc::Client::builder().disable_redirects();
                    if allow {
                        builder
                            .connector(awc::Connector::new().timeout(connect_timeout))
                            .finish()
                    } else {
                        let guarded = TcpConnector::new(Resolver::custom(PublicOnly)).service();
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
        if !self.allow_private_networks {
            if let Err(refused) = check_literal_host(&request.url) {
                return Box::pin(async move { Err(refused) });
            }
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
    outbox: &Outbox,
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
        outbox
            .endpoints()
            .update_one(doc! {"_id": &endpoint.id}, update)
            .upsert(true)
            .await?;
    }
    outbox
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
    outbox: &Outbox,
    key: Option<&sealing::SecretsKey>,
) -> Result<Vec<String>, mongodb::error::Error> {
    let now = Utc::now();
    let mut unopened = Vec::new();
    let mut endpoints = outbox
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
        unopened_secrets(&Outbox::new(database), key.as_ref()),
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

/// Starts delivery: configured endpoints written, then the sender pool and the dispatcher. When
/// `key_checked` is false (MongoDB did not answer at start-up), the dispatcher starts only once
/// [`unopened_secrets`] finds every stored secret opens; if one does not, delivery never starts (events
/// stay pending, never dead letters) and says why, as an error, every minute.
pub fn start(config: &DeliveryConfig, database: &mongodb::Database, key_checked: bool) {
    let outbox = Outbox::new(database);
    {
        let (outbox, config) = (outbox.clone(), config.clone());
        actix_web::rt::spawn(async move {
            let mut wait = Duration::from_millis(200);
            while let Err(error) = sync_configured_endpoints(&outbox, &config).await {
                tracing::warn!(%error, "configured endpoints not written yet; retrying");
                tokio::time::sleep(wait).await;
                wait = mmo_actors::backoff::doubled(wait, 1, Duration::from_secs(10));
            }
        });
    }
    let transport: Arc<dyn Transport> = Arc::new(HttpTransport::new(config.allow_private_networks));
    if key_checked {
        delivery::start(config.settings(), outbox, transport);
        return;
    }
    let config = config.clone();
    actix_web::rt::spawn(async move {
        let key = config.sealing_key();
        let mut wait = Duration::from_millis(200);
        loop {
            match unopened_secrets(&outbox, key.as_ref()).await {
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
        delivery::start(config.settings(), outbox, transport);
    });
}

/// An endpoint document as the API shows it (secrets left out).
pub fn public_view(document: &Document) -> serde_json::Value {
    let texts = |field| delivery::outbox::texts_of(document, field);
    serde_json::json!({
        "id": document.get_str("_id").unwrap_or_default(),
        "url": document.get_str("url").unwrap_or_default(),
        "description": document.get_str("description").ok(),
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
    fn private_loopback_link_local_and_metadata_addresses_are_not_public() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(refused.parse().unwrap()), "{refused}");
        }
        for allowed in ["8.8.8.8", "196.201.214.200", "2606:4700::1111"] {
            assert!(is_public(allowed.parse().unwrap()), "{allowed}");
        }
    }

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
        assert!(check_literal_host("http://127.0.0.1:9000/").is_err());
        assert!(check_literal_host("http://[::1]:9000/").is_err());
        assert!(check_literal_host("https://orders.example.com/").is_ok());
    }
}
