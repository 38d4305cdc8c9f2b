//! `slackbotd stop`: marks the stop as deliberate (so `ensure` leaves the bot
//! down, for good or `--for` a while), sends SIGTERM to the lock holder, then
//! waits until the lock is free (the only proof that it is gone) and reports.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cli::ConfigSource;
use crate::config::Config;
use crate::exit::ExitCode;
use crate::modes::Failure;
use crate::supervise::lock;
use crate::supervise::stopped::{self, StopMark};

/// Stops the running bot and keeps it stopped; succeeds when it was not running.
pub(crate) fn stop(
    src: &ConfigSource,
    timeout: Duration,
    keep_for: Option<Duration>,
) -> Result<(), Failure> {
    let config = Config::load(&src.path)?;
    let pidfile = config.daemon.pidfile.clone();
    let unreadable = |e: std::io::Error| {
        Failure::new(
            ExitCode::NOINPUT,
            format!("cannot read {}: {e}", pidfile.display()),
        )
    };
    // First who to signal: a refused target (a planted pidfile) must not
    // leave a mark that makes `ensure` stand aside.
    let target = lock::signal_target(&pidfile);
    if let Err(e) = &target {
        let code = if matches!(e, lock::TargetError::Unreadable { .. }) {
            ExitCode::NOINPUT
        } else {
            ExitCode::NOPERM
        };
        return Err(Failure::new(code, e.to_string()));
    }
    // Then the mark, before the signal: an `ensure` running meanwhile must
    // not start it again.
    let mark = StopMark::now(keep_for.map(|d| d.as_millis() as u64));
    let state_dir = &config.daemon.state_dir;
    if let Err(e) = stopped::write(state_dir, &mark) {
        eprintln!(
            "slackbotd: warning: cannot note the stop in {} ({e}); `ensure` will start the bot again",
            stopped::path_for(state_dir).display()
        );
    }
    let kept = match keep_for {
        Some(d) => format!("`ensure` leaves it stopped for {}", crate::clock::short(d)),
        None => "`ensure` leaves it stopped until it is started again".to_string(),
    };
    let pid = match target {
        Ok(Some(pid)) => pid,
        _ => {
            println!("slackbotd is not running; {kept}");
            return Ok(());
        }
    };
    kill(Pid::from_raw(pid), Signal::SIGTERM)
        .map_err(|e| Failure::new(ExitCode::NOPERM, format!("cannot signal pid {pid}: {e}")))?;
    let started = Instant::now();
    while started.elapsed() < timeout {
        match lock::holder(&pidfile) {
            Ok(None) => {
                println!(
                    "slackbotd (pid {pid}) stopped after {:.1}s; {kept}",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Ok(Some(_)) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(unreadable(e)),
        }
    }
    Err(Failure::new(
        ExitCode::TEMPFAIL,
        format!(
            "slackbotd (pid {pid}) still holds the lock {}s after SIGTERM; it may be finishing work (see its log), or kill -9 {pid}",
            timeout.as_secs()
        ),
    ))
}
