//! `slackbotd reload`: SIGHUP to the lock holder. The foreground bot reloads
//! itself; the daemon's supervisor passes the signal on to its worker.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cli::ConfigSource;
use crate::config::Config;
use crate::exit::ExitCode;
use crate::modes::Failure;
use crate::supervise::lock;

/// Sends SIGHUP to the running bot.
pub(crate) fn reload(src: &ConfigSource) -> Result<(), Failure> {
    let config = Config::load(&src.path)?;
    let pidfile = &config.daemon.pidfile;
    match lock::signal_target(pidfile) {
        Ok(Some(pid)) => {
            kill(Pid::from_raw(pid), Signal::SIGHUP).map_err(|e| {
                Failure::new(ExitCode::NOPERM, format!("cannot signal pid {pid}: {e}"))
            })?;
            println!(
                "asked slackbotd (pid {pid}) to reload {}",
                src.path.display()
            );
            Ok(())
        }
        Ok(None) => Err(Failure::new(
            ExitCode::UNAVAILABLE,
            "slackbotd is not running: nothing to reload",
        )),
        Err(e @ lock::TargetError::Unreadable { .. }) => {
            Err(Failure::new(ExitCode::NOINPUT, e.to_string()))
        }
        Err(e) => Err(Failure::new(ExitCode::NOPERM, e.to_string())),
    }
}
