//! A running bot as one host of a fleet (`[fleet]`): the store and the inbox
//! writer that share the fleet's PostgreSQL, the agent that keeps this
//! host's membership, slots and roles, the job runner, and what the agent
//! reports (work taken over from a dead host, jobs lost with one, fleet
//! announcements) turned into actions.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use crate::bot::BotCtx;
use crate::config::FleetConfig;
use crate::fleet::agent::{self, AgentCtx, LostHow, Report};
use crate::fleet::inbox::PgInbox;
use crate::fleet::pool::Pool;
use crate::fleet::store::FleetStore;
use crate::fleet::{schema, Db, FleetState};
use crate::health::Health;
use crate::settings::SettingsRx;
use crate::slack::web::OutgoingMessage;
use crate::store::outbox::NewMessage;
use crate::store::{SharedStore, Store};

/// This host's membership, before the bot runs.
#[derive(Debug)]
pub(crate) struct Member {
    /// What the fleet parts share with the bot.
    pub(crate) state: Arc<FleetState>,
    /// The database.
    pub(crate) db: Db,
    /// Connections for the bot's own queries.
    pub(crate) pool: Pool,
    /// The configuration.
    config: FleetConfig,
    /// The database was away at start: the agent recovers this host's rows.
    recover_own: AtomicBool,
    /// When this process started.
    started_ms: u64,
}

/// Reads `[fleet]`, connects and brings the schema up to date. A setting
/// that cannot work (a bad password, a missing database, a newer schema)
/// ends the start; a database that is away only degrades it.
pub(crate) async fn prepare(
    f: &FleetConfig,
    base_dir: Option<&Path>,
) -> Result<Member, crate::fleet::FleetError> {
    let db = Db::new(f, base_dir)?;
    let host = crate::fleet::host_name(f);
    let state = Arc::new(FleetState::new(host.clone()));
    let probe = db.clone();
    let h = host.clone();
    let r = tokio::task::spawn_blocking(move || {
        let mut c = probe.connect()?;
        schema::migrate(&probe, &mut c, &h)
    })
    .await
    .map_err(|e| crate::fleet::FleetError::Query {
        target: db.target().to_string(),
        why: format!("the start-up query's thread died: {e}"),
    })?;
    match r {
        Ok(_) => tracing::info!("a member of the fleet as {host}, through {}", db.target()),
        Err(e) if e.is_transient() => {
            state.set_db_up(false);
            tracing::warn!("{e}; starting as {host} on this host's own store, and joining the fleet once the database answers");
        }
        Err(e) => return Err(e),
    }
    Ok(Member {
        pool: Pool::new(db.clone()),
        state,
        db,
        config: f.clone(),
        recover_own: AtomicBool::new(false),
        started_ms: crate::clock::now_ms(),
    })
}

impl Member {
    /// The fleet's store, with this host's own `local` beside it.
    pub(crate) fn store(&self, local: Store) -> FleetStore {
        FleetStore::new(
            self.db.clone(),
            self.state.host.clone(),
            local,
            self.state.clone(),
        )
    }

    /// The socket thread's writer of the fleet's inbox.
    pub(crate) fn inbox_writer(&self) -> PgInbox {
        PgInbox::new(self.db.clone(), self.state.host.clone(), self.state.clone())
    }

    /// The database was away at start: the agent hands this host's
    /// unanswered rows to the dispatcher once it is back.
    pub(crate) fn recover_later(&self) {
        self.recover_own.store(true, Ordering::Relaxed);
    }
}

/// What the running bot lends its fleet parts.
#[derive(Debug)]
pub(crate) struct Parts {
    /// The bot's health.
    pub(crate) health: Arc<Health>,
    /// The live settings.
    pub(crate) settings: SettingsRx,
    /// The store thread.
    pub(crate) store: SharedStore,
    /// The bot, for jobs.
    pub(crate) ctx: Arc<BotCtx>,
    /// To the dispatcher: rows taken over from a host that went away.
    pub(crate) adopted: mpsc::UnboundedSender<Vec<i64>>,
    /// Rings the outbox deliverer.
    pub(crate) wake: Arc<Notify>,
    /// Set when the bot stops (for the threads).
    pub(crate) stop: Arc<AtomicBool>,
    /// Turns true when the bot stops (for the tasks).
    pub(crate) stop_rx: watch::Receiver<bool>,
}

/// Starts the agent, the job runner and the upkeep; returns the agent's
/// thread, which leaves the fleet cleanly when `stop` is set.
pub(crate) fn start(m: &Member, p: Parts) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (reports_tx, reports_rx) = mpsc::unbounded_channel();
    let config = p.settings.borrow().config.clone();
    let mut commands: Vec<String> = config.commands.iter().map(|c| c.name.clone()).collect();
    commands.sort();
    let agent = agent::spawn(AgentCtx {
        db: m.db.clone(),
        state: m.state.clone(),
        health: p.health.clone(),
        lease: m.config.lease,
        connections: usize::from(m.config.connections),
        tags: m.config.tags.clone(),
        commands,
        announce: config.announce.channel.clone(),
        reports: reports_tx,
        stop: p.stop.clone(),
        recover_own: m.recover_own.load(Ordering::Relaxed),
        started_ms: m.started_ms,
    })?;

    // Upkeep: what waited for the database moves on.
    let store = p.store.clone();
    let mut stop = p.stop_rx.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stop.changed() => break,
            }
            if let Err(e) = store.call(|s| s.tick()).await {
                tracing::debug!("fleet upkeep: {e}");
            }
        }
    });

    // The job runner: woken by NOTIFY on this host's channel.
    let jobs_wake = Arc::new(Notify::new());
    crate::fleet::jobs::listen(
        m.db.clone(),
        m.state.host.clone(),
        jobs_wake.clone(),
        p.wake.clone(),
        p.stop.clone(),
    )?;
    tokio::spawn(crate::bot::jobs::runner(
        p.ctx.clone(),
        m.pool.clone(),
        m.state.clone(),
        jobs_wake,
        p.stop_rx.clone(),
    ));

    tokio::spawn(reports(reports_rx, p, m.state.host.clone()));
    Ok(agent)
}

/// Turns the agent's reports into actions.
async fn reports(mut rx: mpsc::UnboundedReceiver<Report>, p: Parts, host: String) {
    while let Some(r) = rx.recv().await {
        match r {
            Report::Adopted(ids) => {
                let _ = p.adopted.send(ids);
            }
            Report::Lost(job, how) => {
                let text = match how {
                    LostHow::HostGone => format!(
                        ":warning: *{}* went away while running `{}`; it was not run elsewhere.",
                        job.target, job.command
                    ),
                    LostHow::Restarted => format!(
                        ":warning: `{}` on *{host}* was interrupted by a restart; run it again if you still need it.",
                        job.command
                    ),
                };
                tracing::warn!(job = job.id, command = %job.command, "{}", text.trim_start_matches(":warning: "));
                let web = p.settings.borrow().web.clone();
                let msg = OutgoingMessage {
                    channel: job.channel.clone(),
                    text,
                    thread_ts: job.thread_ts.clone(),
                    idempotency_key: Some(format!("sbd-lost-{}", job.id)),
                };
                if let Err(e) = web.post_message(&msg).await {
                    tracing::error!("cannot report a lost job in {}: {e}", job.channel);
                }
            }
            Report::Announce(text) => {
                let Some(channel) = p.settings.borrow().config.announce.channel.clone() else {
                    continue;
                };
                let msg = NewMessage {
                    channel,
                    thread_ts: None,
                    text,
                };
                match p
                    .store
                    .call(move |s| s.enqueue(&[msg], crate::clock::now_ms()))
                    .await
                {
                    Ok(_) => p.wake.notify_one(),
                    Err(e) => tracing::error!("cannot queue a fleet announcement: {e}"),
                }
            }
        }
    }
}
