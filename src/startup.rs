//! Builds the application: the store, the actor system and the HTTP server, bound to its listener.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use mmo_actors::store::MongoStore;
use mmo_actors::{supervisor, CallbackStore, Supervisor};

use crate::configuration::Settings;
use crate::rate_limit::RateLimits;
use crate::request_context::{rate_limit, request_context};
use crate::routes::{self, AppState};

pub struct Application {
    port: u16,
    server: Server,
    supervisor: Addr<Supervisor>,
    store: MongoStore,
}

impl Application {
    /// Binds `server.host:server.port` (port 0 picks a free one) and starts the actors. Does not wait for
    /// MongoDB: until it is reachable, callbacks are answered 503 and nothing is acknowledged.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = MongoStore::connect(&settings.mongo()).await?;
        {
            let store = store.clone();
            actix_web::rt::spawn(async move {
                if let Err(error) = store.ensure_indexes().await {
                    tracing::warn!(%error, "indexes not created at start-up; retried before the first write");
                }
            });
        }
        let shared_store: Arc<dyn CallbackStore> = Arc::new(store.clone());
        let supervisor = supervisor::start(&settings.supervisor(), shared_store);

        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))?;
        let port = listener.local_addr()?.port();
        let call_timeout = Duration::from_millis(settings.actors.call_timeout_ms);
        let state = web::Data::new(AppState {
            supervisor: supervisor.clone(),
            store: store.clone(),
            authenticator: settings.authenticator(),
            rate_limits: RateLimits::new(&settings.rate_limit),
            acceptance_rules: settings.c2b_validation.rules(),
            pseudonymization_salt: settings.privacy.hashing_salt(),
            max_body_bytes: settings.server.max_body_bytes.get(),
            // A dead actor is retried once, so the pipeline may take two calls.
            pipeline_timeout: call_timeout * 2 + Duration::from_secs(1),
        });

        {
            // Forget clients whose allowance is whole again, so address churn cannot grow memory.
            let state = state.clone();
            actix_web::rt::spawn(async move {
                let mut every_minute = tokio::time::interval(Duration::from_secs(60));
                loop {
                    every_minute.tick().await;
                    state.rate_limits.forget_idle_clients();
                }
            });
        }

        let mut server = HttpServer::new(move || {
            // Middlewares run outermost last-registered: request_context wraps rate_limit.
            App::new()
                .wrap(from_fn(rate_limit))
                .wrap(from_fn(request_context))
                .app_data(state.clone())
                .configure(routes::configure)
        })
        .client_request_timeout(Duration::from_millis(
            settings.server.client_request_timeout_ms,
        ))
        .keep_alive(Duration::from_secs(settings.server.keep_alive_secs))
        .shutdown_timeout(settings.server.shutdown_timeout_secs);
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = server.listen(listener)?.run();
        Ok(Self {
            port,
            server,
            supervisor,
            store,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn supervisor(&self) -> Addr<Supervisor> {
        self.supervisor.clone()
    }

    pub fn store(&self) -> MongoStore {
        self.store.clone()
    }

    /// Serves until SIGINT/SIGTERM, then finishes in-flight requests (up to `server.shutdown_timeout_secs`).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
