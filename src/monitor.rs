//! Health, reported outward: `READY=1` after the first hello, `WATCHDOG=1`
//! while the bot hears from Slack, `STATUS=` lines a person understands, and
//! the heartbeat file the supervisor, `status` and `ensure` read. The serve
//! loop calls [`Monitor::update`] on every tick and every connection change.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::{self, human};
use crate::health::{Health, HealthSnapshot};
use crate::memory::{self, Trimmer};
use crate::settings::SettingsRx;
use crate::supervise::heartbeat::{self, Heartbeat};
use crate::systemd::Notifier;

/// The serve loop's reporter.
pub(crate) struct Monitor {
    /// Whoever supervises this process.
    notifier: Notifier,
    /// What the connections report.
    health: Arc<Health>,
    /// `run` or `daemon`, written into the heartbeat.
    mode: &'static str,
    /// The heartbeat file.
    heartbeat: PathBuf,
    /// For the number of connections wanted, in the status line.
    settings: SettingsRx,
    /// Whether READY=1 went out.
    ready: bool,
    /// The last STATUS= sent, so an unchanged one is not sent again.
    last_status: String,
    /// Health at the last update, to log each change once.
    was_healthy: bool,
    /// When the last update ran, to notice a stalled event loop.
    last_tick: Instant,
    /// When to give a burst's memory back.
    trimmer: Trimmer,
}

impl Monitor {
    /// A monitor writing its heartbeat to `heartbeat`.
    pub(crate) fn new(
        notifier: Notifier,
        health: Arc<Health>,
        mode: &'static str,
        heartbeat: PathBuf,
        settings: SettingsRx,
    ) -> Monitor {
        Monitor {
            notifier,
            health,
            mode,
            heartbeat,
            settings,
            ready: false,
            last_status: String::new(),
            was_healthy: false,
            last_tick: Instant::now(),
            trimmer: Trimmer::default(),
        }
    }

    /// How often the serve loop should call [`Monitor::update`]: a third of
    /// the watchdog interval, at most a second.
    pub(crate) fn tick() -> Duration {
        crate::systemd::watchdog_interval()
            .map(|w| (w / 3).min(Duration::from_secs(1)))
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_millis(50))
    }

    fn status_line(&self, s: &HealthSnapshot) -> String {
        let want = self.settings.borrow().config.slack.connections;
        let plural = |n: usize, one: &str, many: &str| crate::text::count(n as u64, one, many);
        if !s.ever_connected {
            "Connecting to Slack…".to_string()
        } else if s.healthy() {
            format!(
                "Connected to Slack: {} of {} healthy; {} received",
                s.fresh,
                plural(usize::from(want), "connection", "connections"),
                plural(s.events as usize, "event", "events")
            )
        } else if s.connections == 0 {
            "Unhealthy: no connection to Slack; reconnecting".to_string()
        } else {
            format!(
                "Unhealthy: no frame from Slack for {}; replacing the connections",
                s.freshest_frame_age
                    .map(human)
                    .unwrap_or_else(|| "a while".into())
            )
        }
    }

    /// Reports the health now.
    pub(crate) fn update(&mut self) {
        let lag = self.last_tick.elapsed();
        self.last_tick = Instant::now();
        if lag > Duration::from_secs(5) {
            tracing::warn!("the event loop was unresponsive for {}", human(lag));
        }
        let s = self.health.snapshot();
        if self.trimmer.due(s.events, Instant::now()) {
            memory::release();
        }
        let status = self.status_line(&s);
        if !self.ready && s.ever_connected {
            self.ready = true;
            tracing::info!("ready: connected to Slack");
            self.notifier.ready(&status);
            self.last_status = status.clone();
            self.was_healthy = true;
        }
        let healthy = s.healthy();
        if healthy {
            self.notifier.watchdog();
        }
        if self.ready && healthy != self.was_healthy {
            if healthy {
                tracing::info!("healthy again");
            } else {
                tracing::warn!("unhealthy: {status}; the watchdog is no longer fed");
            }
        }
        self.was_healthy = healthy;
        if status != self.last_status {
            self.notifier.status(&status);
            self.last_status = status;
        }
        let hb = Heartbeat {
            pid: std::process::id(),
            mode: self.mode.to_string(),
            started_ms: clock::ms_ago(s.uptime),
            written_ms: clock::now_ms(),
            last_frame_ms: s.freshest_frame_age.map(clock::ms_ago),
            last_event_ms: s.last_event_age.map(clock::ms_ago),
            connections: s.connections,
            fresh: s.fresh,
            heartbeat_timeout_ms: self.health.heartbeat_timeout().as_millis() as u64,
            durable: s.durable,
        };
        if let Err(e) = heartbeat::write(&self.heartbeat, &hb) {
            tracing::warn!(
                "cannot write the heartbeat {}: {e}",
                self.heartbeat.display()
            );
        }
    }
}
