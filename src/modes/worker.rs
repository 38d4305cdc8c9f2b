//! `slackbotd worker`: the bot process under slackbotd's own supervisor,
//! started (and restarted) by it. It tells the supervisor through the
//! notification socket it inherited, writes the heartbeat the supervisor
//! watches, and refuses to run unless its parent holds the lock. In daemon
//! mode it logs to syslog; under `run`, to the stderr it shares.

use crate::cli::ConfigSource;
use crate::exit::ExitCode;
use crate::modes::Failure;
use crate::service::ServiceOpts;
use crate::settings::Settings;
use crate::supervise::lock;
use crate::systemd::Notifier;

/// Runs the bot under the supervisor of `run` (`foreground`) or `daemon`.
pub(crate) fn worker(src: &ConfigSource, foreground: bool) -> Result<(), Failure> {
    let settings = Settings::load(&src.path)?;
    let d = settings.config.daemon.clone();
    let parent = nix::unistd::getppid().as_raw() as u32;
    match lock::held_by(&d.pidfile, parent) {
        true => {}
        false => {
            return Err(Failure::new(
                ExitCode::USAGE,
                "`worker` is started by `slackbotd daemon`, which holds the lock; run that instead",
            ))
        }
    }
    let mode = if foreground {
        crate::logging::init_stderr();
        "run"
    } else {
        crate::logging::init_syslog_for(&d);
        "daemon"
    };
    let opts = ServiceOpts {
        mode,
        notifier: Notifier::from_env(),
        pidfile: d.pidfile.clone(),
    };
    // Under `run` the error was logged on the stderr this process shares
    // with its supervisor: once is enough. In daemon mode the log went to
    // syslog, and the last stderr line is the reason the supervisor hands
    // to the waiting `daemon` command.
    crate::service::serve_blocking(settings, opts, "worker stopped").map_err(|e| {
        let code = crate::exit::HasExitCode::exit_code(&e);
        Failure::new(
            code,
            if foreground {
                String::new()
            } else {
                e.to_string()
            },
        )
    })
}
