//! The supervisor's record: its own pid and start, the current worker, and
//! every restart (when, why, how long the bot was down). Written atomically
//! next to the pidfile, so `status` and the restart announcement can read it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How many past restarts are kept.
pub const HISTORY: usize = 100;

/// One worker ending and what followed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// When the worker ended (ms since the epoch).
    pub at_ms: u64,
    /// In words: "killed by signal 9 (SIGKILL)", "exit code 3", "hung: …".
    pub cause: String,
    /// Its exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Whether the supervisor killed it for not sending heartbeats.
    pub hang: bool,
    /// How long it had run (ms).
    pub lifetime_ms: u64,
    /// From its end to the next worker's hello (ms), once known.
    pub downtime_ms: Option<u64>,
}

/// The whole record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SupervisorRecord {
    /// The supervisor (the lock holder).
    pub pid: u32,
    /// When it started (ms since the epoch).
    pub started_ms: u64,
    /// The current worker.
    pub worker_pid: Option<u32>,
    /// When the current worker started.
    pub worker_started_ms: Option<u64>,
    /// Restarts since the supervisor started.
    pub restarts: u64,
    /// Past worker endings, oldest first, at most [`HISTORY`].
    pub history: Vec<ExitRecord>,
}

impl SupervisorRecord {
    /// The most recent worker ending.
    pub fn last_exit(&self) -> Option<&ExitRecord> {
        self.history.last()
    }

    /// Adds an ending, dropping the oldest beyond [`HISTORY`].
    pub fn push(&mut self, e: ExitRecord) {
        self.history.push(e);
        if self.history.len() > HISTORY {
            self.history.remove(0);
        }
    }
}

/// The record that belongs to a pidfile: same directory, `.supervisor`.
pub fn path_for(pidfile: &Path) -> PathBuf {
    pidfile.with_extension("supervisor")
}

/// Writes the record atomically.
pub fn write(path: &Path, r: &SupervisorRecord) -> std::io::Result<()> {
    let tmp = path.with_extension("supervisor.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

/// Reads the record, if there is a readable one.
pub fn read(path: &Path) -> Option<SupervisorRecord> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}
