use mmo_webhooks::configuration::{self, Sources};
use mmo_webhooks::startup::Application;
use mmo_webhooks::telemetry;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let loaded = match configuration::load(&Sources::from_process()) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("mmo-webhooks: {error}");
            std::process::exit(2);
        }
    };
    let _log_writer = telemetry::init(&loaded.settings.log);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let application = Application::build(loaded.settings).await?;
    tracing::info!(port = application.port(), "mmo-webhooks listening");
    application.run_until_stopped().await?;
    tracing::info!("mmo-webhooks stopped");
    Ok(())
}
