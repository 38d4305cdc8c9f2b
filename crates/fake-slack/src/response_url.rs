//! Slash command response URLs (`/commands/T0FAKE/N/SECRET`): a JSON post there
//! becomes a recorded post in the command's channel.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::http::Reply;
use crate::params::{Params, ParamsError};
use crate::snapshot::Post;
use crate::state::Shared;
use crate::web_api;
use crate::{MAX_TEXT_LEN, TEAM_ID};

/// The method name used for response URL posts in calls, posts and faults.
pub(crate) const METHOD: &str = "response_url";

/// Answers a post to a response URL (`rest` is the path after `/commands/`) and
/// records the call.
pub(crate) fn post(shared: &Arc<Shared>, rest: &str, params: Result<Params, ParamsError>) -> Reply {
    let reply = answer(shared, rest, params);
    web_api::record_call(shared, METHOD, &reply);
    reply
}

fn answer(shared: &Shared, rest: &str, params: Result<Params, ParamsError>) -> Reply {
    if let Some(reply) = web_api::transport_fault(shared, METHOD) {
        return reply;
    }
    let params = match params {
        Ok(p) => p,
        Err(e) => return Reply::error(400, e.code()),
    };
    let mut parts = rest.split('/');
    let (team, number, secret) = (parts.next(), parts.next(), parts.next());
    let channel = shared.read(|inner| {
        let index = number?.parse::<usize>().ok()?.checked_sub(1)?;
        let route = inner.commands.get(index)?;
        (team == Some(TEAM_ID) && secret == Some(route.secret.as_str()))
            .then(|| route.channel.clone())
    });
    let Some(channel) = channel else {
        return Reply::error(404, "expired_url");
    };
    if let Some(e) = shared.update(|inner| inner.faults.take_failure(METHOD)) {
        return Reply::error(200, &e);
    }
    let text = params.str("text").unwrap_or_default();
    if text.is_empty() && !params.has("blocks") && !params.has("delete_original") {
        return Reply::error(200, "no_text");
    }
    if text.chars().count() > MAX_TEXT_LEN {
        return Reply::error(200, "msg_too_long");
    }
    let thread_ts = params.str("thread_ts").filter(|t| !t.is_empty());
    let ts = shared.update(|inner| {
        let ts = inner.clock.next();
        inner.snap.posts.push(Post {
            method: METHOD.to_string(),
            channel: channel.clone(),
            text: text.clone(),
            thread_ts,
            ts: ts.clone(),
            metadata: params.json("metadata"),
            at: Instant::now(),
            body: params.to_value(),
        });
        ts
    });
    shared.log(|| format!("response_url post to {channel} ts {ts}: {text:.300}"));
    Reply::ok(json!({ "ok": true }))
}
