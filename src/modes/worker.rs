//! `slackbotd worker`: the bot process of daemon mode, started (and
//! restarted) by the supervisor. It logs to syslog and writes the heartbeat
//! the supervisor watches; it refuses to run unless its parent holds the lock.

use std::time::Duration;

use crate::cli::ConfigSource;
use crate::exit::ExitCode;
use crate::modes::Failure;
use crate::service::{self, ServiceOpts};
use crate::settings::Settings;
use crate::supervise::{heartbeat, lock};
use crate::syslog::Syslog;
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
    let facility = crate::syslog::facility(&d.syslog_facility).unwrap_or(3);
    crate::logging::init_syslog(Syslog::new(&d.syslog_socket, facility, "slackbotd"));
    let opts = ServiceOpts {
        mode: "daemon",
        notifier: Notifier::disabled(),
        heartbeat: Some(heartbeat::path_for(&d.pidfile)),
        wake: Some(d.pidfile.with_extension("wake")),
    };
    let rt = crate::modes::runtime()?;
    let result = rt.block_on(service::serve(settings, opts));
    rt.shutdown_timeout(Duration::from_secs(1));
    match &result {
        Ok(()) => tracing::info!("worker stopped"),
        Err(e) => tracing::error!("worker stopped: {e}"),
    }
    result.map_err(Failure::from)
}
