//! From the socket to the bot. A batch of envelopes read back to back is
//! recorded in the durable inbox in one commit, then acknowledged with one
//! flush, then handed to the dispatcher over a bounded queue.
//!
//! An acknowledged envelope is therefore always either in the queue or in
//! the inbox. When the queue is full, a recorded envelope simply waits in the
//! inbox (the dispatcher is told to look there), so memory stays bounded and
//! the ack is never delayed. Without a working inbox the bot acknowledges
//! only what the queue can take; the rest is left unacknowledged, for Slack
//! to deliver again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use super::envelope::Envelope;
use crate::health::Health;
use crate::store::inbox::Arrival;
use crate::store::Store;

/// The queue between the socket thread and the dispatcher holds this many.
pub(crate) const QUEUE: usize = 1024;
/// How long the inbox write may wait for another writer before the batch is
/// acknowledged without it (Slack redelivers after about 3 s).
const INBOX_WAIT: Duration = Duration::from_millis(500);

/// An envelope on its way to the dispatcher.
#[derive(Debug, Clone)]
pub(crate) struct Inbound {
    /// The envelope (already acknowledged).
    pub(crate) envelope: Envelope,
    /// Its inbox row, when it was recorded.
    pub(crate) row: Option<i64>,
    /// Set when it comes back from the inbox after a restart.
    pub(crate) recovered: Option<Recovered>,
}

/// What the inbox knew of an envelope left unanswered by a previous process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// When it arrived (ms since the epoch): its reply is looked for from then.
    pub(crate) received_ms: u64,
    /// The operator command that was running for it, if one was.
    pub(crate) command: Option<String>,
}

/// The socket thread's side of the handoff.
#[derive(Debug)]
pub(crate) struct Handoff {
    /// To the dispatcher.
    queue: mpsc::Sender<Inbound>,
    /// The inbox's own connection, used only from the socket thread.
    inbox: Option<Mutex<Store>>,
    /// Rung when recorded envelopes did not fit the queue.
    overflow: Arc<Notify>,
    /// Where `status` learns whether the last batch was recorded.
    health: Arc<Health>,
    /// When a failure to record was last logged, so it is logged once a minute.
    warned: Mutex<Option<Instant>>,
}

impl Handoff {
    /// A handoff to `queue`, recording in `inbox` when there is one.
    pub(crate) fn new(
        queue: mpsc::Sender<Inbound>,
        inbox: Option<Store>,
        overflow: Arc<Notify>,
        health: Arc<Health>,
    ) -> Handoff {
        let inbox = inbox.and_then(|mut s| match s.set_busy_timeout(INBOX_WAIT) {
            Ok(()) => Some(Mutex::new(s)),
            Err(e) => {
                tracing::error!("{e}; events are acknowledged before they are recorded");
                None
            }
        });
        health.set_durable(inbox.is_some());
        Handoff {
            queue,
            inbox,
            overflow,
            health,
            warned: Mutex::new(None),
        }
    }

    /// The dispatcher has gone: the bot is stopping.
    pub(crate) fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Records a batch in one commit; the row of each, or `None` for all
    /// when there is no inbox or it could not be written.
    pub(crate) fn record(&self, batch: &[Envelope]) -> Vec<Option<i64>> {
        let Some(inbox) = &self.inbox else {
            return vec![None; batch.len()];
        };
        let arrivals: Vec<Arrival<'_>> = batch
            .iter()
            .map(|e| Arrival {
                envelope_id: &e.envelope_id,
                kind: e.kind.as_str(),
                retry_attempt: e.retry_attempt,
                retry_reason: &e.retry_reason,
                payload: e.payload.get(),
            })
            .collect();
        let mut store = inbox.lock().unwrap_or_else(|p| p.into_inner());
        match store.record_arrivals(&arrivals, crate::clock::now_ms()) {
            Ok(rows) => {
                if !self.health.durable() {
                    self.health.set_durable(true);
                    tracing::info!(
                        "the inbox is written again: acknowledged events survive a crash"
                    );
                }
                rows.into_iter().map(Some).collect()
            }
            Err(e) => {
                self.health.set_durable(false);
                let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
                if warned.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    *warned = Some(Instant::now());
                    tracing::error!("cannot record events in the inbox ({e}); acknowledging them first, as if there were none: a crash now loses them");
                }
                vec![None; batch.len()]
            }
        }
    }

    /// A place in the queue for an envelope that is not recorded: without
    /// one it must not be acknowledged.
    pub(crate) fn reserve(&self) -> Option<mpsc::Permit<'_, Inbound>> {
        self.queue.try_reserve().ok()
    }

    /// Hands a recorded envelope over; when the queue is full it waits in
    /// the inbox, and the dispatcher is told to look there.
    pub(crate) fn offer(&self, msg: Inbound) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.queue.try_send(msg) {
            self.overflow.notify_one();
        }
    }
}
