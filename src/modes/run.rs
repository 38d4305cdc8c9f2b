//! `slackbotd run`: the bot in the foreground, for systemd (`Type=notify`).
//!
//! It checks the configuration and tokens, takes the single-instance lock,
//! logs to stderr (journald), and then supervises the bot as a worker child,
//! as daemon mode does: a worker crash or hang heals in milliseconds inside
//! the unit, without systemd setting up its sandbox again, and systemd's
//! `Restart=` is the second layer, for this process's own death. `READY=1`,
//! `STATUS=` and `WATCHDOG=1` reach systemd through this process, so the
//! unit's `MainPID` stays the lock holder and `NotifyAccess=main` suffices.

use std::time::Duration;

use crate::cli::ConfigSource;
use crate::exit::ExitCode;
use crate::modes::Failure;
use crate::settings::Settings;
use crate::supervise::lock::PidLock;
use crate::supervise::supervisor::{supervise, Plan};
use crate::systemd::Notifier;

/// Runs until SIGTERM/SIGINT, a fatal error, or exit 78 from the worker.
pub(crate) fn run(src: &ConfigSource) -> Result<(), Failure> {
    let path = std::path::absolute(&src.path)
        .map_err(|e| Failure::new(ExitCode::CONFIG, format!("{}: {e}", src.path.display())))?;
    // Everything that would fail every worker is reported here, once.
    let settings = Settings::load(&path)?;
    crate::logging::init_stderr();
    let lock = PidLock::acquire(&settings.config.daemon.pidfile)?;
    // Started on purpose: an earlier deliberate stop is over.
    crate::supervise::stopped::clear(&settings.config.daemon.state_dir);
    let plan = Plan {
        config_path: path,
        config: settings.config,
        mode: "run",
        wait: Duration::ZERO,
        capture_stderr: false,
    };
    match supervise(plan, lock, None, Notifier::from_env()) {
        0 => Ok(()),
        // The worker has said why on the stderr we share.
        code => Err(Failure::new(ExitCode(code), "")),
    }
}
