//! The bot: what happens to an envelope after the socket acknowledged it.
//!
//! [`serve`] takes acknowledged envelopes off a channel, decodes them
//! (`event`), drops redeliveries (`dedup`), and handles each in its own task:
//! the `router` picks a built-in or an operator command, and `reply` sends
//! the answer. Nothing here can delay an ack.

pub(crate) mod access;
pub(crate) mod announce;
pub(crate) mod builtins;
pub(crate) mod commands;
pub(crate) mod dedup;
pub(crate) mod deliver;
pub(crate) mod event;
pub(crate) mod limits;
pub(crate) mod reply;
pub(crate) mod router;
pub(crate) mod words;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::settings::SettingsRx;
use crate::slack::socket::Inbound;
use event::{Decoded, Origin};
use router::Router;

/// What every handler task needs.
#[derive(Debug)]
pub(crate) struct BotCtx {
    /// The router.
    pub(crate) router: Router,
    /// Seen event IDs.
    pub(crate) dedup: dedup::Seen,
    /// The live settings (configuration and Web API client).
    pub(crate) settings: SettingsRx,
}

/// Handles envelopes until `stop` turns true, then finishes what was already
/// acknowledged within `grace` and abandons the rest (logged).
pub(crate) async fn serve(
    mut inbound: mpsc::UnboundedReceiver<Inbound>,
    ctx: Arc<BotCtx>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            msg = inbound.recv() => match msg {
                Some(m) => dispatch(m, &ctx, &mut tasks),
                None => break,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    // Already acknowledged: Slack will not send these again, so handle them.
    inbound.close();
    while let Some(m) = inbound.recv().await {
        dispatch(m, &ctx, &mut tasks);
    }
    if tasks.is_empty() {
        return;
    }
    tracing::info!(
        "waiting up to {}s for {} request(s) in progress",
        grace.as_secs(),
        tasks.len()
    );
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            "abandoning {} request(s) still in progress after {}s",
            tasks.len(),
            grace.as_secs()
        );
        tasks.abort_all();
    }
}

fn dispatch(m: Inbound, ctx: &Arc<BotCtx>, tasks: &mut JoinSet<()>) {
    let env = &m.envelope;
    let decoded = event::decode(env, &ctx.settings.borrow().identity);
    let req = match decoded {
        Decoded::Request(r) => r,
        Decoded::Ignored(why) => {
            tracing::debug!(envelope = %env.envelope_id, "ignored: {why}");
            return;
        }
    };
    let (retry, reason) = (env.retry_attempt, env.retry_reason.clone());
    let ctx = ctx.clone();
    tasks.spawn(async move {
        if let Some(id) = &req.event_id {
            if !ctx.dedup.first_time(id).await {
                tracing::info!(event = %id, retry, %reason, "redelivered event already handled; not answering twice");
                return;
            }
        }
        let settings = ctx.settings.borrow().clone();
        let reply = ctx.router.route(&req, &settings.config).await;
        let via = if matches!(req.origin, Origin::SlashCommand { .. }) { "response_url" } else { "chat.postMessage" };
        match reply::deliver(&settings.web, &req, &reply).await {
            Ok(()) => tracing::debug!(channel = %req.channel, "replied via {via}"),
            Err(e) => tracing::error!(channel = %req.channel, user = %req.user, "reply could not be delivered via {via}: {e}"),
        }
    });
}
