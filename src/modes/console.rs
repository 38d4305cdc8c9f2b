//! `slackbotd console`: talk to the bot in a terminal, no Slack needed. Each
//! line on stdin goes through the same router a Slack message takes, and the
//! reply is printed on stdout.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use crate::bot::builtins::BotInfo;
use crate::bot::event::{Origin, Request};
use crate::bot::router::Router;
use crate::cli::ConfigSource;
use crate::config::Config;
use crate::exit::ExitCode;
use crate::modes::Failure;

/// Loads the configuration if one was named or exists; built-ins only otherwise.
fn load(src: &ConfigSource) -> Result<Config, Failure> {
    if src.explicit || src.path.exists() {
        match Config::load(&src.path) {
            Ok(c) => return Ok(c),
            Err(e) if src.explicit => return Err(e.into()),
            Err(e) => eprintln!("slackbotd: {e}; continuing with the built-in commands only"),
        }
    }
    Ok(Config::default())
}

/// Runs the console until end of input.
pub(crate) fn console(src: &ConfigSource) -> Result<(), Failure> {
    crate::logging::init_quiet();
    let config = load(src)?;
    let rt = crate::modes::small_runtime()?;
    let router = Router::new(Arc::new(BotInfo::new("console", None)));
    let user = std::env::var("USER").unwrap_or_else(|_| "console".into());
    let interactive = std::io::stdin().is_terminal();
    let mut out = std::io::stdout().lock();
    if interactive {
        let _ = writeln!(
            out,
            "slackbotd {} console — type `help`, Ctrl-D to leave.",
            crate::VERSION
        );
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            let _ = write!(out, "you> ");
            let _ = out.flush();
        }
        let line = match lines.next() {
            None => break,
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                return Err(Failure::new(
                    ExitCode::IOERR,
                    format!("cannot read standard input: {e}"),
                ))
            }
        };
        // People type what they would type in Slack: "@slackbotd ping".
        let text = strip_mention(line.trim());
        if text.is_empty() {
            continue;
        }
        let req = Request {
            origin: Origin::Console,
            text: text.to_string(),
            user: format!("console:{user}"),
            channel: "console".into(),
            team: "console".into(),
            ts: None,
            thread_ts: None,
            event_id: None,
            raw: serde_json::json!({"type": "console", "text": text, "user": user}),
        };
        let reply = rt.block_on(router.answer(&req, &config));
        let shown = if interactive {
            format!("bot> {}", reply.text)
        } else {
            reply.text
        };
        if writeln!(out, "{shown}").and_then(|_| out.flush()).is_err() {
            break; // stdout closed: nobody is listening
        }
    }
    Ok(())
}

/// The line without a leading `@name` (or `<@U…>`), as a mention in Slack
/// would be read.
fn strip_mention(line: &str) -> &str {
    let Some(rest) = line.strip_prefix('@').or_else(|| line.strip_prefix("<@")) else {
        return line;
    };
    match rest.split_once(char::is_whitespace) {
        Some((name, words)) if !name.is_empty() => words.trim_start(),
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::strip_mention;

    #[test]
    fn a_leading_mention_is_read_as_slack_reads_it() {
        assert_eq!(strip_mention("@slackbotd ping"), "ping");
        assert_eq!(strip_mention("<@UBOT> disk /var"), "disk /var");
        assert_eq!(strip_mention("ping"), "ping");
        assert_eq!(strip_mention("@slackbotd"), "");
        assert_eq!(strip_mention("mail a@b"), "mail a@b");
    }
}
