//! `slackbotd generate …` (hidden) and `slackbotd completions`: the files
//! the Debian package and `install` are made of, printed from their one
//! source. The man page comes from the clap definitions (`clap_mangen` for
//! its head) and from `confdoc` for the configuration; the unit and the cron
//! line are the shipped templates with the binary's path filled in.

use std::fmt::Write as _;
use std::path::Path;

use crate::cli::Generated;
use crate::exit::ExitCode;
use crate::modes::Failure;

/// Prints one generated file.
pub(crate) fn generate(what: &Generated) -> Result<(), Failure> {
    let text = match what {
        Generated::Man => man_page()?,
        Generated::ExampleConfig => crate::confdoc::example(),
        Generated::Unit { bin } => {
            crate::modes::install::render_unit(bin, Path::new(crate::cli::DEFAULT_CONFIG))
        }
        Generated::Cron { bin } => {
            crate::modes::install::render_cron(bin, Path::new(crate::cli::DEFAULT_CONFIG))
        }
    };
    print!("{text}");
    Ok(())
}

/// Prints the completion script for `shell`.
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut cmd = crate::cli::command();
    clap_complete::generate(shell, &mut cmd, "slackbotd", &mut std::io::stdout());
    Ok(())
}

/// Text for roff: backslashes doubled, hyphens as minus signs, characters
/// beyond ASCII as groff's Unicode escapes (its input is Latin-1), and a
/// line that would start with a control character protected.
fn esc(s: &str) -> String {
    let mut t = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => t.push_str("\\e"),
            '-' => t.push_str("\\-"),
            c if c.is_ascii() => t.push(c),
            c => t.push_str(&format!("\\[u{:04X}]", u32::from(c))),
        }
    }
    t.lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One option of a subcommand, as `.TP` paragraphs show it.
fn option_lines(out: &mut String, arg: &clap::Arg) {
    if arg.is_hide_set() || arg.get_id() == "help" || arg.get_id() == "version" {
        return;
    }
    let value = arg
        .get_value_names()
        .filter(|_| arg.get_action().takes_values())
        .map(|v| {
            v.iter()
                .map(|n| format!(" \\fI{}\\fR", esc(n)))
                .collect::<String>()
        })
        .unwrap_or_default();
    let head = match (arg.get_short(), arg.get_long()) {
        (Some(s), Some(l)) => format!("\\fB\\-{s}\\fR, \\fB\\-\\-{}\\fR{value}", esc(l)),
        (None, Some(l)) => format!("\\fB\\-\\-{}\\fR{value}", esc(l)),
        (Some(s), None) => format!("\\fB\\-{s}\\fR{value}"),
        (None, None) => format!("\\fI{}\\fR", esc(arg.get_id().as_str()).to_uppercase()),
    };
    let help = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    let _ = writeln!(out, ".TP\n{head}\n{}", esc(&help));
    if !defaults.is_empty() && !arg.is_positional() && arg.get_action().takes_values() {
        let _ = writeln!(out, "[default: {}]", esc(&defaults.join(", ")));
    }
}

/// The man page slackbotd(1).
pub(crate) fn man_page() -> Result<String, Failure> {
    let cmd = crate::cli::command();
    let man = clap_mangen::Man::new(cmd.clone())
        .title("SLACKBOTD")
        .section("1")
        .source(format!("slackbotd {}", env!("CARGO_PKG_VERSION")))
        .manual("User Commands");
    let mut head = Vec::new();
    let io = |e: std::io::Error| Failure::new(ExitCode::IOERR, e.to_string());
    man.render_title(&mut head).map_err(io)?;
    man.render_name_section(&mut head).map_err(io)?;
    man.render_synopsis_section(&mut head).map_err(io)?;
    man.render_description_section(&mut head).map_err(io)?;
    let mut out = String::from_utf8_lossy(&head).into_owned();

    out.push_str(".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        let mut usage = format!(
            "\\fBslackbotd\\fR [\\fB\\-\\-config\\fR \\fIPATH\\fR] \\fB{}\\fR",
            esc(name)
        );
        for a in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_id() != "help")
        {
            if a.is_positional() {
                let n = a
                    .get_value_names()
                    .and_then(|v| v.first())
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| a.get_id().to_string().to_uppercase());
                usage.push_str(&format!(" \\fI{}\\fR", esc(&n)));
            } else if let Some(l) = a.get_long() {
                usage.push_str(&format!(" [\\fB\\-\\-{}\\fR]", esc(l)));
            }
        }
        let about = sub
            .get_long_about()
            .or_else(|| sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        let _ = writeln!(out, ".SS {}\n{usage}\n.PP\n{}", esc(name), esc(&about));
        let mut opts = String::new();
        for a in sub.get_arguments() {
            option_lines(&mut opts, a);
        }
        if !opts.is_empty() {
            let _ = write!(out, ".RS\n{opts}.RE\n");
        }
    }

    out.push_str(".SH OPTIONS\n");
    for a in cmd.get_arguments() {
        option_lines(&mut out, a);
    }

    out.push_str(".SH CONFIGURATION\n");
    out.push_str(&esc(
        "The configuration is TOML, read from the file --config names, else $SLACKBOTD_CONFIG, else /etc/slackbotd/slackbotd.toml. Unknown keys are errors; durations are written as \"100ms\", \"30s\", \"5m\" or \"1h\". Every key is optional except the name and run of a [[command]]. The keys, their defaults and their meaning:",
    ));
    out.push('\n');
    for s in crate::confdoc::SECTIONS {
        let title = if s.array {
            format!("[[{}]]", s.name)
        } else {
            format!("[{}]", s.name)
        };
        let _ = writeln!(out, ".SS {}\n{}", esc(&title), esc(s.about));
        for k in s.keys {
            let default = match k.default {
                Some(d) => format!("Default: {d}."),
                None => "Required.".to_string(),
            };
            let _ = writeln!(
                out,
                ".TP\n\\fB{}\\fR = \\fI{}\\fR\n{} {}",
                esc(k.name),
                esc(k.example),
                esc(k.about),
                esc(&default)
            );
        }
    }

    out.push_str(".SH EXIT STATUS\n");
    for (code, what) in EXIT_CODES {
        let _ = writeln!(out, ".TP\n{code}\n{}", esc(what));
    }
    out.push_str(
        ".PP\n\\fBstatus\\fR follows the LSB instead: 0 running and healthy, 1 dead with a stale pidfile, 3 not running, 4 unknown, 150 running but unhealthy.\n",
    );

    out.push_str(".SH ENVIRONMENT\n");
    for (var, what) in ENVIRONMENT {
        let _ = writeln!(out, ".TP\n\\fB{}\\fR\n{}", esc(var), esc(what));
    }
    out.push_str(".SH FILES\n");
    for (file, what) in FILES {
        let _ = writeln!(out, ".TP\n\\fI{}\\fR\n{}", esc(file), esc(what));
    }
    out.push_str(".SH SEE ALSO\n\\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1), \\fBsystemd.service\\fR(5), \\fBcron\\fR(8), \\fBsyslog\\fR(3), \\fBsysexits\\fR(3)\n");
    Ok(out)
}

/// Every exit code the program uses, and when.
pub(crate) const EXIT_CODES: &[(u8, &str)] = &[
    (0, "Success; for ensure, also: all is well, or repaired."),
    (64, "The command line is wrong."),
    (65, "Malformed data: a corrupt state file (move it aside; it is never replaced)."),
    (66, "An input file is missing or unreadable (the pidfile, for stop)."),
    (69, "A service is unavailable: Slack cannot be reached, or systemd failed to act."),
    (70, "An internal error."),
    (71, "An operating-system error (fork, exec, a runtime)."),
    (73, "A file cannot be created (the pidfile, the state, install's files)."),
    (74, "An I/O error, such as a full disk: notify then queues nothing."),
    (75, "Try again later: another instance holds the lock, or the daemon started but did not connect in time."),
    (77, "Permission denied, or a file another user controls (a planted lock or pidfile)."),
    (78, "Configuration or credentials: a bad file, a revoked or wrong token, Socket Mode turned off. The unit's RestartPreventExitStatus=78 makes it final."),
];

/// The environment variables slackbotd reads.
const ENVIRONMENT: &[(&str, &str)] = &[
    ("SLACKBOTD_CONFIG", "The configuration file, when --config is not given."),
    ("SLACKBOTD_LOG", "The log filter, as tracing's EnvFilter reads it: error, warn, info (the default), debug, or per module (slackbotd=debug)."),
    ("SLACK_APP_TOKEN", "The app-level token (xapp-…), when neither [slack].app_token_file nor a systemd credential gives one. It is never passed to operator commands."),
    ("SLACK_BOT_TOKEN", "The bot token (xoxb-…), likewise."),
    ("CREDENTIALS_DIRECTORY", "Set by systemd's LoadCredential=: the tokens are read from slack-app-token and slack-bot-token there."),
];

/// The files slackbotd reads and writes.
const FILES: &[(&str, &str)] = &[
    ("/etc/slackbotd/slackbotd.toml", "The configuration."),
    ("/etc/slackbotd/app-token, /etc/slackbotd/bot-token", "The tokens, mode 0600; the unit loads them as credentials."),
    ("/run/slackbotd/slackbotd.pid", "The pidfile, locked while the bot runs; beside it the heartbeat, the supervisor's record and the wake socket."),
    ("/var/lib/slackbotd/", "The state: slackbotd.sqlite (outbox, de-duplication, restart history) and inbox.sqlite (the durable inbox)."),
    ("/lib/systemd/system/slackbotd.service", "The unit (from the package; slackbotd install writes /etc/systemd/system/slackbotd.service)."),
    ("/etc/cron.d/slackbotd", "The cron line running slackbotd ensure every minute."),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_names_every_command_key_and_exit_code() {
        let page = man_page().unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH SLACKBOTD 1"),
            "{}",
            &page[..200]
        );
        for sub in crate::cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
        {
            assert!(
                page.contains(&format!(".SS {}\n", esc(sub.get_name()))),
                "{}",
                sub.get_name()
            );
        }
        for s in crate::confdoc::SECTIONS {
            for k in s.keys {
                assert!(
                    page.contains(&format!("\\fB{}\\fR =", esc(k.name))),
                    "{}.{}",
                    s.name,
                    k.name
                );
            }
        }
        for v in [
            "SLACKBOTD_CONFIG",
            "SLACKBOTD_LOG",
            "SLACK_APP_TOKEN",
            "SLACK_BOT_TOKEN",
        ] {
            assert!(page.contains(&esc(v)), "{v}");
        }
        for (code, _) in EXIT_CODES {
            assert!(page.contains(&format!(".TP\n{code}\n")), "{code}");
        }
    }
}
