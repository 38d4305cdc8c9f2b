//! The systemd notify protocol (sd_notify): readiness, status lines, the
//! watchdog and stopping.
//!
//! A bot process tells whoever supervises it through a [`Notifier`]: systemd
//! itself (`$NOTIFY_SOCKET`), slackbotd's own supervisor (a datagram socket it
//! inherited, named by `$SLACKBOTD_NOTIFY_FD`, speaking the same wire format,
//! as s6's notification descriptor does), or nobody. The supervisor reads that
//! socket with [`parse`] and hears readiness the instant it happens.

use std::os::fd::RawFd;
use std::time::Duration;

use sd_notify::NotifyState;

/// The environment variable naming the inherited notification descriptor.
pub(crate) const NOTIFY_FD_ENV: &str = "SLACKBOTD_NOTIFY_FD";

/// Where notifications go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notifier {
    /// Nobody listens.
    Off,
    /// systemd, through `$NOTIFY_SOCKET`.
    Systemd,
    /// slackbotd's supervisor, through this inherited datagram socket.
    Supervisor(RawFd),
}

impl Notifier {
    /// The supervisor's descriptor when one was inherited, else systemd when
    /// `$NOTIFY_SOCKET` is set, else nobody. The descriptor is marked
    /// close-on-exec, so operator commands never inherit it.
    pub(crate) fn from_env() -> Notifier {
        if let Some(fd) = std::env::var(NOTIFY_FD_ENV)
            .ok()
            .and_then(|v| v.parse::<RawFd>().ok())
            .filter(|fd| *fd > 2)
        {
            // SAFETY: F_SETFD on a descriptor number; harmless if it is not open.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0 {
                return Notifier::Supervisor(fd);
            }
        }
        if std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty()) {
            Notifier::Systemd
        } else {
            Notifier::Off
        }
    }

    fn send(&self, states: &[NotifyState]) {
        match *self {
            Notifier::Off => {}
            Notifier::Systemd => {
                if let Err(e) = sd_notify::notify(false, states) {
                    tracing::warn!("cannot notify systemd: {e}");
                }
            }
            Notifier::Supervisor(fd) => {
                let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
                // SAFETY: send on a descriptor we were handed; never blocks.
                unsafe {
                    libc::send(
                        fd,
                        msg.as_ptr().cast(),
                        msg.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
            }
        }
    }

    /// `READY=1` with a status line.
    pub(crate) fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A `STATUS=` line for `systemctl status`.
    pub(crate) fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// `WATCHDOG=1`: we are healthy.
    pub(crate) fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// `RELOADING=1` while re-reading the configuration.
    pub(crate) fn reloading(&self) {
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
    pub(crate) fn stopping(&self, status: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }
}

/// What one notification said, as the supervisor reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Notice {
    /// `READY=1`.
    pub(crate) ready: bool,
    /// `WATCHDOG=1`.
    pub(crate) watchdog: bool,
    /// `RELOADING=1`.
    pub(crate) reloading: bool,
    /// `STOPPING=1`.
    pub(crate) stopping: bool,
    /// `STATUS=…`.
    pub(crate) status: Option<String>,
}

/// Reads one notification datagram; unknown assignments are ignored.
pub(crate) fn parse(datagram: &[u8]) -> Notice {
    let mut n = Notice::default();
    for line in String::from_utf8_lossy(datagram).lines() {
        match line.split_once('=') {
            Some(("READY", "1")) => n.ready = true,
            Some(("WATCHDOG", "1")) => n.watchdog = true,
            Some(("RELOADING", "1")) => n.reloading = true,
            Some(("STOPPING", "1")) => n.stopping = true,
            Some(("STATUS", s)) => n.status = Some(s.to_string()),
            _ => {}
        }
    }
    n
}

/// The watchdog interval systemd expects (`WatchdogSec=`), when it is on for
/// us: `$WATCHDOG_USEC` set, and `$WATCHDOG_PID` either unset or our own pid,
/// as sd_watchdog_enabled(3) reads them.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn the_supervisor_hears_what_the_worker_says() {
        let (ours, theirs) = UnixDatagram::pair().unwrap();
        let n = Notifier::Supervisor(theirs.as_raw_fd());
        n.ready("Connected to Slack: 1 of 1");
        n.watchdog();
        let mut buf = [0u8; 512];
        let len = ours.recv(&mut buf).unwrap();
        assert_eq!(
            parse(&buf[..len]),
            Notice {
                ready: true,
                status: Some("Connected to Slack: 1 of 1".into()),
                ..Notice::default()
            }
        );
        let len = ours.recv(&mut buf).unwrap();
        assert!(parse(&buf[..len]).watchdog);
        assert_eq!(parse(b"MAINPID=1\nnonsense\n"), Notice::default());
    }
}
