//! The heartbeat file and the one rule that judges it.
//!
//! The running bot rewrites a small JSON record every second (atomically, see
//! `files`), so the supervisor, `status` and `ensure` can all judge its health
//! cheaply and without talking to it. A bot that is stopped or hung stops
//! rewriting it; a bot that is deaf keeps rewriting it with an old frame time.
//! [`hang_reason`] is the only place that turns a heartbeat into a verdict.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A bot that has not connected this long after its start is stuck, even
/// with a short heartbeat timeout: connecting may take several retries.
pub(crate) const STARTUP_GRACE: Duration = Duration::from_secs(30);

/// One heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Heartbeat {
    /// The bot process (the worker, under a supervisor), to tell its record
    /// from a predecessor's.
    pub(crate) pid: u32,
    /// `run` or `daemon`, for `status`.
    pub(crate) mode: String,
    /// When the bot process started (ms since the epoch), for uptime.
    pub(crate) started_ms: u64,
    /// When this record was written (ms since the epoch): a frozen bot stops
    /// rewriting it.
    pub(crate) written_ms: u64,
    /// When any connection last received a frame from Slack (ms since the
    /// epoch): a deaf bot's stops moving.
    pub(crate) last_frame_ms: Option<u64>,
    /// When the last envelope arrived (ms since the epoch), for `status`.
    pub(crate) last_event_ms: Option<u64>,
    /// Live connections, for `status`.
    pub(crate) connections: usize,
    /// Connections heard from within the heartbeat timeout, for `status`.
    pub(crate) fresh: usize,
    /// The heartbeat timeout in force (ms), so readers judge by the bot's own.
    pub(crate) heartbeat_timeout_ms: u64,
    /// Whether acknowledged envelopes are recorded in the inbox first.
    #[serde(default)]
    pub(crate) durable: bool,
}

/// Why a bot counts as hung or deaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hang {
    /// Its heartbeat was last written this long ago: frozen or hung.
    Silent(Duration),
    /// It writes its heartbeat, but heard no frame from Slack for this long.
    Deaf(Duration),
    /// It never connected, this long after it started.
    NeverConnected(Duration),
    /// It never wrote a heartbeat, this long after it started.
    NoHeartbeat(Duration),
}

impl fmt::Display for Hang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |d: &Duration| format!("{:.0}s", d.as_secs_f64());
        match self {
            Hang::Silent(d) => write!(f, "its heartbeat was last written {} ago", s(d)),
            Hang::Deaf(d) => write!(f, "no frame from Slack for {}", s(d)),
            Hang::NeverConnected(d) => write!(f, "not connected to Slack after {}", s(d)),
            Hang::NoHeartbeat(d) => write!(f, "no heartbeat after {}", s(d)),
        }
    }
}

/// How long each kind of silence may last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// No frame from Slack for longer than this: deaf.
    pub(crate) deaf: Duration,
    /// The heartbeat not rewritten for longer than this: frozen. The file is
    /// rewritten every second, so a supervisor that must beat a watchdog
    /// may judge this sooner than deafness.
    pub(crate) silent: Duration,
}

impl Limits {
    /// The same limit for both.
    pub(crate) fn uniform(timeout: Duration) -> Limits {
        Limits {
            deaf: timeout,
            silent: timeout,
        }
    }
}

/// The hang rule. `hb` is the bot's latest heartbeat (already matched to the
/// bot's pid), `since_ms` when that bot started. A bot that is still starting
/// or connecting gets [`STARTUP_GRACE`] at least.
pub(crate) fn hang_reason(
    hb: Option<&Heartbeat>,
    since_ms: u64,
    now_ms: u64,
    limits: Limits,
) -> Option<Hang> {
    let age = |t: u64| Duration::from_millis(now_ms.saturating_sub(t));
    let grace = limits.deaf.max(STARTUP_GRACE);
    let Some(h) = hb else {
        let running = age(since_ms);
        return (running > grace).then_some(Hang::NoHeartbeat(running));
    };
    if age(h.written_ms) > limits.silent {
        return Some(Hang::Silent(age(h.written_ms)));
    }
    match h.last_frame_ms {
        Some(t) if age(t) > limits.deaf => Some(Hang::Deaf(age(t))),
        Some(_) => None,
        None => {
            let running = age(since_ms.max(h.started_ms));
            (running > grace).then_some(Hang::NeverConnected(running))
        }
    }
}

impl Heartbeat {
    /// Healthy by its own timeout: connected, heard from Slack, and written
    /// recently.
    pub(crate) fn is_fresh(&self, now_ms: u64) -> bool {
        let timeout = Duration::from_millis(self.heartbeat_timeout_ms);
        self.last_frame_ms.is_some()
            && hang_reason(
                Some(self),
                self.started_ms,
                now_ms,
                Limits::uniform(timeout),
            )
            .is_none()
    }

    /// Age of the newest Slack frame, in seconds.
    pub(crate) fn last_frame_age_s(&self, now_ms: u64) -> Option<f64> {
        self.last_frame_ms
            .map(|t| now_ms.saturating_sub(t) as f64 / 1000.0)
    }
}

/// The heartbeat file that belongs to a pidfile: same directory, `.health`.
pub(crate) fn path_for(pidfile: &Path) -> PathBuf {
    pidfile.with_extension("health")
}

/// Writes `hb` to `path` atomically.
pub(crate) fn write(path: &Path, hb: &Heartbeat) -> std::io::Result<()> {
    crate::files::write_json(path, hb)
}

/// Reads the heartbeat at `path`; `None` if there is none or it does not parse.
pub(crate) fn read(path: &Path) -> Option<Heartbeat> {
    crate::files::read_json(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000_000;

    fn hb(written_ago: u64, frame_ago: Option<u64>) -> Heartbeat {
        Heartbeat {
            pid: 1,
            mode: "run".into(),
            started_ms: NOW - 100_000,
            written_ms: NOW - written_ago,
            last_frame_ms: frame_ago.map(|a| NOW - a),
            last_event_ms: None,
            connections: 1,
            fresh: 1,
            heartbeat_timeout_ms: 1000,
            durable: true,
        }
    }

    #[test]
    fn the_hang_rule_row_by_row() {
        let t = Duration::from_secs(1);
        let since = NOW - 100_000;
        let rows: &[(Option<Heartbeat>, u64, Option<Hang>)] = &[
            // healthy: written and heard within the timeout
            (Some(hb(100, Some(100))), since, None),
            // deaf: written, but no frame for 2.5 s
            (
                Some(hb(100, Some(2500))),
                since,
                Some(Hang::Deaf(Duration::from_millis(2500))),
            ),
            // frozen: not written for 2.5 s
            (
                Some(hb(2500, Some(100))),
                since,
                Some(Hang::Silent(Duration::from_millis(2500))),
            ),
            // just started, no heartbeat yet
            (None, NOW - 500, None),
            // no heartbeat yet, within the startup grace
            (None, NOW - 20_000, None),
            // no heartbeat long after the start
            (
                None,
                NOW - 40_000,
                Some(Hang::NoHeartbeat(Duration::from_secs(40))),
            ),
            // never connected, within the startup grace
            (Some(hb(100, None)), NOW - 20_000, None),
        ];
        for (h, since, want) in rows {
            let mut h = h.clone();
            if let Some(h) = h.as_mut() {
                h.started_ms = *since;
            }
            assert_eq!(
                &hang_reason(h.as_ref(), *since, NOW, Limits::uniform(t)),
                want,
                "{h:?}"
            );
        }
        // never connected, past the grace
        let mut h = hb(100, None);
        h.started_ms = NOW - 40_000;
        assert_eq!(
            hang_reason(Some(&h), NOW - 40_000, NOW, Limits::uniform(t)),
            Some(Hang::NeverConnected(Duration::from_secs(40)))
        );
        // a supervisor racing a watchdog judges a frozen bot sooner than a deaf one
        let quick = Limits {
            deaf: Duration::from_secs(90),
            silent: Duration::from_secs(2),
        };
        assert_eq!(
            hang_reason(Some(&hb(2500, Some(100))), since, NOW, quick),
            Some(Hang::Silent(Duration::from_millis(2500)))
        );
        assert_eq!(
            hang_reason(Some(&hb(100, Some(60_000))), since, NOW, quick),
            None
        );
        assert_eq!(
            Hang::Deaf(Duration::from_millis(2500)).to_string(),
            "no frame from Slack for 2s"
        );
    }

    #[test]
    fn round_trip_and_freshness() {
        let dir = tempfile::tempdir().unwrap();
        let p = path_for(&dir.path().join("x.pid"));
        assert_eq!(p, dir.path().join("x.health"));
        let now = crate::clock::now_ms();
        let hb = Heartbeat {
            written_ms: now,
            last_frame_ms: Some(now - 500),
            started_ms: now - 10_000,
            ..hb(0, None)
        };
        write(&p, &hb).unwrap();
        let back = read(&p).unwrap();
        assert_eq!(back, hb);
        assert!(back.is_fresh(now));
        assert!(!back.is_fresh(now + 2000));
        std::fs::write(&p, "garbage").unwrap();
        assert!(read(&p).is_none());
    }
}
