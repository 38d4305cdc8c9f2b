//! Sends a reply where it belongs: a slash command's `response_url`, or
//! `chat.postMessage` in the request's channel and thread. Honours 429
//! `Retry-After`, retries transient failures with backoff, and logs a
//! permanent failure instead of retrying it forever.
//!
//! A reply to an event carries an idempotency key derived from the event in
//! its metadata. Before any re-post that might double it (after an answer
//! that never came, or after a restart) the channel is searched for that key
//! first, so a reply is posted once. Slash command answers go to a
//! `response_url`, which has no history to search: they are at least once.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::bot::event::{Origin, Request};
use crate::bot::recovery::Recovery;
use crate::bot::router::Reply;
use crate::slack::web::{Identity, OutgoingMessage, SlackWeb, WebError};

/// Attempts before a transiently failing reply is given up.
const ATTEMPTS: u32 = 6;

/// Where a reply to `req` goes.
pub(crate) fn destination(req: &Request, reply: &Reply) -> OutgoingMessage {
    let thread_ts =
        req.thread_ts
            .clone()
            .or_else(|| if reply.threaded { req.ts.clone() } else { None });
    OutgoingMessage {
        channel: req.channel.clone(),
        text: reply.text.clone(),
        thread_ts,
        idempotency_key: req.event_id.as_ref().map(|e| format!("sbd-r-{e}")),
    }
}

/// Whether an error leaves it open that the post went through.
fn maybe_posted(e: &WebError) -> bool {
    !matches!(e, WebError::Api { .. } | WebError::RateLimited { .. })
}

/// Delivers `reply` to `req`, retrying as Slack allows. `since_ms` is when
/// the request arrived. With `recovery` (an event a process that died may
/// have answered already) what that process posted is searched first.
pub(crate) async fn deliver(
    web: &SlackWeb,
    me: &Identity,
    req: &Request,
    reply: &Reply,
    since_ms: u64,
    recovery: Option<&Recovery>,
) -> Result<(), WebError> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(20));
    let msg = destination(req, reply);
    let keyed = msg.idempotency_key.is_some() && !matches!(req.origin, Origin::SlashCommand { .. });
    let mut recovery = recovery.filter(|_| keyed);
    let mut look = false;
    let mut attempt = 1;
    loop {
        let found = if let Some(r) = recovery.take() {
            Some(r.was_posted(web, me, &msg).await)
        } else if look && keyed {
            Some(
                web.find_posted(&msg, since_ms, me)
                    .await
                    .map(|ts| ts.is_some()),
            )
        } else {
            None
        };
        if let Some(found) = found {
            match found {
                Ok(true) => {
                    tracing::info!(channel = %msg.channel, "the reply had reached Slack already; not posting it twice");
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(channel = %msg.channel, "cannot check whether the reply reached Slack ({e}); posting it (at least once)")
                }
            }
        }
        let r = match &req.origin {
            Origin::SlashCommand { response_url, .. } => {
                web.respond(response_url, &msg.text, None).await
            }
            _ => web.post_message(&msg).await.map(|_| ()),
        };
        match r {
            Ok(()) => {
                crate::metrics::global().reply_posted();
                return Ok(());
            }
            Err(e) if e.is_permanent() || attempt >= ATTEMPTS => return Err(e),
            Err(e) => {
                look = maybe_posted(&e);
                let d = backoff.next_delay_at_least(e.retry_after().or(
                    // Slack's 429 without Retry-After: its documented pace.
                    if matches!(e, WebError::RateLimited { .. }) {
                        Some(Duration::from_secs(1))
                    } else {
                        None
                    },
                ));
                tracing::warn!(channel = %msg.channel, "reply not delivered yet ({e}); attempt {attempt} of {ATTEMPTS}, next in {} ms", d.as_millis());
                tokio::time::sleep(d).await;
                attempt += 1;
            }
        }
    }
}
