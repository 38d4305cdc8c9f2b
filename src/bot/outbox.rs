//! Delivers the outbox: in order per channel, at Slack's pace per channel,
//! honouring 429 `Retry-After`, retrying transient failures with backoff,
//! and giving up on permanent errors with a log line, never silently.
//!
//! Each message carries an idempotency key in its metadata. A message found
//! in `sending` after a crash is looked up in Slack before it is posted
//! again, so a crash between the post and the commit does not post twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::settings::SettingsRx;
use crate::slack::backoff::jitter;
use crate::slack::web::{OutgoingMessage, WebError};
use crate::store::outbox::Pending;
use crate::store::{now_ms, Store};

/// The store, shared by the bot's tasks.
pub type SharedStore = Arc<Mutex<Store>>;

/// Locks the store, surviving a poisoned lock.
pub fn lock(store: &SharedStore) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

/// How one attempt went.
#[derive(Debug)]
enum Outcome {
    Sent,
    RateLimited(Duration),
    Retry,
    Failed,
}

/// Delay before retry number `attempts` of a transient failure.
fn retry_delay(attempts: i64) -> Duration {
    let exp = attempts.clamp(1, 10) as u32 - 1;
    jitter((Duration::from_millis(500) * 2u32.pow(exp)).min(Duration::from_secs(300)))
}

/// Runs until `stop` turns true.
pub async fn run(
    store: SharedStore,
    settings: SettingsRx,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut paced_until: HashMap<String, i64> = HashMap::new();
    let mut paused_until: i64 = 0;
    let mut tasks: JoinSet<(String, Outcome)> = JoinSet::new();
    let mut last_prune = 0i64;
    loop {
        let now = now_ms();
        let (pace, keep) = {
            let s = settings.borrow();
            (s.config.outbox.pace, s.config.outbox.keep)
        };
        let heads = match lock(&store).due_heads(now) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!("outbox: {e}");
                Vec::new()
            }
        };
        if now - last_prune > 3_600_000 {
            last_prune = now;
            if let Err(e) = lock(&store).prune_outbox(now - keep.as_millis() as i64) {
                tracing::warn!("outbox: cannot prune delivered messages: {e}");
            }
        }
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
        if let Ok(Some(due)) = lock(&store).next_due_ms() {
            if due > now {
                next_wake = next_wake.min(due);
            }
        }
        let sleep = Duration::from_millis((next_wake - now).max(10) as u64);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {}
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok((channel, outcome)) = done {
                    in_flight.remove(&channel);
                    let now = now_ms();
                    match outcome {
                        Outcome::Sent => { paced_until.insert(channel, now + pace.as_millis() as i64); }
                        Outcome::RateLimited(d) => paused_until = paused_until.max(now + d.as_millis() as i64),
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

async fn deliver_one(
    p: Pending,
    web: &crate::slack::web::SlackWeb,
    me: &crate::slack::web::Identity,
    store: &SharedStore,
) -> Outcome {
    let msg = OutgoingMessage {
        channel: p.channel.clone(),
        text: p.text.clone(),
        thread_ts: p.thread_ts.clone(),
        idempotency_key: Some(p.key.clone()),
    };
    let record = |r: Result<(), crate::store::StoreError>| {
        if let Err(e) = r {
            tracing::error!("outbox: {e}");
        }
    };
    if let Some(since) = p.sending_since_ms {
        match web.find_posted(&msg, since.max(0) as u64, me).await {
            Ok(Some(ts)) => {
                tracing::info!(id = p.id, channel = %p.channel, "notification {} had reached Slack before the restart; not posting it twice", p.id);
                record(lock(store).mark_sent(p.id, &ts, now_ms()));
                return Outcome::Sent;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(id = p.id, "cannot check whether notification {} reached Slack ({e}); posting it again (at least once)", p.id),
        }
    }
    if let Err(e) = lock(store).mark_sending(p.id, now_ms()) {
        // Without this mark a crash could post it twice: do not post yet.
        tracing::error!(
            id = p.id,
            "outbox: {e}; notification {} waits until the store can be written",
            p.id
        );
        return Outcome::RateLimited(Duration::from_secs(5));
    }
    match web.post_message(&msg).await {
        Ok(ts) => {
            record(lock(store).mark_sent(p.id, &ts, now_ms()));
            tracing::debug!(id = p.id, channel = %p.channel, "notification delivered");
            Outcome::Sent
        }
        Err(WebError::RateLimited { retry_after, .. }) => {
            let d = retry_after.unwrap_or(Duration::from_secs(1));
            tracing::warn!(id = p.id, channel = %p.channel, "Slack rate-limits chat.postMessage; retrying in {}s", d.as_secs_f64());
            record(lock(store).reschedule(
                p.id,
                now_ms() + d.as_millis() as i64,
                "ratelimited",
                false,
            ));
            Outcome::RateLimited(d)
        }
        Err(e) if e.is_permanent() && !e.is_auth_failure() => {
            tracing::error!(id = p.id, channel = %p.channel, "notification {} cannot be delivered, giving up: {e}", p.id);
            record(lock(store).mark_failed(p.id, &e.to_string(), now_ms()));
            Outcome::Failed
        }
        Err(e) => {
            let d = retry_delay(p.attempts + 1);
            // A refusal from Slack proves nothing was posted; a lost answer does not.
            let maybe_posted = !matches!(e, WebError::Api { .. });
            tracing::warn!(id = p.id, channel = %p.channel, "notification {} not delivered yet ({e}); retrying in {} ms", p.id, d.as_millis());
            record(lock(store).reschedule(
                p.id,
                now_ms() + d.as_millis() as i64,
                &e.to_string(),
                maybe_posted,
            ));
            Outcome::Retry
        }
    }
}
