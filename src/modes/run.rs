//! `slackbotd run`: the bot in the foreground, for systemd (`Type=notify`).
//! Takes the single-instance lock, logs to stderr (journald), and serves.

use std::time::Duration;

use crate::cli::ConfigSource;
use crate::modes::Failure;
use crate::service::{self, ServiceOpts};
use crate::settings::Settings;
use crate::supervise::heartbeat;
use crate::supervise::lock::PidLock;
use crate::systemd::Notifier;

/// Runs until SIGTERM/SIGINT or a fatal error.
pub fn run(src: &ConfigSource) -> Result<(), Failure> {
    let settings = Settings::load(&src.path)?;
    crate::logging::init_stderr();
    let mut lock = PidLock::acquire(&settings.config.daemon.pidfile)?;
    let opts = ServiceOpts {
        mode: "run",
        notifier: Notifier::from_env(),
        heartbeat: Some(heartbeat::path_for(lock.path())),
        wake: Some(lock.path().with_extension("wake")),
    };
    let rt = crate::modes::runtime()?;
    let result = rt.block_on(service::serve(settings, opts));
    rt.shutdown_timeout(Duration::from_secs(1));
    if result.is_ok() {
        // A clean stop: an empty pidfile tells `status` nobody died.
        let _ = lock.clear();
    }
    drop(lock);
    match &result {
        Ok(()) => tracing::info!("stopped"),
        Err(e) => tracing::error!("{e}"),
    }
    result.map_err(Failure::from)
}
