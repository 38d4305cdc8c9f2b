//! The running bot, assembled: authenticate, open the store, start the
//! Socket Mode thread and the bot's tasks, then serve until SIGTERM or SIGINT
//! (reloading on SIGHUP), and stop gracefully.
//!
//! The worker process of `run` and `daemon` calls [`serve_blocking`]; the
//! core never asks which mode it is in: the mode only chooses the notifier
//! and the pidfile its files sit beside. Health goes out through `monitor`,
//! notifications come in through `wake`.
//!
//! Two runtimes: the Socket Mode connections run on a thread and
//! current-thread runtime of their own, at the default priority, so acks
//! never wait behind handler work; handlers, replies and the outbox run on
//! the main runtime, whose threads yield the CPU (nice 5).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch, Notify};

use crate::backoff::Backoff;
use crate::bot::builtins::BotInfo;
use crate::bot::dedup::{Dedup, Seen};
use crate::bot::router::Router;
use crate::bot::{self, BotCtx};
use crate::config::SuperviseConfig;
use crate::exit::{ExitCode, HasExitCode};
use crate::health::Health;
use crate::monitor::Monitor;
use crate::settings::{Settings, SettingsRx};
use crate::slack::handoff::Handoff;
use crate::slack::pool::{self, PoolCtx, PoolFatal};
use crate::slack::web::{Identity, SlackWeb, WebError};
use crate::store::{Durability, SharedStore, Store};
use crate::supervise::heartbeat;
use crate::systemd::Notifier;

/// How the mode wants the bot run.
#[derive(Debug, Clone)]
pub(crate) struct ServiceOpts {
    /// `run` or `daemon`, for `status`.
    pub(crate) mode: &'static str,
    /// Whoever supervises this process.
    pub(crate) notifier: Notifier,
    /// The pidfile; the heartbeat and the wake socket sit beside it.
    pub(crate) pidfile: PathBuf,
}

/// Why the bot stopped other than by request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceError {
    /// The bot token does not work.
    #[error("Slack refused the bot token: {0}; put a valid Bot User OAuth Token (xoxb-…) in place, then start again")]
    Auth(WebError),
    /// The connection pool hit something retrying cannot fix.
    #[error(transparent)]
    Fatal(#[from] PoolFatal),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The metrics cannot be exported as configured.
    #[error(transparent)]
    Metrics(#[from] crate::exporter::ExportError),
    /// The fleet's database cannot work as configured.
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    /// A task or thread could not start, or died.
    #[error("internal error: {0}")]
    Internal(String),
}

impl HasExitCode for ServiceError {
    fn exit_code(&self) -> ExitCode {
        match self {
            ServiceError::Auth(_) | ServiceError::Fatal(_) | ServiceError::Metrics(_) => {
                ExitCode::CONFIG
            }
            ServiceError::Signals(_) => ExitCode::OSERR,
            ServiceError::Fleet(e) => e.exit_code(),
            ServiceError::Internal(_) => ExitCode::SOFTWARE,
        }
    }
}

/// Runs the bot on a fresh runtime until it stops, and logs how it ended.
pub(crate) fn serve_blocking(
    settings: Settings,
    opts: ServiceOpts,
    stopped: &str,
) -> Result<(), ServiceError> {
    let rt = runtime()?;
    let result = rt.block_on(serve(settings, opts));
    rt.shutdown_timeout(Duration::from_secs(1));
    match &result {
        Ok(()) => tracing::info!("{stopped}"),
        Err(e) => tracing::error!("{stopped}: {e}"),
    }
    result
}

/// The main runtime: two worker threads at nice 5, so that under load the
/// Socket Mode thread (default priority) wins the CPU and acks go first.
fn runtime() -> Result<tokio::runtime::Runtime, ServiceError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        // SAFETY: setpriority on the calling thread only; no memory effects.
        .on_thread_start(|| unsafe {
            libc::setpriority(
                libc::PRIO_PROCESS,
                libc::syscall(libc::SYS_gettid) as libc::id_t,
                5,
            );
        })
        .build()
        .map_err(|e| ServiceError::Internal(format!("cannot start the async runtime: {e}")))
}

/// Runs the Socket Mode connections on a thread and runtime of their own.
fn spawn_socket_thread(
    settings: SettingsRx,
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
async fn serve(settings: Settings, opts: ServiceOpts) -> Result<(), ServiceError> {
    let mut signals = Signals::install()?;
    let mut hup = signal(SignalKind::hangup()).map_err(ServiceError::Signals)?;
    let notifier = opts.notifier;
    // Under a supervisor, a SIGTERM may mean that it died (PDEATHSIG): then
    // this run did not end cleanly, whatever the signal says.
    let supervisor = matches!(notifier, Notifier::Supervisor(_)).then(nix::unistd::getppid);
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
    let state_dir = settings.config.daemon.state_dir.clone();
    let (settings_tx, settings_rx) = watch::channel(Arc::new(settings));
    let settings_tx = Arc::new(settings_tx);

    // A fleet member: a setting that cannot work ends the start (78); a
    // database that is away only degrades it.
    let member = match &settings_rx.borrow().config.fleet {
        Some(f) => {
            Some(crate::member::prepare(f, settings_rx.borrow().config.base_dir.as_deref()).await?)
        }
        None => None,
    };
    let (store, run_id) = open_store(&state_dir, opts.mode, member.as_ref()).await;
    let health = Arc::new(Health::new(sup.heartbeat_timeout));
    // The inbox: its own connection for the socket thread, and what the
    // previous process left unanswered, handled before anything new.
    let (inbox_ok, recover_through, recover_since) = match &store {
        Some(s) => match s
            .call(|s| {
                let last = s.inbox_last_row()?;
                Ok((last, s.inbox_oldest_received(last)?))
            })
            .await
        {
            Ok((last, since)) => (true, last, since.unwrap_or_else(crate::clock::now_ms)),
            // The fleet's database away at start: the agent hands over
            // what the last process left once it is back.
            Err(_) if member.is_some() => {
                if let Some(m) = &member {
                    m.recover_later();
                }
                (true, 0, crate::clock::now_ms())
            }
            Err(e) => {
                tracing::error!("{e}; events are acknowledged before they are recorded");
                (false, 0, 0)
            }
        },
        None => (false, 0, 0),
    };
    let inbox_writer: Option<Box<dyn crate::store::inbox::InboxWriter>> = match (&member, inbox_ok)
    {
        (Some(m), _) => Some(Box::new(m.inbox_writer())),
        (None, true) => {
            match crate::store::inbox::Inbox::open(&state_dir, crate::slack::handoff::INBOX_WAIT) {
                Ok(i) => Some(Box::new(i)),
                Err(e) => {
                    tracing::error!("{e}; events are acknowledged before they are recorded");
                    None
                }
            }
        }
        (None, false) => None,
    };
    let (inbound_tx, inbound_rx) = mpsc::channel(crate::slack::handoff::QUEUE);
    let overflow = Arc::new(Notify::new());
    let handoff = Arc::new(Handoff::new(
        inbound_tx,
        inbox_writer,
        overflow.clone(),
        health.clone(),
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let fleet_ctx = member.as_ref().map(|m| {
        Arc::new(crate::bot::fleet::FleetCtx::new(
            m.pool.clone(),
            m.state.host.clone(),
        ))
    });
    let mut info = BotInfo::new(opts.mode, Some(health.clone()));
    info.store = store.clone();
    if let Some(m) = &member {
        info.host = m.state.host.clone();
    }
    info.fleet = fleet_ctx.clone();
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
        store: store.clone(),
        handoff: handoff.clone(),
        recovery: crate::bot::recovery::Recovery::new(recover_since),
        fleet: fleet_ctx,
    });
    let wake = Arc::new(Notify::new());
    let wake_path = crate::wake::path_for(&opts.pidfile);
    if let Some(store) = &store {
        crate::wake::listen(&wake_path, wake.clone());
        tokio::spawn(crate::bot::deliver::run(
            store.clone(),
            settings_rx.clone(),
            wake.clone(),
            stop_rx.clone(),
            member.as_ref().map(|m| m.state.outbox_leader()),
        ));
        tokio::spawn(crate::bot::announce::run(
            store.clone(),
            settings_rx.clone(),
            wake.clone(),
            health.subscribe(),
            // A fleet member is named as the fleet knows it.
            member
                .as_ref()
                .map_or_else(crate::host::hostname, |m| m.state.host.clone()),
        ));
    }
    // Before the first connection: a bad [metrics] fails the start.
    let m = settings_rx.borrow().config.metrics.clone();
    crate::exporter::start(
        m.listen,
        m.textfile,
        crate::exporter::Sources {
            health: health.clone(),
            store: store.clone(),
            fleet: member.as_ref().map(|m| m.state.clone()),
        },
    )
    .await?;
    let mut pool_task = spawn_socket_thread(
        settings_rx.clone(),
        PoolCtx::new(
            health.clone(),
            handoff.clone(),
            member.as_ref().map(|m| m.state.slots()),
        ),
        stop_rx.clone(),
    )?;
    let (adopted_tx, adopted_rx) = mpsc::unbounded_channel();
    let fleet_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let agent = match (&member, &store) {
        (Some(m), Some(store)) => Some(
            crate::member::start(
                m,
                crate::member::Parts {
                    health: health.clone(),
                    settings: settings_rx.clone(),
                    store: store.clone(),
                    ctx: ctx.clone(),
                    adopted: adopted_tx,
                    wake: wake.clone(),
                    stop: fleet_stop.clone(),
                    stop_rx: stop_rx.clone(),
                },
            )
            .map_err(|e| {
                ServiceError::Internal(format!("cannot start the fleet's threads: {e}"))
            })?,
        ),
        _ => None,
    };
    let bot_task = tokio::spawn(bot::serve(
        inbound_rx,
        ctx.clone(),
        recover_through,
        overflow,
        adopted_rx,
        stop_rx,
        sup.stop_timeout,
    ));

    let hb_path = heartbeat::path_for(&opts.pidfile);
    let mut monitor = Monitor::new(
        notifier,
        health.clone(),
        opts.mode,
        hb_path.clone(),
        settings_rx.clone(),
    );
    let mut hellos = health.subscribe();
    let mut ticker = tokio::time::interval(Monitor::tick());
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
    handoff.tidy().await;
    fleet_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(a) = agent {
        let _ = tokio::task::spawn_blocking(move || a.join()).await;
    }
    let _ = std::fs::remove_file(&hb_path);
    let _ = std::fs::remove_file(&wake_path);
    let orphaned = supervisor.is_some_and(|p| nix::unistd::getppid() != p);
    if orphaned {
        tracing::warn!("the supervisor is gone: this run ends uncleanly");
    }
    if let (Some(store), Some(run_id)) = (&store, run_id) {
        let clean = outcome.is_ok() && !orphaned;
        let ended = store
            .call(move |s| s.end_run(run_id, clean, crate::clock::now_ms()))
            .await;
        if let Err(e) = ended {
            tracing::warn!("cannot record the end of this run: {e}");
        }
    }
    outcome
}

/// Opens the state store (the fleet's, for a member) and records this run;
/// without a store the bot still answers (de-duplicating in memory) but
/// delivers no notifications.
async fn open_store(
    state_dir: &Path,
    mode: &'static str,
    member: Option<&crate::member::Member>,
) -> (Option<SharedStore>, Option<i64>) {
    let store = match Store::open(state_dir, Durability::Normal).and_then(|s| {
        let path = s.path().to_path_buf();
        let backend: Box<dyn crate::store::Backend> = match member {
            Some(m) => Box::new(m.store(s)),
            None => Box::new(s),
        };
        SharedStore::spawn(backend, &path).map_err(|e| crate::store::StoreError::Open {
            path: Store::path_in(state_dir),
            detail: format!("cannot start its thread: {e}"),
        })
    }) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}; the bot runs without it: no notifications are delivered and de-duplication is in memory only");
            return (None, None);
        }
    };
    let pid = std::process::id();
    let run = store
        .call(move |s| s.begin_run(pid, mode, crate::clock::now_ms()))
        .await;
    let run_id = match run {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!("cannot record this run: {e}");
            None
        }
    };
    (Some(store), run_id)
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
