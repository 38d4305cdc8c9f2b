//! The bot: what happens to an envelope after the socket acknowledged it.
//!
//! [`serve`] is the dispatcher. It takes acknowledged envelopes off the
//! handoff queue (and, after a restart or when the queue overflowed, out of
//! the durable inbox), and handles each in a task of its own: it decodes it
//! (`event`), drops redeliveries (`dedup`), lets the `router` pick a built-in
//! or an operator command, sends the answer (`reply`), and only then deletes
//! the envelope from the inbox. At most [`MAX_IN_FLIGHT`] run at once; the
//! rest wait in the queue or the inbox, not in memory. Nothing here can
//! delay an ack.

pub(crate) mod access;
pub(crate) mod announce;
pub(crate) mod arguments;
pub(crate) mod builtins;
pub(crate) mod commands;
pub(crate) mod dedup;
pub(crate) mod deliver;
pub(crate) mod event;
pub(crate) mod fleet;
pub(crate) mod jobs;
pub(crate) mod limits;
pub(crate) mod recovery;
pub(crate) mod reply;
pub(crate) mod router;
pub(crate) mod words;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;

use crate::settings::SettingsRx;
use crate::slack::envelope::{Envelope, EnvelopeKind};
use crate::slack::handoff::{Handoff, Inbound, Recovered};
use crate::store::SharedStore;
use event::{Decoded, Origin};
use router::{Reply, Routed, Router};

/// Envelopes handled at once; more wait in the queue or the inbox.
pub(crate) const MAX_IN_FLIGHT: usize = 64;

/// What every handler task needs.
#[derive(Debug)]
pub(crate) struct BotCtx {
    /// The router.
    pub(crate) router: Router,
    /// Seen event IDs.
    pub(crate) dedup: dedup::Seen,
    /// The live settings (configuration and Web API client).
    pub(crate) settings: SettingsRx,
    /// The store, with the inbox; none when it could not be opened.
    pub(crate) store: Option<SharedStore>,
    /// Where answered inbox rows are given back, to be deleted.
    pub(crate) handoff: Arc<Handoff>,
    /// What the previous process posted, for the events it left.
    pub(crate) recovery: recovery::Recovery,
    /// The fleet, for a member of one.
    pub(crate) fleet: Option<Arc<fleet::FleetCtx>>,
}

/// Handles envelopes until `stop` turns true, then finishes what was already
/// acknowledged within `grace` and abandons the rest (logged). Inbox rows up
/// to `recover_through`, left by a previous process, are handled first;
/// `overflow` rings when envelopes did not fit the queue and wait in the
/// inbox (the handoff says which); `adopted` brings rows a fleet member took
/// over from a host that went away, handled as recovered.
pub(crate) async fn serve(
    mut inbound: mpsc::Receiver<Inbound>,
    ctx: Arc<BotCtx>,
    recover_through: i64,
    overflow: Arc<Notify>,
    mut adopted: mpsc::UnboundedReceiver<Vec<i64>>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut taken_over: std::collections::HashSet<i64> = std::collections::HashSet::new();
    let mut tasks: JoinSet<()> = JoinSet::new();
    // Rows to read from the inbox, as inclusive ranges, oldest first: what
    // the last process left, then what spilled over a full queue. Each row
    // is read once: a range shrinks as its rows are dispatched.
    let mut backlog: VecDeque<(i64, i64)> = VecDeque::new();
    if ctx.store.is_some() && recover_through > 0 {
        backlog.push_back((1, recover_through));
    }
    let mut recovering = !backlog.is_empty();
    let mut spilled = false;
    // After a failed inbox read: when to try again.
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let ready = retry_at.is_none_or(|t| t <= tokio::time::Instant::now());
        if ready && tasks.len() < MAX_IN_FLIGHT && (!backlog.is_empty() || spilled) {
            retry_at = None;
            if backlog.is_empty() {
                backlog.extend(ctx.handoff.take_spilled());
                if backlog.is_empty() && ctx.handoff.end_spill() {
                    spilled = false;
                }
                continue;
            }
            let room = MAX_IN_FLIGHT - tasks.len();
            match read_inbox(&ctx, backlog[0], room).await {
                Ok(rows) => {
                    match rows.last() {
                        Some(last) if rows.len() == room => backlog[0].0 = last.id + 1,
                        _ => {
                            backlog.pop_front();
                        }
                    }
                    for row in rows {
                        let old = row.id <= recover_through || taken_over.remove(&row.id);
                        if let Some(msg) = from_inbox(row, old) {
                            dispatch(msg, &ctx, &mut tasks);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!("cannot read the inbox: {e}; trying again in a second");
                    retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                }
            }
            if recovering && backlog.front().is_none_or(|r| r.0 > recover_through) {
                recovering = false;
                ctx.recovery.clear().await;
            }
            continue;
        }
        tokio::select! {
            msg = inbound.recv(), if tasks.len() < MAX_IN_FLIGHT => match msg {
                Some(m) => dispatch(m, &ctx, &mut tasks),
                None => break,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = overflow.notified() => spilled = ctx.store.is_some(),
            Some(ids) = adopted.recv() => {
                for id in ids {
                    taken_over.insert(id);
                    backlog.push_back((id, id));
                }
            }
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)), if retry_at.is_some() => {}
            _ = stop.changed() => break,
        }
    }
    // Already acknowledged: handle what waits in the queue (the inbox keeps
    // it for the next start, should this one run out of time).
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

/// Up to `room` rows of the inbox in `range`, oldest first.
async fn read_inbox(
    ctx: &BotCtx,
    range: (i64, i64),
    room: usize,
) -> Result<Vec<crate::store::inbox::Pending>, crate::store::StoreError> {
    let Some(store) = &ctx.store else {
        return Ok(Vec::new());
    };
    store
        .call(move |s| s.inbox_between(range.0, range.1, room))
        .await
}

/// An inbox row as an envelope to handle again.
fn from_inbox(row: crate::store::inbox::Pending, recovering: bool) -> Option<Inbound> {
    let kind = match row.kind.as_str() {
        "events_api" => EnvelopeKind::EventsApi,
        "slash_commands" => EnvelopeKind::SlashCommands,
        "interactive" => EnvelopeKind::Interactive,
        other => {
            tracing::warn!(
                row = row.id,
                "the inbox holds an envelope of unknown kind {other:?}; dropping it"
            );
            return None;
        }
    };
    let payload = match RawValue::from_string(row.payload) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(
                row = row.id,
                "an inbox payload does not parse ({e}); dropping it"
            );
            return None;
        }
    };
    if recovering {
        tracing::info!(row = row.id, envelope = %row.envelope_id, "recovered an event acknowledged before the restart; handling it now");
    }
    Some(Inbound {
        envelope: Envelope {
            envelope_id: row.envelope_id,
            kind,
            retry_attempt: row.retry_attempt,
            retry_reason: row.retry_reason,
            payload,
        },
        row: Some(row.id),
        recovered: recovering.then_some(Recovered {
            received_ms: row.received_ms,
            command: row.command,
        }),
    })
}

fn dispatch(m: Inbound, ctx: &Arc<BotCtx>, tasks: &mut JoinSet<()>) {
    let ctx = ctx.clone();
    tasks.spawn(async move {
        let row = m.row;
        handle(&ctx, m).await;
        if let Some(id) = row {
            ctx.handoff.answered(id);
        }
    });
}

/// Handles one envelope: decode, de-duplicate, route, reply.
async fn handle(ctx: &BotCtx, m: Inbound) {
    let env = &m.envelope;
    let settings = ctx.settings.borrow().clone();
    let req = match event::decode(env, &settings.identity) {
        Decoded::Request(r) => r,
        Decoded::Ignored(why) => {
            tracing::debug!(envelope = %env.envelope_id, "ignored: {why}");
            return;
        }
    };
    let claim = match &req.event_id {
        Some(id) => ctx.dedup.claim(id, m.row).await,
        None => dedup::Claim::New,
    };
    if claim == dedup::Claim::Taken {
        tracing::info!(event_id = %req.event_id.as_deref().unwrap_or_default(), retry = env.retry_attempt, reason = %env.retry_reason, "redelivered event already handled; not answering twice");
        crate::metrics::global().duplicate();
        return;
    }
    let since = m
        .recovered
        .as_ref()
        .map_or_else(crate::clock::now_ms, |r| r.received_ms);
    let reply = match m.recovered.as_ref().and_then(|r| r.command.clone()) {
        Some(cmd) => {
            tracing::warn!(command = %cmd, user = %req.user, "an operator command was interrupted by the restart; not running it again");
            Reply {
                text: format!(
                    ":warning: `{cmd}` was interrupted by a restart; run it again if you still need it."
                ),
                threaded: true,
            }
        }
        None => {
            let planned = match &ctx.fleet {
                Some(f) => f.plan(&req, &settings.config).await,
                None => fleet::Plan::Local,
            };
            match planned {
                fleet::Plan::Local => {}
                fleet::Plan::Answer(text) => {
                    return answer(
                        ctx,
                        &req,
                        &settings,
                        Reply {
                            text,
                            threaded: true,
                        },
                        since,
                        m.recovered.is_some(),
                        claim,
                    )
                    .await;
                }
                fleet::Plan::Jobs(jobs) => {
                    let f = ctx.fleet.as_ref().expect("planned by the fleet");
                    let timeout = settings
                        .config
                        .command(&jobs.command)
                        .map_or(Duration::from_secs(30), |c| c.timeout);
                    let request = req
                        .event_id
                        .clone()
                        .unwrap_or_else(|| env.envelope_id.clone());
                    match f.dispatch(&req, request, jobs, timeout).await {
                        Some(r) => {
                            return answer(
                                ctx,
                                &req,
                                &settings,
                                r,
                                since,
                                m.recovered.is_some(),
                                claim,
                            )
                            .await
                        }
                        None => return,
                    }
                }
            }
            match ctx.router.route(&req, &settings.config).await {
                Routed::Reply(r) => r,
                Routed::Command(c) => {
                    if let (Some(id), Some(store)) = (m.row, &ctx.store) {
                        let name = c.name().to_string();
                        if let Err(e) = store.call(move |s| s.inbox_mark_running(id, &name)).await {
                            tracing::warn!(row = id, "cannot note that `{}` starts ({e}); after a crash it could run twice", c.name());
                        }
                    }
                    c.run().await
                }
            }
        }
    };
    answer(
        ctx,
        &req,
        &settings,
        reply,
        since,
        m.recovered.is_some(),
        claim,
    )
    .await;
}

/// Sends `reply` to `req`: once, looking first for a copy a process that
/// died may have posted when the event was recovered and had been claimed.
async fn answer(
    ctx: &BotCtx,
    req: &event::Request,
    settings: &crate::settings::Settings,
    reply: Reply,
    since: u64,
    recovered: bool,
    claim: dedup::Claim,
) {
    let via = if matches!(req.origin, Origin::SlashCommand { .. }) {
        "response_url"
    } else {
        "chat.postMessage"
    };
    // Only an event the dead process had claimed may have been answered.
    let recovery = (recovered && claim == dedup::Claim::Again).then_some(&ctx.recovery);
    match reply::deliver(
        &settings.web,
        &settings.identity,
        req,
        &reply,
        since,
        recovery,
    )
    .await
    {
        Ok(()) => tracing::debug!(channel = %req.channel, "replied via {via}"),
        Err(e) => {
            tracing::error!(channel = %req.channel, user = %req.user, "reply could not be delivered via {via}: {e}")
        }
    }
}
