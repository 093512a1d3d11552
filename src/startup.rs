//! Builds the application: the store, the actor system and the HTTP server, bound to its listener.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use actix::Addr;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use mmo_actors::drain::{Drain, DrainSettings};
use mmo_actors::journal::Journal;
use mmo_actors::journaled_store::JournaledStore;
use mmo_actors::store::MongoStore;
use mmo_actors::{supervisor, CallbackStore, Supervisor};

use crate::addresses::{Names, SystemNames};
use crate::configuration::Settings;
use crate::rate_limit::RateLimits;
use crate::request_context::{rate_limit, request_context};
use crate::routes;
use crate::state::{AppState, Reachability};

pub struct Application {
    port: u16,
    server: Server,
    supervisor: Addr<Supervisor>,
    store: MongoStore,
    journal: Arc<Journal>,
    shutdown_drain: Duration,
    /// Delivery, when enabled, and how long a clean stop waits for its attempts under way.
    delivery: Option<(mmo_actors::delivery::Delivery, Duration)>,
    callback_minutes: Arc<crate::callback_minutes::CallbackMinutes>,
}

impl Application {
    /// Opens the journal, binds `server.host:server.port` (port 0 picks a free one) and starts the
    /// actors and the drain. Does not wait for MongoDB: callbacks are acknowledged from the journal and
    /// reach MongoDB when it is reachable.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_resolving(settings, Arc::new(SystemNames)).await
    }

    /// Like [`Application::build`], looking endpoints' names up through `names` (tests change a name's
    /// answer between an endpoint's registration and its delivery).
    pub async fn build_resolving(
        settings: Settings,
        names: Arc<dyn Names>,
    ) -> anyhow::Result<Self> {
        // Opening reads (and after a crash, repairs) the file: on a blocking thread, not the runtime's.
        let options = settings.journal_options();
        let journal = actix_web::rt::task::spawn_blocking(move || Journal::open_with(options))
            .await
            .map_err(|error| anyhow::anyhow!("journal.dir: {error}"))?
            .map_err(|error| anyhow::anyhow!("journal.dir: {error}"))?;
        Self::build_on_resolving(settings, journal, names).await
    }

    /// Like [`Application::build`], on a journal opened by the caller (tests open one on a storage
    /// backend that observes its fsyncs).
    pub async fn build_on(settings: Settings, journal: Arc<Journal>) -> anyhow::Result<Self> {
        Self::build_on_resolving(settings, journal, Arc::new(SystemNames)).await
    }

    async fn build_on_resolving(
        settings: Settings,
        journal: Arc<Journal>,
        names: Arc<dyn Names>,
    ) -> anyhow::Result<Self> {
        // Installed before anything records.
        crate::metrics::handle();
        let store = MongoStore::connect(&settings.mongo()).await?;
        // Before anything starts: an instance whose `delivery.secrets_key` cannot open the endpoints'
        // stored secrets refuses to start, instead of failing their events without an attempt.
        let key_checked =
            crate::delivery::check_secrets_key(store.database(), &settings.delivery).await?;
        {
            let store = store.clone();
            actix_web::rt::spawn(async move {
                if let Err(error) = store.ensure_indexes().await {
                    tracing::warn!(%error, "indexes not created at start-up; retried before the first write");
                }
            });
        }
        let drain_settings = DrainSettings {
            batch: settings.journal.drain_batch.get(),
            max_attempts: settings.journal.max_attempts,
            pipeline: settings.journal.drain_pipeline.get(),
            ..DrainSettings::default()
        };
        Drain::new(
            Arc::clone(&journal),
            Arc::new(store.clone()),
            drain_settings,
        )
        .start();
        let journaled: Arc<dyn CallbackStore> = Arc::new(JournaledStore::new(Arc::clone(&journal)));
        let supervisor = supervisor::start(&settings.supervisor(), journaled);

        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))?;
        let port = listener.local_addr()?.port();
        let call_timeout = Duration::from_millis(settings.actors.call_timeout_ms);
        let callback_minutes = Arc::new(crate::callback_minutes::CallbackMinutes::default());
        actix_web::rt::spawn(crate::callback_minutes::flush_forever(
            Arc::clone(&callback_minutes),
            store.database().clone(),
        ));
        let state = web::Data::new(AppState {
            callback_minutes: Arc::clone(&callback_minutes),
            background: Arc::new(tokio::sync::Semaphore::new(crate::state::BACKGROUND_TASKS)),
            supervisor: supervisor.clone(),
            store: store.clone(),
            journal: Arc::clone(&journal),
            authenticator: settings.authenticator(),
            admin_tokens: crate::auth::SecretSet::new(&settings.auth.admin_tokens),
            client_tokens: crate::auth::SecretSet::new(&settings.auth.client_tokens),
            rate_limits: RateLimits::new(&settings.rate_limit),
            acceptance_rules: settings.c2b_validation.rules(),
            pseudonymization_salt: settings.privacy.hashing_salt(),
            mongodb: Reachability::default(),
            max_body_bytes: settings.server.max_body_bytes.get(),
            body_read_timeout: Duration::from_secs(settings.server.body_read_timeout_secs),
            // A dead actor is retried once, so the pipeline may take two calls.
            pipeline_timeout: call_timeout * 2 + Duration::from_secs(1),
            reconciler_give_up_after: Duration::from_secs(settings.reconciler.give_up_after_secs),
            secret_overlap: Duration::from_secs(settings.delivery.secret_overlap_secs),
            address_policy: settings.delivery.address_policy(),
            names: Arc::clone(&names),
            secrets_key: settings.delivery.sealing_key(),
            settlement_zones: settings.reports.settlement_zones(),
            console: crate::console::session::Console::new(
                &settings.console,
                &settings.auth.admin_tokens,
            ),
            portal: crate::console::session::Portal::new(&settings.portal),
        });
        let delivery = if settings.delivery.enabled {
            crate::delivery::start(&settings.delivery, store.database(), names, key_checked).map(
                |delivery| {
                    let within = Duration::from_secs(settings.delivery.timeout_secs + 2);
                    (delivery, within)
                },
            )
        } else {
            None
        };
        if settings.reconciler.enabled {
            let operators = crate::operators::Operators::from_settings(&settings, store.database());
            tracing::info!(
                operators = ?operators.configured(),
                "reconciler started"
            );
            mmo_actors::reconciler::start(
                settings.reconciler(),
                store.reconciliations().clone(),
                Arc::new(operators),
                supervisor.clone().recipient(),
            );
        }

        {
            // MongoDB's reachability, checked in the background: probes read the last answer and never
            // wait on MongoDB themselves.
            let (state, every) = (
                state.clone(),
                Duration::from_millis(settings.mongodb.ping_interval_ms),
            );
            actix_web::rt::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                loop {
                    ticks.tick().await;
                    let reachable = state.store.ping().await.is_ok();
                    state.mongodb.set(reachable);
                    metrics::gauge!("mmo_mongodb_reachable").set(f64::from(u8::from(reachable)));
                }
            });
        }
        {
            // Forget clients whose allowance is whole again, so address churn cannot grow memory.
            let state = state.clone();
            actix_web::rt::spawn(async move {
                let mut every_minute = tokio::time::interval(Duration::from_secs(60));
                loop {
                    every_minute.tick().await;
                    // A pass over every client's state: on a blocking thread, not a worker's.
                    let state = state.clone();
                    let _ = actix_web::rt::task::spawn_blocking(move || {
                        state.rate_limits.forget_idle_clients();
                        state.console.forget_idle_clients();
                    })
                    .await;
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
                .configure(crate::console::configure)
        })
        .client_request_timeout(Duration::from_millis(
            settings.server.client_request_timeout_ms,
        ))
        .keep_alive(Duration::from_secs(settings.server.keep_alive_secs))
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        // actix-server treats SIGINT as a forced stop; both signals are handled below, gracefully.
        .disable_signals();
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = server.listen(listener)?.run();
        {
            // SIGTERM (orchestrators) and SIGINT (Ctrl-C) alike: stop accepting, let in-flight requests
            // finish, then `run_until_stopped` drains the journal.
            let handle = server.handle();
            actix_web::rt::spawn(async move {
                shutdown_signal().await;
                tracing::info!(
                    "shutting down: finishing in-flight requests, then draining the journal"
                );
                handle.stop(true).await;
            });
        }
        let shutdown_drain = Duration::from_secs(settings.journal.shutdown_drain_secs);
        Ok(Self {
            port,
            server,
            supervisor,
            store,
            journal,
            shutdown_drain,
            delivery,
            callback_minutes,
        })
    }

    /// Stops the server gracefully, as SIGTERM does (for tests that run the application in-process).
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
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

    pub fn journal(&self) -> Arc<Journal> {
        Arc::clone(&self.journal)
    }

    /// Serves until SIGINT/SIGTERM, finishes in-flight requests (up to `server.shutdown_timeout_secs`),
    /// then keeps draining the journal to MongoDB for up to `journal.shutdown_drain_secs`, and closes it.
    /// Everything acknowledged is in the journal already; what is not drained in time waits for the next
    /// start.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_announcing(|| {}).await
    }

    /// [`Application::run_until_stopped`], calling `started` once the server has started its workers
    /// (which it logs on its first poll): a line printed there comes after the start-up logs.
    pub async fn run_announcing(self, started: impl FnOnce()) -> std::io::Result<()> {
        let mut server = std::pin::pin!(self.server);
        let first =
            std::future::poll_fn(|context| std::task::Poll::Ready(server.as_mut().poll(context)))
                .await;
        started();
        match first {
            std::task::Poll::Ready(result) => result?,
            std::task::Poll::Pending => server.await?,
        }
        let deadline = tokio::time::Instant::now() + self.shutdown_drain;
        while self.journal.backlog().entries > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = self.journal.backlog();
        if left.entries > 0 {
            tracing::warn!(
                entries = left.entries,
                "shutting down with callbacks still in the journal; they drain at the next start"
            );
        } else {
            tracing::info!("journal drained");
        }
        // The chart's counts of this instance, while MongoDB is still there to take them.
        if let Err(error) = self.callback_minutes.flush(self.store.database()).await {
            tracing::warn!(%error, "the last callbacks per minute were not added to MongoDB");
        }
        // Last, after the drain has written the events its callbacks call for: the sending lease goes back
        // once the attempts under way are recorded, so a restarted instance sends at once.
        if let Some((delivery, within)) = &self.delivery {
            delivery.stop(*within).await;
        }
        // Closed, not just abandoned: the process exits without dropping what still holds it, and an
        // unclosed file reads as a crash to the next reader (`journal status` refused it).
        if !self.journal.close(Duration::from_secs(2)) {
            tracing::warn!("the journal was still being read at exit; the next start checks it");
        }
        Ok(())
    }
}

/// Resolves at the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            tracing::error!(%error, "SIGTERM cannot be handled; Ctrl-C still can");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
