//! The set of Socket Mode connections the bot holds, one "slot" per
//! configured connection (or, for a fleet member, per fleet slot it holds:
//! the count follows the fleet agent, and a slot given up closes its
//! connection at once).
//!
//! Each slot keeps one connection up. When Slack asks for a refresh
//! (`warning`, `refresh_requested`), when the connection goes stale, or when
//! the configuration is reloaded, the slot opens the new connection first and
//! closes the old one only once the new one said hello, so there is never a
//! gap. A connection that is simply lost is reopened with exponential backoff
//! and jitter, never sooner than a `Retry-After`. Bad credentials and
//! `link_disabled` end the pool: retrying cannot fix them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::envelope::DisconnectReason;
use super::handoff::Handoff;
use super::socket::{self, ConnHandle, OpenError, Signal};
use super::web::SlackWeb;
use super::web::WebError;
use crate::backoff::Backoff;
use crate::health::Health;

/// What the pool needs of the live settings; each new generation sent on
/// the watch channel replaces every connection, make-before-break.
pub(crate) trait PoolSettings: Send + Sync + 'static {
    /// The Web API client holding this generation's tokens.
    fn web(&self) -> &SlackWeb;
    /// How many connections to hold.
    fn connections(&self) -> usize;
    /// The first and the longest reconnect delay.
    fn backoff(&self) -> (Duration, Duration);
}

/// The live settings, as the pool sees them.
type SettingsRx<S> = watch::Receiver<Arc<S>>;

/// How long the WebSocket handshake plus `hello` may take.
const HELLO_TIMEOUT: Duration = Duration::from_secs(15);
/// A connection that lived this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Why the pool stopped for good.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolFatal {
    /// Slack refused the app token.
    #[error("Slack refused the app-level token: {0}")]
    Auth(WebError),
    /// Slack disabled Socket Mode for the app.
    #[error("Slack disabled this app's Socket Mode link (link_disabled): turn Socket Mode back on under the app's Settings → Socket Mode, then restart")]
    LinkDisabled,
}

/// What the slots share.
#[derive(Debug)]
pub(crate) struct PoolCtx {
    /// Health, written by the connections.
    pub(crate) health: Arc<Health>,
    /// Where acknowledged envelopes go.
    pub(crate) handoff: Arc<Handoff>,
    /// The next connection's number.
    next_id: AtomicU64,
    /// For a fleet member: how many slots it holds, instead of the
    /// configured number of connections.
    held: Option<watch::Receiver<usize>>,
}

impl PoolCtx {
    /// A context handing envelopes over through `handoff`.
    pub(crate) fn new(
        health: Arc<Health>,
        handoff: Arc<Handoff>,
        held: Option<watch::Receiver<usize>>,
    ) -> Arc<PoolCtx> {
        Arc::new(PoolCtx {
            health,
            handoff,
            next_id: AtomicU64::new(1),
            held,
        })
    }
}

/// Holds `[slack].connections` connections until `stop` turns true, or a fatal error.
pub(crate) async fn run<S: PoolSettings>(
    settings: SettingsRx<S>,
    ctx: Arc<PoolCtx>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), PoolFatal> {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(usize, Result<(), PoolFatal>)>();
    let mut slots: Vec<watch::Sender<bool>> = Vec::new();
    let mut watch_settings = settings.clone();
    let mut held = ctx.held.clone();
    let result = loop {
        let configured = watch_settings.borrow_and_update().connections();
        let want = match held.as_mut() {
            Some(h) => *h.borrow_and_update(),
            None => configured,
        };
        while slots.len() < want {
            let idx = slots.len();
            let (slot_stop_tx, slot_stop_rx) = watch::channel(false);
            slots.push(slot_stop_tx);
            let (s, c, d) = (settings.clone(), ctx.clone(), done_tx.clone());
            tokio::spawn(async move {
                let r = slot(idx, s, c, slot_stop_rx).await;
                let _ = d.send((idx, r));
            });
        }
        while slots.len() > want {
            if let Some(s) = slots.pop() {
                let _ = s.send(true);
            }
        }
        tokio::select! {
            r = watch_settings.changed() => if r.is_err() { break Ok(()) },
            r = async { held.as_mut().expect("guarded").changed().await }, if held.is_some() => {
                if r.is_err() { held = None; }
            }
            Some((idx, r)) = done_rx.recv() => {
                if let Err(e) = r {
                    break Err(e);
                }
                tracing::debug!(slot = idx, "connection slot stopped");
            }
            _ = stop.changed() => break Ok(()),
        }
    };
    for s in &slots {
        let _ = s.send(true);
    }
    result
}

async fn slot<S: PoolSettings>(
    idx: usize,
    mut settings: SettingsRx<S>,
    ctx: Arc<PoolCtx>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), PoolFatal> {
    let (initial, max) = settings.borrow().backoff();
    let mut backoff = Backoff::new(initial, max);
    let mut current: Option<ConnHandle> = None;
    loop {
        let mut conn = match current.take() {
            Some(c) => c,
            None => match open_retrying(idx, &mut settings, &ctx, &mut backoff, &mut stop).await? {
                Some(c) => c,
                None => return Ok(()),
            },
        };
        let signal = tokio::select! {
            s = conn.signals.recv() => s.unwrap_or_else(|| Signal::Ended("connection task ended".into())),
            r = settings.changed() => {
                if r.is_err() { conn.close(); return Ok(()); }
                Signal::Reloaded
            }
            _ = stop.changed() => { conn.close(); return Ok(()); }
        };
        if conn.opened.elapsed() >= STABLE_AFTER {
            backoff.reset();
        }
        match signal {
            Signal::Disconnect(DisconnectReason::LinkDisabled) => {
                conn.close();
                return Err(PoolFatal::LinkDisabled);
            }
            Signal::Disconnect(_) | Signal::Stale(_) | Signal::Reloaded => {
                match &signal {
                    Signal::Stale(age) => tracing::warn!(
                        conn = conn.id,
                        "no frame from Slack for {}; replacing the connection (half-open link?)",
                        crate::clock::short(*age)
                    ),
                    Signal::Disconnect(reason) => tracing::info!(
                        conn = conn.id,
                        "Slack asked for a new connection ({reason}); the new one opens before the old one closes"
                    ),
                    _ => tracing::info!(
                        conn = conn.id,
                        "configuration reloaded: replacing the connection; the new one opens before the old one closes"
                    ),
                }
                let next = open_retrying(idx, &mut settings, &ctx, &mut backoff, &mut stop).await;
                tracing::debug!(conn = conn.id, "closing the replaced connection");
                conn.close();
                match next? {
                    Some(c) => current = Some(c),
                    None => return Ok(()),
                }
            }
            Signal::Ended(why) => {
                tracing::warn!(conn = conn.id, "Socket Mode connection lost: {why}");
                let young = conn.opened.elapsed() < STABLE_AFTER;
                drop(conn);
                if young {
                    let d = backoff.next_delay();
                    tracing::info!(slot = idx, "reconnecting in {}", crate::clock::short(d));
                    if sleep_or_stop(d, &mut stop).await {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Opens a connection, retrying with backoff. `Ok(None)` when asked to stop.
async fn open_retrying<S: PoolSettings>(
    idx: usize,
    settings: &mut SettingsRx<S>,
    ctx: &PoolCtx,
    backoff: &mut Backoff,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<ConnHandle>, PoolFatal> {
    loop {
        let live = settings.borrow_and_update().clone();
        let started = Instant::now();
        let res = tokio::select! {
            r = socket::open(live.web(), HELLO_TIMEOUT) => r,
            _ = stop.changed() => return Ok(None),
        };
        match res {
            Ok((ws, hello)) => {
                let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    conn = id,
                    slot = idx,
                    host = hello.host.as_deref().unwrap_or("?"),
                    "Socket Mode connection open in {} ms (Slack counts {})",
                    started.elapsed().as_millis(),
                    hello
                        .num_connections
                        .map(|n| crate::text::count(n, "connection", "connections"))
                        .unwrap_or_else(|| "? connections".into())
                );
                return Ok(Some(socket::spawn(
                    id,
                    ws,
                    ctx.health.clone(),
                    ctx.handoff.clone(),
                )));
            }
            Err(OpenError::Web(e)) if e.is_auth_failure() => return Err(PoolFatal::Auth(e)),
            Err(OpenError::LinkDisabled) => return Err(PoolFatal::LinkDisabled),
            Err(e) => {
                let d = backoff.next_delay_at_least(e.retry_after());
                tracing::warn!(
                    slot = idx,
                    "cannot connect to Slack: {e}; retrying in {}",
                    crate::clock::short(d)
                );
                if sleep_or_stop(d, stop).await {
                    return Ok(None);
                }
            }
        }
    }
}

/// Sleeps; true when stopped instead.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.changed() => true,
    }
}
