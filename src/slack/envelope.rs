//! Socket Mode frames: parsing what Slack sends and writing acknowledgements.
//!
//! Parsing is total: any text becomes a [`Frame`] or a [`FrameError`] that
//! says what was wrong, so a garbage frame is logged and never panics.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// One text frame from the Socket Mode WebSocket.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    /// The connection is ready.
    Hello {
        /// How many connections Slack counts for this app.
        num_connections: Option<u64>,
        /// Slack's host name for this socket, useful in logs.
        host: Option<String>,
    },
    /// Slack will close this connection soon (or now).
    Disconnect {
        /// Why.
        reason: DisconnectReason,
    },
    /// Something to acknowledge and handle.
    Envelope(Envelope),
    /// Valid JSON of a type we do not know; acknowledged if it has an envelope ID.
    Unknown {
        /// The `type` field, if any.
        kind: String,
        /// Its envelope ID, if it has one.
        envelope_id: Option<String>,
    },
}

/// Why Slack says it will close a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DisconnectReason {
    /// The connection will be closed soon (about 10 s): replace it.
    Warning,
    /// Slack wants a new connection: replace it.
    RefreshRequested,
    /// Socket Mode was turned off for the app: retrying cannot help.
    LinkDisabled,
    /// A reason this build does not know: treated like a refresh.
    Other(String),
}

impl DisconnectReason {
    fn parse(s: &str) -> DisconnectReason {
        match s {
            "warning" => DisconnectReason::Warning,
            "refresh_requested" => DisconnectReason::RefreshRequested,
            "link_disabled" => DisconnectReason::LinkDisabled,
            other => DisconnectReason::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DisconnectReason::Warning => "warning",
            DisconnectReason::RefreshRequested => "refresh_requested",
            DisconnectReason::LinkDisabled => "link_disabled",
            DisconnectReason::Other(s) => s,
        })
    }
}

/// The kinds of envelope Socket Mode delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnvelopeKind {
    /// An Events API event (`app_mention`, `message`, …).
    EventsApi,
    /// A slash command.
    SlashCommands,
    /// A button, shortcut or other interaction.
    Interactive,
}

impl EnvelopeKind {
    /// The wire name.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            EnvelopeKind::EventsApi => "events_api",
            EnvelopeKind::SlashCommands => "slash_commands",
            EnvelopeKind::Interactive => "interactive",
        }
    }
}

/// A delivery that must be acknowledged within three seconds.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    /// The ID to acknowledge.
    pub(crate) envelope_id: String,
    /// What it carries.
    pub(crate) kind: EnvelopeKind,
    /// 0 on first delivery, then 1, 2, 3 on redeliveries.
    pub(crate) retry_attempt: u64,
    /// Why it was redelivered (`timeout`, …), empty on first delivery.
    pub(crate) retry_reason: String,
    /// The payload as Slack sent it, decoded later, off the socket's loop.
    pub(crate) payload: Box<RawValue>,
}

impl PartialEq for Envelope {
    fn eq(&self, o: &Envelope) -> bool {
        self.envelope_id == o.envelope_id
            && self.kind == o.kind
            && self.retry_attempt == o.retry_attempt
            && self.retry_reason == o.retry_reason
            && self.payload.get() == o.payload.get()
    }
}

/// Why a frame could not be understood.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum FrameError {
    /// Not JSON at all.
    #[error("frame is not JSON ({0}): {1}")]
    NotJson(String, String),
    /// JSON, but not an object with a `type`.
    #[error("frame has no \"type\": {0}")]
    NoType(String),
    /// An envelope type without the fields every envelope has.
    #[error("{kind} envelope is malformed: {detail}")]
    BadEnvelope { kind: String, detail: String },
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    envelope_id: Option<String>,
    #[serde(default)]
    retry_attempt: Option<u64>,
    #[serde(default)]
    retry_reason: Option<String>,
    /// Kept as text: the socket loop never builds the payload's tree.
    #[serde(default, borrow)]
    payload: Option<&'a RawValue>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    num_connections: Option<u64>,
    #[serde(default)]
    debug_info: Option<Value>,
}

/// A short, safe excerpt of a frame for logs.
fn excerpt(text: &str) -> String {
    let mut s: String = text.chars().take(120).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

/// Parses one text frame.
pub(crate) fn parse_frame(text: &str) -> Result<Frame, FrameError> {
    // One pass for well-formed frames; the slower path below only runs to
    // say precisely what is wrong with a bad one.
    match serde_json::from_str::<RawFrame>(text) {
        Ok(raw) => classify(raw, text),
        Err(e) => Err(diagnose(text, e)),
    }
}

/// Says what is wrong with a frame that does not parse.
fn diagnose(text: &str, e: serde_json::Error) -> FrameError {
    match serde_json::from_str::<Value>(text) {
        Err(e) => FrameError::NotJson(e.to_string(), excerpt(text)),
        Ok(v) if !v.is_object() => FrameError::NoType(excerpt(text)),
        Ok(_) => FrameError::NoType(format!("{e}: {}", excerpt(text))),
    }
}

fn classify(raw: RawFrame, text: &str) -> Result<Frame, FrameError> {
    let Some(kind) = raw.kind else {
        return Err(FrameError::NoType(excerpt(text)));
    };
    let env_kind = match kind.as_str() {
        "hello" => {
            let host = raw
                .debug_info
                .as_ref()
                .and_then(|d| d.get("host"))
                .and_then(Value::as_str)
                .map(str::to_string);
            return Ok(Frame::Hello {
                num_connections: raw.num_connections,
                host,
            });
        }
        "disconnect" => {
            return Ok(Frame::Disconnect {
                reason: DisconnectReason::parse(raw.reason.as_deref().unwrap_or("")),
            })
        }
        "events_api" => EnvelopeKind::EventsApi,
        "slash_commands" => EnvelopeKind::SlashCommands,
        "interactive" => EnvelopeKind::Interactive,
        _ => {
            return Ok(Frame::Unknown {
                kind,
                envelope_id: raw.envelope_id,
            })
        }
    };
    let bad = |detail: &str| FrameError::BadEnvelope {
        kind: kind.clone(),
        detail: detail.to_string(),
    };
    let envelope_id = raw
        .envelope_id
        .filter(|e| !e.is_empty())
        .ok_or_else(|| bad("no envelope_id"))?;
    let payload = raw.payload.ok_or_else(|| bad("no payload"))?.to_owned();
    Ok(Frame::Envelope(Envelope {
        envelope_id,
        kind: env_kind,
        retry_attempt: raw.retry_attempt.unwrap_or(0),
        retry_reason: raw.retry_reason.unwrap_or_default(),
        payload,
    }))
}

/// Best effort: the envelope ID of a frame that did not otherwise parse, so
/// it can still be acknowledged and Slack stops redelivering it.
pub(crate) fn salvage_envelope_id(text: &str) -> Option<String> {
    let v: Value = serde_json::from_str(text).ok()?;
    v.get("envelope_id")?.as_str().map(str::to_string)
}

/// The acknowledgement frame for an envelope.
pub(crate) fn ack(envelope_id: &str) -> String {
    // The id is JSON-escaped as a string; no map is built on the hot path.
    let id = serde_json::to_string(envelope_id).unwrap_or_else(|_| "\"\"".to_string());
    format!("{{\"envelope_id\":{id}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hello_disconnect_and_envelopes() {
        let h = parse_frame(r#"{"type":"hello","num_connections":2,"debug_info":{"host":"h1"},"connection_info":{"app_id":"A"}}"#).unwrap();
        assert_eq!(
            h,
            Frame::Hello {
                num_connections: Some(2),
                host: Some("h1".into())
            }
        );
        let d = parse_frame(
            r#"{"type":"disconnect","reason":"refresh_requested","debug_info":{"host":"h"}}"#,
        )
        .unwrap();
        assert_eq!(
            d,
            Frame::Disconnect {
                reason: DisconnectReason::RefreshRequested
            }
        );
        let e = parse_frame(r#"{"envelope_id":"e1","type":"events_api","accepts_response_payload":false,"retry_attempt":2,"retry_reason":"timeout","payload":{"x":1}}"#).unwrap();
        let Frame::Envelope(e) = e else {
            panic!("not an envelope")
        };
        assert_eq!(
            (
                e.envelope_id.as_str(),
                e.retry_attempt,
                e.retry_reason.as_str()
            ),
            ("e1", 2, "timeout")
        );
        assert_eq!(e.kind, EnvelopeKind::EventsApi);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            parse_frame("not json {"),
            Err(FrameError::NotJson(..))
        ));
        assert!(matches!(parse_frame("[1,2]"), Err(FrameError::NoType(_))));
        assert!(matches!(parse_frame("{}"), Err(FrameError::NoType(_))));
        assert!(matches!(
            parse_frame(r#"{"type":"events_api"}"#),
            Err(FrameError::BadEnvelope { .. })
        ));
        assert!(matches!(
            parse_frame(r#"{"type":5}"#),
            Err(FrameError::NoType(_))
        ));
        let u = parse_frame(r#"{"type":"brand_new","envelope_id":"z"}"#).unwrap();
        assert_eq!(
            u,
            Frame::Unknown {
                kind: "brand_new".into(),
                envelope_id: Some("z".into())
            }
        );
        assert_eq!(
            salvage_envelope_id(r#"{"type":"events_api","envelope_id":"q"}"#).as_deref(),
            Some("q")
        );
    }

    #[test]
    fn ack_is_json_with_the_id() {
        assert_eq!(ack("a\"b"), r#"{"envelope_id":"a\"b"}"#);
    }
}
