//! The bot's health as one shared value: which Socket Mode connections are
//! live, when each last heard from Slack, and when the last event arrived.
//!
//! The watchdog, `STATUS=` lines, the `status` built-in and the heartbeat
//! file (written by `monitor` in every mode) all read this; only the socket
//! loops write it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Shared health of the running bot.
#[derive(Debug)]
pub(crate) struct Health {
    /// When the process started, for uptime.
    started: Instant,
    /// How long a connection may stay silent and still count as fresh;
    /// changed by a reload, read on every tick.
    heartbeat_timeout_ms: AtomicU64,
    /// What the connections report.
    inner: Mutex<Inner>,
    /// Bumped when a connection comes or goes, so the monitor reacts at once.
    changed: watch::Sender<u64>,
    /// Whether acknowledged envelopes are recorded in the inbox first.
    durable: AtomicBool,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each live connection and when it last received a frame.
    conns: HashMap<u64, Instant>,
    /// When the last envelope arrived.
    last_event: Option<Instant>,
    /// Envelopes received since start.
    events: u64,
    /// Hellos since start: readiness is the first one.
    hellos: u64,
    /// When this fleet member's agent last ran while it held no Socket Mode
    /// slot: such a host hears Slack through the fleet, not itself.
    fleet_alive: Option<Instant>,
}

/// A copy of the health at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HealthSnapshot {
    /// Connections that said hello and have not ended.
    pub(crate) connections: usize,
    /// Of those, how many heard from Slack within the heartbeat timeout.
    pub(crate) fresh: usize,
    /// Age of the newest frame on any connection.
    pub(crate) freshest_frame_age: Option<Duration>,
    /// Age of the last envelope (event, command, interaction).
    pub(crate) last_event_age: Option<Duration>,
    /// Envelopes received since start.
    pub(crate) events: u64,
    /// Time since the process started.
    pub(crate) uptime: Duration,
    /// Whether any connection has said hello yet.
    pub(crate) ever_connected: bool,
    /// Whether acknowledged envelopes are recorded in the inbox first
    /// (false: acknowledged first, and a crash may lose one).
    pub(crate) durable: bool,
    /// A fleet member without a slot, whose agent ran recently: healthy
    /// without a connection of its own.
    pub(crate) fleet_member: bool,
}

impl HealthSnapshot {
    /// Healthy means at least one connection heard from Slack recently (or,
    /// for a fleet member without a slot, that its fleet agent runs).
    pub(crate) fn healthy(&self) -> bool {
        self.fresh > 0 || self.fleet_member
    }
}

impl Health {
    /// A new health record with the given heartbeat timeout.
    pub(crate) fn new(heartbeat_timeout: Duration) -> Health {
        Health {
            started: Instant::now(),
            heartbeat_timeout_ms: AtomicU64::new(heartbeat_timeout.as_millis() as u64),
            inner: Mutex::new(Inner::default()),
            changed: watch::Sender::new(0),
            durable: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The heartbeat timeout in force.
    pub(crate) fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_timeout_ms.load(Ordering::Relaxed))
    }

    /// Changes the heartbeat timeout (on reload).
    pub(crate) fn set_heartbeat_timeout(&self, d: Duration) {
        self.heartbeat_timeout_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// A connection said hello.
    pub(crate) fn connected(&self, id: u64) {
        let mut g = self.lock();
        g.conns.insert(id, Instant::now());
        g.hellos += 1;
        drop(g);
        self.changed.send_modify(|n| *n += 1);
    }

    /// A connection received a frame (any frame: event, ping, pong).
    pub(crate) fn frame(&self, id: u64) {
        if let Some(t) = self.lock().conns.get_mut(&id) {
            *t = Instant::now();
        }
    }

    /// An envelope arrived.
    pub(crate) fn event(&self) {
        let mut g = self.lock();
        g.last_event = Some(Instant::now());
        g.events += 1;
    }

    /// This fleet member holds no Socket Mode slot and its agent just ran:
    /// it is a live member that hears Slack through the fleet.
    pub(crate) fn fleet_alive(&self) {
        let first = {
            let mut g = self.lock();
            let first = g.fleet_alive.is_none();
            g.fleet_alive = Some(Instant::now());
            first
        };
        if first {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// A connection ended.
    pub(crate) fn disconnected(&self, id: u64) {
        let removed = self.lock().conns.remove(&id).is_some();
        if removed {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Age of the newest frame on connection `id`, if it is live.
    pub(crate) fn frame_age(&self, id: u64) -> Option<Duration> {
        self.lock().conns.get(&id).map(Instant::elapsed)
    }

    /// The health now.
    pub(crate) fn snapshot(&self) -> HealthSnapshot {
        let timeout = self.heartbeat_timeout();
        let g = self.lock();
        let ages: Vec<Duration> = g.conns.values().map(Instant::elapsed).collect();
        let member = g.fleet_alive.map(|t| t.elapsed()).filter(|a| *a <= timeout);
        HealthSnapshot {
            connections: ages.len(),
            fresh: ages.iter().filter(|a| **a <= timeout).count(),
            freshest_frame_age: ages.iter().copied().chain(member).min(),
            last_event_age: g.last_event.map(|t| t.elapsed()),
            events: g.events,
            uptime: self.started.elapsed(),
            ever_connected: g.hellos > 0 || g.fleet_alive.is_some(),
            durable: self.durable.load(Ordering::Relaxed),
            fleet_member: ages.is_empty() && member.is_some(),
        }
    }

    /// Whether the inbox records acknowledged envelopes now.
    pub(crate) fn set_durable(&self, on: bool) {
        self.durable.store(on, Ordering::Relaxed);
    }

    /// Whether the inbox records acknowledged envelopes.
    pub(crate) fn durable(&self) -> bool {
        self.durable.load(Ordering::Relaxed)
    }

    /// A receiver that wakes whenever a connection comes or goes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_connections_are_not_fresh() {
        let h = Health::new(Duration::from_millis(30));
        assert!(!h.snapshot().healthy());
        h.connected(1);
        assert!(h.snapshot().healthy());
        std::thread::sleep(Duration::from_millis(50));
        let s = h.snapshot();
        assert_eq!((s.connections, s.fresh), (1, 0));
        h.frame(1);
        assert!(h.snapshot().healthy());
        h.disconnected(1);
        assert_eq!(h.snapshot().connections, 0);
    }
}
