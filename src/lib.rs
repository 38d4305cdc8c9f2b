//! slackbotd keeps a Slack bot alive on a Linux server and is that bot.
//!
//! The crate is laid out in layers, by concern. This is the order, written
//! once; a module may use only the modules listed before it, never one after
//! it (`tests/architecture.rs` reads this list and fails on an import that
//! goes up):
//!
//! layers: exit clock host backoff text files memory cause | syslog systemd systemctl tls | config confdoc secrets logging | health metrics store fleet supervise | slack settings | bot | wake monitor exporter member service | cli modes
//!
//! - **Foundations** (`exit` … `memory`): exit codes, time, this host's name,
//!   retry timing, text cutting, safe file writes, giving memory back. They
//!   know nothing of Slack.
//! - **Operating-system edges** (`syslog`, `systemd`, `systemctl`): each
//!   speaks one protocol, in one file.
//! - **What the administrator wrote** (`config`, its documentation `confdoc`,
//!   `secrets`) and where log
//!   lines go (`logging`).
//! - **Process mechanisms** (`health`, `store`, `fleet`, `supervise`): the
//!   shared health record, the state (SQLite, or PostgreSQL for a fleet),
//!   the lock, heartbeat and supervisor.
//! - **Slack** (`slack`) and the live settings built from the configuration
//!   (`settings`).
//! - **The bot** (`bot`): what happens to an acknowledged envelope. It never
//!   asks which mode it runs in.
//! - **A running bot, assembled** (`wake`, `monitor`, `member` for a fleet,
//!   `service`).
//! - **The command line** (`cli`, `modes`): one file per subcommand.
//!
//! ARCHITECTURE.md draws the same map with the paths an envelope and a
//! notification take.
//!
//! Nothing outside the crate uses it but `main.rs`, through [`main`]: the
//! integration tests run the binary. So everything else is `pub(crate)`, and
//! the compiler reports what nobody uses.

#![deny(unreachable_pub, missing_docs)]

pub(crate) mod backoff;
pub(crate) mod bot;
pub(crate) mod cause;
pub(crate) mod cli;
pub(crate) mod clock;
pub(crate) mod confdoc;
pub(crate) mod config;
pub(crate) mod exit;
pub(crate) mod exporter;
pub(crate) mod files;
pub(crate) mod fleet;
pub(crate) mod health;
pub(crate) mod host;
pub(crate) mod logging;
pub(crate) mod member;
pub(crate) mod memory;
pub(crate) mod metrics;
pub(crate) mod modes;
pub(crate) mod monitor;
pub(crate) mod secrets;
pub(crate) mod service;
pub(crate) mod settings;
pub(crate) mod slack;
pub(crate) mod store;
pub(crate) mod supervise;
pub(crate) mod syslog;
pub(crate) mod systemctl;
pub(crate) mod systemd;
pub(crate) mod text;
pub(crate) mod tls;
pub(crate) mod wake;

/// The version string shown by `--version`, `status` and the `status` built-in.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Parses the command line, runs the chosen subcommand, and returns the
/// process exit code.
pub fn main() -> i32 {
    use clap::Parser;
    match cli::Cli::try_parse() {
        Ok(cli) => modes::dispatch(cli),
        Err(e) => {
            let code = if e.use_stderr() {
                exit::ExitCode::USAGE.code()
            } else {
                0
            };
            let _ = e.print();
            code
        }
    }
}
