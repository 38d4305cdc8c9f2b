//! `slackbotd ensure`, for cron: silent and exit 0 when all is well, else
//! repair. Every action goes to syslog; failures also to stderr with a
//! non-zero exit. Its own lock keeps runs from piling up, `alarm(2)` bounds
//! its time, and the pidfile lock means concurrent runs never start two bots.
//!
//! The decision is [`decide`], a pure function of what ensure sees (the
//! unit's state under systemd, who holds the lock, whether the bot counts as
//! hung), and reads as the table it is; the rest of this file gathers those
//! facts and carries the action out.
//!
//! "Hung" is deliberately lenient, twice `heartbeat_timeout`: the watchdog
//! and the supervisor heal a deaf bot sooner, and `ensure` must not fight
//! them; it catches what they missed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::ConfigSource;
use crate::clock::now_ms;
use crate::config::Config;
use crate::exit::ExitCode;
use crate::modes::Failure;
use crate::supervise::escalate::Escalation;
use crate::supervise::heartbeat::Hang;
use crate::supervise::instance::Instance;
use crate::supervise::lock::{self, PidLock};
use crate::syslog::{Facility, Severity, Syslog};
use crate::systemctl::{self, UnitState};

/// What ensure sees.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    /// The unit, when the machine runs systemd and systemd has it loaded.
    pub(crate) unit: Option<UnitState>,
    /// Who holds the pidfile lock, if anyone.
    pub(crate) holder: Option<u32>,
    /// Why the running bot counts as hung, by ensure's lenient rule.
    pub(crate) hang: Option<Hang>,
}

/// What ensure does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// All is well: nothing, in silence.
    Healthy,
    /// Leave things as they are, and log why.
    Leave(String),
    /// The unit failed with exit 78: leave it failed, and say so once.
    LeaveConfigFailure,
    /// `systemctl start` the unit (after `reset-failed` when `reset`).
    StartUnit {
        /// It hit its start limit.
        reset: bool,
    },
    /// `systemctl restart` the unit, which is active but hung.
    RestartUnit(Hang),
    /// Start the classic daemon: nothing runs.
    StartDaemon,
    /// Stop the hung holder, then start a fresh daemon.
    ReplaceDaemon(Hang),
}

/// The table.
pub(crate) fn decide(f: &Facts) -> Action {
    let Some(u) = &f.unit else {
        return match (f.holder, f.hang) {
            (None, _) => Action::StartDaemon,
            (Some(_), Some(why)) => Action::ReplaceDaemon(why),
            (Some(_), None) => Action::Healthy,
        };
    };
    match (u.active_state.as_str(), u.sub_state.as_str()) {
        ("activating", "auto-restart") => Action::Leave(format!(
            "{} ({}): leaving it to systemd's restart backoff",
            u.active_state, u.sub_state
        )),
        ("inactive" | "failed", _) => match (f.holder, u.result.as_str(), u.exec_main_status) {
            (Some(pid), _, _) => Action::Leave(format!(
                "{}, but slackbotd runs outside it (pid {pid} holds the lock); leaving both alone",
                u.describe()
            )),
            (None, "exit-code", 78) => Action::LeaveConfigFailure,
            (None, "start-limit-hit", _) => Action::StartUnit { reset: true },
            (None, _, _) => Action::StartUnit { reset: false },
        },
        ("active" | "reloading", _) => match f.hang {
            Some(why) => Action::RestartUnit(why),
            None => Action::Healthy,
        },
        _ => Action::Leave(format!("{}; leaving it", u.describe())),
    }
}

/// Checks, and repairs if needed.
pub(crate) fn ensure(src: &ConfigSource) -> Result<(), Failure> {
    let path = std::path::absolute(&src.path).unwrap_or_else(|_| src.path.clone());
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            Syslog::new(Path::new("/dev/log"), Facility::DAEMON, "slackbotd")
                .send(Severity::ERROR, &format!("ensure: {e}"));
            return Err(e.into());
        }
    };
    // SAFETY: alarm only arms a timer; SIGALRM's default action ends the run.
    unsafe { libc::alarm(config.ensure.timeout.as_secs().max(1) as libc::c_uint) };
    crate::logging::init_syslog_for(&config.daemon);
    let result = check_and_repair(&path, &config);
    if let Err(f) = &result {
        tracing::error!("ensure: {}", f.message);
    }
    result
}

fn check_and_repair(path: &Path, config: &Config) -> Result<(), Failure> {
    let lockfile = &config.ensure.lockfile;
    let _lock = match PidLock::acquire_within(lockfile, config.ensure.timeout / 2)? {
        Ok(lock) => lock,
        Err(_) => {
            tracing::info!(
                "ensure: another ensure run still holds {}; leaving the check to it",
                lockfile.display()
            );
            return Ok(());
        }
    };
    let facts = gather(config)?;
    let unit = &config.ensure.unit;
    match decide(&facts) {
        Action::Healthy => {
            tracing::debug!("ensure: slackbotd is running and healthy");
            Ok(())
        }
        Action::Leave(why) => {
            tracing::info!("ensure: {unit} is {why}");
            Ok(())
        }
        Action::LeaveConfigFailure => {
            // RestartPreventExitStatus=78: a bad configuration or token does
            // not get better by starting again. Said once per failure.
            let marker = lockfile.with_extension("exit78");
            let stamp = facts
                .unit
                .as_ref()
                .map_or(0, |u| u.exec_main_exit_monotonic)
                .to_string();
            if std::fs::read_to_string(&marker).ok().as_deref() != Some(stamp.as_str()) {
                tracing::warn!(
                    "ensure: {unit} stopped with exit 78 (configuration or credentials); not starting it again: \
                     run `slackbotd check`, fix what it says, then `systemctl start {unit}`"
                );
                let _ = crate::files::write_atomic(&marker, stamp.as_bytes(), 0o644);
            }
            Ok(())
        }
        Action::StartUnit { reset } => {
            if reset {
                systemctl::reset_failed(unit).map_err(systemd_failure)?;
                tracing::warn!("ensure: {unit} hit its start limit; reset it");
            }
            systemctl::start(unit).map_err(systemd_failure)?;
            let was = facts
                .unit
                .as_ref()
                .map(UnitState::describe)
                .unwrap_or_default();
            tracing::warn!("ensure: {unit} was {was}; started it");
            Ok(())
        }
        Action::RestartUnit(why) => {
            systemctl::restart(unit).map_err(systemd_failure)?;
            tracing::warn!("ensure: {unit} is active but deaf or hung ({why}); restarted it");
            Ok(())
        }
        Action::StartDaemon => {
            let pid = start_daemon(path, config)?;
            tracing::warn!("ensure: slackbotd was not running; started the daemon (pid {pid})");
            Ok(())
        }
        Action::ReplaceDaemon(why) => {
            let holder = facts.holder.unwrap_or(0);
            tracing::warn!("ensure: slackbotd (pid {holder}) is stale ({why}); replacing it");
            stop_holder(config)?;
            let pid = start_daemon(path, config)?;
            tracing::warn!("ensure: replaced the stale slackbotd; the new daemon is pid {pid}");
            Ok(())
        }
    }
}

/// Looks at the unit, the lock and the heartbeat.
fn gather(config: &Config) -> Result<Facts, Failure> {
    let pidfile = &config.daemon.pidfile;
    let instance = Instance::read(pidfile).map_err(|e| {
        Failure::new(
            ExitCode::NOINPUT,
            format!("cannot read {}: {e}", pidfile.display()),
        )
    })?;
    let unit = if systemctl::booted() {
        match systemctl::show(&config.ensure.unit) {
            Ok(st) if st.load_state == "loaded" => Some(st),
            Ok(st) => {
                tracing::debug!(
                    "ensure: {} is {} here; checking for the classic daemon",
                    config.ensure.unit,
                    st.load_state
                );
                None
            }
            Err(e) => {
                tracing::warn!("ensure: {e}; checking for the classic daemon");
                None
            }
        }
    } else {
        None
    };
    let now = now_ms();
    let timeout = config.supervise.heartbeat_timeout * 2;
    let hang = match &unit {
        // Under systemd the bot's start is the unit's: its heartbeat must
        // belong to the main process.
        Some(u) => {
            let since = match u.exec_main_start_monotonic {
                0 => now,
                t => {
                    let ago = systemctl::monotonic_now_us().saturating_sub(t) / 1000;
                    now.saturating_sub(ago)
                }
            };
            let hb = instance
                .heartbeat
                .as_ref()
                .filter(|h| h.pid == u.main_pid || Some(h.pid) == instance.bot_pid());
            let limits = crate::supervise::heartbeat::Limits::uniform(timeout);
            crate::supervise::heartbeat::hang_reason(hb, since, now, limits)
        }
        None => instance.hang(now, timeout),
    };
    Ok(Facts {
        unit,
        holder: instance.holder,
        hang,
    })
}

fn systemd_failure(e: systemctl::SystemctlError) -> Failure {
    Failure::new(ExitCode::UNAVAILABLE, e.to_string())
}

/// Stops the hung holder and its worker; returns once the lock is free.
fn stop_holder(config: &Config) -> Result<(), Failure> {
    let pidfile = &config.daemon.pidfile;
    let instance = Instance::read(pidfile).unwrap_or_default();
    let Some(holder) = instance.holder else {
        return Ok(());
    };
    let mut targets = vec![holder];
    targets.extend(instance.record.and_then(|r| r.worker_pid));
    let grace = config.supervise.stop_timeout + Duration::from_secs(2);
    let mut stop = Escalation::begin(&targets, grace);
    let deadline = Instant::now() + grace + Duration::from_secs(5);
    while Instant::now() < deadline {
        if matches!(lock::holder(pidfile), Ok(None)) {
            return Ok(());
        }
        if stop.tick() {
            tracing::warn!("ensure: pid {holder} ignored SIGTERM; sending SIGKILL");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(Failure::new(
        ExitCode::TEMPFAIL,
        format!(
            "pid {holder} still holds {} after SIGKILL",
            pidfile.display()
        ),
    ))
}

/// Runs `slackbotd daemon` and returns the pid now holding the lock.
fn start_daemon(path: &Path, config: &Config) -> Result<u32, Failure> {
    let pidfile = &config.daemon.pidfile;
    if !Syslog::available(&config.daemon.syslog_socket) {
        tracing::warn!(
            "ensure: no syslog socket at {}; the daemon runs anyway, its logs lost until one listens there",
            config.daemon.syslog_socket.display()
        );
    }
    let exe = PathBuf::from("/proc/self/exe");
    let out = Command::new(&exe)
        .arg("--config")
        .arg(path)
        .arg("daemon")
        .arg("--wait")
        .arg("30s")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Failure::new(ExitCode::OSERR, format!("cannot run slackbotd daemon: {e}")))?;
    let holder = || lock::holder(pidfile).ok().flatten();
    match out.status.code() {
        Some(0) => Ok(holder().unwrap_or(0)),
        // Lost a race to a concurrent start: the lock says who won.
        Some(75) if holder().is_some() => {
            let pid = holder().unwrap_or(0);
            tracing::info!("ensure: another start won the race; pid {pid} holds the lock");
            Ok(pid)
        }
        code => {
            let said = String::from_utf8_lossy(&out.stderr);
            let said = said.trim().replace('\n', "; ");
            Err(Failure::new(
                ExitCode(code.and_then(|c| u8::try_from(c).ok()).unwrap_or(70).max(1)),
                format!(
                    "starting the daemon failed: {}",
                    said.trim_start_matches("slackbotd: ")
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(active: &str, sub: &str, result: &str, status: i32) -> Option<UnitState> {
        Some(UnitState {
            load_state: "loaded".into(),
            active_state: active.into(),
            sub_state: sub.into(),
            result: result.into(),
            main_pid: 0,
            n_restarts: 0,
            exec_main_start_monotonic: 0,
            exec_main_status: status,
            exec_main_exit_monotonic: 0,
        })
    }

    #[test]
    fn the_ensure_table_row_by_row() {
        use Action::*;
        let deaf = Hang::Deaf(Duration::from_secs(200));
        // (unit, lock holder, hang) → the action; `None`: leave it, with a reason
        type Row = (Option<UnitState>, Option<u32>, Option<Hang>, Option<Action>);
        let rows: Vec<Row> = vec![
            // no systemd unit: the classic daemon
            (None, None, None, Some(StartDaemon)),
            (None, Some(7), None, Some(Healthy)),
            (None, Some(7), Some(deaf), Some(ReplaceDaemon(deaf))),
            // under systemd
            (
                unit("active", "running", "success", 0),
                Some(7),
                None,
                Some(Healthy),
            ),
            (
                unit("active", "running", "success", 0),
                Some(7),
                Some(deaf),
                Some(RestartUnit(deaf)),
            ),
            (
                unit("reloading", "reload", "success", 0),
                Some(7),
                Some(deaf),
                Some(RestartUnit(deaf)),
            ),
            (
                unit("activating", "auto-restart", "signal", 0),
                None,
                None,
                None,
            ),
            (
                unit("inactive", "dead", "success", 0),
                None,
                None,
                Some(StartUnit { reset: false }),
            ),
            (
                unit("failed", "failed", "signal", 0),
                None,
                None,
                Some(StartUnit { reset: false }),
            ),
            (
                unit("failed", "failed", "start-limit-hit", 0),
                None,
                None,
                Some(StartUnit { reset: true }),
            ),
            (
                unit("failed", "failed", "exit-code", 78),
                None,
                None,
                Some(LeaveConfigFailure),
            ),
            (
                unit("failed", "failed", "exit-code", 1),
                None,
                None,
                Some(StartUnit { reset: false }),
            ),
            // a bot outside the unit holds the lock: both left alone
            (unit("inactive", "dead", "success", 0), Some(9), None, None),
            (
                unit("deactivating", "stop-sigterm", "success", 0),
                None,
                None,
                None,
            ),
        ];
        for (unit, holder, hang, want) in rows {
            let f = Facts {
                unit: unit.clone(),
                holder,
                hang,
            };
            let got = decide(&f);
            match want {
                Some(w) => assert_eq!(got, w, "{unit:?} holder {holder:?} hang {hang:?}"),
                None => assert!(
                    matches!(got, Leave(_)),
                    "{unit:?} holder {holder:?} → {got:?}"
                ),
            }
        }
    }
}
