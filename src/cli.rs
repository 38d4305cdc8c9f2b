//! The command line, as clap derive types. Parsing only: each subcommand is
//! carried out by its file in `modes`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Default configuration path when neither `--config` nor `$SLACKBOTD_CONFIG` is given.
pub(crate) const DEFAULT_CONFIG: &str = "/etc/slackbotd/slackbotd.toml";

#[derive(Debug, Parser)]
#[command(
    name = "slackbotd",
    version,
    about = "Keeps a Slack bot alive on a Linux server, and is that bot",
    long_about = "Keeps a Slack bot alive on a Linux server, and is that bot.\n\n\
        Under systemd: `slackbotd run`. Without systemd: `slackbotd daemon`. \
        Validate a setup with `slackbotd check`; try the bot without Slack with \
        `slackbotd console`.",
    after_help = "Exit codes follow sysexits(3): 0 ok, 64 usage, 65 bad data (a corrupt \
        state file), 66 an input file missing, 69 unavailable (Slack, systemd), 70 internal \
        error, 71 system error, 73 cannot create a file, 74 I/O error (a full disk), \
        75 temporary failure (e.g. already running), 77 permission denied, \
        78 configuration or credentials. `status` uses LSB codes: 0 running and healthy, \
        1 dead with a stale pidfile, 3 not running, 4 unknown, 150 running but unhealthy.\n\
        More in slackbotd(1)."
)]
pub(crate) struct Cli {
    /// Configuration file [default: $SLACKBOTD_CONFIG, else /etc/slackbotd/slackbotd.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the bot in the foreground, for systemd (Type=notify); logs to stderr
    Run,
    /// Run as a classic daemon: double fork, pidfile lock, syslog, own supervisor
    Daemon {
        /// How long to wait for the first connection to Slack before returning
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
        wait: Duration,
    },
    /// Stop the running bot (SIGTERM to the lock holder), wait, and report
    Stop {
        /// How long to wait for it to let go of the lock
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
        timeout: Duration,
        /// Keep it stopped this long (maintenance); `ensure` starts it again
        /// afterwards. Without it, it stays stopped until started again
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        for_: Option<Duration>,
    },
    /// What runs, since when, restarts, health; exit codes follow LSB
    Status {
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
        /// The whole fleet ([fleet]): one line per host, from its database
        #[arg(long)]
        fleet: bool,
    },
    /// Re-read the configuration and tokens (SIGHUP) without dropping connections
    Reload,
    /// For cron: silent and exit 0 when healthy, else repair (start or restart)
    Ensure,
    /// Queue a message for Slack; delivered even if the bot is down right now
    Notify {
        /// Channel ID (C0123ABCD) or name
        #[arg(long, value_name = "CHANNEL")]
        channel: String,
        /// Reply in this thread (the parent message's ts)
        #[arg(long, value_name = "TS")]
        thread: Option<String>,
        /// Read the text from standard input (split into several messages if long)
        #[arg(long, conflicts_with = "text")]
        stdin: bool,
        /// The message text
        #[arg(required_unless_present = "stdin", num_args = 1.., value_name = "TEXT")]
        text: Vec<String>,
    },
    /// Validate the configuration and tokens, and open one Socket Mode connection
    Check,
    /// Talk to the bot in the terminal, no Slack needed: one command per line
    Console,
    /// Write the systemd unit, the cron line and a configuration skeleton
    Install {
        /// Show what would be written, write nothing
        #[arg(long)]
        dry_run: bool,
        /// The slackbotd binary the unit and cron line run [default: this one]
        #[arg(long, value_name = "PATH")]
        bin: Option<PathBuf>,
        /// Where the unit goes
        #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
        unit_dir: PathBuf,
        /// Where the cron line goes
        #[arg(long, value_name = "DIR", default_value = "/etc/cron.d")]
        cron_dir: PathBuf,
        /// No systemd unit: for machines where cron and `daemon` keep the bot alive
        #[arg(long)]
        no_systemd: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        /// The shell
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the Slack app manifest: paste it under Create New App → From a manifest
    Manifest {
        /// The bot's name: what people @mention, and its slash command
        #[arg(long, value_name = "NAME", default_value = "slackbotd")]
        name: String,
    },
    /// Print a file the package and `install` are built from
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: Generated,
    },
    /// The supervised bot process (started by `daemon`)
    #[command(hide = true)]
    Worker {
        /// Supervised by `run` (logs to stderr), not by `daemon` (syslog)
        #[arg(long)]
        foreground: bool,
    },
    /// Records how the bot exited (systemd's ExecStopPost=)
    #[command(hide = true)]
    Exited,
}

/// The files `slackbotd generate` prints.
#[derive(Debug, Subcommand)]
pub(crate) enum Generated {
    /// The man page slackbotd(1), in roff
    Man,
    /// The example configuration (etc/slackbotd.example.toml)
    ExampleConfig,
    /// The systemd unit, running BIN
    Unit {
        /// The binary's path
        #[arg(long, value_name = "BIN", default_value = "/usr/bin/slackbotd")]
        bin: PathBuf,
    },
    /// The cron line, running BIN
    Cron {
        /// The binary's path
        #[arg(long, value_name = "BIN", default_value = "/usr/bin/slackbotd")]
        bin: PathBuf,
    },
}

/// The clap definition of the whole command line, for the man page and
/// the completions.
pub(crate) fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Where the configuration comes from, and whether the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigSource {
    /// The path to read.
    pub(crate) path: PathBuf,
    /// True when given by `--config` or `$SLACKBOTD_CONFIG`, false for the default.
    pub(crate) explicit: bool,
}

impl Cli {
    /// The configuration path in SPEC's order: `--config`, `$SLACKBOTD_CONFIG`, the default.
    pub(crate) fn config_source(&self) -> ConfigSource {
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

/// The longest duration any option takes.
const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d =
        humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. \"30s\" or \"2m\")"))?;
    if d > MAX_DURATION {
        return Err(format!("{s} is longer than a year"));
    }
    Ok(d)
}
