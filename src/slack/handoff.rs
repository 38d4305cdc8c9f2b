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
//! inbox (it *spills*: the dispatcher is told which rows to read there), so
//! memory stays bounded and the ack is never delayed. Once one envelope
//! spills, every later one does too until the dispatcher has read them all,
//! so the spilled rows form a few ranges, and no row is offered both by the
//! queue and by the inbox. Without a working inbox the bot acknowledges
//! only what the queue can take; the rest is left unacknowledged, for Slack
//! to deliver again.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};

use super::envelope::Envelope;
use crate::health::Health;
use crate::store::inbox::{Arrival, InboxWriter};

/// The queue between the socket thread and the dispatcher holds this many.
pub(crate) const QUEUE: usize = 1024;
/// How long the inbox write may wait for another writer before the batch is
/// acknowledged without it (Slack redelivers after about 3 s).
pub(crate) const INBOX_WAIT: Duration = Duration::from_millis(500);
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
    /// The rows that did not fit the queue, waiting in the inbox.
    spill: Mutex<Spill>,
}

/// Rows that wait in the inbox because the queue was full: ranges of
/// consecutive row IDs (the one inbox writer numbers rows consecutively).
#[derive(Debug, Default)]
struct Spill {
    /// Set by the first row that did not fit; until the dispatcher has read
    /// every spilled row, later rows spill too, so the order holds.
    active: bool,
    /// Spilled rows, as inclusive ranges.
    ranges: Vec<(i64, i64)>,
}

impl Spill {
    fn add(&mut self, id: i64) {
        self.active = true;
        match self.ranges.last_mut() {
            Some((_, end)) if *end + 1 == id => *end = id,
            _ => self.ranges.push((id, id)),
        }
    }
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
    /// A handoff to `queue`, recording in `inbox` when there is one;
    /// `health` learns whether recording works.
    pub(crate) fn new(
        queue: mpsc::Sender<Inbound>,
        inbox: Option<Box<dyn InboxWriter>>,
        overflow: Arc<Notify>,
        health: Arc<Health>,
    ) -> Handoff {
        let answered = Arc::new(Mutex::new(Vec::new()));
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
            spill: Mutex::new(Spill::default()),
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

    /// Hands a recorded envelope over; when the queue is full (or others
    /// already wait) it waits in the inbox, and the dispatcher is told to
    /// look there.
    pub(crate) fn offer(&self, msg: Inbound) {
        let Some(id) = msg.row else {
            // Not recorded: only ever sent with a reserved place.
            let _ = self.queue.try_send(msg);
            return;
        };
        let mut spill = self.spill.lock().unwrap_or_else(|p| p.into_inner());
        if !spill.active {
            match self.queue.try_send(msg) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(
                        row = id,
                        "the bot is busy: acknowledged events wait in the inbox until it catches up"
                    );
                }
            }
        }
        spill.add(id);
        drop(spill);
        crate::metrics::global().spilled();
        self.overflow.notify_one();
    }

    /// The ranges of rows spilled since the last call, for the dispatcher
    /// to read from the inbox.
    pub(crate) fn take_spilled(&self) -> Vec<(i64, i64)> {
        std::mem::take(&mut self.spill.lock().unwrap_or_else(|p| p.into_inner()).ranges)
    }

    /// The dispatcher has read every spilled row: new rows may use the
    /// queue again. False when more spilled meanwhile (take those first).
    pub(crate) fn end_spill(&self) -> bool {
        let mut spill = self.spill.lock().unwrap_or_else(|p| p.into_inner());
        if spill.ranges.is_empty() {
            spill.active = false;
            true
        } else {
            false
        }
    }
}

/// The inbox writer: one commit per batch, answered rows deleted with it.
fn write_loop(
    mut inbox: Box<dyn InboxWriter>,
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
fn forget(inbox: &mut Box<dyn InboxWriter>, ids: Vec<i64>, give_back: &dyn Fn(Vec<i64>)) {
    if ids.is_empty() {
        return;
    }
    if let Err(e) = inbox.record(&[], &ids, crate::clock::now_ms()) {
        tracing::warn!("cannot forget answered events in the inbox: {e}");
        give_back(ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slack::envelope::EnvelopeKind;

    fn recorded(row: i64) -> Inbound {
        Inbound {
            envelope: Envelope {
                envelope_id: format!("e{row}"),
                kind: EnvelopeKind::EventsApi,
                retry_attempt: 0,
                retry_reason: String::new(),
                payload: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            },
            row: Some(row),
            recovered: None,
        }
    }

    #[test]
    fn once_a_row_spills_later_ones_follow_until_the_dispatcher_caught_up() {
        let (tx, mut rx) = mpsc::channel(1);
        let overflow = Arc::new(Notify::new());
        let health = Arc::new(Health::new(Duration::from_secs(30)));
        let h = Handoff::new(tx, None, overflow, health);
        h.offer(recorded(1));
        h.offer(recorded(2)); // the queue is full
        assert_eq!(rx.try_recv().unwrap().row, Some(1));
        h.offer(recorded(3)); // room now, but 2 waits in the inbox: 3 follows it
        h.offer(recorded(5));
        assert!(rx.try_recv().is_err(), "nothing both queued and spilled");
        assert_eq!(h.take_spilled(), [(2, 3), (5, 5)]);
        h.offer(recorded(6));
        assert!(!h.end_spill(), "6 spilled after the last take");
        assert_eq!(h.take_spilled(), [(6, 6)]);
        assert!(h.end_spill());
        h.offer(recorded(7));
        assert_eq!(rx.try_recv().unwrap().row, Some(7), "the queue again");
        assert!(h.take_spilled().is_empty());
    }
}
