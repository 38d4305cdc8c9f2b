//! `slackbotd run`: the bot in the foreground, for systemd (`Type=notify`).
//! Takes the single-instance lock, logs to stderr (journald), and serves.

use crate::cli::ConfigSource;
use crate::modes::Failure;
use crate::service::ServiceOpts;
use crate::settings::Settings;
use crate::supervise::lock::PidLock;
use crate::systemd::Notifier;

/// Runs until SIGTERM/SIGINT or a fatal error.
pub(crate) fn run(src: &ConfigSource) -> Result<(), Failure> {
    let settings = Settings::load(&src.path)?;
    crate::logging::init_stderr();
    let mut lock = PidLock::acquire(&settings.config.daemon.pidfile)?;
    let opts = ServiceOpts {
        mode: "run",
        notifier: Notifier::from_env(),
        pidfile: lock.path().to_path_buf(),
    };
    let result = crate::service::serve_blocking(settings, opts, "stopped");
    if result.is_ok() {
        // A clean stop: an empty pidfile tells `status` nobody died.
        let _ = lock.clear();
    }
    result.map_err(Failure::from)
}
