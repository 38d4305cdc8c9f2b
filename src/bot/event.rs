//! From an acknowledged envelope to a [`Request`] the router understands, or
//! to the reason it is ignored: the bot's own messages, edits, channel chatter
//! that is not addressed to it, event types it does not handle.

use serde_json::Value;
use slack_morphism::prelude::*;

use crate::slack::envelope::{Envelope, EnvelopeKind};
use crate::slack::web::Identity;

/// How a request reached the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// An `@bot` mention in a channel.
    Mention,
    /// A direct message to the bot.
    DirectMessage,
    /// A slash command; the reply goes to its `response_url`.
    SlashCommand {
        /// The command, with its slash (`/bot`).
        command: String,
        /// Where to send the reply.
        response_url: String,
    },
    /// A line typed into `slackbotd console`.
    Console,
}

/// Something a person asked the bot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    /// How it arrived.
    pub(crate) origin: Origin,
    /// The words addressed to the bot, its own mention removed.
    pub(crate) text: String,
    /// Who asked (user ID).
    pub(crate) user: String,
    /// Where (channel ID).
    pub(crate) channel: String,
    /// Which workspace (team ID).
    pub(crate) team: String,
    /// The message's own timestamp.
    pub(crate) ts: Option<String>,
    /// The thread it was posted in, if any.
    pub(crate) thread_ts: Option<String>,
    /// The `event_id`, for de-duplication across redeliveries.
    pub(crate) event_id: Option<String>,
    /// The payload as Slack sent it, for operator commands' stdin.
    pub(crate) raw: Value,
}

/// The outcome of decoding an envelope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decoded {
    /// A request to route.
    Request(Box<Request>),
    /// Nothing to do, and why (for the debug log).
    Ignored(String),
}

fn ignored(why: impl Into<String>) -> Decoded {
    Decoded::Ignored(why.into())
}

/// Decodes an envelope's payload for a bot with identity `me`.
pub(crate) fn decode(env: &Envelope, me: &Identity) -> Decoded {
    if env.kind == EnvelopeKind::Interactive {
        return ignored("interactive payloads are acknowledged but not handled");
    }
    let payload: Value = match serde_json::from_str(env.payload.get()) {
        Ok(v) => v,
        Err(e) => return ignored(format!("{} payload does not parse: {e}", env.kind.as_str())),
    };
    match env.kind {
        EnvelopeKind::EventsApi => decode_event(payload, me),
        EnvelopeKind::SlashCommands => decode_command(payload),
        EnvelopeKind::Interactive => {
            ignored("interactive payloads are acknowledged but not handled")
        }
    }
}

fn decode_event(payload: Value, me: &Identity) -> Decoded {
    use serde::Deserialize;
    let cb = match SlackPushEventCallback::deserialize(&payload) {
        Ok(cb) => cb,
        Err(e) => return ignored(format!("events_api payload does not parse: {e}")),
    };
    let event_id = Some(cb.event_id.to_string());
    let team = cb.team_id.to_string();
    let raw = payload;
    match cb.event {
        SlackEventCallbackBody::AppMention(m) => {
            if m.edited.is_some() {
                return ignored("an edited mention");
            }
            if m.user.0 == me.user_id {
                return ignored("the bot's own mention");
            }
            let text = strip_mention(m.content.text.as_deref().unwrap_or(""), &me.user_id);
            Decoded::Request(Box::new(Request {
                origin: Origin::Mention,
                text,
                user: m.user.to_string(),
                channel: m.channel.to_string(),
                team,
                ts: Some(m.origin.ts.to_string()),
                thread_ts: m.origin.thread_ts.map(|t| t.to_string()),
                event_id,
                raw,
            }))
        }
        SlackEventCallbackBody::Message(m) => {
            if m.subtype.is_some() {
                return ignored("a message with a subtype (edit, deletion, bot message, join)");
            }
            if me.is_me(
                m.sender.user.as_ref().map(|u| u.0.as_str()),
                m.sender.bot_id.as_ref().map(|b| b.0.as_str()),
            ) {
                return ignored("the bot's own message");
            }
            if m.sender.bot_id.is_some() {
                return ignored("a message from another bot");
            }
            let is_dm = m.origin.channel_type.as_ref().is_some_and(|t| t.0 == "im");
            if !is_dm {
                return ignored(
                    "a channel message not addressed to the bot (mentions arrive as app_mention)",
                );
            }
            let (Some(user), Some(channel)) = (m.sender.user, m.origin.channel) else {
                return ignored("a direct message without user or channel");
            };
            let text = m.content.and_then(|c| c.text).unwrap_or_default();
            Decoded::Request(Box::new(Request {
                origin: Origin::DirectMessage,
                text: strip_mention(&text, &me.user_id),
                user: user.to_string(),
                channel: channel.to_string(),
                team,
                ts: Some(m.origin.ts.to_string()),
                thread_ts: m.origin.thread_ts.map(|t| t.to_string()),
                event_id,
                raw,
            }))
        }
        SlackEventCallbackBody::Unknown(v) => ignored(format!(
            "event type {} is not handled",
            v.get("type").and_then(Value::as_str).unwrap_or("(none)")
        )),
        other => ignored(format!("event {} is not handled", event_name(&other))),
    }
}

fn event_name(e: &SlackEventCallbackBody) -> String {
    serde_json::to_value(e)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "(unknown)".into())
}

fn decode_command(payload: Value) -> Decoded {
    use serde::Deserialize;
    let c = match SlackCommandEvent::deserialize(&payload) {
        Ok(c) => c,
        Err(e) => return ignored(format!("slash command payload does not parse: {e}")),
    };
    Decoded::Request(Box::new(Request {
        origin: Origin::SlashCommand {
            command: c.command.to_string(),
            response_url: c.response_url.0.to_string(),
        },
        text: c.text.unwrap_or_default(),
        user: c.user_id.to_string(),
        channel: c.channel_id.to_string(),
        team: c.team_id.to_string(),
        ts: None,
        thread_ts: None,
        event_id: None,
        raw: payload,
    }))
}

/// Removes the bot's own `<@U…>` mention (with any `|name` label) from text.
pub(crate) fn strip_mention(text: &str, bot_user: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let open = format!("<@{bot_user}");
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        match after.find('>') {
            Some(j) if after[..j].is_empty() || after[..j].starts_with('|') => {
                out.push_str(&rest[..i]);
                rest = &after[j + 1..];
            }
            _ => {
                out.push_str(&rest[..i + open.len()]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    // Only the ends: whitespace inside quotes is the user's.
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(v: Value) -> Box<serde_json::value::RawValue> {
        serde_json::value::RawValue::from_string(v.to_string()).unwrap()
    }

    fn me() -> Identity {
        Identity {
            user_id: "UBOT".into(),
            bot_id: Some("B0FAKE".into()),
            ..Default::default()
        }
    }

    fn events_api(event: Value) -> Envelope {
        Envelope {
            envelope_id: "e".into(),
            kind: EnvelopeKind::EventsApi,
            retry_attempt: 0,
            retry_reason: String::new(),
            payload: raw(
                json!({"token":"t","team_id":"T1","api_app_id":"A1","event":event,
                "type":"event_callback","event_id":"Ev1","event_time":1700000000}),
            ),
        }
    }

    #[test]
    fn mention_in_a_thread() {
        let d = decode(
            &events_api(
                json!({"type":"app_mention","user":"U1","text":"<@UBOT> ping  now","ts":"2.0","thread_ts":"1.0","channel":"C1","event_ts":"2.0"}),
            ),
            &me(),
        );
        let Decoded::Request(r) = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            (
                r.text.as_str(),
                r.thread_ts.as_deref(),
                r.event_id.as_deref()
            ),
            // Only the mention and the ends go: the user's spacing stays.
            ("ping  now", Some("1.0"), Some("Ev1"))
        );
        assert_eq!(r.origin, Origin::Mention);
    }

    #[test]
    fn ignores_own_edits_and_chatter() {
        let own = events_api(
            json!({"type":"message","channel":"D1","user":"UBOT","text":"pong","ts":"1.0","channel_type":"im"}),
        );
        assert!(matches!(decode(&own, &me()), Decoded::Ignored(_)));
        let edit = events_api(
            json!({"type":"message","subtype":"message_changed","channel":"D1","ts":"1.0","channel_type":"im","hidden":true}),
        );
        assert!(matches!(decode(&edit, &me()), Decoded::Ignored(_)));
        let chatter = events_api(
            json!({"type":"message","channel":"C1","user":"U1","text":"hi","ts":"1.0","channel_type":"channel"}),
        );
        assert!(matches!(decode(&chatter, &me()), Decoded::Ignored(_)));
        let edited = events_api(
            json!({"type":"app_mention","user":"U1","text":"<@UBOT> ping","ts":"1.0","channel":"C1","edited":{"user":"U1","ts":"2.0"}}),
        );
        assert!(matches!(decode(&edited, &me()), Decoded::Ignored(_)));
        let unknown = events_api(json!({"type":"brand_new_event","foo":1}));
        let Decoded::Ignored(why) = decode(&unknown, &me()) else {
            panic!()
        };
        assert!(why.contains("brand_new_event"), "{why}");
    }

    #[test]
    fn direct_message_is_a_request() {
        let dm = events_api(
            json!({"type":"message","channel":"D1","user":"U1","text":"status","ts":"1.0","channel_type":"im"}),
        );
        let Decoded::Request(r) = decode(&dm, &me()) else {
            panic!()
        };
        assert_eq!(
            (r.origin.clone(), r.text.as_str(), r.channel.as_str()),
            (Origin::DirectMessage, "status", "D1")
        );
    }

    #[test]
    fn slash_command() {
        let env = Envelope {
            envelope_id: "e".into(),
            kind: EnvelopeKind::SlashCommands,
            retry_attempt: 0,
            retry_reason: String::new(),
            payload: raw(
                json!({"team_id":"T1","channel_id":"C1","user_id":"U1","command":"/bot","text":"ping",
                "response_url":"http://127.0.0.1:1/commands/x","trigger_id":"t"}),
            ),
        };
        let Decoded::Request(r) = decode(&env, &me()) else {
            panic!()
        };
        assert!(matches!(r.origin, Origin::SlashCommand { ref command, .. } if command == "/bot"));
        assert_eq!(r.text, "ping");
    }

    #[test]
    fn malformed_payload_is_ignored_with_a_reason() {
        let mut env = events_api(json!({}));
        env.payload = raw(json!({"nonsense": true}));
        let Decoded::Ignored(why) = decode(&env, &me()) else {
            panic!()
        };
        assert!(why.contains("does not parse"), "{why}");
    }

    #[test]
    fn strip_only_the_bot() {
        assert_eq!(strip_mention("<@UBOT|bot> hi <@U2>", "UBOT"), "hi <@U2>");
        assert_eq!(strip_mention("<@UBOTX> hi", "UBOT"), "<@UBOTX> hi");
    }
}
