//! What the running instance looks like from the outside, read the one way
//! `status` and `ensure` both need: the lock holder (liveness is the lock,
//! never a pid read from a file), the supervisor's record when the holder is
//! a supervisor, and the heartbeat of the process that is the bot.

use std::path::Path;

use super::heartbeat::{self, Hang, Heartbeat};
use super::lock;
use super::record::{self, SupervisorRecord};

/// The instance behind one pidfile.
#[derive(Debug, Clone, Default)]
pub(crate) struct Instance {
    /// Who holds the lock (pid 0 when its file names none); none when nobody.
    pub(crate) holder: Option<u32>,
    /// The pid a pidfile nobody holds still names: it died without a clean stop.
    pub(crate) stale_pid: Option<u32>,
    /// The holder's record, when the holder is a supervisor.
    pub(crate) record: Option<SupervisorRecord>,
    /// The heartbeat of the bot process (the worker under a supervisor).
    pub(crate) heartbeat: Option<Heartbeat>,
}

impl Instance {
    /// Reads the instance behind `pidfile`.
    pub(crate) fn read(pidfile: &Path) -> std::io::Result<Instance> {
        let Some(holder) = lock::holder(pidfile)? else {
            return Ok(Instance {
                stale_pid: lock::stale_pid(pidfile),
                ..Instance::default()
            });
        };
        let record = record::read(&record::path_for(pidfile)).filter(|r| r.pid == holder);
        let bot = match &record {
            Some(r) => r.worker_pid,
            None => Some(holder),
        };
        let heartbeat =
            heartbeat::read(&heartbeat::path_for(pidfile)).filter(|h| Some(h.pid) == bot);
        Ok(Instance {
            holder: Some(holder),
            stale_pid: None,
            record,
            heartbeat,
        })
    }

    /// `run` or `daemon`, when running.
    pub(crate) fn mode(&self) -> Option<&str> {
        self.holder?;
        match (&self.record, &self.heartbeat) {
            (Some(r), _) => Some(r.mode.as_str()),
            (None, Some(h)) => Some(h.mode.as_str()),
            (None, None) => Some("run"),
        }
    }

    /// The bot process: the worker under a supervisor, else the holder.
    pub(crate) fn bot_pid(&self) -> Option<u32> {
        match &self.record {
            Some(r) => r.worker_pid,
            None => self.holder,
        }
    }

    /// When the bot process started, as well as anyone can tell.
    pub(crate) fn bot_since_ms(&self, now_ms: u64) -> u64 {
        self.record
            .as_ref()
            .and_then(|r| r.worker_started_ms.or(Some(r.started_ms)))
            .or(self.heartbeat.as_ref().map(|h| h.started_ms))
            .unwrap_or(now_ms)
    }

    /// When the instance (the supervisor, or the bot itself) started.
    pub(crate) fn started_ms(&self) -> Option<u64> {
        match (&self.record, &self.heartbeat) {
            (Some(r), _) => Some(r.started_ms),
            (None, Some(h)) => Some(h.started_ms),
            _ => None,
        }
    }

    /// Healthy: running, connected, and heard from Slack within its timeout.
    pub(crate) fn healthy(&self, now_ms: u64) -> bool {
        self.holder.is_some() && self.heartbeat.as_ref().is_some_and(|h| h.is_fresh(now_ms))
    }

    /// The hang rule applied with `timeout`, when running.
    pub(crate) fn hang(&self, now_ms: u64, timeout: std::time::Duration) -> Option<Hang> {
        self.holder?;
        heartbeat::hang_reason(
            self.heartbeat.as_ref(),
            self.bot_since_ms(now_ms),
            now_ms,
            heartbeat::Limits::uniform(timeout),
        )
    }
}
