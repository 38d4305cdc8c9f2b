//! `slackbotd ensure`, for cron: silent and exit 0 when all is well, else
//! repair. Every action goes to syslog; failures also to stderr with a
//! non-zero exit. Its own lock keeps runs from piling up, `alarm(2)` bounds
//! its time, and the pidfile lock means concurrent runs never start two bots.
//!
//! Under systemd (booted with it, and the unit loaded) it leaves a unit in
//! `activating (auto-restart)` to systemd's backoff, starts an inactive or
//! failed unit (after `reset-failed` when it hit its start limit), and
//! restarts an active unit whose heartbeat is stale. Without systemd it starts
//! the classic daemon when nobody holds the lock, and replaces a holder whose
//! heartbeat is stale.
//!
//! "Stale" is deliberately lenient, twice `heartbeat_timeout`: the watchdog
//! and the daemon's supervisor heal a deaf bot sooner, and `ensure` must not
//! fight them; it catches what they missed.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cli::ConfigSource;
use crate::clock::now_ms;
use crate::config::Config;
use crate::exit::ExitCode;
use crate::modes::Failure;
use crate::supervise::heartbeat::{self, Heartbeat};
use crate::supervise::{lock, record};
use crate::syslog::Syslog;
use crate::systemctl::{self, UnitState};

/// Why a running bot counts as stale, if it does.
pub fn staleness(
    hb: Option<&Heartbeat>,
    running_for: Duration,
    heartbeat_timeout: Duration,
) -> Option<String> {
    let limit = heartbeat_timeout * 2;
    let now = now_ms();
    let secs = |ms: u64| ms as f64 / 1000.0;
    match hb {
        Some(h) => {
            let written = now.saturating_sub(h.written_ms);
            if written > limit.as_millis() as u64 {
                return Some(format!(
                    "its heartbeat was last written {:.0}s ago",
                    secs(written)
                ));
            }
            match h.last_frame_ms {
                Some(t) if now.saturating_sub(t) > limit.as_millis() as u64 => Some(format!(
                    "no frame from Slack for {:.0}s",
                    secs(now.saturating_sub(t))
                )),
                None if running_for > limit => Some(format!(
                    "not connected to Slack after {:.0}s",
                    running_for.as_secs_f64()
                )),
                _ => None,
            }
        }
        None if running_for > limit => Some(format!(
            "no heartbeat after {:.0}s",
            running_for.as_secs_f64()
        )),
        None => None,
    }
}

/// Takes the `ensure` lock, waiting up to `wait`; `None` when another run keeps it.
fn take_lock(path: &Path, wait: Duration) -> Result<Option<File>, Failure> {
    let fail = |e: std::io::Error| {
        Failure::new(
            ExitCode::CANTCREAT,
            format!("cannot open the ensure lock {}: {e}", path.display()),
        )
    };
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(fail)?;
        }
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(fail)?;
    let deadline = Instant::now() + wait;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(Some(f)),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(fail(e)),
        }
    }
}

/// Checks, and repairs if needed.
pub fn ensure(src: &ConfigSource) -> Result<(), Failure> {
    let path = std::path::absolute(&src.path).unwrap_or_else(|_| src.path.clone());
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            Syslog::new(Path::new("/dev/log"), 3, "slackbotd").send(3, &format!("ensure: {e}"));
            return Err(e.into());
        }
    };
    // SAFETY: alarm only arms a timer; SIGALRM's default action ends the run.
    unsafe { libc::alarm(config.ensure.timeout.as_secs().max(1) as libc::c_uint) };
    let d = &config.daemon;
    crate::logging::init_syslog_for(d);
    let result = check_and_repair(&path, &config);
    if let Err(f) = &result {
        tracing::error!("ensure: {}", f.message);
    }
    result
}

fn check_and_repair(path: &Path, config: &Config) -> Result<(), Failure> {
    let Some(_lock) = take_lock(&config.ensure.lockfile, config.ensure.timeout / 2)? else {
        tracing::info!(
            "ensure: another ensure run still holds {}; leaving the check to it",
            config.ensure.lockfile.display()
        );
        return Ok(());
    };
    if systemctl::booted() {
        match systemctl::show(&config.ensure.unit) {
            Ok(st) if st.load_state == "loaded" => return under_systemd(config, &st),
            Ok(st) => tracing::debug!(
                "ensure: {} is {} here; checking for the classic daemon",
                config.ensure.unit,
                st.load_state
            ),
            Err(e) => tracing::warn!("ensure: {e}; checking for the classic daemon"),
        }
    }
    without_systemd(path, config)
}

fn systemd_failure(e: systemctl::SystemctlError) -> Failure {
    Failure::new(ExitCode::UNAVAILABLE, e.to_string())
}

fn under_systemd(config: &Config, st: &UnitState) -> Result<(), Failure> {
    let unit = &config.ensure.unit;
    match (st.active_state.as_str(), st.sub_state.as_str()) {
        ("activating", "auto-restart") => {
            tracing::info!(
                "ensure: {unit} is {}: leaving it to systemd's restart backoff",
                st.describe()
            );
            Ok(())
        }
        ("inactive", _) | ("failed", _) => {
            if let Ok(Some(pid)) = lock::holder(&config.daemon.pidfile) {
                tracing::info!(
                    "ensure: {unit} is {}, but slackbotd runs outside it (pid {pid} holds the lock); leaving both alone",
                    st.describe()
                );
                return Ok(());
            }
            if st.result == "exit-code" && st.exec_main_status == 78 {
                // RestartPreventExitStatus=78: a bad configuration or token
                // does not get better by starting again. Said once per failure.
                let marker = config.ensure.lockfile.with_extension("exit78");
                let stamp = st.exec_main_exit_monotonic.to_string();
                if std::fs::read_to_string(&marker).ok().as_deref() != Some(stamp.as_str()) {
                    tracing::warn!(
                        "ensure: {unit} stopped with exit 78 (configuration or credentials); not starting it again: \
                         run `slackbotd check`, fix what it says, then `systemctl start {unit}`"
                    );
                    let _ = std::fs::write(&marker, stamp);
                }
                return Ok(());
            }
            if st.result == "start-limit-hit" {
                systemctl::reset_failed(unit).map_err(systemd_failure)?;
                tracing::warn!("ensure: {unit} hit its start limit; reset it");
            }
            systemctl::start(unit).map_err(systemd_failure)?;
            tracing::warn!("ensure: {unit} was {}; started it", st.describe());
            Ok(())
        }
        ("active", _) | ("reloading", _) => {
            let hb = heartbeat::read(&heartbeat::path_for(&config.daemon.pidfile))
                .filter(|h| h.pid == st.main_pid);
            let running_for = match st.exec_main_start_monotonic {
                0 => Duration::ZERO,
                t => Duration::from_micros(systemctl::monotonic_now_us().saturating_sub(t)),
            };
            match staleness(hb.as_ref(), running_for, config.supervise.heartbeat_timeout) {
                None => {
                    tracing::debug!("ensure: {unit} is {} and healthy", st.describe());
                    Ok(())
                }
                Some(why) => {
                    systemctl::restart(unit).map_err(systemd_failure)?;
                    tracing::warn!(
                        "ensure: {unit} is active but deaf or hung ({why}); restarted it"
                    );
                    Ok(())
                }
            }
        }
        _ => {
            tracing::info!("ensure: {unit} is {}; leaving it", st.describe());
            Ok(())
        }
    }
}

fn without_systemd(path: &Path, config: &Config) -> Result<(), Failure> {
    let pidfile = &config.daemon.pidfile;
    let unreadable = |e: std::io::Error| {
        Failure::new(
            ExitCode::NOINPUT,
            format!("cannot read {}: {e}", pidfile.display()),
        )
    };
    let Some(holder) = lock::holder(pidfile).map_err(unreadable)? else {
        let pid = start_daemon(path, pidfile)?;
        tracing::warn!("ensure: slackbotd was not running; started the daemon (pid {pid})");
        return Ok(());
    };
    let rec = record::read(&record::path_for(pidfile)).filter(|r| r.pid == holder);
    let (bot_pid, since_ms) = match &rec {
        Some(r) => (r.worker_pid, r.worker_started_ms.unwrap_or(r.started_ms)),
        None => (Some(holder), 0),
    };
    let hb = heartbeat::read(&heartbeat::path_for(pidfile)).filter(|h| Some(h.pid) == bot_pid);
    let since_ms = if since_ms == 0 {
        hb.as_ref().map_or(now_ms(), |h| h.started_ms)
    } else {
        since_ms
    };
    let running_for = Duration::from_millis(now_ms().saturating_sub(since_ms));
    let Some(why) = staleness(hb.as_ref(), running_for, config.supervise.heartbeat_timeout) else {
        tracing::debug!("ensure: slackbotd (pid {holder}) is running and healthy");
        return Ok(());
    };
    tracing::warn!("ensure: slackbotd (pid {holder}) is stale ({why}); replacing it");
    let worker = rec.and_then(|r| r.worker_pid);
    stop_holder(pidfile, holder, worker, config.supervise.stop_timeout)?;
    let pid = start_daemon(path, pidfile)?;
    tracing::warn!("ensure: replaced the stale slackbotd; the new daemon is pid {pid}");
    Ok(())
}

/// SIGTERM (and SIGCONT, in case it is stopped), then SIGKILL; returns once the lock is free.
fn stop_holder(
    pidfile: &Path,
    holder: u32,
    worker: Option<u32>,
    stop_timeout: Duration,
) -> Result<(), Failure> {
    let signal = |pid: u32, s: Signal| {
        let _ = kill(Pid::from_raw(pid as i32), s);
    };
    let free_within = |d: Duration| {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if matches!(lock::holder(pidfile), Ok(None)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    signal(holder, Signal::SIGTERM);
    signal(holder, Signal::SIGCONT);
    if let Some(w) = worker {
        signal(w, Signal::SIGCONT);
    }
    if free_within(stop_timeout + Duration::from_secs(2)) {
        return Ok(());
    }
    tracing::warn!("ensure: pid {holder} ignored SIGTERM; sending SIGKILL");
    signal(holder, Signal::SIGKILL);
    if let Some(w) = worker {
        signal(w, Signal::SIGKILL);
    }
    if free_within(Duration::from_secs(5)) {
        return Ok(());
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
fn start_daemon(path: &Path, pidfile: &Path) -> Result<u32, Failure> {
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
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let said = said.trim().replace('\n', "; ");
    match out.status.code() {
        Some(0) => {
            if said.contains("no syslog socket") {
                tracing::warn!("ensure: {said}");
            }
            Ok(lock::holder(pidfile).ok().flatten().unwrap_or(0))
        }
        Some(75) if said.contains("already running") => {
            tracing::info!("ensure: another start won the race: {said}");
            Ok(lock::holder(pidfile).ok().flatten().unwrap_or(0))
        }
        code => Err(Failure::new(
            ExitCode(code.unwrap_or(70).clamp(1, 255) as u8),
            format!(
                "starting the daemon failed: {}",
                said.trim_start_matches("slackbotd: ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(written_ago: u64, frame_ago: Option<u64>) -> Heartbeat {
        let now = now_ms();
        Heartbeat {
            pid: 1,
            mode: "run".into(),
            started_ms: now - 100_000,
            written_ms: now - written_ago,
            last_frame_ms: frame_ago.map(|a| now - a),
            last_event_ms: None,
            connections: 1,
            fresh: 1,
            heartbeat_timeout_ms: 1000,
        }
    }

    #[test]
    fn staleness_is_twice_the_timeout() {
        let t = Duration::from_secs(1);
        assert_eq!(staleness(Some(&hb(100, Some(100))), t * 10, t), None);
        assert_eq!(
            staleness(Some(&hb(100, Some(1500))), t * 10, t),
            None,
            "the watchdog's business, not ours"
        );
        assert!(staleness(Some(&hb(100, Some(2500))), t * 10, t)
            .unwrap()
            .contains("no frame"));
        assert!(staleness(Some(&hb(2500, Some(100))), t * 10, t)
            .unwrap()
            .contains("last written"));
        assert_eq!(staleness(None, t, t), None, "just started");
        assert!(staleness(None, t * 3, t).is_some());
        assert!(staleness(Some(&hb(100, None)), t * 3, t)
            .unwrap()
            .contains("not connected"));
    }
}
