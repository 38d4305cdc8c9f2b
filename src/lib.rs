//! slackbotd keeps a Slack bot alive on a Linux server and is that bot.
//!
//! The crate is laid out by concern: `cli` and `modes` sit at the top (one
//! file per subcommand), `bot` and `slack` form the core that never asks which
//! mode it runs in, and the operating system's edges (`systemd`, `logging`,
//! `supervise`) sit at the bottom, each in one place.

pub mod bot;
pub mod cli;
pub mod clock;
pub mod config;
pub mod exit;
pub mod health;
pub mod logging;
pub mod modes;
pub mod secrets;
pub mod service;
pub mod settings;
pub mod slack;
pub mod store;
pub mod supervise;
pub mod syslog;
pub mod systemctl;
pub mod systemd;

/// The version string shown by `--version`, `status` and the `status` built-in.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
