//! One Slack app for a whole fleet of hosts, with their shared state in
//! PostgreSQL (`[fleet]`). Without that section nothing here runs.
//!
//! - `db`: the connection, its password, and failures in words;
//! - `schema`: the tables and their migrations, under an advisory lock;
//! - `store`: the [`Backend`](crate::store::Backend) the bot uses:
//!   de-duplication, the inbox and the outbox in PostgreSQL, this host's
//!   history in SQLite, and a local fallback while the database is away;
//! - `inbox`: the socket thread's writer of the shared inbox;
//! - `slots`: the rule that spreads the fleet's Socket Mode connections;
//! - `agent`: this host's thread that keeps its membership, its slots and
//!   its roles leased, and takes over what a dead host left;
//! - `jobs`: commands addressed to hosts, through a table, each run at most
//!   once;
//! - `hosts`: the members, for `status --fleet`, `help` and the router.
//!
//! Leases are judged by the database's clock: a host's share of the work
//! (its connections, its claimed jobs and notifications) is its own until
//! its lease runs out, and taken over after.

pub(crate) mod agent;
pub(crate) mod db;
pub(crate) mod hosts;
pub(crate) mod inbox;
pub(crate) mod jobs;
pub(crate) mod pool;
pub(crate) mod schema;
pub(crate) mod slots;
pub(crate) mod store;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::watch;

pub(crate) use db::{Db, FleetError};

/// What this host's fleet parts tell the rest of the bot, shared.
#[derive(Debug)]
pub(crate) struct FleetState {
    /// This host's name in the fleet.
    pub(crate) host: String,
    /// Whether the database answered last time anyone asked.
    db_up: AtomicBool,
    /// How many Socket Mode connection slots this host holds.
    slots: watch::Sender<usize>,
    /// Whether this host delivers the fleet's outbox now.
    outbox_leader: watch::Sender<bool>,
    /// Jobs this host is running, for the members table.
    pub(crate) jobs_running: AtomicU64,
    /// Notifications waiting in this host's own outbox for the database.
    pub(crate) local_outbox: AtomicU64,
}

impl FleetState {
    /// The state of host `host`, before anything is known.
    pub(crate) fn new(host: String) -> FleetState {
        FleetState {
            host,
            db_up: AtomicBool::new(true),
            slots: watch::Sender::new(0),
            outbox_leader: watch::Sender::new(false),
            jobs_running: AtomicU64::new(0),
            local_outbox: AtomicU64::new(0),
        }
    }

    /// Records whether the database answered; true when that changed.
    pub(crate) fn set_db_up(&self, up: bool) -> bool {
        self.db_up.swap(up, Ordering::Relaxed) != up
    }

    /// Whether the database answered last time.
    pub(crate) fn db_up(&self) -> bool {
        self.db_up.load(Ordering::Relaxed)
    }

    /// The slots held, as the pool follows them.
    pub(crate) fn slots(&self) -> watch::Receiver<usize> {
        self.slots.subscribe()
    }

    /// How many slots this host holds now.
    pub(crate) fn slots_held(&self) -> usize {
        *self.slots.borrow()
    }

    pub(crate) fn set_slots(&self, n: usize) {
        self.slots.send_if_modified(|v| {
            let changed = *v != n;
            *v = n;
            changed
        });
    }

    /// Whether this host delivers the outbox, as the deliverer follows it.
    pub(crate) fn outbox_leader(&self) -> watch::Receiver<bool> {
        self.outbox_leader.subscribe()
    }

    pub(crate) fn set_outbox_leader(&self, v: bool) {
        self.outbox_leader.send_if_modified(|x| {
            let changed = *x != v;
            *x = v;
            changed
        });
    }
}

/// This host's name in the fleet: `[fleet].host`, else the hostname,
/// lowercased, up to its first dot.
pub(crate) fn host_name(f: &crate::config::FleetConfig) -> String {
    f.host.clone().unwrap_or_else(|| {
        crate::host::hostname()
            .split('.')
            .next()
            .unwrap_or("host")
            .to_lowercase()
    })
}
