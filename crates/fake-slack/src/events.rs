//! What people do in the fake workspace: mention the bot, write to it, run a
//! slash command, click a button. Each becomes an envelope for the bot.

use std::sync::Arc;

use serde_json::Value;

use crate::dispatch::NewEnvelope;
use crate::envelope::{self, Kind};
use crate::ids;
use crate::state::{CommandRoute, Shared};
use crate::{BOT_USER_ID, TEAM_ID};

impl Shared {
    fn next_ts(&self) -> String {
        self.update(|inner| inner.clock.next())
    }

    /// `<@UBOT> text` in `channel`. Returns the event id.
    pub(crate) fn mention(
        self: &Arc<Self>,
        channel: &str,
        user: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> String {
        let ts = self.next_ts();
        let text = format!("<@{BOT_USER_ID}> {text}");
        let event = envelope::app_mention(channel, user, &text, &ts, thread_ts);
        self.submit(NewEnvelope::event(event))
    }

    /// A direct message from `user`. Returns the event id.
    pub(crate) fn direct_message(self: &Arc<Self>, user: &str, text: &str) -> String {
        let ts = self.next_ts();
        self.submit(NewEnvelope::event(envelope::direct_message(
            user, text, &ts,
        )))
    }

    /// Any inner event, wrapped into an `event_callback`. Returns the event id.
    pub(crate) fn raw_event(self: &Arc<Self>, event: Value) -> String {
        self.submit(NewEnvelope::event(event))
    }

    /// A slash command. Returns the envelope id.
    pub(crate) fn slash_command(
        self: &Arc<Self>,
        command: &str,
        text: &str,
        user: &str,
        channel: &str,
    ) -> String {
        let secret = ids::uuid_like().replace('-', "");
        let number = self.update(|inner| {
            inner.commands.push(CommandRoute {
                secret: secret.clone(),
                channel: channel.to_string(),
            });
            inner.commands.len()
        });
        let response_url = format!(
            "http://127.0.0.1:{}/commands/{TEAM_ID}/{number}/{secret}",
            self.api_port
        );
        self.submit(NewEnvelope {
            kind: Kind::SlashCommands,
            event_id: None,
            payload: envelope::slash_command(command, text, user, channel, &response_url),
            accepts_response_payload: true,
        })
    }

    /// An interaction payload, passed through. Returns the envelope id.
    pub(crate) fn interaction(self: &Arc<Self>, payload: Value) -> String {
        let accepts_response_payload =
            payload.get("type").and_then(Value::as_str) == Some("block_suggestion");
        self.submit(NewEnvelope {
            kind: Kind::Interactive,
            event_id: None,
            payload,
            accepts_response_payload,
        })
    }

    /// `n` mentions on one connection; `{n}` in `text` becomes 0, 1, 2, ….
    /// Returns the event ids in order.
    pub(crate) fn burst(
        self: &Arc<Self>,
        n: usize,
        text: &str,
        channel: &str,
        user: &str,
    ) -> Vec<String> {
        let stamps: Vec<String> = self.update(|inner| (0..n).map(|_| inner.clock.next()).collect());
        let envs = stamps
            .iter()
            .enumerate()
            .map(|(i, ts)| {
                let body = text.replace("{n}", &i.to_string());
                let text = format!("<@{BOT_USER_ID}> {body}");
                NewEnvelope::event(envelope::app_mention(channel, user, &text, ts, None))
            })
            .collect();
        self.submit_burst(envs)
    }
}
