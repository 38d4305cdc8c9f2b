//! One file per subcommand. `main` parses the command line and calls
//! [`dispatch`]; each mode returns `Ok` or a [`Failure`] carrying its exit code.

pub(crate) mod check;
pub(crate) mod console;
pub(crate) mod daemon;
pub(crate) mod ensure;
pub(crate) mod exited;
pub(crate) mod generate;
pub(crate) mod install;
pub(crate) mod manifest;
pub(crate) mod notify;
pub(crate) mod reload;
pub(crate) mod run;
pub(crate) mod status;
pub(crate) mod stop;
pub(crate) mod worker;

use std::fmt;

use crate::cli::{Cli, Command};
use crate::exit::{ExitCode, HasExitCode};

/// A failed command: what to print and which code to exit with.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The exit code.
    pub(crate) code: ExitCode,
    /// The message, already in words an administrator understands.
    pub(crate) message: String,
}

impl Failure {
    /// A failure with an explicit code.
    pub(crate) fn new(code: ExitCode, message: impl Into<String>) -> Failure {
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
pub(crate) fn dispatch(cli: Cli) -> i32 {
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
        Command::Worker { foreground } => worker::worker(&source, foreground),
        Command::Stop { timeout, for_ } => stop::stop(&source, timeout, for_),
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
        Command::Status { json, fleet: true } => return status::fleet(&source, json),
        Command::Status { json, .. } => return status::status(&source, json),
        Command::Check => check::check(&source),
        Command::Completions { shell } => generate::completions(shell),
        Command::Manifest { name } => manifest::manifest(&name),
        Command::Generate { what } => generate::generate(&what),
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

/// A single-threaded runtime for the commands that talk to Slack or the
/// router briefly (`check`, `console`).
pub(crate) fn small_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::new(
                ExitCode::OSERR,
                format!("cannot start the async runtime: {e}"),
            )
        })
}
