//! The command router: one request in, one reply out. Slack messages, slash
//! commands and console lines all take this same path.
//!
//! Routing is split in two: [`Router::route`] decides (a built-in's answer,
//! a refusal, or an operator command ready to run), and
//! [`PreparedCommand::run`] runs the command. Between the two, the dispatcher
//! notes in the inbox that the command starts, so a crash never runs it twice.

use std::sync::Arc;

use crate::bot::access::{self, Verdict};
use crate::bot::arguments;
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

/// What routing decided.
#[derive(Debug)]
pub(crate) enum Routed {
    /// The answer, ready.
    Reply(Reply),
    /// An operator command, allowed and within its limits, ready to run.
    Command(Box<PreparedCommand>),
}

/// An operator command about to run; its slot in the limits is held.
#[derive(Debug)]
pub(crate) struct PreparedCommand {
    /// The command's configuration.
    cmd: crate::config::CommandConfig,
    /// The words after its name, as the user gave them (for the audit log).
    args: Vec<String>,
    /// What follows the configured argv: the separator, then the words.
    argv: Vec<String>,
    /// Who asked, for its environment.
    caller: Caller,
    /// The event's JSON, for its stdin.
    stdin: Vec<u8>,
    /// The longest reply.
    reply_limit: usize,
    /// The slot it holds until it ends.
    _permit: crate::bot::limits::Permit,
}

impl PreparedCommand {
    /// The command's name.
    pub(crate) fn name(&self) -> &str {
        &self.cmd.name
    }

    /// Runs it and turns its outcome into the reply.
    pub(crate) async fn run(self) -> Reply {
        self.run_counted().await.0
    }

    /// Runs it; returns the reply and how it ended, in a word (`ok`,
    /// `failed`, `signalled`, `timeout`, `spawn_failed`).
    pub(crate) async fn run_counted(self) -> (Reply, &'static str) {
        let outcome = commands::run(&self.cmd, &self.argv, &self.caller, &self.stdin).await;
        tracing::info!(
            target: "audit",
            user = %self.caller.user,
            channel = %self.caller.channel,
            command = %self.cmd.name,
            args = ?self.args,
            exit = %exit_label(&outcome.ending),
            ending = ?outcome.ending,
            duration_ms = outcome.duration.as_millis() as u64,
            "ran operator command"
        );
        let counted = match &outcome.ending {
            commands::Ending::Exited(0) => "ok",
            commands::Ending::Exited(_) => "failed",
            commands::Ending::Signalled(_) => "signalled",
            commands::Ending::TimedOut => "timeout",
            commands::Ending::SpawnFailed(_) => "spawn_failed",
        };
        crate::metrics::global().command_ran(&self.cmd.name, counted, outcome.duration);
        let reply = Reply {
            text: commands::reply_text(&self.cmd.name, &outcome, self.reply_limit),
            threaded: true,
        };
        (reply, counted)
    }
}

/// How a run ended, in a word for the log's `EXIT` field: the exit code,
/// `signal N`, `timeout`, or `not started`.
fn exit_label(e: &commands::Ending) -> String {
    match e {
        commands::Ending::Exited(c) => c.to_string(),
        commands::Ending::Signalled(s) => format!("signal {s}"),
        commands::Ending::TimedOut => "timeout".to_string(),
        commands::Ending::SpawnFailed(_) => "not started".to_string(),
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

    /// Answers one request under `config`, running a command if it asks for one.
    pub(crate) async fn answer(&self, req: &Request, config: &Config) -> Reply {
        match self.route(req, config).await {
            Routed::Reply(r) => r,
            Routed::Command(c) => c.run().await,
        }
    }

    /// Decides what one request gets under `config`.
    pub(crate) async fn route(&self, req: &Request, config: &Config) -> Routed {
        let text = words::unescape(&req.text);
        let mut words = match words::split(&text) {
            Ok(w) => w,
            Err(e) => return Routed::Reply(Reply::plain(format!("I could not read that: {e}."))),
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
            return Routed::Reply(Reply::plain("Hi! Say `help` to see what I can do."));
        };
        let name = first.to_lowercase();
        let args = &words[1..];
        let reply = match name.as_str() {
            "ping" => Reply::plain(builtins::ping()),
            "help" => {
                let mut text = builtins::help(config, &req.user, &req.channel);
                if let Some(more) = builtins::fleet_help(&self.info, config).await {
                    text.push_str(&more);
                }
                Reply::plain(text)
            }
            "status" => match access::check_status(&config.bot, &req.user, &req.channel) {
                Verdict::Allowed => Reply::plain(builtins::status(&self.info).await),
                refused => {
                    let why = match refused {
                        Verdict::UserRefused => "you are not on [bot].status_allow_users",
                        _ => "it is not allowed in this channel ([bot].status_allow_channels)",
                    };
                    tracing::warn!(target: "audit", user = %req.user, channel = %req.channel, "status refused: {why}");
                    Reply::plain(format!(
                        ":no_entry: You may not ask for `status` here: {why}."
                    ))
                }
            },
            _ => match config.command(&name) {
                Some(cmd) => return self.operator(cmd, args, req, config),
                None => Reply::plain(format!(
                    "I don't know `{}`. Say `help` to see what I can do.",
                    first.replace('`', "'")
                )),
            },
        };
        Routed::Reply(reply)
    }

    fn operator(
        &self,
        cmd: &crate::config::CommandConfig,
        args: &[String],
        req: &Request,
        config: &Config,
    ) -> Routed {
        let refused = match access::check(cmd, &req.user, &req.channel) {
            Verdict::Allowed => None,
            Verdict::UserRefused => Some("you are not on its allow_users list"),
            Verdict::ChannelRefused => Some("it is not allowed in this channel"),
        };
        if let Some(why) = refused {
            tracing::warn!(target: "audit", user = %req.user, channel = %req.channel, command = %cmd.name, "refused: {why}");
            crate::metrics::global().command_ran(&cmd.name, "refused", Default::default());
            return Routed::Reply(Reply::plain(format!(
                ":no_entry: You may not run `{}` here: {why}.",
                cmd.name
            )));
        }
        let argv = match arguments::argv(cmd, args) {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!(target: "audit", user = %req.user, channel = %req.channel, command = %cmd.name, args = ?args, "refused: {why}");
                crate::metrics::global().command_ran(&cmd.name, "refused", Default::default());
                return Routed::Reply(Reply::plain(format!(":no_entry: {why}.")));
            }
        };
        let permit = match self.limits.try_acquire(
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
                crate::metrics::global().command_ran(&cmd.name, "refused", Default::default());
                return Routed::Reply(Reply::plain(format!(
                    ":hourglass: Busy: {why}. Try again when it finishes."
                )));
            }
        };
        Routed::Command(Box::new(PreparedCommand {
            cmd: cmd.clone(),
            args: args.to_vec(),
            argv,
            caller: Caller {
                user: req.user.clone(),
                channel: req.channel.clone(),
                team: req.team.clone(),
            },
            stdin: serde_json::to_vec(&req.raw).unwrap_or_default(),
            reply_limit: config.bot.reply_limit,
            _permit: permit,
        }))
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
            .answer(&req("PING"), &cfg)
            .await
            .text
            .contains("pong"));
        assert!(router()
            .answer(&req("help"), &cfg)
            .await
            .text
            .contains("`ping`"));
        assert!(router()
            .answer(&req("nope"), &cfg)
            .await
            .text
            .contains("don't know `nope`"));
        assert!(router()
            .answer(&req("say 'unbalanced"), &cfg)
            .await
            .text
            .contains("unbalanced"));
    }

    #[tokio::test]
    async fn operator_command_with_quoted_args() {
        let cfg = Config::parse(
            Path::new("x"),
            "[[command]]\nname=\"echo\"\nrun=[\"/bin/echo\"]\nargs=\"any\"\n",
        )
        .unwrap();
        let r = router()
            .answer(&req("echo 'a b' &amp;&amp; $(id)"), &cfg)
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
        let r = router().answer(&req("echo hi"), &cfg).await;
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
        assert!(router().answer(&r, &cfg).await.text.contains("pong"));
        r.origin = Origin::SlashCommand {
            command: "/bot".into(),
            response_url: String::new(),
        };
        r.text = "ping".into();
        assert!(router().answer(&r, &cfg).await.text.contains("pong"));
    }
}
