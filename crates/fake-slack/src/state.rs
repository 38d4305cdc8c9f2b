//! The state shared by the listeners, the socket tasks and the public handle:
//! one lock around everything, a condition variable signalled on every change,
//! and the optional event log.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::runtime::Handle;
use tokio::sync::mpsc::UnboundedSender;

use crate::envelope::Kind;
use crate::faults::Faults;
use crate::ids::TsClock;
use crate::options::Options;
use crate::snapshot::Snapshot;

/// What a connection's task is asked to do.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Send a text frame.
    Text(String),
    /// Send an envelope; its delivery's `sent_at` becomes the moment it is written.
    Envelope { text: String, envelope_id: String },
    /// Send a binary frame.
    Binary(Vec<u8>),
    /// Send a `disconnect` frame with this reason, then close after the grace period.
    Disconnect(String),
    /// Close the TCP connection at once, without a close frame.
    Drop,
    /// Go silent: stop reading and writing, keep the socket open.
    HalfOpen,
}

/// How a connection may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// Envelopes may be routed here.
    Live,
    /// Told to disconnect or being dropped: no new envelopes.
    Closing,
    /// Silent on purpose.
    HalfOpen,
}

/// An open connection's mailbox.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    pub(crate) tx: UnboundedSender<Outbound>,
    pub(crate) link: Link,
}

/// One logical envelope, across its redeliveries.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) kind: Kind,
    pub(crate) event_id: Option<String>,
    pub(crate) payload: Value,
    pub(crate) accepts_response_payload: bool,
    pub(crate) retry_attempt: u32,
    /// The envelope id of the current (or next) attempt.
    pub(crate) envelope_id: String,
    /// Index in `snap.deliveries` of the latest attempt.
    pub(crate) last_delivery: Option<usize>,
    pub(crate) acked: bool,
}

/// Where a slash command's response URL posts go.
#[derive(Debug)]
pub(crate) struct CommandRoute {
    pub(crate) secret: String,
    pub(crate) channel: String,
}

/// Everything behind the lock.
#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub(crate) snap: Snapshot,
    pub(crate) handles: BTreeMap<u64, ConnHandle>,
    pub(crate) messages: Vec<Message>,
    /// For each entry of `snap.deliveries`, the index of its message.
    pub(crate) delivery_message: Vec<usize>,
    pub(crate) by_envelope: HashMap<String, usize>,
    /// Messages waiting for a live connection.
    pub(crate) queue: VecDeque<usize>,
    pub(crate) faults: Faults,
    /// WebSocket tickets handed out and not used yet.
    pub(crate) tickets: HashSet<String>,
    pub(crate) commands: Vec<CommandRoute>,
    pub(crate) idempotency_keys: HashSet<String>,
    pub(crate) clock: TsClock,
    pub(crate) workspace: crate::workspace::Workspace,
}

impl Inner {
    /// A live connection chosen at random, as Slack gives each envelope to
    /// any one of an app's connections.
    pub(crate) fn pick_live(&mut self) -> Option<u64> {
        let live: Vec<u64> = self
            .handles
            .iter()
            .filter(|(_, h)| h.link == Link::Live)
            .map(|(id, _)| *id)
            .collect();
        if live.is_empty() {
            return None;
        }
        Some(live[rand::random_range(0..live.len())])
    }

    pub(crate) fn is_live(&self, id: u64) -> bool {
        self.handles.get(&id).map(|h| h.link) == Some(Link::Live)
    }

    pub(crate) fn live_count(&self) -> usize {
        self.handles
            .values()
            .filter(|h| h.link == Link::Live)
            .count()
    }

    /// The snapshot record of connection `id` (ids start at 1).
    pub(crate) fn conn_mut(&mut self, id: u64) -> Option<&mut crate::snapshot::Conn> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.snap.connections.get_mut(index)
    }
}

/// The shared state and the fixed facts about this fake.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) opts: Options,
    pub(crate) started: Instant,
    pub(crate) api_port: u16,
    pub(crate) ws_port: u16,
    /// Spawns timers from any thread.
    pub(crate) runtime: Handle,
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl Shared {
    pub(crate) fn new(opts: Options, api_port: u16, ws_port: u16, runtime: Handle) -> Self {
        Shared {
            opts,
            started: Instant::now(),
            api_port,
            ws_port,
            runtime,
            inner: Mutex::new(Inner::default()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the state and wakes every waiter.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let result = f(&mut self.lock());
        self.changed.notify_all();
        result
    }

    /// Reads the state.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Inner) -> R) -> R {
        f(&self.lock())
    }

    /// Calls `check` now and after every change until it answers or time runs out.
    pub(crate) fn wait_for<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&Snapshot) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lock();
        loop {
            if let Some(found) = check(&guard.snap) {
                return Some(found);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            guard = match self.changed.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Writes one line on stderr when event logging is on.
    pub(crate) fn log(&self, line: impl FnOnce() -> String) {
        if self.opts.log_events {
            let t = self.started.elapsed().as_secs_f64();
            eprintln!("fake-slack {t:>10.3}s {}", line());
        }
    }

    pub(crate) fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/api", self.api_port)
    }

    /// Milliseconds from the fake's start to `at`, for JSON views.
    pub(crate) fn millis(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.started).as_micros() as f64 / 1000.0
    }
}
