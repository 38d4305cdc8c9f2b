//! Sends a reply where it belongs: a slash command's `response_url`, or
//! `chat.postMessage` in the request's channel and thread. Honours 429
//! `Retry-After`, retries transient failures with backoff, and logs a
//! permanent failure instead of retrying it forever.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::bot::event::{Origin, Request};
use crate::bot::router::Reply;
use crate::slack::web::{OutgoingMessage, SlackWeb, WebError};

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
        idempotency_key: None,
    }
}

/// Delivers `reply` to `req`, retrying as Slack allows.
pub(crate) async fn deliver(web: &SlackWeb, req: &Request, reply: &Reply) -> Result<(), WebError> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(20));
    let msg = destination(req, reply);
    let mut attempt = 1;
    loop {
        let r = match &req.origin {
            Origin::SlashCommand { response_url, .. } => {
                web.respond(response_url, &msg.text, None).await
            }
            _ => web.post_message(&msg).await.map(|_| ()),
        };
        match r {
            Ok(()) => return Ok(()),
            Err(e) if e.is_permanent() || attempt >= ATTEMPTS => return Err(e),
            Err(e) => {
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
