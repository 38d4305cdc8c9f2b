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
use crate::supervise::stopped::{self, StopMark};
use crate::syslog::{Facility, Severity, Syslog};
use crate::systemctl::{self, UnitState};

/// What ensure sees.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    /// systemd's view of the unit; none when the machine does not run systemd.
    pub(crate) unit: Option<UnitState>,
    /// A unit file for the bot on disk, whether or not systemd loaded it.
    pub(crate) unit_file: Option<PathBuf>,
    /// Who holds the pidfile lock, if anyone.
    pub(crate) holder: Option<u32>,
    /// Why the running bot counts as hung, by ensure's lenient rule.
    pub(crate) hang: Option<Hang>,
    /// The mark of a deliberate stop, and whether it still holds.
    pub(crate) stopped: Option<(StopMark, bool)>,
}

/// How loudly ensure says why it leaves things alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loud {
    /// In the log.
    Info,
    /// A warning in the log.
    Warn,
    /// An error in the log, and (once) on stderr, so cron mails it.
    Error,
}

/// What ensure does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// All is well: nothing, in silence.
    Healthy,
    /// Leave things as they are, and say why (once, not every minute).
    Leave(Loud, String),
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
    use Action::{Healthy, Leave, ReplaceDaemon, RestartUnit, StartDaemon, StartUnit};
    let mark_holds = f
        .stopped
        .as_ref()
        .filter(|(_, holds)| *holds)
        .map(|(m, _)| m);
    let mark_over = f.stopped.as_ref().is_some_and(|(_, holds)| !holds);
    let stopped_on_purpose = |m: &StopMark| {
        Leave(
            Loud::Info,
            format!("stopped on purpose ({}); leaving it stopped", m.describe()),
        )
    };
    let loaded = f.unit.as_ref().filter(|u| u.load_state == "loaded");
    let Some(u) = loaded else {
        // systemd knows of a unit it cannot run, or there is a unit file:
        // the bot belongs to systemd, never to the classic daemon.
        if let Some(u) = f.unit.as_ref().filter(|u| u.load_state == "masked") {
            return Leave(
                Loud::Info,
                format!("masked ({}); leaving it alone", u.describe()),
            );
        }
        let known = f.unit.as_ref().filter(|u| u.load_state != "not-found");
        if known.is_some() || f.unit_file.is_some() {
            let why = match (known, &f.unit_file, &f.unit) {
                (Some(u), _, _) => format!(
                    "{}: systemd cannot load it (LoadState={}); fix the unit (systemd-analyze verify), then systemctl daemon-reload; the classic daemon is not started instead",
                    u.fragment_path, u.load_state
                ),
                (None, Some(file), Some(_)) => format!(
                    "not loaded, though {} exists: run systemctl daemon-reload; the classic daemon is not started instead",
                    file.display()
                ),
                (None, Some(file), None) => format!(
                    "not managed: {} exists but systemd does not run here; remove it to let `ensure` run the classic daemon",
                    file.display()
                ),
                (None, None, _) => unreachable!("checked above"),
            };
            return Leave(Loud::Error, why);
        }
        return match (f.holder, f.hang, mark_holds) {
            (None, _, Some(m)) => stopped_on_purpose(m),
            (None, _, None) => StartDaemon,
            (Some(_), Some(why), _) => ReplaceDaemon(why),
            (Some(_), None, _) => Healthy,
        };
    };
    match (u.active_state.as_str(), u.sub_state.as_str()) {
        ("activating", "auto-restart") => Leave(
            Loud::Info,
            format!(
                "{} ({}): leaving it to systemd's restart backoff",
                u.active_state, u.sub_state
            ),
        ),
        ("inactive" | "failed", _) => {
            if let Some(pid) = f.holder {
                return Leave(
                    Loud::Info,
                    format!(
                        "{}, but slackbotd runs outside it (pid {pid} holds the lock); leaving both alone",
                        u.describe()
                    ),
                );
            }
            if u.unit_file_state.starts_with("masked") || u.unit_file_state == "disabled" {
                return Leave(
                    Loud::Info,
                    format!(
                        "{} and {}; leaving it stopped",
                        u.describe(),
                        u.unit_file_state
                    ),
                );
            }
            if let Some(m) = mark_holds {
                return stopped_on_purpose(m);
            }
            let stopped_by_systemctl =
                u.result == "success" && u.exec_main_exit_monotonic > 0 && !mark_over;
            match (u.result.as_str(), u.exec_main_status) {
                _ if stopped_by_systemctl => Leave(
                    Loud::Info,
                    format!("{}: stopped on purpose (systemctl stop); leaving it stopped until it is started again", u.describe()),
                ),
                ("exit-code", 78) => Leave(
                    Loud::Warn,
                    "stopped with exit 78 (configuration or credentials); not starting it again: \
                     run `slackbotd check`, fix what it says, then `systemctl start` it"
                        .to_string(),
                ),
                ("start-limit-hit", _) => StartUnit { reset: true },
                _ => StartUnit { reset: false },
            }
        }
        ("active" | "reloading", _) => match f.hang {
            Some(why) => RestartUnit(why),
            None => Healthy,
        },
        _ => Leave(Loud::Info, format!("{}; leaving it", u.describe())),
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
    let lockfile = &lockfile(config);
    let _lock = match PidLock::acquire_private(lockfile, config.ensure.timeout / 2)? {
        Ok(lock) => lock,
        Err(_) => {
            tracing::info!(
                "ensure: another ensure run still holds {}; leaving the check to it",
                lockfile.display()
            );
            return Ok(());
        }
    };
    // The common case first: a bot that holds the lock, heard from Slack
    // recently, and runs where it should (the unit, where systemd runs) is
    // healthy, and nothing would be done. Asking systemd (a `systemctl` run)
    // would cost more than all of ensure's own work.
    if let Ok(i) = Instance::read(&config.daemon.pidfile) {
        let stale = config.supervise.heartbeat_timeout * 2;
        let healthy = i.heartbeat.is_some() && i.hang(now_ms(), stale).is_none();
        let managed = !crate::modes::check::setup::systemd_runs()
            || i.holder
                .is_some_and(|pid| in_unit(pid, &config.ensure.unit));
        if healthy && managed {
            tracing::debug!("ensure: slackbotd is running and healthy");
            return Ok(());
        }
    }
    let facts = gather(config)?;
    let unit = &config.ensure.unit;
    match decide(&facts) {
        Action::Healthy => {
            tracing::debug!("ensure: slackbotd is running and healthy");
            Ok(())
        }
        Action::Leave(loud, why) => {
            say_once(lockfile, loud, &format!("ensure: {unit} is {why}"));
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

/// Where `ensure` keeps its lock and what it said last: the configured
/// path; by default `/run/slackbotd-ensure.lock`, in a directory only root
/// writes, or, for anyone but root, the state directory.
fn lockfile(config: &Config) -> PathBuf {
    let default = crate::config::EnsureConfig::default().lockfile;
    if config.ensure.lockfile == default && !nix::unistd::geteuid().is_root() {
        config.daemon.state_dir.join("ensure.lock")
    } else {
        config.ensure.lockfile.clone()
    }
}

/// Logs `what` at `loud`, unless the last run said the very same; then at
/// debug level only. An error goes to stderr too, the first time.
fn say_once(lockfile: &Path, loud: Loud, what: &str) {
    let said = lockfile.with_extension("said");
    let again = crate::files::read_small(&said, 64 * 1024).ok().as_deref() == Some(what.as_bytes());
    if again {
        tracing::debug!("{what}");
        return;
    }
    match loud {
        Loud::Info => tracing::info!("{what}"),
        Loud::Warn => tracing::warn!("{what}"),
        Loud::Error => {
            tracing::error!("{what}");
            eprintln!("slackbotd: {what}");
        }
    }
    let _ = crate::files::write_atomic(&said, what.as_bytes(), 0o644);
}

/// Whether process `pid` runs in `unit`'s control group.
fn in_unit(pid: u32, unit: &str) -> bool {
    let suffix = format!("/{unit}");
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| {
        c.lines()
            .filter_map(|l| l.rsplit(':').next())
            .any(|path| path.ends_with(&suffix))
    })
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
            Ok(st) => Some(st),
            Err(e) => {
                tracing::warn!("ensure: {e}");
                None
            }
        }
    } else {
        None
    };
    let unit_file = systemctl::unit_file(&config.ensure.unit);
    let stopped = stopped::read(&config.daemon.state_dir).map(|m| {
        let holds = m.holds(now_ms());
        (m, holds)
    });
    let now = now_ms();
    let timeout = config.supervise.heartbeat_timeout * 2;
    let hang = match unit.as_ref().filter(|u| u.load_state == "loaded") {
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
        unit_file,
        holder: instance.holder,
        hang,
        stopped,
    })
}

fn systemd_failure(e: systemctl::SystemctlError) -> Failure {
    Failure::new(ExitCode::UNAVAILABLE, e.to_string())
}

/// Stops the hung holder and its worker; returns once the lock is free.
fn stop_holder(config: &Config) -> Result<(), Failure> {
    let pidfile = &config.daemon.pidfile;
    let holder = match lock::signal_target(pidfile) {
        Ok(None) => return Ok(()),
        Ok(Some(pid)) => pid,
        Err(e) => return Err(Failure::new(ExitCode::NOPERM, e.to_string())),
    };
    let instance = Instance::read(pidfile).unwrap_or_default();
    // The record names the worker; only a slackbotd child of the holder counts.
    let worker = instance
        .record
        .and_then(|r| r.worker_pid)
        .and_then(|w| lock::verified_child(holder, w));
    let targets: Vec<u32> = std::iter::once(holder)
        .chain(worker)
        .map(|p| p as u32)
        .collect();
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
        Some(c) if c == ExitCode::TEMPFAIL.code() && holder().is_some() => {
            let pid = holder().unwrap_or(0);
            tracing::info!("ensure: another start won the race; pid {pid} holds the lock");
            Ok(pid)
        }
        code => {
            let said = String::from_utf8_lossy(&out.stderr);
            let said = said.trim().replace('\n', "; ");
            Err(Failure::new(
                ExitCode(
                    code.and_then(|c| u8::try_from(c).ok())
                        .unwrap_or(ExitCode::SOFTWARE.0)
                        .max(1),
                ),
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
            exec_main_exit_monotonic: 1,
            unit_file_state: "enabled".into(),
            fragment_path: "/etc/systemd/system/slackbotd.service".into(),
        })
    }

    fn with(u: Option<UnitState>, f: impl FnOnce(&mut UnitState)) -> Option<UnitState> {
        u.map(|mut u| {
            f(&mut u);
            u
        })
    }

    #[test]
    fn the_ensure_table_row_by_row() {
        use Action::*;
        let deaf = Hang::Deaf(Duration::from_secs(200));
        let mark = |holds| Some((StopMark::now(None), holds));
        let file = Some(PathBuf::from("/lib/systemd/system/slackbotd.service"));
        let stopped = unit("inactive", "dead", "success", 0);
        let never_ran = with(stopped.clone(), |u| u.exec_main_exit_monotonic = 0);
        // (unit, unit file, lock holder, hang, stop mark) → the action;
        // `Leave(l, _)` rows match any reason at that loudness.
        type Row = (
            Option<UnitState>,
            Option<PathBuf>,
            Option<u32>,
            Option<Hang>,
            Option<(StopMark, bool)>,
            Action,
        );
        let leave = |l| Leave(l, String::new());
        let rows: Vec<Row> = vec![
            // no systemd, no unit file: the classic daemon
            (None, None, None, None, None, StartDaemon),
            (None, None, Some(7), None, None, Healthy),
            (None, None, Some(7), Some(deaf), None, ReplaceDaemon(deaf)),
            (None, None, None, None, mark(true), leave(Loud::Info)),
            (None, None, None, None, mark(false), StartDaemon),
            // a unit file but no systemd, or a unit systemd cannot load: never the classic daemon
            (None, file.clone(), None, None, None, leave(Loud::Error)),
            (
                with(never_ran.clone(), |u| u.load_state = "not-found".into()),
                file.clone(),
                None,
                None,
                None,
                leave(Loud::Error),
            ),
            (
                with(never_ran.clone(), |u| u.load_state = "bad-setting".into()),
                None,
                None,
                None,
                None,
                leave(Loud::Error),
            ),
            (
                with(never_ran.clone(), |u| u.load_state = "not-found".into()),
                None,
                None,
                None,
                None,
                StartDaemon,
            ),
            (
                with(never_ran.clone(), |u| u.load_state = "masked".into()),
                file.clone(),
                None,
                None,
                None,
                leave(Loud::Info),
            ),
            // under systemd, running
            (
                unit("active", "running", "success", 0),
                file.clone(),
                Some(7),
                None,
                None,
                Healthy,
            ),
            (
                unit("active", "running", "success", 0),
                file.clone(),
                Some(7),
                Some(deaf),
                None,
                RestartUnit(deaf),
            ),
            (
                unit("reloading", "reload", "success", 0),
                file.clone(),
                Some(7),
                Some(deaf),
                None,
                RestartUnit(deaf),
            ),
            (
                unit("activating", "auto-restart", "signal", 0),
                file.clone(),
                None,
                None,
                None,
                leave(Loud::Info),
            ),
            // stopped on purpose: left alone
            (
                stopped.clone(),
                file.clone(),
                None,
                None,
                None,
                leave(Loud::Info),
            ),
            (
                unit("failed", "failed", "signal", 0),
                file.clone(),
                None,
                None,
                mark(true),
                leave(Loud::Info),
            ),
            (
                with(stopped.clone(), |u| u.unit_file_state = "disabled".into()),
                file.clone(),
                None,
                None,
                None,
                leave(Loud::Info),
            ),
            (
                with(unit("failed", "failed", "signal", 0), |u| {
                    u.unit_file_state = "disabled".into()
                }),
                file.clone(),
                None,
                None,
                None,
                leave(Loud::Info),
            ),
            // a maintenance window that is over, or a bot that never came up after boot: started
            (
                stopped.clone(),
                file.clone(),
                None,
                None,
                mark(false),
                StartUnit { reset: false },
            ),
            (
                never_ran.clone(),
                file.clone(),
                None,
                None,
                None,
                StartUnit { reset: false },
            ),
            // died or failed: started
            (
                unit("failed", "failed", "signal", 0),
                file.clone(),
                None,
                None,
                None,
                StartUnit { reset: false },
            ),
            (
                unit("failed", "failed", "start-limit-hit", 0),
                file.clone(),
                None,
                None,
                None,
                StartUnit { reset: true },
            ),
            (
                unit("failed", "failed", "exit-code", 1),
                file.clone(),
                None,
                None,
                None,
                StartUnit { reset: false },
            ),
            (
                unit("failed", "failed", "exit-code", 78),
                file.clone(),
                None,
                None,
                None,
                leave(Loud::Warn),
            ),
            // a bot outside the unit holds the lock: both left alone
            (
                stopped.clone(),
                file.clone(),
                Some(9),
                None,
                None,
                leave(Loud::Info),
            ),
            (
                unit("deactivating", "stop-sigterm", "success", 0),
                file.clone(),
                None,
                None,
                None,
                leave(Loud::Info),
            ),
        ];
        for (unit, unit_file, holder, hang, stopped, want) in rows {
            let f = Facts {
                unit: unit.clone(),
                unit_file,
                holder,
                hang,
                stopped,
            };
            let got = decide(&f);
            match (&want, &got) {
                (Leave(a, _), Leave(b, _)) => assert_eq!(a, b, "{f:?} → {got:?}"),
                _ => assert_eq!(got, want, "{f:?}"),
            }
        }
    }
}
