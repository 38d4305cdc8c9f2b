//! `slackbotd status`: what runs, since when, how often it was restarted,
//! and whether it is healthy, read from the lock, the heartbeat file and the
//! supervisor's record; never from `kill -0`. Exit codes follow LSB: 0
//! running and healthy, 1 dead with a stale pidfile, 3 not running, 4
//! unknown, 150 running but unhealthy.

use serde_json::{json, Value};

use crate::bot::builtins::human;
use crate::cli::ConfigSource;
use crate::clock::{now_ms, rfc3339};
use crate::config::Config;
use crate::supervise::heartbeat::{self, Heartbeat};
use crate::supervise::lock;
use crate::supervise::record::{self, SupervisorRecord};

/// LSB: running and healthy.
pub const RUNNING: i32 = 0;
/// LSB: dead, but the pidfile names a pid.
pub const DEAD_STALE_PIDFILE: i32 = 1;
/// LSB: not running.
pub const NOT_RUNNING: i32 = 3;
/// LSB: unknown.
pub const UNKNOWN: i32 = 4;
/// Application range (150–199): running but unhealthy.
pub const UNHEALTHY: i32 = 150;

/// The facts `status` reports.
#[derive(Debug, Clone)]
pub struct Report {
    pub running: bool,
    pub healthy: bool,
    pub mode: Option<String>,
    pub pid: Option<u32>,
    pub stale_pid: Option<u32>,
    pub heartbeat: Option<Heartbeat>,
    pub record: Option<SupervisorRecord>,
    pub outbox: Option<crate::store::outbox::QueueStats>,
}

impl Report {
    /// Gathers the facts for a configuration.
    pub fn gather(config: &Config) -> std::io::Result<Report> {
        let pidfile = &config.daemon.pidfile;
        let holder = lock::holder(pidfile)?;
        let record = record::read(&record::path_for(pidfile));
        let outbox = match crate::store::Store::open_existing(&config.daemon.state_dir) {
            Some(Ok(mut s)) => s.queue_stats().ok(),
            _ => None,
        };
        let Some(pid) = holder else {
            return Ok(Report {
                running: false,
                healthy: false,
                mode: None,
                pid: None,
                stale_pid: lock::stale_pid(pidfile),
                heartbeat: None,
                record,
                outbox,
            });
        };
        let record = record.filter(|r| r.pid == pid);
        let mode = if record.is_some() { "daemon" } else { "run" };
        let bot_pid = match &record {
            Some(r) => r.worker_pid,
            None => Some(pid),
        };
        let heartbeat =
            heartbeat::read(&heartbeat::path_for(pidfile)).filter(|h| Some(h.pid) == bot_pid);
        let healthy = heartbeat.as_ref().is_some_and(|h| h.is_fresh(now_ms()));
        Ok(Report {
            running: true,
            healthy,
            mode: Some(mode.to_string()),
            pid: Some(pid),
            stale_pid: None,
            heartbeat,
            record,
            outbox,
        })
    }

    /// The LSB exit code.
    pub fn code(&self) -> i32 {
        match (self.running, self.healthy, self.stale_pid) {
            (true, true, _) => RUNNING,
            (true, false, _) => UNHEALTHY,
            (false, _, Some(_)) => DEAD_STALE_PIDFILE,
            (false, _, None) => NOT_RUNNING,
        }
    }

    /// The `--json` object.
    pub fn json(&self) -> Value {
        let now = now_ms();
        let hb = self.heartbeat.as_ref();
        let started = match (&self.record, hb) {
            (Some(r), _) => Some(r.started_ms),
            (None, Some(h)) => Some(h.started_ms),
            _ => None,
        };
        let last_exit = self.record.as_ref().and_then(|r| r.last_exit()).map(|e| {
            json!({
                "at": rfc3339(e.at_ms), "cause": e.cause, "code": e.code, "signal": e.signal,
                "hang": e.hang, "downtime_ms": e.downtime_ms,
            })
        });
        json!({
            "running": self.running,
            "healthy": self.healthy,
            "mode": self.mode,
            "pid": self.pid,
            "worker_pid": self.record.as_ref().and_then(|r| r.worker_pid),
            "started_at": started.map(rfc3339),
            "restarts": self.record.as_ref().map(|r| r.restarts),
            "last_exit": last_exit,
            "connections": hb.map(|h| h.connections),
            "fresh_connections": hb.map(|h| h.fresh),
            "last_event_age_s": hb.and_then(|h| h.last_event_ms).map(|t| now.saturating_sub(t) as f64 / 1000.0),
            "last_frame_age_s": hb.and_then(|h| h.last_frame_age_s(now)),
            "heartbeat_timeout_s": hb.map(|h| h.heartbeat_timeout_ms as f64 / 1000.0),
            "stale_pid": self.stale_pid,
            "outbox_depth": self.outbox.map(|q| q.depth),
            "outbox_oldest_age_s": self.outbox.and_then(|q| q.oldest_ms).map(|t| now.saturating_sub(t as u64) as f64 / 1000.0),
            "outbox_failed": self.outbox.map(|q| q.failed),
        })
    }

    /// The outbox line, if there is a store.
    fn outbox_line(&self, now: u64) -> Option<String> {
        let q = self.outbox?;
        let mut s = format!("\n  outbox: {} waiting", q.depth);
        if let Some(t) = q.oldest_ms {
            s.push_str(&format!(
                ", the oldest for {:.0}s",
                now.saturating_sub(t as u64) as f64 / 1000.0
            ));
        }
        if q.failed > 0 {
            s.push_str(&format!("; {} failed for good (see the log)", q.failed));
        }
        Some(s)
    }

    /// The text for people.
    pub fn text(&self) -> String {
        let mut s = self.text_without_outbox();
        if let Some(o) = self.outbox_line(now_ms()) {
            s.push_str(&o);
        }
        s
    }

    fn text_without_outbox(&self) -> String {
        let now = now_ms();
        if !self.running {
            return match self.stale_pid {
                Some(pid) => format!("slackbotd is not running, but its pidfile names pid {pid}: it died without a clean stop"),
                None => "slackbotd is not running".to_string(),
            };
        }
        let mode = self.mode.as_deref().unwrap_or("?");
        let mut s = format!(
            "slackbotd is running ({mode} mode, pid {}) and {}",
            self.pid.unwrap_or(0),
            if self.healthy { "healthy" } else { "UNHEALTHY" }
        );
        if let Some(r) = &self.record {
            s.push_str(&format!(
                "\n  supervisor since {} (up {})",
                rfc3339(r.started_ms),
                human(std::time::Duration::from_millis(
                    now.saturating_sub(r.started_ms)
                ))
            ));
            match r.worker_pid {
                Some(w) => s.push_str(&format!(", worker pid {w}")),
                None => s.push_str(", no worker right now (restarting)"),
            }
            s.push_str(&format!("\n  restarts: {}", r.restarts));
            if let Some(e) = r.last_exit() {
                s.push_str(&format!("; last at {}: {}", rfc3339(e.at_ms), e.cause));
                if let Some(d) = e.downtime_ms {
                    s.push_str(&format!(", down {d} ms"));
                }
            }
        }
        match &self.heartbeat {
            Some(h) => {
                s.push_str(&format!(
                    "\n  connections: {} live, {} fresh",
                    h.connections, h.fresh
                ));
                if let Some(age) = h.last_frame_age_s(now) {
                    s.push_str(&format!("; last frame from Slack {age:.1}s ago"));
                }
                if let Some(t) = h.last_event_ms {
                    s.push_str(&format!(
                        "; last event {:.0}s ago",
                        now.saturating_sub(t) as f64 / 1000.0
                    ));
                }
                if now.saturating_sub(h.written_ms) > h.heartbeat_timeout_ms {
                    s.push_str(&format!(
                        "\n  the heartbeat was last written {:.0}s ago: the bot is hung",
                        now.saturating_sub(h.written_ms) as f64 / 1000.0
                    ));
                }
            }
            None => s.push_str("\n  no heartbeat yet: still connecting to Slack"),
        }
        s
    }
}

/// Prints the status and returns the LSB exit code.
pub fn status(src: &ConfigSource, json: bool) -> i32 {
    let config = match Config::load(&src.path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("slackbotd: {e}");
            return UNKNOWN;
        }
    };
    match Report::gather(&config) {
        Ok(r) => {
            if json {
                println!("{}", r.json());
            } else {
                println!("{}", r.text());
            }
            r.code()
        }
        Err(e) => {
            eprintln!(
                "slackbotd: cannot read {}: {e}",
                config.daemon.pidfile.display()
            );
            if json {
                println!(
                    "{}",
                    json!({"running": null, "healthy": null, "error": e.to_string()})
                );
            }
            UNKNOWN
        }
    }
}
