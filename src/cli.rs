//! The command line, as clap derive types. Parsing only: each subcommand is
//! carried out by its file in `modes`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Default configuration path when neither `--config` nor `$SLACKBOTD_CONFIG` is given.
pub const DEFAULT_CONFIG: &str = "/etc/slackbotd/slackbotd.toml";

#[derive(Debug, Parser)]
#[command(
    name = "slackbotd",
    version,
    about = "Keeps a Slack bot alive on a Linux server, and is that bot",
    long_about = "Keeps a Slack bot alive on a Linux server, and is that bot.\n\n\
        Run it under systemd with `slackbotd run`, try it without Slack with \
        `slackbotd console`, and validate a setup with `slackbotd check`.",
    after_help = "Exit codes follow sysexits(3): 0 ok, 64 usage, 69 unavailable, \
        75 temporary failure, 78 configuration or credentials."
)]
pub struct Cli {
    /// Configuration file [default: $SLACKBOTD_CONFIG, else /etc/slackbotd/slackbotd.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bot in the foreground, for systemd (Type=notify); logs to stderr
    Run,
    /// Validate the configuration and tokens, and open one Socket Mode connection
    Check,
    /// Talk to the bot in the terminal, no Slack needed: one command per line
    Console,
}

/// Where the configuration comes from, and whether the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    /// The path to read.
    pub path: PathBuf,
    /// True when given by `--config` or `$SLACKBOTD_CONFIG`, false for the default.
    pub explicit: bool,
}

impl Cli {
    /// The configuration path in SPEC's order: `--config`, `$SLACKBOTD_CONFIG`, the default.
    pub fn config_source(&self) -> ConfigSource {
        if let Some(p) = &self.config {
            return ConfigSource {
                path: p.clone(),
                explicit: true,
            };
        }
        match std::env::var_os("SLACKBOTD_CONFIG") {
            Some(p) if !p.is_empty() => ConfigSource {
                path: PathBuf::from(p),
                explicit: true,
            },
            _ => ConfigSource {
                path: PathBuf::from(DEFAULT_CONFIG),
                explicit: false,
            },
        }
    }
}
