//! The systemd notify protocol (sd_notify): readiness, status lines, the
//! watchdog and stopping. Every call is a no-op outside systemd.

use std::time::Duration;

use sd_notify::NotifyState;

/// Talks to systemd through `$NOTIFY_SOCKET`, when there is one.
#[derive(Debug, Clone, Copy)]
pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    /// Enabled when `$NOTIFY_SOCKET` is set.
    pub fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty()),
        }
    }

    /// A notifier that never sends (the daemon's worker).
    pub fn disabled() -> Notifier {
        Notifier { enabled: false }
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn send(&self, states: &[NotifyState]) {
        if self.enabled {
            if let Err(e) = sd_notify::notify(false, states) {
                tracing::warn!("cannot notify systemd: {e}");
            }
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A `STATUS=` line for `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// `WATCHDOG=1`: we are healthy.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// `RELOADING=1` while re-reading the configuration.
    pub fn reloading(&self) {
        let mut states = vec![
            NotifyState::Reloading,
            NotifyState::Status("Reloading the configuration"),
        ];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        self.send(&states);
    }

    /// `STOPPING=1` with a status line.
    pub fn stopping(&self, status: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }
}

/// The watchdog interval systemd expects (`WatchdogSec=`), when it is on for
/// us: `$WATCHDOG_USEC` set, and `$WATCHDOG_PID` either unset or our own pid,
/// as sd_watchdog_enabled(3) reads them.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}
