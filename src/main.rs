use clap::Parser;
use mmo_webhooks::cli::{self, Cli, Command, ConfigAction, JournalAction};
use mmo_webhooks::configuration::{self, Sources};
use mmo_webhooks::startup::Application;
use mmo_webhooks::telemetry;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let code = match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => return serve().await,
        Command::Scenarios => cli::scenarios(),
        Command::Send {
            provider,
            scenario,
            url,
            token,
            times,
            id,
            url_token,
            signature_secret,
            hash_key,
        } => {
            cli::send(
                &provider,
                &scenario,
                &url,
                &token,
                times,
                id.as_deref(),
                url_token.as_deref(),
                signature_secret.as_deref(),
                hash_key.as_deref(),
            )
            .await
        }
        Command::Probe { url } => cli::probe(&url).await,
        Command::Transactions { service, action } => {
            cli::nouns::transactions(&service, &action).await
        }
        Command::Events { service, action } => cli::nouns::events(&service, &action).await,
        Command::Endpoints { service, action } => cli::nouns::endpoints(&service, &action).await,
        Command::Rejected { service, action } => cli::nouns::rejected(&service, &action).await,
        Command::Simulate {
            host,
            port,
            receiver,
            receiver_token,
            latency_ms,
        } => {
            let listener = std::net::TcpListener::bind((host.as_str(), port))?;
            let port = listener.local_addr()?.port();
            let server = mmo_webhooks::simulator::serve(
                listener,
                receiver.clone(),
                receiver_token,
                std::time::Duration::from_millis(latency_ms),
            )?;
            eprintln!(
                "mmo-webhooks simulator listening on http://{host}:{port} — operators' APIs for \
                 [providers.<name>.api] base_url; script payments with POST /simulator/payments; \
                 callbacks go to {receiver}"
            );
            server.await?;
            0
        }
        Command::Listen {
            port,
            secret,
            status,
            fail_first,
        } => {
            let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
            let port = listener.local_addr()?.port();
            let verifying = secret.is_some();
            let server = mmo_webhooks::listen::serve(
                listener,
                mmo_webhooks::listen::Listening {
                    secret,
                    status,
                    fail_first,
                },
            )?;
            eprintln!(
                "mmo-webhooks listening for events on http://127.0.0.1:{port}/ ({}); Ctrl-C stops",
                if verifying {
                    "verifying signatures"
                } else {
                    "NOT verifying: pass --secret whsec_… to check signatures"
                }
            );
            server.await?;
            0
        }
        Command::Config {
            action: ConfigAction::Check,
        } => cli::config_check(),
        Command::Journal {
            action: JournalAction::Status { dir },
        } => cli::journal_status(dir),
    };
    std::process::exit(code);
}

async fn serve() -> anyhow::Result<()> {
    let loaded = match configuration::load(&Sources::from_process()) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("mmo-webhooks: {error}");
            std::process::exit(2);
        }
    };
    let logging = telemetry::init(&loaded.settings.log);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let settings = loaded.settings;
    let (host, database, journal) = (
        settings.server.host.clone(),
        settings.mongodb.database.clone(),
        settings.journal.dir.clone(),
    );
    let application = Application::build(settings).await?;
    let port = application.port();
    tracing::info!(
        port,
        url = %format!("http://{host}:{port}"),
        database,
        journal = %journal.display(),
        "mmo-webhooks listening"
    );
    // One line a person can act on, whatever the log format, written after the server's start-up lines.
    let ready = format!(
        "mmo-webhooks is ready on http://{host}:{port}/v1/webhooks/… — callbacks need a bearer token \
         from auth.bearer_tokens (MMO__AUTH__BEARER_TOKENS); MongoDB database `{database}`; journal \
         in {}. Try: mmo-webhooks send mpesa stk_push_success --url http://{host}:{port}",
        journal.display()
    );
    application
        .run_announcing(|| logging.announce(&ready))
        .await?;
    tracing::info!("mmo-webhooks stopped");
    Ok(())
}
