//! One file per subcommand. `main` parses the command line and calls
//! [`dispatch`]; each mode returns `Ok` or a [`Failure`] carrying its exit code.

pub mod check;
pub mod console;
pub mod daemon;
pub mod ensure;
pub mod exited;
pub mod install;
pub mod notify;
pub mod reload;
pub mod run;
pub mod status;
pub mod stop;
pub mod worker;

use std::fmt;

use crate::cli::{Cli, Command};
use crate::exit::{ExitCode, HasExitCode};

/// A failed command: what to print and which code to exit with.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: ExitCode,
    /// The message, already in words an administrator understands.
    pub message: String,
}

impl Failure {
    /// A failure with an explicit code.
    pub fn new(code: ExitCode, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl<E: HasExitCode + fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

/// Runs the chosen subcommand and returns the process exit code.
pub fn dispatch(cli: Cli) -> i32 {
    let source = cli.config_source();
    if matches!(
        cli.command,
        Command::Status { .. }
            | Command::Install { .. }
            | Command::Check
            | Command::Stop { .. }
            | Command::Reload
    ) {
        // Reporting commands end quietly when their reader goes away
        // (`slackbotd status | head`), like any Unix tool. The long-running
        // modes keep SIGPIPE ignored: a closed pipe to a command must not kill the bot.
        // SAFETY: restoring a default disposition before any thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        Command::Run => run::run(&source),
        Command::Daemon { wait } => daemon::daemon(&source, wait),
        Command::Worker => worker::worker(&source),
        Command::Stop { timeout } => stop::stop(&source, timeout),
        Command::Reload => reload::reload(&source),
        Command::Ensure => ensure::ensure(&source),
        Command::Exited => exited::exited(&source),
        Command::Notify {
            channel,
            thread,
            stdin,
            text,
        } => notify::notify(
            &source,
            &notify::Request {
                channel,
                thread,
                text: (!text.is_empty()).then(|| text.join(" ")),
                stdin,
            },
        ),
        Command::Install {
            dry_run,
            bin,
            unit_dir,
            cron_dir,
            no_systemd,
        } => {
            let bin = bin
                .or_else(|| std::env::current_exe().ok())
                .unwrap_or_else(|| std::path::PathBuf::from("/usr/local/bin/slackbotd"));
            let bin = std::path::absolute(&bin).unwrap_or(bin);
            install::install(
                &source,
                &install::Targets {
                    bin,
                    unit_dir: (!no_systemd).then_some(unit_dir),
                    cron_dir,
                    dry_run,
                },
            )
        }
        Command::Status { json } => return status::status(&source, json),
        Command::Check => check::check(&source),
        Command::Console => console::console(&source),
    };
    match result {
        Ok(()) => 0,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("slackbotd: {}", f.message);
            }
            f.code.code()
        }
    }
}

/// Runs the bot on a fresh runtime until it stops, and logs how it ended.
pub fn serve_blocking(
    settings: crate::settings::Settings,
    opts: crate::service::ServiceOpts,
    stopped: &str,
) -> Result<(), Failure> {
    let rt = runtime()?;
    let result = rt.block_on(crate::service::serve(settings, opts));
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match &result {
        Ok(()) => tracing::info!("{stopped}"),
        Err(e) => tracing::error!("{stopped}: {e}"),
    }
    result.map_err(Failure::from)
}

/// Builds the async runtime, after any forking is done.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        // Handlers, replies and the outbox yield the CPU to the Socket Mode
        // thread (which keeps the default priority): under load, acks first.
        // SAFETY: setpriority on the calling thread only; no memory effects.
        .on_thread_start(|| unsafe {
            libc::setpriority(
                libc::PRIO_PROCESS,
                libc::syscall(libc::SYS_gettid) as libc::id_t,
                5,
            );
        })
        .build()
        .map_err(|e| {
            Failure::new(
                ExitCode::OSERR,
                format!("cannot start the async runtime: {e}"),
            )
        })
}
