//! The control API under `/_fake/`: lets scripts and people drive the fake over
//! HTTP with small JSON bodies, and read what it recorded (times in
//! milliseconds since the fake started).
//!
//! | request | body |
//! |---|---|
//! | `POST /_fake/mention` | `{"text","channel"?,"user"?,"thread_ts"?}` |
//! | `POST /_fake/dm` | `{"text","user"?}` |
//! | `POST /_fake/slash` | `{"text","command"?,"channel"?,"user"?}` |
//! | `POST /_fake/event` | an inner event object |
//! | `POST /_fake/interactive` | an interaction payload |
//! | `POST /_fake/burst` | `{"n","text"?}` |
//! | `POST /_fake/disconnect` | `{"reason"?,"conn"?}` |
//! | `POST /_fake/drop` | `{"conn"}` |
//! | `POST /_fake/half_open` | `{"conn"?}` |
//! | `POST /_fake/rate_limit` | `{"method","times"?,"retry_after"?}` |
//! | `POST /_fake/fail_method` | `{"method","error","times"?}` |
//! | `POST /_fake/server_error` | `{"method","times"?}` |
//! | `POST /_fake/token_error` | `{"error":null\|"…"}` |
//! | `POST /_fake/channel_error` | `{"channel","error":null\|"…"}` |
//! | `POST /_fake/clear_faults` | — |
//! | `GET /_fake/posts`, `/deliveries`, `/connections`, `/calls` | — |

use std::sync::Arc;
use std::time::Instant;

use hyper::Method;
use serde_json::{json, Map, Value};

use crate::http::Reply;
use crate::snapshot::Snapshot;
use crate::state::Shared;
use crate::{DEFAULT_CHANNEL, DEFAULT_USER};

/// Answers one control request.
pub(crate) fn handle(shared: &Arc<Shared>, method: &Method, name: &str, body: &[u8]) -> Reply {
    if method == Method::GET {
        return view(shared, name);
    }
    if method != Method::POST {
        return Reply::error(405, "method_not_allowed");
    }
    let args = match parse(body) {
        Some(args) => args,
        None => return Reply::error(400, "invalid_json"),
    };
    let a = Args(&args);
    match name {
        "mention" => {
            let Some(text) = a.str("text") else {
                return missing("text");
            };
            let event_id = shared.mention(
                a.str("channel").unwrap_or(DEFAULT_CHANNEL),
                a.str("user").unwrap_or(DEFAULT_USER),
                text,
                a.str("thread_ts"),
            );
            Reply::ok(json!({ "ok": true, "event_id": event_id }))
        }
        "dm" => {
            let Some(text) = a.str("text") else {
                return missing("text");
            };
            let event_id = shared.direct_message(a.str("user").unwrap_or(DEFAULT_USER), text);
            Reply::ok(json!({ "ok": true, "event_id": event_id }))
        }
        "slash" => {
            let envelope_id = shared.slash_command(
                a.str("command").unwrap_or("/bot"),
                a.str("text").unwrap_or(""),
                a.str("user").unwrap_or(DEFAULT_USER),
                a.str("channel").unwrap_or(DEFAULT_CHANNEL),
            );
            Reply::ok(json!({ "ok": true, "envelope_id": envelope_id }))
        }
        "event" => {
            let event_id = shared.raw_event(args.clone());
            Reply::ok(json!({ "ok": true, "event_id": event_id }))
        }
        "interactive" => {
            let envelope_id = shared.interaction(args.clone());
            Reply::ok(json!({ "ok": true, "envelope_id": envelope_id }))
        }
        "burst" => {
            let Some(n) = a.u64("n") else {
                return missing("n");
            };
            let ids = shared.burst(
                usize::try_from(n).unwrap_or(usize::MAX),
                a.str("text").unwrap_or("ping {n}"),
                a.str("channel").unwrap_or(DEFAULT_CHANNEL),
                a.str("user").unwrap_or(DEFAULT_USER),
            );
            Reply::ok(json!({ "ok": true, "event_ids": ids }))
        }
        "disconnect" => {
            let conns = shared.disconnect(a.u64("conn"), a.str("reason").unwrap_or("warning"));
            Reply::ok(json!({ "ok": true, "connections": conns }))
        }
        "drop" => {
            let Some(conn) = a.u64("conn") else {
                return missing("conn");
            };
            Reply::ok(json!({ "ok": shared.drop_connection(conn) }))
        }
        "half_open" => {
            let conns = shared.half_open(a.u64("conn"));
            Reply::ok(json!({ "ok": true, "connections": conns }))
        }
        "rate_limit" => {
            let Some(method) = a.str("method") else {
                return missing("method");
            };
            let times = a.u32("times").unwrap_or(1);
            let after = a.u64("retry_after").unwrap_or(1);
            shared.update(|inner| inner.faults.add_rate_limit(method, times, after));
            Reply::ok(json!({ "ok": true }))
        }
        "fail_method" => {
            let (Some(method), Some(error)) = (a.str("method"), a.str("error")) else {
                return missing("method and error");
            };
            let times = a.u32("times").unwrap_or(1);
            shared.update(|inner| inner.faults.add_failure(method, error, times));
            Reply::ok(json!({ "ok": true }))
        }
        "server_error" => {
            let Some(method) = a.str("method") else {
                return missing("method");
            };
            let times = a.u32("times").unwrap_or(1);
            shared.update(|inner| inner.faults.add_server_error(method, times));
            Reply::ok(json!({ "ok": true }))
        }
        "token_error" => {
            shared.update(|inner| inner.faults.set_token_error(a.str("error")));
            Reply::ok(json!({ "ok": true }))
        }
        "channel_error" => {
            let Some(channel) = a.str("channel") else {
                return missing("channel");
            };
            shared.update(|inner| inner.faults.set_channel_error(channel, a.str("error")));
            Reply::ok(json!({ "ok": true }))
        }
        "clear_faults" => {
            shared.update(|inner| inner.faults.clear());
            Reply::ok(json!({ "ok": true }))
        }
        _ => Reply::error(404, "unknown_control"),
    }
}

fn missing(what: &str) -> Reply {
    Reply::error(400, &format!("missing {what}"))
}

/// An empty body is an empty object; anything else must be a JSON object.
fn parse(body: &[u8]) -> Option<Value> {
    if body.trim_ascii().is_empty() {
        return Some(Value::Object(Map::new()));
    }
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
}

/// Typed access to a control body.
struct Args<'a>(&'a Value);

impl Args<'_> {
    fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.as_str()
    }

    fn u64(&self, key: &str) -> Option<u64> {
        match self.0.get(key)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    fn u32(&self, key: &str) -> Option<u32> {
        self.u64(key).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    }
}

fn view(shared: &Shared, name: &str) -> Reply {
    let ms = |at: Instant| json!(shared.millis(at));
    let opt_ms = |at: Option<Instant>| at.map(|t| json!(shared.millis(t))).unwrap_or(Value::Null);
    let snap: Snapshot = shared.read(|inner| match name {
        "posts" => Snapshot {
            posts: inner.snap.posts.clone(),
            ..Snapshot::default()
        },
        "deliveries" => Snapshot {
            deliveries: inner.snap.deliveries.clone(),
            ..Snapshot::default()
        },
        "connections" => Snapshot {
            connections: inner.snap.connections.clone(),
            ..Snapshot::default()
        },
        "calls" => Snapshot {
            calls: inner.snap.calls.clone(),
            duplicate_idempotency_keys: inner.snap.duplicate_idempotency_keys.clone(),
            ..Snapshot::default()
        },
        _ => Snapshot::default(),
    });
    let items: Vec<Value> = match name {
        "posts" => snap
            .posts
            .iter()
            .map(|p| {
                json!({
                    "method": p.method, "channel": p.channel, "text": p.text,
                    "thread_ts": p.thread_ts, "ts": p.ts, "metadata": p.metadata,
                    "at_ms": ms(p.at), "body": p.body,
                })
            })
            .collect(),
        "deliveries" => snap
            .deliveries
            .iter()
            .map(|d| {
                json!({
                    "envelope_id": d.envelope_id, "event_id": d.event_id, "kind": d.kind,
                    "retry_attempt": d.retry_attempt, "conn_id": d.conn_id,
                    "sent_at_ms": ms(d.sent_at), "acked_at_ms": opt_ms(d.acked_at),
                    "ack_payload": d.ack_payload,
                })
            })
            .collect(),
        "connections" => snap
            .connections
            .iter()
            .map(|c| {
                json!({
                    "id": c.id, "live": c.is_live(), "opened_at_ms": ms(c.opened_at),
                    "closed_at_ms": opt_ms(c.closed_at), "hello_at_ms": opt_ms(c.hello_at),
                    "half_open": c.half_open, "pings_received": c.pings_received,
                    "frames_received": c.frames_received,
                    "last_client_frame_at_ms": opt_ms(c.last_client_frame_at),
                    "disconnect_sent_at_ms": opt_ms(c.disconnect_sent_at),
                    "disconnect_reason": c.disconnect_reason,
                })
            })
            .collect(),
        "calls" => snap
            .calls
            .iter()
            .map(|c| {
                json!({
                    "method": c.method, "at_ms": ms(c.at), "status": c.status, "error": c.error,
                })
            })
            .collect(),
        _ => return Reply::error(404, "unknown_control"),
    };
    let mut body = json!({ "ok": true });
    body[name] = Value::Array(items);
    if name == "calls" {
        body["duplicate_idempotency_keys"] = json!(snap.duplicate_idempotency_keys);
    }
    Reply::ok(body)
}
