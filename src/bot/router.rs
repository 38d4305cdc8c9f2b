//! The command router: one request in, one reply out. Slack messages, slash
//! commands and console lines all take this same path.

use std::sync::Arc;

use crate::bot::access::{self, Verdict};
use crate::bot::builtins::{self, BotInfo};
use crate::bot::commands::{self, Caller};
use crate::bot::event::{Origin, Request};
use crate::bot::limits::{Busy, Limits};
use crate::bot::words;
use crate::config::Config;

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The text (Slack mrkdwn).
    pub(crate) text: String,
    /// Start a thread under the request even when it was not in one
    /// (command output); replies to threaded requests always stay in the thread.
    pub(crate) threaded: bool,
}

impl Reply {
    fn plain(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            threaded: false,
        }
    }
}

/// Routes requests to built-ins and operator commands.
#[derive(Debug)]
pub(crate) struct Router {
    info: Arc<BotInfo>,
    limits: Arc<Limits>,
}

impl Router {
    /// A router reporting `info` in `status`.
    pub(crate) fn new(info: Arc<BotInfo>) -> Router {
        Router {
            info,
            limits: Arc::new(Limits::default()),
        }
    }

    /// Answers one request under `config`.
    pub(crate) async fn route(&self, req: &Request, config: &Config) -> Reply {
        let text = words::unescape(&req.text);
        let mut words = match words::split(&text) {
            Ok(w) => w,
            Err(e) => return Reply::plain(format!("I could not read that: {e}.")),
        };
        if let Origin::SlashCommand { command, .. } = &req.origin {
            let name = command.trim_start_matches('/');
            let known = crate::config::BUILTIN_COMMANDS.contains(&name.to_lowercase().as_str())
                || config.command(name).is_some();
            if known {
                words.insert(0, name.to_string());
            }
        }
        let Some(first) = words.first() else {
            return Reply::plain("Hi! Say `help` to see what I can do.");
        };
        let name = first.to_lowercase();
        let args = &words[1..];
        match name.as_str() {
            "ping" => Reply::plain(builtins::ping()),
            "help" => Reply::plain(builtins::help(config, &req.user, &req.channel)),
            "status" => Reply::plain(builtins::status(&self.info).await),
            _ => match config.command(&name) {
                Some(cmd) => self.operator(cmd, args, req, config).await,
                None => Reply::plain(format!(
                    "I don't know `{}`. Say `help` to see what I can do.",
                    first.replace('`', "'")
                )),
            },
        }
    }

    async fn operator(
        &self,
        cmd: &crate::config::CommandConfig,
        args: &[String],
        req: &Request,
        config: &Config,
    ) -> Reply {
        let refused = match access::check(cmd, &req.user, &req.channel) {
            Verdict::Allowed => None,
            Verdict::UserRefused => Some("you are not on its allow_users list"),
            Verdict::ChannelRefused => Some("it is not allowed in this channel"),
        };
        if let Some(why) = refused {
            tracing::warn!(target: "audit", user = %req.user, channel = %req.channel, command = %cmd.name, "refused: {why}");
            return Reply::plain(format!(
                ":no_entry: You may not run `{}` here: {why}.",
                cmd.name
            ));
        }
        let _permit = match self.limits.try_acquire(
            &cmd.name,
            cmd.max_concurrent,
            config.bot.max_concurrent_commands,
        ) {
            Ok(p) => p,
            Err(busy) => {
                let why = match busy {
                    Busy::Command { max } => {
                        format!("`{}` is already running {max} time(s)", cmd.name)
                    }
                    Busy::Global { max } => format!("{max} commands are already running"),
                };
                tracing::warn!(target: "audit", user = %req.user, channel = %req.channel, command = %cmd.name, "refused as busy: {why}");
                return Reply::plain(format!(
                    ":hourglass: Busy: {why}. Try again when it finishes."
                ));
            }
        };
        let caller = Caller {
            user: req.user.clone(),
            channel: req.channel.clone(),
            team: req.team.clone(),
        };
        let stdin = serde_json::to_vec(&req.raw).unwrap_or_default();
        let outcome = commands::run(cmd, args, &caller, &stdin).await;
        tracing::info!(
            target: "audit",
            user = %req.user,
            channel = %req.channel,
            command = %cmd.name,
            args = ?args,
            ending = ?outcome.ending,
            duration_ms = outcome.duration.as_millis() as u64,
            "ran operator command"
        );
        Reply {
            text: commands::reply_text(&cmd.name, &outcome, config.bot.reply_limit),
            threaded: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn req(text: &str) -> Request {
        Request {
            origin: Origin::Console,
            text: text.into(),
            user: "U1".into(),
            channel: "C1".into(),
            team: "T1".into(),
            ts: None,
            thread_ts: None,
            event_id: None,
            raw: serde_json::json!({}),
        }
    }

    fn router() -> Router {
        Router::new(Arc::new(BotInfo::new("console", None)))
    }

    #[tokio::test]
    async fn builtins_answer() {
        let cfg = Config::default();
        assert!(router()
            .route(&req("PING"), &cfg)
            .await
            .text
            .contains("pong"));
        assert!(router()
            .route(&req("help"), &cfg)
            .await
            .text
            .contains("`ping`"));
        assert!(router()
            .route(&req("nope"), &cfg)
            .await
            .text
            .contains("don't know `nope`"));
        assert!(router()
            .route(&req("say 'unbalanced"), &cfg)
            .await
            .text
            .contains("unbalanced"));
    }

    #[tokio::test]
    async fn operator_command_with_quoted_args() {
        let cfg = Config::parse(
            Path::new("x"),
            "[[command]]\nname=\"echo\"\nrun=[\"/bin/echo\"]\n",
        )
        .unwrap();
        let r = router()
            .route(&req("echo 'a b' &amp;&amp; $(id)"), &cfg)
            .await;
        assert_eq!(r.text, "a b && $(id)");
        assert!(r.threaded);
    }

    #[tokio::test]
    async fn access_refusal_is_replied() {
        let cfg = Config::parse(
            Path::new("x"),
            "[[command]]\nname=\"echo\"\nrun=[\"/bin/echo\"]\nallow_users=[\"U9\"]\n",
        )
        .unwrap();
        let r = router().route(&req("echo hi"), &cfg).await;
        assert!(r.text.contains("may not run `echo`"), "{}", r.text);
    }

    #[tokio::test]
    async fn slash_command_named_after_a_command() {
        let cfg = Config::default();
        let mut r = req("");
        r.origin = Origin::SlashCommand {
            command: "/ping".into(),
            response_url: String::new(),
        };
        assert!(router().route(&r, &cfg).await.text.contains("pong"));
        r.origin = Origin::SlashCommand {
            command: "/bot".into(),
            response_url: String::new(),
        };
        r.text = "ping".into();
        assert!(router().route(&r, &cfg).await.text.contains("pong"));
    }
}
