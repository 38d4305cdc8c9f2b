//! From the socket to the bot. A batch of envelopes read back to back is
//! recorded in the durable inbox in one commit, then acknowledged with one
//! flush, then handed to the dispatcher over a bounded queue.
//!
//! The commit runs on a thread of its own, the inbox writer, so the socket
//! loop reads and parses the next batch while the last one is written; each
//! batch's acks go out the moment its commit returns, in order.
//!
//! An acknowledged envelope is therefore always either in the queue or in
//! the inbox. When the queue is full, a recorded envelope simply waits in the
//! inbox (the dispatcher is told to look there), so memory stays bounded and
//! the ack is never delayed. Without a working inbox the bot acknowledges
//! only what the queue can take; the rest is left unacknowledged, for Slack
//! to deliver again.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};

use super::envelope::Envelope;
use crate::health::Health;
use crate::store::inbox::{Arrival, Inbox};

/// The queue between the socket thread and the dispatcher holds this many.
pub(crate) const QUEUE: usize = 1024;
/// How long the inbox write may wait for another writer before the batch is
/// acknowledged without it (Slack redelivers after about 3 s).
const INBOX_WAIT: Duration = Duration::from_millis(500);
/// How often answered rows are deleted when no batch comes to carry them.
const TIDY_EVERY: Duration = Duration::from_secs(1);

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

/// A batch with the row of each envelope (`None`: not recorded).
pub(crate) type Recorded = (Vec<Envelope>, Vec<Option<i64>>);

/// Work for the inbox writer.
enum Job {
    /// Record a batch, and answer with its rows.
    Record(Vec<Envelope>, oneshot::Sender<Recorded>),
    /// Delete the answered rows now, and say when done.
    Tidy(oneshot::Sender<()>),
}

/// The socket thread's side of the handoff.
#[derive(Debug)]
pub(crate) struct Handoff {
    /// To the dispatcher.
    queue: mpsc::Sender<Inbound>,
    /// To the inbox writer; none without an inbox.
    writer: Option<Mutex<std_mpsc::Sender<Job>>>,
    /// Rows answered since the last commit, deleted with the next one.
    answered: Arc<Mutex<Vec<i64>>>,
    /// Rung when recorded envelopes did not fit the queue.
    overflow: Arc<Notify>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Record(..) => "Record",
            Job::Tidy(_) => "Tidy",
        })
    }
}

impl Handoff {
    /// A handoff to `queue`, recording in the inbox of `state_dir` when
    /// there is one; `health` learns whether recording works.
    pub(crate) fn new(
        queue: mpsc::Sender<Inbound>,
        state_dir: Option<&std::path::Path>,
        overflow: Arc<Notify>,
        health: Arc<Health>,
    ) -> Handoff {
        let answered = Arc::new(Mutex::new(Vec::new()));
        let inbox = state_dir.and_then(|dir| match Inbox::open(dir, INBOX_WAIT) {
            Ok(inbox) => Some(inbox),
            Err(e) => {
                tracing::error!("{e}; events are acknowledged before they are recorded");
                None
            }
        });
        let writer = inbox.and_then(|inbox| {
            let (tx, rx) = std_mpsc::channel();
            let (answered, health) = (answered.clone(), health.clone());
            std::thread::Builder::new()
                .name("slackbotd-inbox".into())
                .spawn(move || write_loop(inbox, rx, answered, health))
                .map_err(|e| tracing::error!("cannot start the inbox writer ({e}); events are acknowledged before they are recorded"))
                .ok()
                .map(|_| Mutex::new(tx))
        });
        health.set_durable(writer.is_some());
        Handoff {
            queue,
            writer,
            answered,
            overflow,
        }
    }

    /// The dispatcher has gone: the bot is stopping.
    pub(crate) fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Records a batch in one commit, on the inbox writer; the answer comes
    /// with the row of each envelope, or `None` for all when there is no
    /// inbox or it could not be written.
    pub(crate) fn record(&self, batch: Vec<Envelope>) -> oneshot::Receiver<Recorded> {
        let (tx, rx) = oneshot::channel();
        let unrecorded = |batch: Vec<Envelope>| {
            let n = batch.len();
            (batch, vec![None; n])
        };
        match &self.writer {
            None => {
                let _ = tx.send(unrecorded(batch));
            }
            Some(w) => {
                let w = w.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(std_mpsc::SendError(Job::Record(batch, tx))) =
                    w.send(Job::Record(batch, tx))
                {
                    let _ = tx.send(unrecorded(batch));
                }
            }
        }
        rx
    }

    /// Row `id` is answered: it is deleted with the next commit.
    pub(crate) fn answered(&self, id: i64) {
        if self.writer.is_some() {
            self.answered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(id);
        }
    }

    /// Deletes the rows answered so far, and returns once that is done.
    pub(crate) async fn tidy(&self) {
        let Some(w) = &self.writer else { return };
        let (tx, rx) = oneshot::channel();
        if w.lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Job::Tidy(tx))
            .is_ok()
        {
            let _ = rx.await;
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

/// The inbox writer: one commit per batch, answered rows deleted with it.
fn write_loop(
    mut inbox: Inbox,
    jobs: std_mpsc::Receiver<Job>,
    answered: Arc<Mutex<Vec<i64>>>,
    health: Arc<Health>,
) {
    let mut warned: Option<Instant> = None;
    let take = || std::mem::take(&mut *answered.lock().unwrap_or_else(|p| p.into_inner()));
    let give_back = |ids: Vec<i64>| {
        answered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(ids)
    };
    loop {
        let job = match jobs.recv_timeout(TIDY_EVERY) {
            Ok(job) => Some(job),
            Err(std_mpsc::RecvTimeoutError::Timeout) => None,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match job {
            Some(Job::Record(batch, reply)) => {
                let rows = {
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
                    let done = take();
                    match inbox.record(&arrivals, &done, crate::clock::now_ms()) {
                        Ok(rows) => {
                            if !health.durable() {
                                health.set_durable(true);
                                tracing::info!("the inbox is written again: acknowledged events survive a crash");
                            }
                            rows.into_iter().map(Some).collect()
                        }
                        Err(e) => {
                            give_back(done);
                            health.set_durable(false);
                            if warned.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                                warned = Some(Instant::now());
                                tracing::error!("cannot record events in the inbox ({e}); acknowledging them first, as if there were none: a crash now loses them");
                            }
                            vec![None; batch.len()]
                        }
                    }
                };
                let _ = reply.send((batch, rows));
            }
            Some(Job::Tidy(reply)) => {
                forget(&mut inbox, take(), &give_back);
                let _ = reply.send(());
            }
            None => forget(&mut inbox, take(), &give_back),
        }
    }
    forget(&mut inbox, take(), &give_back);
}

/// Deletes answered rows; on failure they wait for the next try.
fn forget(inbox: &mut Inbox, ids: Vec<i64>, give_back: &dyn Fn(Vec<i64>)) {
    if ids.is_empty() {
        return;
    }
    if let Err(e) = inbox.record(&[], &ids, crate::clock::now_ms()) {
        tracing::warn!("cannot forget answered events in the inbox: {e}");
        give_back(ids);
    }
}
