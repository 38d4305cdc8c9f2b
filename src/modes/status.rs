//! `slackbotd status`: what runs, since when, how often it was restarted,
//! and whether it is healthy, read from the lock, the heartbeat file and the
//! supervisor's record; never from `kill -0`. Exit codes follow LSB: 0
//! running and healthy, 1 dead with a stale pidfile, 3 not running, 4
//! unknown, 150 running but unhealthy.

use serde_json::{json, Value};

use crate::cli::ConfigSource;
use crate::clock::{human, now_ms, rfc3339};
use crate::config::Config;
use crate::exit::ExitCode;
use crate::store::history::Exit;
use crate::store::outbox::QueueStats;
use crate::store::Store;
use crate::supervise::instance::Instance;
use crate::supervise::stopped::{self, StopMark};

/// The version of `status --json`'s shape.
pub(crate) const JSON_SCHEMA: u32 = 1;

/// LSB: running and healthy.
pub(crate) const RUNNING: i32 = 0;
/// LSB: dead, but the pidfile names a pid.
pub(crate) const DEAD_STALE_PIDFILE: i32 = 1;
/// LSB: not running.
pub(crate) const NOT_RUNNING: i32 = 3;
/// LSB: unknown.
pub(crate) const UNKNOWN: i32 = 4;
/// Application range (150–199): running but unhealthy.
pub(crate) const UNHEALTHY: i32 = 150;

/// The facts `status` reports.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// The lock holder, its record and its bot's heartbeat.
    pub(crate) instance: Instance,
    /// Healthy by the heartbeat's own timeout.
    pub(crate) healthy: bool,
    /// The most recent unclean exit, from the state store.
    pub(crate) last_exit: Option<Exit>,
    /// Queue depth and age, from the state store.
    pub(crate) outbox: Option<QueueStats>,
    /// Acknowledged events not yet answered, from the state store.
    pub(crate) inbox: Option<u64>,
    /// A deliberate stop that still holds.
    pub(crate) stopped: Option<StopMark>,
}

impl Report {
    /// Gathers the facts for a configuration.
    pub(crate) fn gather(config: &Config) -> std::io::Result<Report> {
        let instance = Instance::read(&config.daemon.pidfile)?;
        let (last_exit, outbox, inbox) = match Store::open_existing(&config.daemon.state_dir) {
            Some(Ok(mut s)) => (
                s.last_unclean_exit().ok().flatten(),
                s.queue_stats().ok(),
                crate::store::inbox::Inbox::path_in(&config.daemon.state_dir)
                    .exists()
                    .then(|| s.inbox().and_then(|i| i.depth()).ok())
                    .flatten(),
            ),
            _ => (None, None, None),
        };
        let stopped = stopped::read(&config.daemon.state_dir).filter(|m| m.holds(now_ms()));
        Ok(Report {
            stopped,
            healthy: instance.healthy(now_ms()),
            instance,
            last_exit,
            outbox,
            inbox,
        })
    }

    fn running(&self) -> bool {
        self.instance.holder.is_some()
    }

    /// The LSB exit code.
    pub(crate) fn code(&self) -> i32 {
        match (self.running(), self.healthy, self.instance.stale_pid) {
            (true, true, _) => RUNNING,
            (true, false, _) => UNHEALTHY,
            (false, _, Some(_)) => DEAD_STALE_PIDFILE,
            (false, _, None) => NOT_RUNNING,
        }
    }

    /// The `--json` object: a documented interface (INSTALL.md, "status
    /// --json"). Fields are only ever added, never renamed or removed; a
    /// change of meaning bumps [`JSON_SCHEMA`].
    pub(crate) fn json(&self) -> Value {
        let now = now_ms();
        let i = &self.instance;
        let hb = i.heartbeat.as_ref();
        let rec = i.record.as_ref();
        let last_exit = self.last_exit.as_ref().map(|e| {
            json!({
                "at": rfc3339(e.at_ms), "cause": e.cause, "code": e.code, "signal": e.signal,
                "hang": e.hang, "downtime_ms": e.downtime_ms,
            })
        });
        json!({
            "schema": JSON_SCHEMA,
            "running": self.running(),
            "healthy": self.healthy,
            "mode": i.mode(),
            "pid": i.holder,
            "worker_pid": rec.and_then(|r| r.worker_pid),
            "started_at": i.started_ms().map(rfc3339),
            "restarts": rec.map(|r| r.restarts),
            "last_exit": last_exit,
            "connections": hb.map(|h| h.connections),
            "fresh_connections": hb.map(|h| h.fresh),
            "last_event_age_s": hb.and_then(|h| h.last_event_ms).map(|t| now.saturating_sub(t) as f64 / 1000.0),
            "last_frame_age_s": hb.and_then(|h| h.last_frame_age_s(now)),
            "heartbeat_timeout_s": hb.map(|h| h.heartbeat_timeout_ms as f64 / 1000.0),
            "stale_pid": i.stale_pid,
            "outbox_depth": self.outbox.map(|q| q.depth),
            "outbox_oldest_age_s": self.outbox.and_then(|q| q.oldest_ms).map(|t| now.saturating_sub(t) as f64 / 1000.0),
            "outbox_failed": self.outbox.map(|q| q.failed),
            "inbox_depth": self.inbox,
            "durable_inbox": hb.map(|h| h.durable),
            "stopped_on_purpose": self.stopped.as_ref().map(|m| json!({
                "by": m.by, "at": rfc3339(m.at_ms), "until": m.until_ms.map(rfc3339),
            })),
        })
    }

    /// The inbox line, when events wait for an answer.
    fn inbox_line(&self) -> Option<String> {
        match self.inbox? {
            0 => None,
            n => Some(format!(
                "\n  inbox: {n} acknowledged event(s) not answered yet"
            )),
        }
    }

    /// The outbox line, if there is a store.
    fn outbox_line(&self, now: u64) -> Option<String> {
        let q = self.outbox?;
        let mut s = format!("\n  outbox: {} waiting", q.depth);
        if let Some(t) = q.oldest_ms {
            s.push_str(&format!(
                ", the oldest for {:.0}s",
                now.saturating_sub(t) as f64 / 1000.0
            ));
        }
        if q.failed > 0 {
            s.push_str(&format!("; {} failed for good (see the log)", q.failed));
        }
        Some(s)
    }

    /// The text for people.
    pub(crate) fn text(&self) -> String {
        let mut s = self.text_without_outbox();
        if let Some(o) = self.outbox_line(now_ms()) {
            s.push_str(&o);
        }
        if let Some(i) = self.inbox_line() {
            s.push_str(&i);
        }
        s
    }

    fn text_without_outbox(&self) -> String {
        let now = now_ms();
        let i = &self.instance;
        if !self.running() {
            return match (&self.stopped, i.stale_pid) {
                (Some(m), _) => format!("slackbotd is not running: stopped on purpose ({})", m.describe()),
                (None, Some(pid)) => format!("slackbotd is not running, but its pidfile names pid {pid}: it died without a clean stop"),
                (None, None) => "slackbotd is not running".to_string(),
            };
        }
        let mode = i.mode().unwrap_or("?");
        let mut s = format!(
            "slackbotd is running ({mode} mode, pid {}) and {}",
            i.holder.unwrap_or(0),
            if self.healthy { "healthy" } else { "UNHEALTHY" }
        );
        if let Some(r) = &i.record {
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
            if let Some(e) = &self.last_exit {
                s.push_str(&format!("; last at {}: {}", rfc3339(e.at_ms), e.cause));
                if let Some(d) = e.downtime_ms {
                    s.push_str(&format!(", down {d} ms"));
                }
            }
        }
        match &i.heartbeat {
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
                if !h.durable {
                    s.push_str("\n  the inbox is not written: events are acknowledged before they are recorded, and a crash may lose one");
                }
            }
            None => s.push_str("\n  no heartbeat yet: still connecting to Slack"),
        }
        s
    }
}

/// Prints the status and returns the LSB exit code.
pub(crate) fn status(src: &ConfigSource, json: bool) -> i32 {
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

/// `status --fleet`: every host of the fleet, from its database. Exits 0
/// when the database answered, 69 when it did not, 78 without `[fleet]`.
pub(crate) fn fleet(src: &ConfigSource, json: bool) -> i32 {
    let config = match Config::load(&src.path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("slackbotd: {e}");
            return ExitCode::CONFIG.code();
        }
    };
    let Some(f) = &config.fleet else {
        eprintln!(
            "slackbotd: {} has no [fleet] section: this host runs alone",
            src.path.display()
        );
        return ExitCode::CONFIG.code();
    };
    let listed = crate::fleet::Db::new(f, config.base_dir.as_deref()).and_then(|db| {
        let mut c = db.connect()?;
        crate::fleet::hosts::list(&mut c).map_err(|e| db.classify(&e))
    });
    let members = match listed {
        Ok(m) => m,
        Err(e) => {
            eprintln!("slackbotd: {e}");
            return crate::exit::HasExitCode::exit_code(&e).code();
        }
    };
    if json {
        println!("{}", json!({ "schema": 1, "hosts": members }));
        return 0;
    }
    println!(
        "{:<16} {:<5} {:<14} {:<9} {:>9} {:>5} {:>4} {:>6}",
        "HOST", "LIVE", "TAGS", "VERSION", "SEEN", "SLOTS", "JOBS", "OUTBOX"
    );
    for m in &members {
        println!(
            "{:<16} {:<5} {:<14} {:<9} {:>9} {:>5} {:>4} {:>6}",
            m.name,
            if m.live { "yes" } else { "no" },
            if m.tags.is_empty() {
                "-".to_string()
            } else {
                m.tags.join(",")
            },
            m.version,
            format!("{}s ago", m.seen_s.max(0.0).round() as u64),
            m.slots,
            m.jobs_running,
            m.outbox_depth
        );
    }
    0
}
