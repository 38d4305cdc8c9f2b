//! The running bot, whatever mode started it: authenticate, hold the Socket
//! Mode connections, hand envelopes to the bot, report health, reload on
//! SIGHUP and stop gracefully on SIGTERM or SIGINT.
//!
//! `run` calls this directly; in daemon mode the supervised worker does. The
//! core never asks which mode it is in: the mode only chooses the notifier
//! and where the heartbeat goes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::bot::builtins::{human, BotInfo};
use crate::bot::dedup::{Dedup, Seen};
use crate::bot::outbox::SharedStore;
use crate::bot::router::Router;
use crate::bot::{self, BotCtx};
use crate::config::SuperviseConfig;
use crate::exit::{ExitCode, HasExitCode};
use crate::health::{Health, HealthSnapshot};
use crate::settings::Settings;
use crate::slack::backoff::Backoff;
use crate::slack::pool::{self, PoolCtx, PoolFatal};
use crate::slack::web::{Identity, SlackWeb, WebError};
use crate::store::{Durability, Store};
use crate::supervise::heartbeat::{self, Heartbeat};
use crate::systemd::{self, Notifier};

/// How the mode wants the bot run.
#[derive(Debug, Clone)]
pub struct ServiceOpts {
    /// `run` or `daemon`, for `status`.
    pub mode: &'static str,
    /// systemd notifications (a no-op outside systemd).
    pub notifier: Notifier,
    /// Where to write the heartbeat.
    pub heartbeat: Option<PathBuf>,
    /// The socket `notify` pokes to wake the outbox.
    pub wake: Option<PathBuf>,
}

/// Why the bot stopped other than by request.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The bot token does not work.
    #[error("Slack refused the bot token: {0}; put a valid Bot User OAuth Token (xoxb-…) in place, then start again")]
    Auth(WebError),
    /// The connection pool hit something retrying cannot fix.
    #[error(transparent)]
    Fatal(#[from] PoolFatal),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// A task died unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}

impl HasExitCode for ServiceError {
    fn exit_code(&self) -> ExitCode {
        match self {
            ServiceError::Auth(_) | ServiceError::Fatal(_) => ExitCode::CONFIG,
            ServiceError::Signals(_) => ExitCode::OSERR,
            ServiceError::Internal(_) => ExitCode::SOFTWARE,
        }
    }
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, ServiceError> {
        let s = |k| signal(k).map_err(ServiceError::Signals);
        Ok(Signals {
            term: s(SignalKind::terminate())?,
            int: s(SignalKind::interrupt())?,
        })
    }

    /// The next SIGTERM or SIGINT, by name.
    async fn stop(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// `auth.test` until it answers; bad credentials end it at once.
async fn authenticate(
    web: &SlackWeb,
    sup: &SuperviseConfig,
    notifier: &Notifier,
) -> Result<Identity, ServiceError> {
    let mut backoff = Backoff::new(sup.backoff_initial, sup.backoff_max);
    loop {
        match web.auth_test().await {
            Ok(id) => return Ok(id),
            Err(e) if e.is_auth_failure() => return Err(ServiceError::Auth(e)),
            Err(e) => {
                let d = backoff.next_delay_at_least(e.retry_after());
                tracing::warn!(
                    "cannot check the bot token yet: {e}; retrying in {}",
                    crate::clock::short(d)
                );
                notifier.status(&format!("Cannot reach Slack ({e}); retrying"));
                tokio::time::sleep(d).await;
            }
        }
    }
}

/// Runs the bot until a stop signal (`Ok`) or a fatal error.
pub async fn serve(settings: Settings, opts: ServiceOpts) -> Result<(), ServiceError> {
    let mut signals = Signals::install()?;
    let mut hup = signal(SignalKind::hangup()).map_err(ServiceError::Signals)?;
    let notifier = opts.notifier;
    let sup = settings.config.supervise.clone();
    notifier.status("Checking the bot token with Slack (auth.test)");
    let identity = tokio::select! {
        r = authenticate(&settings.web, &sup, &notifier) => r?,
        sig = signals.stop() => {
            tracing::info!("{sig} before connecting; stopping");
            return Ok(());
        }
    };
    tracing::info!(
        "the bot is @{} ({}) in workspace {} ({})",
        identity.user.as_deref().unwrap_or("?"),
        identity.user_id,
        identity.team,
        identity.team_id
    );
    let mut settings = settings;
    settings.identity = identity;
    let path = settings.path.clone();
    let retention = settings.config.bot.dedup_retention;
    let (settings_tx, settings_rx) = watch::channel(Arc::new(settings));
    let settings_tx = Arc::new(settings_tx);

    let state_dir = settings_rx.borrow().config.daemon.state_dir.clone();
    let (store, run_id) = open_store(&state_dir, opts.mode);
    let health = Arc::new(Health::new(sup.heartbeat_timeout));
    let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut info = BotInfo::new(opts.mode, Some(health.clone()));
    info.store = store.clone();
    let dedup = match &store {
        Some(s) => Seen::Persistent {
            store: s.clone(),
            retention,
        },
        None => Seen::Memory(Dedup::new(retention)),
    };
    let ctx = Arc::new(BotCtx {
        router: Router::new(Arc::new(info)),
        dedup,
        settings: settings_rx.clone(),
    });
    let wake = Arc::new(tokio::sync::Notify::new());
    if let Some(store) = &store {
        if let Some(path) = &opts.wake {
            listen_for_wakes(path, wake.clone());
        }
        tokio::spawn(crate::bot::outbox::run(
            store.clone(),
            settings_rx.clone(),
            wake.clone(),
            stop_rx.clone(),
        ));
        tokio::spawn(crate::bot::announce::run(
            store.clone(),
            settings_rx.clone(),
            wake.clone(),
            health.subscribe(),
        ));
    }
    let mut pool_task = spawn_socket_thread(
        settings_rx.clone(),
        PoolCtx::new(health.clone(), inbound_tx),
        stop_rx.clone(),
    )?;
    let bot_task = tokio::spawn(bot::serve(
        inbound_rx,
        ctx.clone(),
        stop_rx,
        sup.stop_timeout,
    ));

    let mut monitor = Monitor::new(
        notifier,
        health.clone(),
        opts.mode,
        opts.heartbeat.clone(),
        settings_rx.clone(),
    );
    let mut hellos = health.subscribe();
    let tick = systemd::watchdog_interval()
        .map(|w| (w / 3).min(Duration::from_secs(1)))
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_millis(50));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut pool_done = false;
    // A reload runs beside the loop (its auth.test may take a while), so the
    // watchdog and SIGTERM are served meanwhile; SIGHUPs during one queue one more.
    let mut reloading: Option<tokio::task::JoinHandle<()>> = None;
    let mut reload_again = false;
    let outcome: Result<(), ServiceError> = loop {
        tokio::select! {
            _ = hellos.changed() => monitor.update(),
            _ = ticker.tick() => monitor.update(),
            r = &mut pool_task => {
                pool_done = true;
                break match r {
                    Ok(Ok(())) => Err(ServiceError::Internal("the connection pool stopped".into())),
                    Ok(Err(fatal)) => Err(fatal.into()),
                    Err(_) => Err(ServiceError::Internal("the Socket Mode thread died".into())),
                };
            }
            sig = signals.stop() => {
                tracing::info!("{sig} received: stopping gracefully");
                break Ok(());
            }
            _ = hup.recv() => {
                if reloading.is_some() {
                    reload_again = true;
                } else {
                    reloading = Some(tokio::spawn(reload(path.clone(), settings_tx.clone(), health.clone(), notifier)));
                }
            }
            _ = async { if let Some(h) = reloading.as_mut() { let _ = h.await; } }, if reloading.is_some() => {
                reloading = None;
                if std::mem::take(&mut reload_again) {
                    reloading = Some(tokio::spawn(reload(path.clone(), settings_tx.clone(), health.clone(), notifier)));
                }
            }
        }
    };
    if let Some(h) = reloading {
        h.abort();
    }

    let stopping = match &outcome {
        Ok(()) => {
            "Stopping: closing the Slack connections and finishing requests in progress".to_string()
        }
        Err(e) => format!("Stopping after a fatal error: {e}"),
    };
    notifier.stopping(&stopping);
    let _ = stop_tx.send(true);
    let grace = sup.stop_timeout + Duration::from_secs(1);
    let finish = async {
        if !pool_done {
            let _ = tokio::time::timeout(Duration::from_secs(3), &mut pool_task).await;
        }
        let _ = tokio::time::timeout(grace, bot_task).await;
    };
    tokio::select! {
        _ = finish => {}
        sig = signals.stop() => tracing::warn!("{sig} again: stopping now, abandoning requests in progress"),
    }
    if let Some(p) = &opts.heartbeat {
        let _ = std::fs::remove_file(p);
    }
    if let Some(p) = &opts.wake {
        let _ = std::fs::remove_file(p);
    }
    if let (Some(store), Some(run_id)) = (&store, run_id) {
        if let Err(e) =
            crate::bot::outbox::lock(store).end_run(run_id, outcome.is_ok(), crate::store::now_ms())
        {
            tracing::warn!("cannot record the end of this run: {e}");
        }
    }
    outcome
}

/// Opens the state store and records this run; without a store the bot
/// still answers (de-duplicating in memory) but delivers no notifications.
fn open_store(state_dir: &std::path::Path, mode: &str) -> (Option<SharedStore>, Option<i64>) {
    match Store::open(state_dir, Durability::Normal) {
        Ok(mut s) => {
            let run = s.begin_run(std::process::id(), mode, crate::store::now_ms());
            let run_id = match run {
                Ok(r) => Some(r.run_id),
                Err(e) => {
                    tracing::warn!("cannot record this run: {e}");
                    None
                }
            };
            (Some(Arc::new(std::sync::Mutex::new(s))), run_id)
        }
        Err(e) => {
            tracing::error!("{e}; the bot runs without it: no notifications are delivered and de-duplication is in memory only");
            (None, None)
        }
    }
}

/// Wakes the outbox whenever `slackbotd notify` sends a datagram to `path`.
fn listen_for_wakes(path: &std::path::Path, wake: Arc<tokio::sync::Notify>) {
    let _ = std::fs::remove_file(path);
    match tokio::net::UnixDatagram::bind(path) {
        Ok(sock) => {
            tokio::spawn(async move {
                let mut buf = [0u8; 16];
                while sock.recv(&mut buf).await.is_ok() {
                    wake.notify_one();
                }
            });
        }
        Err(e) => tracing::warn!(
            "cannot listen on {} ({e}); the outbox is checked every 2s instead",
            path.display()
        ),
    }
}

/// Runs the Socket Mode connections on a thread and runtime of their own, so
/// acknowledging envelopes never waits behind handler work on the main
/// runtime's workers.
fn spawn_socket_thread(
    settings: crate::settings::SettingsRx,
    ctx: Arc<PoolCtx>,
    stop: watch::Receiver<bool>,
) -> Result<tokio::sync::oneshot::Receiver<Result<(), PoolFatal>>, ServiceError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            ServiceError::Internal(format!("cannot start the Socket Mode runtime: {e}"))
        })?;
    std::thread::Builder::new()
        .name("slackbotd-socket".into())
        .spawn(move || {
            let result = rt.block_on(pool::run(settings, ctx, stop));
            let _ = tx.send(result);
            rt.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(|e| ServiceError::Internal(format!("cannot start the Socket Mode thread: {e}")))?;
    Ok(rx)
}

/// Re-reads the configuration and tokens; replaces the connections without a gap.
async fn reload(
    path: PathBuf,
    tx: Arc<watch::Sender<Arc<Settings>>>,
    health: Arc<Health>,
    notifier: Notifier,
) {
    let path = path.as_path();
    notifier.reloading();
    tracing::info!("SIGHUP received: reloading {}", path.display());
    match Settings::load(path) {
        Err(e) => tracing::error!("reload failed, keeping the running configuration: {e}"),
        Ok(mut new) => match new.web.auth_test().await {
            Ok(id) => {
                new.identity = id;
                health.set_heartbeat_timeout(new.config.supervise.heartbeat_timeout);
                tx.send_replace(Arc::new(new));
                tracing::info!("configuration reloaded; each connection is replaced by a new one before it closes");
            }
            Err(e) if e.is_auth_failure() => {
                tracing::error!("reload refused, keeping the running configuration: the new bot token does not work: {e}")
            }
            Err(e) => {
                tracing::warn!("cannot verify the new bot token now ({e}); applying the new configuration anyway");
                new.identity = tx.borrow().identity.clone();
                health.set_heartbeat_timeout(new.config.supervise.heartbeat_timeout);
                tx.send_replace(Arc::new(new));
            }
        },
    }
    // READY=1 ends the reload for systemd, but never before the first hello.
    if health.snapshot().ever_connected {
        notifier.ready("Configuration reloaded");
    }
}

/// Turns health into READY=1, WATCHDOG=1, STATUS= lines and the heartbeat file.
struct Monitor {
    notifier: Notifier,
    health: Arc<Health>,
    mode: &'static str,
    heartbeat: Option<PathBuf>,
    settings: crate::settings::SettingsRx,
    ready: bool,
    last_status: String,
    was_healthy: bool,
    last_tick: std::time::Instant,
}

impl Monitor {
    fn new(
        notifier: Notifier,
        health: Arc<Health>,
        mode: &'static str,
        heartbeat: Option<PathBuf>,
        settings: crate::settings::SettingsRx,
    ) -> Monitor {
        Monitor {
            notifier,
            health,
            mode,
            heartbeat,
            settings,
            ready: false,
            last_status: String::new(),
            was_healthy: false,
            last_tick: std::time::Instant::now(),
        }
    }

    fn status_line(&self, s: &HealthSnapshot) -> String {
        let want = self.settings.borrow().config.slack.connections;
        if !s.ever_connected {
            "Connecting to Slack…".to_string()
        } else if s.healthy() {
            format!(
                "Connected to Slack: {} of {want} connections healthy; {} events received",
                s.fresh, s.events
            )
        } else if s.connections == 0 {
            "Unhealthy: no connection to Slack; reconnecting".to_string()
        } else {
            format!(
                "Unhealthy: no frame from Slack for {}; replacing the connections",
                s.freshest_frame_age
                    .map(human)
                    .unwrap_or_else(|| "a while".into())
            )
        }
    }

    fn update(&mut self) {
        let lag = self.last_tick.elapsed();
        self.last_tick = std::time::Instant::now();
        if lag > Duration::from_secs(5) {
            tracing::warn!("the event loop was unresponsive for {}", human(lag));
        }
        let s = self.health.snapshot();
        let status = self.status_line(&s);
        if !self.ready && s.ever_connected {
            self.ready = true;
            tracing::info!("ready: connected to Slack");
            self.notifier.ready(&status);
            self.last_status = status.clone();
            self.was_healthy = true;
        }
        let healthy = s.healthy();
        if healthy {
            self.notifier.watchdog();
        }
        if self.ready && healthy != self.was_healthy {
            if healthy {
                tracing::info!("healthy again");
            } else {
                tracing::warn!("unhealthy: {status}; the watchdog is no longer fed");
            }
        }
        self.was_healthy = healthy;
        if status != self.last_status {
            self.notifier.status(&status);
            self.last_status = status;
        }
        if let Some(path) = &self.heartbeat {
            let hb = Heartbeat {
                pid: std::process::id(),
                mode: self.mode.to_string(),
                started_ms: heartbeat::ms_ago(s.uptime),
                written_ms: heartbeat::now_ms(),
                last_frame_ms: s.freshest_frame_age.map(heartbeat::ms_ago),
                last_event_ms: s.last_event_age.map(heartbeat::ms_ago),
                connections: s.connections,
                fresh: s.fresh,
                heartbeat_timeout_ms: self.health.heartbeat_timeout().as_millis() as u64,
            };
            if let Err(e) = heartbeat::write(path, &hb) {
                tracing::warn!("cannot write the heartbeat {}: {e}", path.display());
            }
        }
    }
}
