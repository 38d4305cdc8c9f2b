//! The heartbeat file: a small JSON record the running bot rewrites every
//! second (atomically: write a temporary file, then rename), so the daemon's
//! supervisor, `status` and `ensure` can all judge its health cheaply and
//! without talking to it. A bot that is stopped or hung stops rewriting it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The bot process (the worker, in daemon mode).
    pub pid: u32,
    /// `run` or `daemon`.
    pub mode: String,
    /// When the bot process started (ms since the epoch).
    pub started_ms: u64,
    /// When this record was written (ms since the epoch).
    pub written_ms: u64,
    /// When any connection last received a frame from Slack (ms since the epoch).
    pub last_frame_ms: Option<u64>,
    /// When the last envelope arrived (ms since the epoch).
    pub last_event_ms: Option<u64>,
    /// Live connections.
    pub connections: usize,
    /// Connections heard from within the heartbeat timeout.
    pub fresh: usize,
    /// The heartbeat timeout in force (ms).
    pub heartbeat_timeout_ms: u64,
}

pub use crate::clock::now_ms;

/// Wall-clock milliseconds of something that happened `age` ago.
pub fn ms_ago(age: Duration) -> u64 {
    now_ms().saturating_sub(age.as_millis() as u64)
}

impl Heartbeat {
    /// True when the bot heard from Slack, and wrote this, within its timeout.
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        let limit = self.heartbeat_timeout_ms;
        let written_recently = now_ms.saturating_sub(self.written_ms) <= limit;
        let heard_recently = self
            .last_frame_ms
            .is_some_and(|t| now_ms.saturating_sub(t) <= limit);
        written_recently && heard_recently
    }

    /// Age of the newest Slack frame, in seconds.
    pub fn last_frame_age_s(&self, now_ms: u64) -> Option<f64> {
        self.last_frame_ms
            .map(|t| now_ms.saturating_sub(t) as f64 / 1000.0)
    }
}

/// The heartbeat file that belongs to a pidfile: same directory, `.health`.
pub fn path_for(pidfile: &Path) -> PathBuf {
    pidfile.with_extension("health")
}

/// Writes `hb` to `path` atomically.
pub fn write(path: &Path, hb: &Heartbeat) -> std::io::Result<()> {
    let tmp = path.with_extension("health.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(hb).map_err(std::io::Error::other)?)?;
    }
    std::fs::rename(&tmp, path)
}

/// Reads the heartbeat at `path`; `None` if there is none or it does not parse.
pub fn read(path: &Path) -> Option<Heartbeat> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_freshness() {
        let dir = std::env::temp_dir().join(format!("slackbotd-hb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = path_for(&dir.join("x.pid"));
        assert_eq!(p, dir.join("x.health"));
        let now = now_ms();
        let hb = Heartbeat {
            pid: 1,
            mode: "run".into(),
            started_ms: now - 10_000,
            written_ms: now,
            last_frame_ms: Some(now - 500),
            last_event_ms: None,
            connections: 2,
            fresh: 2,
            heartbeat_timeout_ms: 1000,
        };
        write(&p, &hb).unwrap();
        let back = read(&p).unwrap();
        assert_eq!(back, hb);
        assert!(back.is_fresh(now));
        assert!(!back.is_fresh(now + 2000));
        std::fs::write(&p, "garbage").unwrap();
        assert!(read(&p).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
