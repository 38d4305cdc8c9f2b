//! The Web API methods: token checks, injected faults, and `auth.test`,
//! `apps.connections.open`, `chat.postMessage`, `conversations.history` and
//! `api.test`. Every call is recorded.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::faults::TransportFault;
use crate::http::Reply;
use crate::ids;
use crate::params::{self, Params, ParamsError};
use crate::snapshot::{Call, Post};
use crate::state::Shared;
use crate::{APP_ID, BOT_ID, BOT_USER_ID, MAX_TEXT_LEN, TEAM_ID};

/// The token a method wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Nothing,
    Bot,
    App,
}

fn need(method: &str) -> Option<Need> {
    match method {
        "api.test" => Some(Need::Nothing),
        "auth.test"
        | "chat.postMessage"
        | "conversations.history"
        | "conversations.replies"
        | "conversations.info" => Some(Need::Bot),
        "apps.connections.open" => Some(Need::App),
        _ => None,
    }
}

/// Answers one Web API call and records it.
pub(crate) fn call(
    shared: &Arc<Shared>,
    method: &str,
    authorization: Option<&str>,
    params: Result<Params, ParamsError>,
) -> Reply {
    let reply = answer(shared, method, authorization, params);
    record_call(shared, method, &reply);
    reply
}

/// Records a call and logs refusals.
pub(crate) fn record_call(shared: &Shared, method: &str, reply: &Reply) {
    let error = reply.error_code();
    if let Some(e) = &error {
        shared.log(|| format!("api {method}: HTTP {} {e}", reply.status));
    }
    shared.update(|inner| {
        inner.snap.calls.push(Call {
            method: method.to_string(),
            at: Instant::now(),
            status: reply.status,
            error,
        })
    });
}

/// The HTTP-level fault armed for `method`, as an answer.
pub(crate) fn transport_fault(shared: &Shared, method: &str) -> Option<Reply> {
    match shared.update(|inner| inner.faults.take_transport(method))? {
        TransportFault::ServerError => Some(Reply::error(500, "internal_error")),
        TransportFault::RateLimited(secs) => Some(Reply {
            retry_after: Some(secs),
            ..Reply::error(429, "ratelimited")
        }),
    }
}

fn answer(
    shared: &Arc<Shared>,
    method: &str,
    authorization: Option<&str>,
    params: Result<Params, ParamsError>,
) -> Reply {
    if let Some(reply) = transport_fault(shared, method) {
        return reply;
    }
    let params = match params {
        Ok(p) => p,
        Err(e) => return Reply::error(200, e.code()),
    };
    let Some(need) = need(method) else {
        return Reply::error(200, "unknown_method");
    };
    if need == Need::Nothing {
        return Reply::ok(json!({ "ok": true, "args": params.to_value() }));
    }
    let Some(token) = params::token(authorization, &params) else {
        return Reply::error(200, "not_authed");
    };
    if let Some(e) = shared.read(|inner| inner.faults.token_error().map(str::to_string)) {
        return Reply::error(200, &e);
    }
    let kind = if token == shared.opts.bot_token {
        Need::Bot
    } else if token == shared.opts.app_token {
        Need::App
    } else {
        return Reply::error(200, "invalid_auth");
    };
    if kind != need {
        return Reply::error(200, "not_allowed_token_type");
    }
    if let Some(e) = shared.update(|inner| inner.faults.take_failure(method)) {
        return Reply::error(200, &e);
    }
    // Answers to a bot token carry its scopes; a method without its scope is refused.
    let scopes = shared.read(|inner| inner.workspace.scope_header());
    let channel = params.str("channel");
    let missing = shared.read(|inner| {
        inner
            .workspace
            .missing_scope(method, channel.as_deref())
            .map(str::to_string)
    });
    let mut reply = match missing {
        Some(_) => Reply::error(200, "missing_scope"),
        None => bot_method(shared, method, &params),
    };
    if let Some(needed) = missing {
        reply.body["needed"] = json!(needed);
        reply.body["provided"] = json!(scopes);
    }
    reply.scopes = Some(scopes);
    reply
}

/// The methods that take the bot token, once its scope is checked.
fn bot_method(shared: &Arc<Shared>, method: &str, params: &Params) -> Reply {
    let params = params.clone();
    match method {
        "conversations.info" => conversations_info(shared, &params),
        "auth.test" => auth_test(),
        "apps.connections.open" => connections_open(shared),
        "chat.postMessage" => post_message(shared, &params),
        "conversations.history" => history(shared, &params, None),
        "conversations.replies" => match params.str("ts").and_then(|t| non_empty(Some(t))) {
            Some(ts) => history(shared, &params, Some(ts)),
            None => Reply::error(200, "thread_not_found"),
        },
        _ => Reply::error(200, "unknown_method"),
    }
}

/// `conversations.info`: a channel the fake was told about; one it was not
/// told about is a public channel the bot is in (as posts there behave),
/// unless a channel error is armed for it (`channel_not_found`, …).
fn conversations_info(shared: &Shared, params: &Params) -> Reply {
    let Some(id) = non_empty(params.str("channel")) else {
        return Reply::error(200, "channel_not_found");
    };
    if let Some(e) = shared.read(|inner| inner.faults.channel_error(&id).map(str::to_string)) {
        return Reply::error(200, &e);
    }
    let known = shared.read(|inner| inner.workspace.channels.get(&id).cloned());
    let c = known.unwrap_or_else(|| crate::workspace::Channel {
        id: id.clone(),
        name: id.to_lowercase(),
        is_private: id.starts_with('G'),
        is_member: true,
    });
    {
        Reply::ok(json!({
            "ok": true,
            "channel": {
                "id": c.id,
                "name": c.name,
                "is_channel": !c.is_private,
                "is_group": c.is_private,
                "is_im": false,
                "is_private": c.is_private,
                "is_archived": false,
                "is_member": c.is_member,
                "created": 1_700_000_000,
            }
        }))
    }
}

fn auth_test() -> Reply {
    Reply::ok(json!({
        "ok": true,
        "url": "https://fake.slack.com/",
        "team": "Fake Team",
        "user": "slackbotd",
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": false
    }))
}

/// Slack's limit of Socket Mode connections per app.
pub const MAX_CONNECTIONS: usize = 10;

fn connections_open(shared: &Shared) -> Reply {
    // Every WebSocket of the app that is not closed counts.
    let open = shared.read(|inner| inner.handles.len());
    if open >= MAX_CONNECTIONS {
        return Reply::error(200, "too_many_websockets");
    }
    let ticket = ids::uuid_like();
    shared.update(|inner| inner.tickets.insert(ticket.clone()));
    Reply::ok(json!({
        "ok": true,
        "url": format!(
            "ws://127.0.0.1:{}/link/?ticket={ticket}&app_id={APP_ID}",
            shared.ws_port
        )
    }))
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.is_empty())
}

fn post_message(shared: &Shared, params: &Params) -> Reply {
    let Some(channel) = non_empty(params.str("channel")) else {
        return Reply::error(200, "channel_not_found");
    };
    if let Some(e) = shared.read(|inner| inner.faults.channel_error(&channel).map(str::to_string)) {
        return Reply::error(200, &e);
    }
    if let Some(e) = shared.read(|inner| inner.workspace.post_refusal(&channel)) {
        return Reply::error(200, e);
    }
    let text = non_empty(params.str("text"));
    let blocks = params
        .json("blocks")
        .filter(|b| b.as_array().is_some_and(|a| !a.is_empty()));
    if text.is_none() && blocks.is_none() && !params.has("attachments") {
        return Reply::error(200, "no_text");
    }
    let text = text.unwrap_or_default();
    if text.chars().count() > MAX_TEXT_LEN {
        return Reply::error(200, "msg_too_long");
    }
    let thread_ts = non_empty(params.str("thread_ts"));
    let metadata = params.json("metadata");
    let key = metadata
        .as_ref()
        .and_then(|m| m.pointer("/event_payload/idempotency_key"))
        .map(|k| match k {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    let (ts, duplicate) = shared.update(|inner| {
        let ts = inner.clock.next();
        let duplicate = key
            .as_ref()
            .filter(|k| !inner.idempotency_keys.insert((*k).clone()))
            .cloned();
        if let Some(k) = &duplicate {
            inner.snap.duplicate_idempotency_keys.push(k.clone());
        }
        inner.snap.posts.push(Post {
            method: "chat.postMessage".to_string(),
            channel: channel.clone(),
            text: text.clone(),
            thread_ts: thread_ts.clone(),
            ts: ts.clone(),
            metadata: metadata.clone(),
            at: Instant::now(),
            body: params.to_value(),
        });
        (ts, duplicate)
    });
    shared.log(|| format!("post to {channel} ts {ts}: {text:.300}"));
    if let Some(k) = duplicate {
        shared.log(|| format!("duplicate idempotency key {k}"));
    }
    let mut message = json!({
        "type": "message",
        "text": text,
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "team": TEAM_ID,
        "ts": ts,
    });
    if let Some(t) = thread_ts {
        message["thread_ts"] = json!(t);
    }
    if let Some(b) = blocks {
        message["blocks"] = b;
    }
    if let Some(m) = metadata {
        message["metadata"] = m;
    }
    Reply::ok(json!({ "ok": true, "channel": channel, "ts": ts, "message": message }))
}

/// Slack's default and largest page sizes for `conversations.history`.
const HISTORY_DEFAULT_LIMIT: usize = 100;
const HISTORY_MAX_LIMIT: usize = 999;

/// `conversations.history` (top-level messages only, as Slack) or, with
/// `thread`, `conversations.replies` (the thread's messages).
fn history(shared: &Shared, params: &Params, thread: Option<String>) -> Reply {
    let Some(channel) = non_empty(params.str("channel")) else {
        return Reply::error(200, "channel_not_found");
    };
    let inclusive = params.bool("inclusive");
    let oldest = params.str("oldest").and_then(|t| ids::parse_ts(&t));
    let latest = params.str("latest").and_then(|t| ids::parse_ts(&t));
    let limit = match params.u64("limit") {
        Some(0) | None => HISTORY_DEFAULT_LIMIT,
        Some(n) => usize::try_from(n)
            .unwrap_or(HISTORY_MAX_LIMIT)
            .min(HISTORY_MAX_LIMIT),
    };
    let with_metadata = params.bool("include_all_metadata");
    // Slack's cursors are opaque; this one is the offset of the next page.
    let skip = params
        .str("cursor")
        .and_then(|c| {
            c.strip_prefix("next:")
                .and_then(|n| n.parse::<usize>().ok())
        })
        .unwrap_or(0);
    let (page, has_more): (Vec<Post>, bool) = shared.read(|inner| {
        let mut matching: Vec<(u128, &Post)> = inner
            .snap
            .posts
            .iter()
            .filter(|p| p.channel == channel && visible_in_channel(p))
            .filter(|p| match (&thread, &p.thread_ts) {
                (None, None) => true,
                (None, Some(t)) => *t == p.ts,
                (Some(want), t) => *want == p.ts || t.as_deref() == Some(want.as_str()),
            })
            .filter_map(|p| Some((ids::parse_ts(&p.ts)?, p)))
            .filter(|(ts, _)| match oldest {
                Some(o) if inclusive => *ts >= o,
                Some(o) => *ts > o,
                None => true,
            })
            .filter(|(ts, _)| match latest {
                Some(l) if inclusive => *ts <= l,
                Some(l) => *ts < l,
                None => true,
            })
            .collect();
        // Newest first, as Slack pages them.
        matching.sort_by_key(|p| std::cmp::Reverse(p.0));
        let has_more = matching.len() > skip + limit;
        let page = matching
            .into_iter()
            .skip(skip)
            .take(limit)
            .map(|(_, p)| p.clone())
            .collect();
        (page, has_more)
    });
    let messages: Vec<Value> = page
        .into_iter()
        .map(|p| {
            let mut m = json!({
                "type": "message",
                "user": BOT_USER_ID,
                "bot_id": BOT_ID,
                "app_id": APP_ID,
                "team": TEAM_ID,
                "text": p.text,
                "ts": p.ts,
            });
            if let Some(t) = p.thread_ts {
                m["thread_ts"] = json!(t);
            }
            if with_metadata {
                if let Some(md) = p.metadata {
                    m["metadata"] = md;
                }
            }
            m
        })
        .collect();
    let next = if has_more {
        format!("next:{}", skip + limit)
    } else {
        String::new()
    };
    Reply::ok(json!({
        "ok": true,
        "messages": messages,
        "has_more": has_more,
        "response_metadata": { "next_cursor": next },
    }))
}

/// Ephemeral response URL answers are only shown to one user, never in history.
fn visible_in_channel(post: &Post) -> bool {
    post.method == "chat.postMessage"
        || post.body.get("response_type").and_then(Value::as_str) == Some("in_channel")
}
