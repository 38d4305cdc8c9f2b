//! Delivers the outbox (the rows `store::outbox` keeps): in order per
//! channel, at Slack's pace per channel, honouring 429 `Retry-After`,
//! retrying transient failures with backoff, and giving up on permanent
//! errors with a log line, never silently.
//!
//! Each message carries an idempotency key in its metadata. A message found
//! in `sending` after a crash is looked up in Slack before it is posted
//! again, so a crash between the post and the commit does not post twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::backoff::jitter;
use crate::clock::now_ms;
use crate::settings::SettingsRx;
use crate::slack::web::{Identity, OutgoingMessage, SlackWeb, WebError};
use crate::store::outbox::Pending;
use crate::store::{SharedStore, StoreError};

/// How one attempt went.
#[derive(Debug)]
enum Outcome {
    /// Posted (or found already posted).
    Sent,
    /// Slack asked every post to wait this long.
    RateLimited(Duration),
    /// A transient failure; rescheduled.
    Retry,
    /// Given up for good.
    Failed,
    /// The store could not record the attempt: nothing was posted; the
    /// channel waits this long before it tries again.
    StoreUnwritable(Duration),
}

/// Delay before retry number `attempts` of a transient failure.
fn retry_delay(attempts: u32) -> Duration {
    let exp = attempts.clamp(1, 10) - 1;
    jitter((Duration::from_millis(500) * 2u32.pow(exp)).min(Duration::from_secs(300)))
}

/// Logs a store failure that only loses bookkeeping.
fn logged(r: Result<(), StoreError>) {
    if let Err(e) = r {
        tracing::error!("outbox: {e}");
    }
}

/// Runs until `stop` turns true.
pub(crate) async fn run(
    store: SharedStore,
    settings: SettingsRx,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    mut leader: Option<watch::Receiver<bool>>,
) {
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut paced_until: HashMap<String, u64> = HashMap::new();
    let mut paused_until: u64 = 0;
    let mut tasks: JoinSet<(String, Outcome)> = JoinSet::new();
    let mut last_prune = 0u64;
    loop {
        // A fleet's outbox is delivered by one host at a time.
        if let Some(l) = leader.as_mut() {
            if !*l.borrow_and_update() {
                tokio::select! {
                    r = l.changed() => if r.is_err() { break },
                    _ = stop.changed() => break,
                }
                continue;
            }
        }
        let now = now_ms();
        let (pace, keep) = {
            let s = settings.borrow();
            (s.config.outbox.pace, s.config.outbox.keep)
        };
        let prune_before = (now.saturating_sub(last_prune) > 3_600_000)
            .then(|| now.saturating_sub(keep.as_millis() as u64));
        if prune_before.is_some() {
            last_prune = now;
        }
        let found = store
            .call(move |s| {
                if let Some(before) = prune_before {
                    if let Err(e) = s.prune_outbox(before) {
                        tracing::warn!("outbox: cannot prune delivered messages: {e}");
                    }
                }
                Ok((s.due_heads(now)?, s.next_due_ms()?))
            })
            .await;
        let (heads, next_due) = found.unwrap_or_else(|e| {
            tracing::error!("outbox: {e}");
            (Vec::new(), None)
        });
        let mut next_wake = now + 2_000;
        for p in heads {
            if in_flight.contains(&p.channel) {
                continue;
            }
            let ready_at = paused_until.max(paced_until.get(&p.channel).copied().unwrap_or(0));
            if ready_at > now {
                next_wake = next_wake.min(ready_at);
                continue;
            }
            in_flight.insert(p.channel.clone());
            let s = settings.borrow().clone();
            let store = store.clone();
            tasks.spawn(async move {
                let channel = p.channel.clone();
                (channel, deliver_one(p, &s.web, &s.identity, &store).await)
            });
        }
        if let Some(due) = next_due.filter(|d| *d > now) {
            next_wake = next_wake.min(due);
        }
        let sleep = Duration::from_millis(next_wake.saturating_sub(now).max(10));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {}
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok((channel, outcome)) = done {
                    in_flight.remove(&channel);
                    let now = now_ms();
                    match outcome {
                        Outcome::Sent => { paced_until.insert(channel, now + pace.as_millis() as u64); }
                        Outcome::RateLimited(d) => paused_until = paused_until.max(now + d.as_millis() as u64),
                        Outcome::StoreUnwritable(d) => { paced_until.insert(channel, now + d.as_millis() as u64); }
                        Outcome::Retry | Outcome::Failed => {}
                    }
                }
            }
            _ = stop.changed() => break,
        }
    }
    // A post cut off here stays `sending`; the next start checks Slack first.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

async fn deliver_one(p: Pending, web: &SlackWeb, me: &Identity, store: &SharedStore) -> Outcome {
    let msg = OutgoingMessage {
        channel: p.channel.clone(),
        text: p.text.clone(),
        thread_ts: p.thread_ts.clone(),
        idempotency_key: Some(p.key.clone()),
    };
    let id = p.id;
    if let Some(since) = p.sending_since_ms {
        match web.find_posted(&msg, since, me).await {
            Ok(Some(ts)) => {
                tracing::info!(id, channel = %p.channel, "notification {id} had reached Slack before the restart; not posting it twice");
                logged(store.call(move |s| s.mark_sent(id, &ts, now_ms())).await);
                return Outcome::Sent;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(id, "cannot check whether notification {id} reached Slack ({e}); posting it again (at least once)"),
        }
    }
    if let Err(e) = store.call(move |s| s.mark_sending(id, now_ms())).await {
        // Without this mark a crash could post it twice: do not post yet.
        tracing::error!("outbox: {e}; notification {id} waits until the store can be written");
        return Outcome::StoreUnwritable(Duration::from_secs(5));
    }
    match web.post_message(&msg).await {
        Ok(ts) => {
            logged(store.call(move |s| s.mark_sent(id, &ts, now_ms())).await);
            tracing::debug!(id, channel = %p.channel, "notification delivered");
            crate::metrics::global().notification_delivered();
            Outcome::Sent
        }
        Err(WebError::RateLimited { retry_after, .. }) => {
            let d = retry_after.unwrap_or(Duration::from_secs(1));
            tracing::warn!(id, channel = %p.channel, "Slack rate-limits chat.postMessage; retrying in {}s", d.as_secs_f64());
            let at = now_ms() + d.as_millis() as u64;
            logged(
                store
                    .call(move |s| s.reschedule(id, at, "ratelimited", false))
                    .await,
            );
            Outcome::RateLimited(d)
        }
        Err(e) if e.is_permanent() && !e.is_auth_failure() => {
            tracing::error!(id, channel = %p.channel, "notification {id} cannot be delivered, giving up: {e}");
            let why = e.to_string();
            logged(store.call(move |s| s.mark_failed(id, &why, now_ms())).await);
            Outcome::Failed
        }
        Err(e) => {
            let d = retry_delay(p.attempts + 1);
            // A refusal from Slack proves nothing was posted; a lost answer does not.
            let maybe_posted = !matches!(e, WebError::Api { .. });
            tracing::warn!(id, channel = %p.channel, "notification {id} not delivered yet ({e}); retrying in {} ms", d.as_millis());
            let (at, why) = (now_ms() + d.as_millis() as u64, e.to_string());
            logged(
                store
                    .call(move |s| s.reschedule(id, at, &why, maybe_posted))
                    .await,
            );
            Outcome::Retry
        }
    }
}
