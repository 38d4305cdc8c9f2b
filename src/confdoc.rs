//! Every configuration key, its default and its meaning, written once. The
//! example configuration (`etc/slackbotd.example.toml`, installed as
//! `/etc/slackbotd/slackbotd.toml`) and the FILES section of the man page
//! are both generated from this table, so the two cannot drift; a test
//! fails when the configuration gains a key this table does not describe.

/// A section of the configuration file.
#[derive(Debug)]
pub(crate) struct Section {
    /// Its name (`slack`, or `command` for the `[[command]]` array).
    pub(crate) name: &'static str,
    /// True for an array of tables (`[[command]]`).
    pub(crate) array: bool,
    /// Its presence switches something on: shown commented out, header and all.
    pub(crate) switch: bool,
    /// What the section is for.
    pub(crate) about: &'static str,
    /// Its keys.
    pub(crate) keys: &'static [Key],
}

/// One key.
#[derive(Debug)]
pub(crate) struct Key {
    /// The key's name.
    pub(crate) name: &'static str,
    /// Its value in the example, as TOML.
    pub(crate) example: &'static str,
    /// The default, in words; `None` when it must be given.
    pub(crate) default: Option<&'static str>,
    /// What it means.
    pub(crate) about: &'static str,
    /// Shown set (not commented out) in the example file.
    pub(crate) set: bool,
}

const fn key(
    name: &'static str,
    example: &'static str,
    default: &'static str,
    about: &'static str,
) -> Key {
    Key {
        name,
        example,
        default: Some(default),
        about,
        set: false,
    }
}

/// The sections, in the order of the example file.
pub(crate) const SECTIONS: &[Section] = &[
    Section {
        name: "slack",
        array: false,
        switch: false,
        about: "Where Slack is, and the two tokens. Without the two *_file keys slackbotd reads, in order: the systemd credentials slack-app-token and slack-bot-token (the shipped unit loads them from /etc/slackbotd/app-token and bot-token), $SLACK_APP_TOKEN and $SLACK_BOT_TOKEN, and last the files app-token and bot-token beside this file. A token file must be a regular file (not a link) owned by root or the bot's user, and neither readable nor writable by group or others (chmod 600).",
        keys: &[
            key("app_token_file", "\"/etc/slackbotd/app-token\"", "the credential, environment or app-token beside this file", "The app-level token (xapp-…, scope connections:write), for Socket Mode."),
            key("bot_token_file", "\"/etc/slackbotd/bot-token\"", "the credential, environment or bot-token beside this file", "The Bot User OAuth Token (xoxb-…), for the Web API."),
            key("api_url", "\"https://slack.com/api\"", "https://slack.com/api", "The Web API base URL, without a trailing slash."),
            key("connections", "2", "2", "Socket Mode connections held at once (1 to 10). Two ride out a refresh better than one."),
            key("call_timeout", "\"30s\"", "30s", "How long one Web API call may take before it counts as failed (1s to 5m)."),
        ],
    },
    Section {
        name: "daemon",
        array: false,
        switch: false,
        about: "Files and identity of the running bot.",
        keys: &[
            key("pidfile", "\"/run/slackbotd/slackbotd.pid\"", "/run/slackbotd/slackbotd.pid", "The pidfile, locked for as long as the bot runs (run and daemon modes alike); liveness is the lock, never the pid in it."),
            key("state_dir", "\"/var/lib/slackbotd\"", "/var/lib/slackbotd", "The SQLite state: the durable inbox, the outbox, de-duplication and the restart history. Created 0700; its files are 0600."),
            key("user", "\"slackbotd\"", "none (stay root)", "Daemon mode only: the user to drop privileges to after taking the lock (start as root; the token files must then belong to this user)."),
            key("group", "\"slackbotd\"", "the user's primary group", "Daemon mode only: the group to drop privileges to."),
            key("syslog_facility", "\"daemon\"", "daemon", "Daemon mode logs to syslog with this facility (daemon, user, local0 to local7)."),
            key("syslog_socket", "\"/dev/log\"", "/dev/log", "The syslog socket of daemon mode; slackbotd reconnects when syslogd restarts."),
        ],
    },
    Section {
        name: "supervise",
        array: false,
        switch: false,
        about: "Health and restart timing.",
        keys: &[
            key("backoff_initial", "\"100ms\"", "100ms", "The first delay before reconnecting or restarting after a failure; delays double, with jitter, up to backoff_max."),
            key("backoff_max", "\"30s\"", "30s", "The longest delay the backoff grows to."),
            key("heartbeat_timeout", "\"90s\"", "90s", "No frame from Slack for this long means unhealthy: the connection is replaced and the systemd watchdog is no longer fed. The bot pings four times per timeout, so a quiet workspace never looks dead."),
            key("stop_timeout", "\"10s\"", "10s", "How long a graceful stop (SIGTERM) may take to finish requests in progress; what is left is answered after the next start."),
        ],
    },
    Section {
        name: "ensure",
        array: false,
        switch: false,
        about: "What `slackbotd ensure` (from cron) inspects and repairs.",
        keys: &[
            key("unit", "\"slackbotd.service\"", "slackbotd.service", "The systemd unit ensure inspects and repairs under systemd."),
            key("lockfile", "\"/run/slackbotd-ensure.lock\"", "/run/slackbotd-ensure.lock for root, state_dir/ensure.lock for others", "ensure's own lock, so runs from cron never pile up."),
            key("timeout", "\"50s\"", "50s", "The longest one ensure run may take, waiting for its lock included."),
        ],
    },
    Section {
        name: "announce",
        array: false,
        switch: false,
        about: "Restart announcements: once it is back after an unclean stop, the bot says what happened.",
        keys: &[
            key("channel", "\"C0123OPS\"", "none (no announcements)", "The channel ID for announcements: the signal or exit code, the downtime, the restarts in the last hour."),
            key("quiet", "\"10m\"", "10m", "At most one announcement per this period; a crash loop's further restarts are summed up in the next one."),
        ],
    },
    Section {
        name: "outbox",
        array: false,
        switch: false,
        about: "How notifications (`slackbotd notify`) are delivered.",
        keys: &[
            key("pace", "\"1s\"", "1s", "The least time between two messages to one channel; Slack asks for about one message per second per channel."),
            key("keep", "\"7d\"", "7d", "How long delivered and failed notifications are kept for inspection."),
        ],
    },
    Section {
        name: "bot",
        array: false,
        switch: false,
        about: "Limits that apply to every request, and who may ask the built-in `status`.",
        keys: &[
            key("max_concurrent_commands", "8", "8", "Operator commands running at once, all commands together; a request beyond it is answered as busy."),
            key("reply_limit", "3000", "3000", "The longest reply, in characters; longer command output is cut, with a note."),
            key("dedup_retention", "\"1h\"", "1h", "How long event IDs are remembered, so an event Slack delivers again is answered once."),
            key("status_allow_users", "[\"U0123456\"]", "everyone", "Slack user IDs who may ask the built-in status (it shows the host, the pid and the last crash's cause)."),
            key("status_allow_channels", "[\"C0123OPS\"]", "everywhere", "Channel IDs where the built-in status answers."),
        ],
    },
    Section {
        name: "metrics",
        array: false,
        switch: false,
        about: "Prometheus figures, off by default. A port in use or an unwritable textfile stops the start with exit 78.",
        keys: &[
            key("listen", "\"127.0.0.1:9464\"", "none (no endpoint)", "An address and port for an HTTP /metrics endpoint (loopback unless the address says otherwise)."),
            key("textfile", "\"/var/lib/prometheus/node-exporter/slackbotd.prom\"", "none (no file)", "A file rewritten atomically every 15 s, for node_exporter's textfile collector."),
        ],
    },
    Section {
        name: "fleet",
        array: false,
        switch: true,
        about: "Several hosts running one Slack app, their state shared in PostgreSQL: at most `connections` Socket Mode connections for the whole fleet, each event answered once on whichever host, commands addressed to hosts (`@bot on web-3 disk`, `on db uptime`, `on all uptime`), one outbox, and a dead host's share of the work taken over within `lease`. Without this section nothing changes and no PostgreSQL is needed. The password comes from password_file, else the systemd credential fleet-db-password, else $SLACKBOTD_DB_PASSWORD, else the file db-password beside this file; never from the command line.",
        keys: &[
            Key { name: "database", example: "\"postgres://slackbotd@db.example/slackbotd\"", default: None, about: "A libpq connection string or URL; sslmode=require asks for TLS, with the server's certificate checked against the system's CAs.", set: false },
            key("password_file", "\"/etc/slackbotd/db-password\"", "the credential, environment or db-password beside this file", "A file holding the database password (mode 0600)."),
            key("host", "\"web-3\"", "the hostname", "This host's name in the fleet: lowercase letters, digits, '-', '_' and '.'."),
            key("tags", "[\"web\", \"eu\"]", "none", "Names that address several hosts at once (`@bot on web uptime`)."),
            key("connections", "4", "4", "Socket Mode connections for the whole fleet (1 to 10; Slack allows 10 per app), spread one per host before any host holds two."),
            key("lease", "\"15s\"", "15s", "How long a host that went silent keeps its connections, jobs and claimed notifications before the others take them over (3s to 10m)."),
        ],
    },
    Section {
        name: "command",
        array: true,
        switch: false,
        about: "Operator commands: any executable, run with argv (never a shell). SLACK_USER_ID, SLACK_CHANNEL_ID, SLACK_TEAM_ID and SLACKBOTD_COMMAND are in its otherwise empty environment; the event's JSON is on its stdin; its stdout is the reply. The words after the command's name become its arguments only as `args` allows, because a word is also an option: `date -f /etc/shadow` prints that file, `find -exec` and `git -c` run programs. In a glob, * and ? never match \"/\", a word with a \"..\" component never matches, and a word starting with \"-\" matches only a glob starting with \"-\".",
        keys: &[
            Key { name: "name", example: "\"uptime\"", default: None, about: "The word that runs it (not help, ping or status).", set: true },
            Key { name: "run", example: "[\"/usr/bin/uptime\"]", default: None, about: "The program (an absolute path) and its first arguments.", set: true },
            Key { name: "description", example: "\"how long this server has been up\"", default: Some("none"), about: "One line that help shows.", set: true },
            key("args", "\"none\"", "\"none\"", "Which words may follow: \"none\"; \"any\" (slackbotd check warns for programs with dangerous options); or a list of globs, one per position, such as [\"--since=*\", \"web-*\"]."),
            key("args_pattern", "\"web-*\"", "none", "Instead of a list in args: one glob every word must match, for any number of words."),
            key("args_separator", "\"--\"", "none", "A word put between run and the user's words, such as \"--\", so the program reads none of them as an option."),
            key("allow_users", "[\"U0123456\"]", "everyone", "Slack user IDs who may run it."),
            key("allow_channels", "[\"C0123456\"]", "everywhere", "Channel IDs where it may run."),
            key("timeout", "\"30s\"", "30s", "The longest run; then its whole process group is killed."),
            key("max_concurrent", "1", "1", "Runs of this command at once; a request beyond it is answered as busy."),
            key("cwd", "\"/\"", "/", "Its working directory."),
            key("user", "\"nobody\"", "the bot's user", "Run it as this user (slackbotd must run as root: daemon mode without daemon.user, not the shipped unit)."),
        ],
    },
];

/// Words wrapped to `width` columns, each line starting with `prefix`.
fn wrap(text: &str, prefix: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::from(prefix);
    for word in text.split_whitespace() {
        if line.len() > prefix.len() && line.len() + 1 + word.len() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = String::from(prefix);
        }
        if line.len() > prefix.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if line.len() > prefix.len() {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The example configuration file, as shipped.
pub(crate) fn example() -> String {
    let mut out = String::from(
        "# slackbotd configuration. Every key is optional except what your setup\n\
         # needs; the values shown commented out are the defaults (or examples,\n\
         # where there is none). Unknown keys are errors. `man slackbotd` describes\n\
         # every key. Check a configuration with:  slackbotd --config FILE check\n",
    );
    for s in SECTIONS {
        out.push('\n');
        let hash = if s.switch { "# " } else { "" };
        out.push_str(&if s.array {
            format!("{hash}[[{}]]\n", s.name)
        } else {
            format!("{hash}[{}]\n", s.name)
        });
        out.push_str(&wrap(s.about, "# ", 78));
        for k in s.keys {
            out.push('\n');
            out.push_str(&wrap(k.about, "# ", 78));
            if k.set && !s.switch {
                out.push_str(&format!("{} = {}\n", k.name, k.example));
            } else {
                out.push_str(&format!("# {} = {}\n", k.name, k.example));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A deserializer that answers nothing but records which fields a
    /// struct asks for: the configuration's own list of keys.
    struct Fields(std::cell::RefCell<Vec<&'static str>>);

    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Stop
        }
    }

    impl<'de> serde::Deserializer<'de> for &Fields {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0.borrow_mut().extend_from_slice(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    fn fields_of<T: serde::de::DeserializeOwned>() -> BTreeSet<&'static str> {
        let f = Fields(Default::default());
        let _ = T::deserialize(&f);
        f.0.into_inner().into_iter().collect()
    }

    fn documented(section: &str) -> BTreeSet<&'static str> {
        SECTIONS
            .iter()
            .find(|s| s.name == section)
            .unwrap_or_else(|| panic!("no section {section} in the table"))
            .keys
            .iter()
            .map(|k| k.name)
            .collect()
    }

    #[test]
    fn every_key_of_the_configuration_is_described_and_no_other() {
        use crate::config::*;
        let sections = fields_of::<Config>();
        let table: BTreeSet<&str> = SECTIONS.iter().map(|s| s.name).collect();
        assert_eq!(sections, table, "sections");
        assert_eq!(fields_of::<SlackConfig>(), documented("slack"));
        assert_eq!(fields_of::<DaemonConfig>(), documented("daemon"));
        assert_eq!(fields_of::<SuperviseConfig>(), documented("supervise"));
        assert_eq!(fields_of::<EnsureConfig>(), documented("ensure"));
        assert_eq!(fields_of::<AnnounceConfig>(), documented("announce"));
        assert_eq!(fields_of::<OutboxConfig>(), documented("outbox"));
        assert_eq!(fields_of::<BotConfig>(), documented("bot"));
        assert_eq!(fields_of::<MetricsConfig>(), documented("metrics"));
        assert_eq!(fields_of::<CommandConfig>(), documented("command"));
        assert_eq!(fields_of::<FleetConfig>(), documented("fleet"));
        for s in SECTIONS {
            for k in s.keys {
                assert!(
                    !k.about.is_empty(),
                    "{}.{} has no description",
                    s.name,
                    k.name
                );
            }
        }
    }

    #[test]
    fn the_example_parses_with_every_key_set_and_is_the_shipped_file() {
        // Every key set to its example value parses: the examples are valid.
        let mut all = String::new();
        for s in SECTIONS {
            all.push_str(&if s.array {
                format!("[[{}]]\n", s.name)
            } else {
                format!("[{}]\n", s.name)
            });
            for k in s.keys {
                if k.name == "args_pattern" {
                    continue; // it replaces a list in `args`
                }
                all.push_str(&format!("{} = {}\n", k.name, k.example));
            }
        }
        let parsed: Result<crate::config::Config, _> = toml::from_str(&all);
        assert!(parsed.is_ok(), "{all}\n{:?}", parsed.err());
        let shipped = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/slackbotd.example.toml"),
        )
        .unwrap();
        assert!(
            shipped == example(),
            "etc/slackbotd.example.toml is generated: run `slackbotd example-config > etc/slackbotd.example.toml`"
        );
    }
}
