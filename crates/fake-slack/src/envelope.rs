//! The JSON Slack sends over Socket Mode: `hello`, `disconnect`, envelopes and
//! the payloads inside them. Shapes follow Slack's documentation and the
//! slack-morphism models (`SlackSocketModeEvent`, `SlackPushEventCallback`,
//! `SlackCommandEvent`).

use serde_json::{json, Value};

use crate::ids;
use crate::{APP_ID, BOT_USER_ID, TEAM_ID};

/// The three kinds of envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    EventsApi,
    SlashCommands,
    Interactive,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::EventsApi => "events_api",
            Kind::SlashCommands => "slash_commands",
            Kind::Interactive => "interactive",
        }
    }
}

/// The greeting sent first on every accepted connection.
pub(crate) fn hello(num_connections: usize) -> String {
    json!({
        "type": "hello",
        "num_connections": num_connections,
        "debug_info": {
            "host": "fake-slack-1",
            "build_number": 1,
            "approximate_connection_time": 18060
        },
        "connection_info": { "app_id": APP_ID }
    })
    .to_string()
}

/// Asks the client to reconnect (`warning`, `refresh_requested`,
/// `link_disabled`, `too_many_websockets`).
pub(crate) fn disconnect(reason: &str) -> String {
    json!({
        "type": "disconnect",
        "reason": reason,
        "debug_info": { "host": "fake-slack" }
    })
    .to_string()
}

/// One envelope around `payload`. Only `events_api` envelopes carry the retry fields.
pub(crate) fn frame(
    kind: Kind,
    envelope_id: &str,
    accepts_response_payload: bool,
    retry_attempt: u32,
    payload: &Value,
) -> String {
    let mut frame = json!({
        "envelope_id": envelope_id,
        "type": kind.as_str(),
        "accepts_response_payload": accepts_response_payload,
        "payload": payload,
    });
    if kind == Kind::EventsApi {
        frame["retry_attempt"] = json!(retry_attempt);
        frame["retry_reason"] = json!(if retry_attempt == 0 { "" } else { "timeout" });
    }
    frame.to_string()
}

/// Wraps an inner event into an `event_callback` payload.
pub(crate) fn event_callback(event: Value, event_id: &str) -> Value {
    json!({
        "token": "fakeverify",
        "team_id": TEAM_ID,
        "context_team_id": TEAM_ID,
        "context_enterprise_id": null,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": ids::unix_secs(),
        "authorizations": [{
            "enterprise_id": null,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "is_bot": true,
            "is_enterprise_install": false
        }],
        "is_ext_shared_channel": false,
        "event_context": "4-fake"
    })
}

/// An `app_mention` event; `text` already carries the mention.
pub(crate) fn app_mention(
    channel: &str,
    user: &str,
    text: &str,
    ts: &str,
    thread_ts: Option<&str>,
) -> Value {
    let mut event = json!({
        "type": "app_mention",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "team": TEAM_ID
    });
    if let Some(thread_ts) = thread_ts {
        event["thread_ts"] = json!(thread_ts);
    }
    event
}

/// A direct message to the bot.
pub(crate) fn direct_message(user: &str, text: &str, ts: &str) -> Value {
    json!({
        "type": "message",
        "channel": ids::dm_channel(user),
        "user": user,
        "text": text,
        "ts": ts,
        "event_ts": ts,
        "channel_type": "im",
        "team": TEAM_ID
    })
}

/// A slash command's payload.
pub(crate) fn slash_command(
    command: &str,
    text: &str,
    user: &str,
    channel: &str,
    response_url: &str,
) -> Value {
    json!({
        "token": "fakeverify",
        "team_id": TEAM_ID,
        "team_domain": "fake",
        "channel_id": channel,
        "channel_name": "general",
        "user_id": user,
        "user_name": "someone",
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": "1.2.fake"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_api_frame_has_retry_fields() {
        let payload = event_callback(
            app_mention("C1", "U1", "<@UBOT> hi", "1.000001", None),
            "Ev1",
        );
        let v: Value =
            serde_json::from_str(&frame(Kind::EventsApi, "e-1", false, 1, &payload)).unwrap();
        assert_eq!(v["type"], "events_api");
        assert_eq!(v["retry_attempt"], 1);
        assert_eq!(v["retry_reason"], "timeout");
        assert_eq!(v["payload"]["event"]["type"], "app_mention");
        assert_eq!(v["payload"]["event_id"], "Ev1");
        assert!(v["payload"]["event_time"].is_u64());
    }

    #[test]
    fn slash_frame_has_no_retry_fields() {
        let payload = slash_command("/bot", "status", "U1", "C1", "http://x/commands/1");
        let v: Value =
            serde_json::from_str(&frame(Kind::SlashCommands, "e-2", true, 0, &payload)).unwrap();
        assert!(v.get("retry_attempt").is_none());
        assert_eq!(v["accepts_response_payload"], true);
        assert_eq!(v["payload"]["command"], "/bot");
    }
}
