//! The command line: one binary, `serve` by default, and the tools around it. The client subcommands
//! (`scenarios`, `send`, `probe`, and the nouns of `nouns.rs`) need no server configuration and run
//! anywhere.

pub mod nouns;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mmo_actors::providers::by_slug;
use mmo_actors::providers::fixtures::{all, Scenario};
use mmo_actors::Provider;

use crate::auth::{sign_base64, sign_hex};
use crate::configuration::{self, Sources};

#[derive(Debug, Parser)]
#[command(
    name = "mmo-webhooks",
    version,
    about = "Receives mobile-money operators' callbacks (M-Pesa, MTN MoMo, Airtel Money), keeps each one \
             durably before acknowledging it, and lets you query what it keeps.",
    long_about = None,
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default). Configuration: config/default.toml, config/$MMO_ENV.toml, the
    /// file named by $MMO_CONFIG, then MMO__SECTION__KEY environment variables; $MMO_CONFIG_DIR names
    /// the config directory (default ./config).
    Serve,
    /// Post a realistic callback from the built-in scenarios to a running service, with the proofs you
    /// give, and print the answer (like `stripe trigger`).
    Send {
        /// mpesa, mtn or airtel.
        provider: String,
        /// A scenario name (see `mmo-webhooks scenarios`).
        scenario: String,
        /// The service's address.
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        url: String,
        /// Bearer token (auth.bearer_tokens). Default: the local development token.
        #[arg(long, env = "MMO_TOKEN", default_value = "local-development-token")]
        token: String,
        /// Send it this many times (repeats are stored once and counted as deliveries).
        #[arg(long, default_value_t = 1)]
        times: u32,
        /// The transaction's key to send. Default: a fresh one each run, so a payment is never a repeat of
        /// an earlier run's; pass a key again to send a repeat on purpose.
        #[arg(long)]
        id: Option<String>,
        /// URL token to append to the path (providers.<name>.url_tokens).
        #[arg(long, env = "MMO_URL_TOKEN")]
        url_token: Option<String>,
        /// Secret to sign an X-MTN-Signature header with (providers.mtn.signature_secrets).
        #[arg(long, env = "MMO_SIGNATURE_SECRET")]
        signature_secret: Option<String>,
        /// Key to compute Airtel's body hash with (providers.airtel.hash_keys), over `transaction`.
        #[arg(long, env = "MMO_HASH_KEY")]
        hash_key: Option<String>,
    },
    /// List the built-in scenarios, one `<provider> <scenario>` pair per line.
    Scenarios,
    /// Transactions of a running service: `list` (filters) or `show <provider> <key>`.
    Transactions {
        #[command(flatten)]
        service: nouns::Service,
        #[command(subcommand)]
        action: nouns::TransactionsAction,
    },
    /// Events sent to your endpoints: `list`, `show <id>`, `replay <id>`.
    Events {
        #[command(flatten)]
        service: nouns::Service,
        #[command(subcommand)]
        action: nouns::EventsAction,
    },
    /// Your endpoints: `list`, `show <id>`.
    Endpoints {
        #[command(flatten)]
        service: nouns::Service,
        #[command(subcommand)]
        action: nouns::EndpointsAction,
    },
    /// Quarantined bodies: `list`, `show <id>`, `replay <id>`.
    Rejected {
        #[command(flatten)]
        service: nouns::Service,
        #[command(subcommand)]
        action: nouns::RejectedAction,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Journal tools.
    Journal {
        #[command(subcommand)]
        action: JournalAction,
    },
    /// Exit 0 when the service at --url answers /readyz ready (the container's health check).
    Probe {
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        url: String,
    },
    /// Receive this service's events on loopback: verify each delivery's signature (and its timestamp,
    /// within five minutes) and print one line per event. Register http://127.0.0.1:<port>/ with
    /// POST /v1/endpoints and pass the secret it returns.
    Listen {
        #[arg(long, default_value_t = 9100)]
        port: u16,
        /// The endpoint's signing secret (whsec_…); without it, deliveries are printed unverified.
        #[arg(long, env = "MMO_ENDPOINT_SECRET")]
        secret: Option<String>,
        /// The status to answer (2xx acknowledges; anything else is retried by the service).
        #[arg(long, default_value_t = 204)]
        status: u16,
        /// Answer the first N deliveries 500, to watch the retries.
        #[arg(long, default_value_t = 0)]
        fail_first: u64,
    },
    /// Serve the operators' token and status APIs (Daraja, MTN MoMo, Airtel) on loopback, with scripted
    /// payments whose callbacks are sent to --receiver on time, late, twice, never, or disagreeing
    /// (POST /simulator/payments). For tests and local walk-throughs, never for production.
    Simulate {
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// 0 picks a free port (printed at start-up).
        #[arg(long, default_value_t = 9000)]
        port: u16,
        /// The service that receives the callbacks.
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        receiver: String,
        /// Bearer token the callbacks carry (auth.bearer_tokens).
        #[arg(long, env = "MMO_TOKEN", default_value = "local-development-token")]
        receiver_token: String,
        /// How long each status answer takes (ms).
        #[arg(long, default_value_t = 50)]
        latency_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Load the layered configuration, report every problem with its key, and print the effective
    /// configuration with secrets redacted.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum JournalAction {
    /// Show the journal's backlog, its oldest entry and its size, without starting the service (the
    /// journal is opened read-only; a running service holds it, so stop it first or ask its /readyz).
    Status {
        /// The journal directory; default: journal.dir of the configuration.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// The scenario's payload, the endpoint path and the methods it takes.
fn find(provider: &str, name: &str) -> Result<(Scenario, &'static dyn Provider, String), String> {
    let scenario = all()
        .into_iter()
        .find(|scenario| scenario.provider == provider && scenario.name == name)
        .ok_or_else(|| {
            format!("no scenario `{provider} {name}`: `mmo-webhooks scenarios` lists them")
        })?;
    let registered = by_slug(provider)
        .ok_or_else(|| format!("no provider `{provider}` (mpesa, mtn, airtel)"))?;
    let endpoint = registered
        .endpoints()
        .iter()
        .find(|endpoint| endpoint.callback_type == scenario.callback_type)
        .ok_or_else(|| format!("no endpoint for {}", scenario.callback_type))?;
    Ok((
        scenario.clone(),
        registered,
        format!("/v1/webhooks/{provider}/{}", endpoint.path),
    ))
}

pub fn scenarios() -> i32 {
    for scenario in all() {
        println!("{} {}", scenario.provider, scenario.name);
    }
    0
}

#[allow(clippy::too_many_arguments)]
pub async fn send(
    provider: &str,
    name: &str,
    url: &str,
    token: &str,
    times: u32,
    id: Option<&str>,
    url_token: Option<&str>,
    signature_secret: Option<&str>,
    hash_key: Option<&str>,
) -> i32 {
    let (scenario, registered, mut path) = match find(provider, name) {
        Ok(found) => found,
        Err(problem) => {
            eprintln!("mmo-webhooks send: {problem}");
            return 2;
        }
    };
    let mut payload = scenario.payload;
    let key = match registered
        .parse(scenario.callback_type, payload.to_string().as_bytes())
        .map(|callback| callback.provider_transaction_id)
    {
        Ok(key) => key,
        Err(error) => {
            eprintln!("mmo-webhooks send: the scenario cannot be read: {error}");
            return 2;
        }
    };
    let fresh = match id {
        Some(id) => id.to_owned(),
        None => format!("{key}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
    };
    replace_text(&mut payload, &key, &fresh);
    if let Some(key) = hash_key {
        // Form (a): over the `transaction` object exactly as it appears in the body sent.
        let transaction = payload["transaction"].to_string();
        payload["hash"] = sign_base64(key.as_bytes(), transaction.as_bytes()).into();
    }
    let body = payload.to_string();
    if let Some(url_token) = url_token {
        path = format!("{path}/{url_token}");
    }
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let mut failed = false;
    for _ in 0..times.max(1) {
        let mut request = client
            .post(format!("{}{path}", url.trim_end_matches('/')))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .content_type("application/json");
        if let Some(secret) = signature_secret {
            request = request.insert_header((
                "X-MTN-Signature",
                sign_hex(secret.as_bytes(), body.as_bytes()),
            ));
        }
        match request.send_body(body.clone()).await {
            Ok(mut response) => {
                let answer = response.body().await.unwrap_or_default();
                let outcome = response
                    .headers()
                    .get(crate::routes::OUTCOME_HEADER)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("-")
                    .to_owned();
                println!(
                    "{} {fresh} {outcome} {}",
                    response.status().as_u16(),
                    String::from_utf8_lossy(&answer)
                );
                failed |= !response.status().is_success();
            }
            Err(error) => {
                eprintln!("mmo-webhooks send: {url}{path}: {error}");
                return 1;
            }
        }
    }
    i32::from(failed)
}

/// Replaces every text value equal to `from` (the scenario's key, wherever the payload repeats it).
fn replace_text(value: &mut serde_json::Value, from: &str, to: &str) {
    match value {
        serde_json::Value::String(text) if text == from => *text = to.to_owned(),
        serde_json::Value::Array(items) => {
            for item in items {
                replace_text(item, from, to);
            }
        }
        serde_json::Value::Object(fields) => {
            for field in fields.values_mut() {
                replace_text(field, from, to);
            }
        }
        _ => {}
    }
}

pub async fn probe(url: &str) -> i32 {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
    match client
        .get(format!("{}/readyz", url.trim_end_matches('/')))
        .send()
        .await
    {
        Ok(mut response) if response.status().is_success() => {
            println!("ready");
            let _ = response.body().await;
            0
        }
        Ok(mut response) => {
            let body = response.body().await.unwrap_or_default();
            eprintln!(
                "not ready ({}): {}",
                response.status().as_u16(),
                String::from_utf8_lossy(&body)
            );
            1
        }
        Err(error) => {
            eprintln!("no answer from {url}: {error}");
            1
        }
    }
}

pub fn config_check() -> i32 {
    match configuration::load(&Sources::from_process()) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            match serde_json::to_string_pretty(&loaded.settings) {
                Ok(printed) => println!("{printed}"),
                Err(error) => eprintln!("the configuration could not be printed: {error}"),
            }
            0
        }
        Err(error) => {
            eprintln!("mmo-webhooks: {error}");
            if std::env::var_os("MMO_ENV").is_none() {
                // The usual surprise: `scripts/run.sh` starts the service with MMO_ENV=local, a second
                // terminal checks with production's rules.
                eprintln!(
                    "(MMO_ENV is not set, so only config/default.toml and MMO__ variables were read; the \
                     local setup of scripts/run.sh is MMO_ENV=local mmo-webhooks config check)"
                );
            }
            2
        }
    }
}

pub fn journal_status(dir: Option<PathBuf>) -> i32 {
    let dir = match dir {
        Some(dir) => dir,
        None => match configuration::load(&Sources::from_process()) {
            Ok(loaded) => loaded.settings.journal.dir,
            Err(error) => {
                eprintln!("mmo-webhooks: {error} (or name the journal with --dir)");
                return 2;
            }
        },
    };
    match mmo_actors::journal::status(&dir) {
        Ok(status) => {
            println!("journal       {}", dir.display());
            println!("entries       {}", status.backlog.entries);
            println!("bytes         {}", status.backlog.bytes);
            println!("file size     {}", status.file_bytes);
            match status.oldest_received_at {
                Some(at) => println!(
                    "oldest entry  {} ({} s ago)",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    (chrono::Utc::now() - at).num_seconds()
                ),
                None => println!("oldest entry  none: empty"),
            }
            0
        }
        Err(error) if error.left_open() => {
            eprintln!(
                "mmo-webhooks journal status: {} was not closed: the service that wrote it crashed, was \
                 killed, or was a version before 0.3.0. Its entries are safe: the next start repairs the \
                 file and drains them. It cannot be read without that repair.",
                dir.display()
            );
            1
        }
        Err(error) => {
            eprintln!(
                "mmo-webhooks journal status: {error}\n(a running service holds its journal: stop it first, or read its /readyz)"
            );
            1
        }
    }
}
