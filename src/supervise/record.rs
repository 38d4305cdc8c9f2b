//! The supervisor's record: who supervises, since when, which worker runs
//! now, and how many restarts it made. Current state only, written atomically
//! next to the pidfile for `status` and `ensure`; the history of exits, with
//! their causes and downtimes, lives in the state store.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The supervisor's current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SupervisorRecord {
    /// The supervisor (the lock holder), to tell its record from a
    /// predecessor's.
    pub(crate) pid: u32,
    /// `run` or `daemon`, for `status`.
    #[serde(default = "daemon")]
    pub(crate) mode: String,
    /// When it started (ms since the epoch), for `status`.
    pub(crate) started_ms: u64,
    /// The current worker, which writes the heartbeat; none while restarting.
    pub(crate) worker_pid: Option<u32>,
    /// When the current worker started, so a hang is judged from there.
    pub(crate) worker_started_ms: Option<u64>,
    /// Restarts since the supervisor started.
    pub(crate) restarts: u64,
}

fn daemon() -> String {
    "daemon".to_string()
}

/// The record that belongs to a pidfile: same directory, `.supervisor`.
pub(crate) fn path_for(pidfile: &Path) -> PathBuf {
    pidfile.with_extension("supervisor")
}

/// Writes the record atomically.
pub(crate) fn write(path: &Path, r: &SupervisorRecord) -> std::io::Result<()> {
    crate::files::write_json(path, r)
}

/// Reads the record, if there is a readable one.
pub(crate) fn read(path: &Path) -> Option<SupervisorRecord> {
    crate::files::read_json(path)
}
