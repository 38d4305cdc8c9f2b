//! `slackbotd worker`: the bot process of daemon mode, started (and
//! restarted) by the supervisor. It logs to syslog and writes the heartbeat
//! the supervisor watches; it refuses to run unless its parent holds the lock.

use crate::cli::ConfigSource;
use crate::exit::ExitCode;
use crate::modes::Failure;
use crate::service::ServiceOpts;
use crate::settings::Settings;
use crate::supervise::{heartbeat, lock};
use crate::systemd::Notifier;

/// Runs the bot under the daemon's supervisor.
pub fn worker(src: &ConfigSource) -> Result<(), Failure> {
    let settings = Settings::load(&src.path)?;
    let d = settings.config.daemon.clone();
    let parent = nix::unistd::getppid().as_raw() as u32;
    match lock::holder(&d.pidfile) {
        Ok(Some(pid)) if pid == parent => {}
        _ => {
            return Err(Failure::new(
                ExitCode::USAGE,
                "`worker` is started by `slackbotd daemon`, which holds the lock; run that instead",
            ))
        }
    }
    crate::logging::init_syslog_for(&d);
    let opts = ServiceOpts {
        mode: "daemon",
        notifier: Notifier::disabled(),
        heartbeat: Some(heartbeat::path_for(&d.pidfile)),
        wake: Some(d.pidfile.with_extension("wake")),
    };
    crate::modes::serve_blocking(settings, opts, "worker stopped")
}
