//! The TOML configuration: its shape, its defaults, and its validation.
//!
//! Unknown keys are errors, every problem names the file and the key, and
//! every configuration error maps to exit code 78 (EX_CONFIG), so systemd's
//! `RestartPreventExitStatus=78` never turns a typo into a crash loop.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::exit::{ExitCode, HasExitCode};
use crate::syslog::Facility;

/// Slack refuses more than this many Socket Mode connections per app.
pub(crate) const MAX_CONNECTIONS: u8 = 10;

/// Names the bot answers itself; operator commands may not take them.
pub(crate) const BUILTIN_COMMANDS: &[&str] = &["help", "ping", "status"];

/// A configuration problem, always naming its file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// There is no such file.
    #[error("there is no configuration file {path}: run `slackbotd install` to write one, or pass --config")]
    Missing { path: PathBuf },
    /// The file could not be read at all.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TOML did not parse or did not fit the schema (toml names line, column and key).
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value parsed but is not acceptable.
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl HasExitCode for ConfigError {
    fn exit_code(&self) -> ExitCode {
        ExitCode::CONFIG
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    pub(crate) slack: SlackConfig,
    pub(crate) daemon: DaemonConfig,
    pub(crate) supervise: SuperviseConfig,
    pub(crate) ensure: EnsureConfig,
    pub(crate) announce: AnnounceConfig,
    pub(crate) outbox: OutboxConfig,
    pub(crate) bot: BotConfig,
    pub(crate) metrics: MetricsConfig,
    #[serde(rename = "command")]
    pub(crate) commands: Vec<CommandConfig>,
    /// Several hosts, one Slack app, state shared in PostgreSQL; absent:
    /// this host alone, with SQLite.
    pub(crate) fleet: Option<FleetConfig>,
    /// The directory of the file this was read from (set by [`Config::load`]);
    /// tokens default to `app-token` and `bot-token` there.
    #[serde(skip)]
    pub(crate) base_dir: Option<PathBuf>,
}

/// `[slack]`: where Slack is and how to authenticate.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SlackConfig {
    /// File holding the app-level token (`xapp-…`) used for Socket Mode.
    pub(crate) app_token_file: Option<PathBuf>,
    /// File holding the bot token (`xoxb-…`) used for the Web API.
    pub(crate) bot_token_file: Option<PathBuf>,
    /// The Web API base URL, without a trailing slash.
    pub(crate) api_url: String,
    /// How many Socket Mode connections to hold (1..=10).
    pub(crate) connections: u8,
    /// How long one Web API call may take before it counts as failed.
    #[serde(deserialize_with = "duration")]
    pub(crate) call_timeout: Duration,
}

impl Default for SlackConfig {
    fn default() -> Self {
        SlackConfig {
            app_token_file: None,
            bot_token_file: None,
            api_url: "https://slack.com/api".to_string(),
            connections: 2,
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// `[daemon]`: files and identity of the running bot.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DaemonConfig {
    /// The pidfile, flocked for the whole life of `run` and `daemon`.
    pub(crate) pidfile: PathBuf,
    /// Directory of the SQLite state (outbox, de-duplication, restart history).
    pub(crate) state_dir: PathBuf,
    /// User to drop privileges to in daemon mode.
    pub(crate) user: Option<String>,
    /// Group to drop privileges to in daemon mode.
    pub(crate) group: Option<String>,
    /// syslog facility for daemon mode.
    #[serde(deserialize_with = "facility")]
    pub(crate) syslog_facility: Facility,
    /// The syslog socket for daemon mode.
    pub(crate) syslog_socket: PathBuf,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            pidfile: PathBuf::from("/run/slackbotd/slackbotd.pid"),
            state_dir: PathBuf::from("/var/lib/slackbotd"),
            user: None,
            group: None,
            syslog_facility: Facility::DAEMON,
            syslog_socket: PathBuf::from("/dev/log"),
        }
    }
}

/// `[supervise]`: health and restart timing.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SuperviseConfig {
    /// First delay before reconnecting or restarting after a failure.
    #[serde(deserialize_with = "duration")]
    pub(crate) backoff_initial: Duration,
    /// Longest delay the backoff grows to.
    #[serde(deserialize_with = "duration")]
    pub(crate) backoff_max: Duration,
    /// No Slack frame for this long means unhealthy: the connection is
    /// replaced, the watchdog is no longer fed.
    #[serde(deserialize_with = "duration")]
    pub(crate) heartbeat_timeout: Duration,
    /// How long a graceful stop may take before in-flight work is abandoned.
    #[serde(deserialize_with = "duration")]
    pub(crate) stop_timeout: Duration,
}

impl Default for SuperviseConfig {
    fn default() -> Self {
        SuperviseConfig {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(90),
            stop_timeout: Duration::from_secs(10),
        }
    }
}

/// `[ensure]`: what the cron job checks.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct EnsureConfig {
    /// The systemd unit to inspect and repair.
    pub(crate) unit: String,
    /// The lock that keeps `ensure` runs from piling up (root's lives in
    /// `/run`, where only root writes; see `modes/ensure.rs`).
    pub(crate) lockfile: PathBuf,
    /// The longest one `ensure` run may take, waiting for the lock included.
    #[serde(deserialize_with = "duration")]
    pub(crate) timeout: Duration,
}

impl Default for EnsureConfig {
    fn default() -> Self {
        EnsureConfig {
            unit: "slackbotd.service".to_string(),
            lockfile: PathBuf::from("/run/slackbotd-ensure.lock"),
            timeout: Duration::from_secs(50),
        }
    }
}

/// `[announce]`: where restarts and crashes are reported.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AnnounceConfig {
    /// Channel ID for restart announcements; none when unset.
    pub(crate) channel: Option<String>,
    /// At most one announcement per this period: a crash loop's further
    /// restarts are summed up in the next one.
    #[serde(deserialize_with = "duration")]
    pub(crate) quiet: Duration,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        AnnounceConfig {
            channel: None,
            quiet: Duration::from_secs(600),
        }
    }
}

/// `[outbox]`: how notifications are delivered.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct OutboxConfig {
    /// The least time between two messages to one channel (Slack asks for
    /// about one message per second per channel).
    #[serde(deserialize_with = "duration")]
    pub(crate) pace: Duration,
    /// How long delivered and failed messages are kept for inspection.
    #[serde(deserialize_with = "duration")]
    pub(crate) keep: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            pace: Duration::from_secs(1),
            keep: Duration::from_secs(7 * 86_400),
        }
    }
}

/// `[metrics]`: where Prometheus finds the bot's figures; off by default.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MetricsConfig {
    /// An address and port for an HTTP `/metrics` endpoint, such as
    /// `127.0.0.1:9464` (loopback unless the address says otherwise).
    pub(crate) listen: Option<std::net::SocketAddr>,
    /// A file rewritten every 15 s for node_exporter's textfile collector.
    pub(crate) textfile: Option<PathBuf>,
}

/// `[bot]`: limits that apply to every request.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct BotConfig {
    /// Operator commands running at once, all commands together.
    pub(crate) max_concurrent_commands: usize,
    /// Longest reply text, in characters; longer output is cut with a note.
    pub(crate) reply_limit: usize,
    /// How long an `event_id` is remembered, so a redelivery is answered once.
    #[serde(deserialize_with = "duration")]
    pub(crate) dedup_retention: Duration,
    /// Slack user IDs who may ask the built-in `status` (host, pid, last
    /// crash); everyone when absent.
    pub(crate) status_allow_users: Option<Vec<String>>,
    /// Channel IDs where `status` answers; everywhere when absent.
    pub(crate) status_allow_channels: Option<Vec<String>>,
}

impl Default for BotConfig {
    fn default() -> Self {
        BotConfig {
            max_concurrent_commands: 8,
            reply_limit: 3000,
            dedup_retention: Duration::from_secs(3600),
            status_allow_users: None,
            status_allow_channels: None,
        }
    }
}

/// One `[[command]]`: an operator's program the bot runs on request.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommandConfig {
    /// The word that invokes it.
    pub(crate) name: String,
    /// The program and its first arguments (argv, never a shell).
    pub(crate) run: Vec<String>,
    /// One line shown by `help`.
    #[serde(default)]
    pub(crate) description: Option<String>,
    /// Slack user IDs allowed to run it; everyone when absent.
    #[serde(default)]
    pub(crate) allow_users: Option<Vec<String>>,
    /// Channel IDs it may run in; everywhere when absent.
    #[serde(default)]
    pub(crate) allow_channels: Option<Vec<String>>,
    /// Longest run before the process group is killed.
    #[serde(default = "default_command_timeout", deserialize_with = "duration")]
    pub(crate) timeout: Duration,
    /// Runs of this command at once; a request beyond it is refused as busy.
    #[serde(default = "default_max_concurrent")]
    pub(crate) max_concurrent: usize,
    /// Working directory [default: /].
    #[serde(default)]
    pub(crate) cwd: Option<PathBuf>,
    /// Run as this user (needs slackbotd to run as root).
    #[serde(default)]
    pub(crate) user: Option<String>,
    /// Which words from Slack may follow the configured argv [default:
    /// none]. Words become the program's arguments, and so its options: a
    /// command says what it takes.
    #[serde(default)]
    pub(crate) args: ArgsPolicy,
    /// One glob every word must match, for any number of words (instead of
    /// a list in `args`).
    #[serde(default)]
    pub(crate) args_pattern: Option<String>,
    /// A word put between the configured argv and the user's words, such as
    /// `--`, so the program reads none of them as an option.
    #[serde(default)]
    pub(crate) args_separator: Option<String>,
}

/// `[fleet]`: this host as one of several running the same Slack app, with
/// their shared state in PostgreSQL.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct FleetConfig {
    /// A libpq connection string or URL (`postgres://user@host/db`).
    pub(crate) database: String,
    /// A file holding the database password (never the command line).
    #[serde(default)]
    pub(crate) password_file: Option<PathBuf>,
    /// This host's name in the fleet [default: the hostname].
    #[serde(default)]
    pub(crate) host: Option<String>,
    /// Names a command can address several hosts by (`@bot on db uptime`).
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    /// Socket Mode connections for the whole fleet (1..=10).
    #[serde(default = "default_fleet_connections")]
    pub(crate) connections: u8,
    /// How long a silent host keeps its share of the work.
    #[serde(default = "default_lease", deserialize_with = "duration")]
    pub(crate) lease: Duration,
}

fn default_fleet_connections() -> u8 {
    4
}

fn default_lease() -> Duration {
    Duration::from_secs(15)
}

/// Whether `name` may name a host or a tag: lowercase letters, digits,
/// `-`, `_` and `.`, at most 63 characters.
pub(crate) fn valid_fleet_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// `args` of a `[[command]]`: what the words after its name may be.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum ArgsPolicy {
    /// No words at all (the default).
    #[default]
    None,
    /// Any words: the operator trusts everyone allowed to run it.
    Any,
    /// At most one word per glob, each matching the glob at its position.
    Patterns(Vec<String>),
}

impl<'de> Deserialize<'de> for ArgsPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<String>),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(r#"args must be "none", "any", or a list of glob patterns"#)
        })? {
            Raw::Word(w) if w == "none" => Ok(ArgsPolicy::None),
            Raw::Word(w) if w == "any" => Ok(ArgsPolicy::Any),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                r#"args = {w:?}: use "none", "any", or a list of glob patterns such as ["--since=*"]"#
            ))),
            Raw::List(l) => Ok(ArgsPolicy::Patterns(l)),
        }
    }
}

fn default_max_concurrent() -> usize {
    1
}

fn default_command_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Deserializes a human duration such as "100ms", "30s" or "5m".
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration such as \"100ms\", \"30s\" or \"5m\"")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Duration, E> {
            humantime::parse_duration(s.trim()).map_err(|e| {
                E::custom(format!(
                    "invalid duration {s:?}: {e} (write e.g. \"100ms\", \"30s\" or \"5m\")"
                ))
            })
        }
    }
    d.deserialize_str(V)
}

/// Deserializes a syslog facility name.
fn facility<'de, D: Deserializer<'de>>(d: D) -> Result<Facility, D::Error> {
    let name = String::deserialize(d)?;
    Facility::from_name(name.trim()).map_err(serde::de::Error::custom)
}

impl Config {
    /// Reads, parses and validates a configuration file. Relative paths in
    /// it are taken relative to the file's own directory.
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let mut config = Config::parse(path, &text)?;
        let base = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("/"));
        config.resolve_paths(&base);
        config.base_dir = Some(base);
        Ok(config)
    }

    /// Makes every relative path absolute against `base`.
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = self.slack.app_token_file.as_mut() {
            fix(p);
        }
        if let Some(p) = self.slack.bot_token_file.as_mut() {
            fix(p);
        }
        fix(&mut self.daemon.pidfile);
        fix(&mut self.daemon.state_dir);
        fix(&mut self.daemon.syslog_socket);
        fix(&mut self.ensure.lockfile);
        if let Some(p) = self.metrics.textfile.as_mut() {
            fix(p);
        }
    }

    /// Parses and validates configuration text; `path` is only used in messages.
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.normalize();
        config.validate(path)?;
        Ok(config)
    }

    fn normalize(&mut self) {
        while self.slack.api_url.ends_with('/') {
            self.slack.api_url.pop();
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let s = &self.slack;
        if !(1..=MAX_CONNECTIONS).contains(&s.connections) {
            return Err(bad(
                "slack.connections",
                format!(
                    "{} is out of range: Slack allows 1 to {MAX_CONNECTIONS} Socket Mode connections per app",
                    s.connections
                ),
            ));
        }
        if let Some(f) = &self.fleet {
            if !(1..=MAX_CONNECTIONS).contains(&f.connections) {
                return Err(bad(
                    "fleet.connections",
                    format!(
                        "{} is out of range: Slack allows 1 to {MAX_CONNECTIONS} Socket Mode connections per app, for the whole fleet",
                        f.connections
                    ),
                ));
            }
            if f.lease < Duration::from_secs(3) || f.lease > Duration::from_secs(600) {
                return Err(bad(
                    "fleet.lease",
                    format!(
                        "{} is out of range: 3s to 10m",
                        crate::clock::short(f.lease)
                    ),
                ));
            }
            if f.database.trim().is_empty() {
                return Err(bad("fleet.database", "is empty: give a connection string such as \"postgres://slackbotd@db.example/slackbotd\"".into()));
            }
            for (key, name) in f
                .host
                .iter()
                .map(|h| ("fleet.host", h))
                .chain(f.tags.iter().map(|t| ("fleet.tags", t)))
            {
                if !valid_fleet_name(name) || name == "all" {
                    return Err(bad(
                        key,
                        format!("{name:?} is not a usable name: lowercase letters, digits, '-', '_' and '.', and not \"all\""),
                    ));
                }
            }
        }
        if !(s.api_url.starts_with("https://") || s.api_url.starts_with("http://")) {
            return Err(bad(
                "slack.api_url",
                format!("{:?} is not an http:// or https:// URL", s.api_url),
            ));
        }
        for (key, file) in [
            ("slack.app_token_file", &s.app_token_file),
            ("slack.bot_token_file", &s.bot_token_file),
        ] {
            if let Some(f) = file {
                if f.as_os_str().is_empty() {
                    return Err(bad(key, "is empty; remove the key or name a file".into()));
                }
            }
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&s.call_timeout) {
            return Err(bad(
                "slack.call_timeout",
                format!(
                    "{} is out of range: use 1s to 5m",
                    crate::clock::short(s.call_timeout)
                ),
            ));
        }
        const YEAR: Duration = Duration::from_secs(365 * 86_400);
        for (key, d) in [
            ("supervise.backoff_initial", self.supervise.backoff_initial),
            ("supervise.backoff_max", self.supervise.backoff_max),
            (
                "supervise.heartbeat_timeout",
                self.supervise.heartbeat_timeout,
            ),
            ("supervise.stop_timeout", self.supervise.stop_timeout),
            ("ensure.timeout", self.ensure.timeout),
            ("announce.quiet", self.announce.quiet),
            ("outbox.pace", self.outbox.pace),
            ("outbox.keep", self.outbox.keep),
            ("bot.dedup_retention", self.bot.dedup_retention),
        ]
        .into_iter()
        .chain(self.commands.iter().map(|c| ("command.timeout", c.timeout)))
        {
            if d > YEAR {
                return Err(bad(
                    key,
                    format!("{} is longer than a year", crate::clock::short(d)),
                ));
            }
        }
        let v = &self.supervise;
        for (key, d) in [
            ("supervise.backoff_initial", v.backoff_initial),
            ("supervise.backoff_max", v.backoff_max),
            ("supervise.stop_timeout", v.stop_timeout),
        ] {
            if d.is_zero() {
                return Err(bad(key, "must be greater than zero".into()));
            }
        }
        if v.backoff_max < v.backoff_initial {
            return Err(bad(
                "supervise.backoff_max",
                format!(
                    "{} is shorter than supervise.backoff_initial ({})",
                    crate::clock::short(v.backoff_max),
                    crate::clock::short(v.backoff_initial)
                ),
            ));
        }
        if v.heartbeat_timeout < Duration::from_secs(1) {
            return Err(bad(
                "supervise.heartbeat_timeout",
                "must be at least 1s: the bot pings Slack four times per timeout".into(),
            ));
        }
        if self.daemon.pidfile.file_name().is_none() {
            return Err(bad(
                "daemon.pidfile",
                "names a directory, not a file".into(),
            ));
        }
        if self.ensure.unit.trim().is_empty() {
            return Err(bad("ensure.unit", "is empty".into()));
        }
        if self.ensure.timeout < Duration::from_secs(1) {
            return Err(bad("ensure.timeout", "must be at least 1s".into()));
        }
        if let Some(c) = &self.announce.channel {
            if c.trim().is_empty() {
                return Err(bad(
                    "announce.channel",
                    "is empty; remove the key or name a channel ID".into(),
                ));
            }
        }
        if self.bot.max_concurrent_commands == 0 {
            return Err(bad(
                "bot.max_concurrent_commands",
                "must be at least 1".into(),
            ));
        }
        if self.bot.reply_limit < 100 || self.bot.reply_limit > 39_000 {
            return Err(bad(
                "bot.reply_limit",
                format!("{} is out of range: use 100 to 39000 characters (Slack cuts messages at 40000)", self.bot.reply_limit),
            ));
        }
        let mut seen = HashSet::new();
        for (i, c) in self.commands.iter().enumerate() {
            let key = |field: &str| format!("command[{i}] ({}).{field}", c.name);
            if c.name.is_empty() || c.name.chars().any(|ch| ch.is_whitespace()) {
                return Err(bad(
                    &format!("command[{i}].name"),
                    format!("{:?} must be one word", c.name),
                ));
            }
            let lower = c.name.to_lowercase();
            if BUILTIN_COMMANDS.contains(&lower.as_str()) {
                return Err(bad(
                    &key("name"),
                    format!("{:?} is a built-in command and cannot be redefined", c.name),
                ));
            }
            if !seen.insert(lower) {
                return Err(bad(&key("name"), format!("{:?} is defined twice", c.name)));
            }
            match c.run.first() {
                None => return Err(bad(&key("run"), "is empty; give the program and its arguments".into())),
                Some(p) if !Path::new(p).is_absolute() => {
                    return Err(bad(
                        &key("run"),
                        format!("the program {p:?} must be an absolute path (commands never go through a shell or $PATH)"),
                    ))
                }
                Some(_) => {}
            }
            if c.timeout.is_zero() {
                return Err(bad(&key("timeout"), "must be greater than zero".into()));
            }
            if c.max_concurrent == 0 {
                return Err(bad(&key("max_concurrent"), "must be at least 1".into()));
            }
            if c.args_pattern.is_some() && c.args != ArgsPolicy::None {
                return Err(bad(
                    &key("args_pattern"),
                    "and args are two ways to say the same; set one of them".into(),
                ));
            }
            if matches!(&c.args_separator, Some(w) if w.is_empty()) {
                return Err(bad(&key("args_separator"), "is empty".into()));
            }
            if let Some(d) = &c.cwd {
                if !d.is_absolute() {
                    return Err(bad(
                        &key("cwd"),
                        format!("{} must be an absolute path", d.display()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The operator command with this name (case-insensitive).
    pub(crate) fn command(&self, name: &str) -> Option<&CommandConfig> {
        self.commands
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/test.toml"), text)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.slack.connections, 2);
        assert_eq!(c.supervise.heartbeat_timeout, Duration::from_secs(90));
        assert_eq!(c.ensure.unit, "slackbotd.service");
    }

    #[test]
    fn durations_are_human() {
        let c = parse("[supervise]\nbackoff_initial = \"250ms\"\nheartbeat_timeout = \"5m\"\n")
            .unwrap();
        assert_eq!(c.supervise.backoff_initial, Duration::from_millis(250));
        assert_eq!(c.supervise.heartbeat_timeout, Duration::from_secs(300));
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let e = parse("[slack]\nconection = 2\n").unwrap_err().to_string();
        assert!(e.contains("/etc/test.toml"), "{e}");
        assert!(e.contains("conection"), "{e}");
    }

    #[test]
    fn bad_duration_is_explained() {
        let e = parse("[supervise]\nbackoff_max = \"5 parsecs\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid duration"), "{e}");
        assert!(e.contains("backoff_max"), "{e}");
    }

    #[test]
    fn connections_range() {
        let e = parse("[slack]\nconnections = 11\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("slack.connections"), "{e}");
        assert!(parse("[slack]\nconnections = 0\n").is_err());
        assert!(parse("[slack]\nconnections = 10\n").is_ok());
    }

    #[test]
    fn trailing_slash_is_trimmed() {
        let c = parse("[slack]\napi_url = \"http://127.0.0.1:1/api/\"\n").unwrap();
        assert_eq!(c.slack.api_url, "http://127.0.0.1:1/api");
    }

    #[test]
    fn commands_are_checked() {
        let ok = "[[command]]\nname = \"uptime\"\nrun = [\"/usr/bin/uptime\"]\n";
        assert_eq!(
            parse(ok).unwrap().command("UPTIME").unwrap().run[0],
            "/usr/bin/uptime"
        );
        let e = parse("[[command]]\nname = \"ping\"\nrun = [\"/bin/true\"]\n").unwrap_err();
        assert!(e.to_string().contains("built-in"), "{e}");
        let e = parse("[[command]]\nname = \"x\"\nrun = [\"true\"]\n").unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
        let e = parse(&format!("{ok}{ok}")).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }

    #[test]
    fn args_policies_parse() {
        let cmd = |extra: &str| {
            parse(&format!(
                "[[command]]\nname = \"d\"\nrun = [\"/bin/date\"]\n{extra}"
            ))
        };
        assert_eq!(cmd("").unwrap().commands[0].args, ArgsPolicy::None);
        assert_eq!(
            cmd("args = \"any\"").unwrap().commands[0].args,
            ArgsPolicy::Any
        );
        assert_eq!(
            cmd("args = [\"+%s\"]").unwrap().commands[0].args,
            ArgsPolicy::Patterns(vec!["+%s".into()])
        );
        let e = cmd("args = \"all\"").unwrap_err().to_string();
        assert!(e.contains(r#""none", "any""#), "{e}");
        let e = cmd("args = \"any\"\nargs_pattern = \"x*\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("set one of them"), "{e}");
    }

    #[test]
    fn absurd_durations_are_refused() {
        let e = parse("[outbox]\nkeep = \"500years\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("outbox.keep") && e.contains("longer than a year"),
            "{e}"
        );
    }

    #[test]
    fn backoff_order() {
        let e = parse("[supervise]\nbackoff_initial = \"5s\"\nbackoff_max = \"1s\"\n").unwrap_err();
        assert!(e.to_string().contains("supervise.backoff_max"), "{e}");
    }
}
