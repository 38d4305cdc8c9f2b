//! `slackbotd stop`: SIGTERM to the lock holder, then wait until the lock is
//! free (the only proof that it is gone) and report.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cli::ConfigSource;
use crate::config::Config;
use crate::exit::ExitCode;
use crate::modes::Failure;
use crate::supervise::lock;

/// Stops the running bot; succeeds when it was not running.
pub(crate) fn stop(src: &ConfigSource, timeout: Duration) -> Result<(), Failure> {
    let config = Config::load(&src.path)?;
    let pidfile = config.daemon.pidfile.clone();
    let unreadable = |e: std::io::Error| {
        Failure::new(
            ExitCode::NOINPUT,
            format!("cannot read {}: {e}", pidfile.display()),
        )
    };
    let pid = match lock::holder(&pidfile).map_err(unreadable)? {
        None => {
            println!("slackbotd is not running");
            return Ok(());
        }
        Some(0) => {
            return Err(Failure::new(
                ExitCode::UNAVAILABLE,
                format!(
                    "{} is locked but names no pid; cannot tell whom to stop",
                    pidfile.display()
                ),
            ))
        }
        Some(pid) => pid,
    };
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM)
        .map_err(|e| Failure::new(ExitCode::NOPERM, format!("cannot signal pid {pid}: {e}")))?;
    let started = Instant::now();
    while started.elapsed() < timeout {
        match lock::holder(&pidfile) {
            Ok(None) => {
                println!(
                    "slackbotd (pid {pid}) stopped after {:.1}s",
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
