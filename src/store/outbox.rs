//! The outbox: notifications written durably by `slackbotd notify` and
//! delivered by the bot, in order per channel, each with an idempotency key.
//!
//! States: `queued` → `sending` → `sent`, or back to `queued` with a later
//! `next_attempt_ms` after a transient failure, or `failed` for good. A row
//! found in `sending` when the bot starts was being posted when the previous
//! bot died: the deliverer first asks Slack whether it arrived.

use rusqlite::{params, OptionalExtension, Row};

use super::{ms, sql_ms, Store, StoreError};

/// A message to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewMessage {
    /// Channel ID (or name).
    pub(crate) channel: String,
    /// Post in this thread.
    pub(crate) thread_ts: Option<String>,
    /// The text.
    pub(crate) text: String,
}

/// A queued message as the deliverer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    /// Its row, to mark it sent or failed.
    pub(crate) id: i64,
    /// The idempotency key it carries in its metadata.
    pub(crate) key: String,
    /// Channel ID (or name).
    pub(crate) channel: String,
    /// The thread it goes in, if any.
    pub(crate) thread_ts: Option<String>,
    /// The text.
    pub(crate) text: String,
    /// Attempts so far, for the retry delay.
    pub(crate) attempts: u32,
    /// Set when a previous attempt may have reached Slack: look it up first.
    pub(crate) sending_since_ms: Option<u64>,
}

/// Depth and age of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct QueueStats {
    /// Messages waiting (queued or being sent).
    pub(crate) depth: u64,
    /// When the oldest waiting message was accepted.
    pub(crate) oldest_ms: Option<u64>,
    /// Messages given up on.
    pub(crate) failed: u64,
}

fn pending(r: &Row) -> rusqlite::Result<Pending> {
    Ok(Pending {
        id: r.get("id")?,
        key: r.get("key")?,
        channel: r.get("channel")?,
        thread_ts: r.get("thread_ts")?,
        text: r.get("text")?,
        attempts: r.get("attempts")?,
        sending_since_ms: r.get::<_, Option<i64>>("sending_since_ms")?.map(ms),
    })
}

/// A message queued in this host's outbox and not yet moved to a fleet's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Queued {
    /// Its row here.
    pub(crate) id: i64,
    /// Its idempotency key, kept across the move.
    pub(crate) key: String,
    /// Channel ID (or name).
    pub(crate) channel: String,
    /// The thread it goes in, if any.
    pub(crate) thread_ts: Option<String>,
    /// The text.
    pub(crate) text: String,
    /// When it was accepted.
    pub(crate) created_ms: u64,
}

/// A fresh idempotency key.
pub(crate) fn new_key() -> String {
    let a: u64 = rand::random();
    let b: u64 = rand::random();
    format!("sbd-{a:016x}{b:016x}")
}

impl Store {
    /// Queues messages in one transaction (all or none), in order.
    pub(crate) fn enqueue(
        &mut self,
        msgs: &[NewMessage],
        now_ms: u64,
    ) -> Result<Vec<i64>, StoreError> {
        self.run(|c| {
            let tx = c.transaction()?;
            let mut ids = Vec::with_capacity(msgs.len());
            {
                let mut stmt = tx.prepare(
                    "INSERT INTO outbox(key, channel, thread_ts, text, created_ms, next_attempt_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?5)",
                )?;
                for m in msgs {
                    stmt.execute(params![new_key(), m.channel, m.thread_ts, m.text, sql_ms(now_ms)])?;
                    ids.push(tx.last_insert_rowid());
                }
            }
            tx.commit()?;
            Ok(ids)
        })
    }

    /// The oldest waiting message of each channel, if it is due by `now_ms`.
    pub(crate) fn due_heads(&mut self, now_ms: u64) -> Result<Vec<Pending>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT o.* FROM outbox o
                 JOIN (SELECT MIN(id) AS id FROM outbox WHERE state IN ('queued', 'sending') GROUP BY channel) h ON o.id = h.id
                 WHERE o.next_attempt_ms <= ?1 ORDER BY o.id",
            )?;
            let rows = stmt.query_map([sql_ms(now_ms)], pending)?;
            rows.collect()
        })
    }

    /// When the next waiting message becomes due, if any waits.
    pub(crate) fn next_due_ms(&mut self) -> Result<Option<u64>, StoreError> {
        self.run(|c| {
            c.query_row(
                "SELECT MIN(next_attempt_ms) FROM outbox WHERE state IN ('queued', 'sending')",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()
            .map(|v| v.flatten().map(ms))
        })
    }

    /// An attempt starts: from now on the message may reach Slack.
    pub(crate) fn mark_sending(&mut self, id: i64, now_ms: u64) -> Result<(), StoreError> {
        self.run(|c| {
            c.execute(
                "UPDATE outbox SET state = 'sending', attempts = attempts + 1,
                 sending_since_ms = COALESCE(sending_since_ms, ?2) WHERE id = ?1",
                params![id, sql_ms(now_ms)],
            )
            .map(|_| ())
        })
    }

    /// Delivered.
    pub(crate) fn mark_sent(&mut self, id: i64, ts: &str, now_ms: u64) -> Result<(), StoreError> {
        self.run(|c| {
            c.execute(
                "UPDATE outbox SET state = 'sent', sent_ts = ?2, done_ms = ?3, last_error = NULL WHERE id = ?1",
                params![id, ts, sql_ms(now_ms)],
            )
            .map(|_| ())
        })
    }

    /// Try again at `at_ms`. `reached_slack` false means the attempt surely
    /// did not post (Slack refused it), so no check is needed next time.
    pub(crate) fn reschedule(
        &mut self,
        id: i64,
        at_ms: u64,
        error: &str,
        reached_slack: bool,
    ) -> Result<(), StoreError> {
        self.run(|c| {
            c.execute(
                "UPDATE outbox SET state = 'queued', next_attempt_ms = ?2, last_error = ?3,
                 sending_since_ms = CASE WHEN ?4 THEN sending_since_ms ELSE NULL END WHERE id = ?1",
                params![id, sql_ms(at_ms), error, reached_slack],
            )
            .map(|_| ())
        })
    }

    /// Given up for good.
    pub(crate) fn mark_failed(
        &mut self,
        id: i64,
        error: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.run(|c| {
            c.execute(
                "UPDATE outbox SET state = 'failed', last_error = ?2, done_ms = ?3 WHERE id = ?1",
                params![id, error, sql_ms(now_ms)],
            )
            .map(|_| ())
        })
    }

    /// How much waits, and since when.
    pub(crate) fn queue_stats(&mut self) -> Result<QueueStats, StoreError> {
        self.run(|c| {
            c.query_row(
                "SELECT
                    (SELECT COUNT(*) FROM outbox WHERE state IN ('queued', 'sending')),
                    (SELECT MIN(created_ms) FROM outbox WHERE state IN ('queued', 'sending')),
                    (SELECT COUNT(*) FROM outbox WHERE state = 'failed')",
                [],
                |r| {
                    Ok(QueueStats {
                        depth: r.get(0)?,
                        oldest_ms: r.get::<_, Option<i64>>(1)?.map(ms),
                        failed: r.get(2)?,
                    })
                },
            )
        })
    }

    /// Up to `limit` messages waiting here, oldest first, to move into a
    /// fleet's outbox.
    pub(crate) fn queued_locally(&mut self, limit: usize) -> Result<Vec<Queued>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, key, channel, thread_ts, text, created_ms FROM outbox
                 WHERE state = 'queued' ORDER BY id LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit as i64], |r| {
                Ok(Queued {
                    id: r.get(0)?,
                    key: r.get(1)?,
                    channel: r.get(2)?,
                    thread_ts: r.get(3)?,
                    text: r.get(4)?,
                    created_ms: ms(r.get(5)?),
                })
            })?;
            rows.collect()
        })
    }

    /// Forgets messages moved elsewhere.
    pub(crate) fn forget_outbox(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        self.run(|c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
                for id in ids {
                    stmt.execute([id])?;
                }
            }
            tx.commit()
        })
    }

    /// Drops delivered and failed messages finished before `before_ms`.
    pub(crate) fn prune_outbox(&mut self, before_ms: u64) -> Result<usize, StoreError> {
        self.run(|c| {
            c.execute(
                "DELETE FROM outbox WHERE state IN ('sent', 'failed') AND done_ms < ?1",
                [sql_ms(before_ms)],
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_store;

    fn msg(channel: &str, text: &str) -> NewMessage {
        NewMessage {
            channel: channel.into(),
            thread_ts: None,
            text: text.into(),
        }
    }

    #[test]
    fn in_order_per_channel_one_head_each() {
        let (_d, mut s) = temp_store();
        s.enqueue(&[msg("A", "a1"), msg("B", "b1"), msg("A", "a2")], 100)
            .unwrap();
        let heads = s.due_heads(100).unwrap();
        assert_eq!(
            heads.iter().map(|p| p.text.as_str()).collect::<Vec<_>>(),
            ["a1", "b1"]
        );
        assert_ne!(heads[0].key, heads[1].key);
        s.mark_sending(heads[0].id, 101).unwrap();
        s.mark_sent(heads[0].id, "1.1", 102).unwrap();
        let heads = s.due_heads(103).unwrap();
        assert_eq!(
            heads.iter().map(|p| p.text.as_str()).collect::<Vec<_>>(),
            ["b1", "a2"]
        );
        assert_eq!(
            s.queue_stats().unwrap(),
            QueueStats {
                depth: 2,
                oldest_ms: Some(100),
                failed: 0
            }
        );
    }

    #[test]
    fn a_rescheduled_head_holds_its_channel_back() {
        let (_d, mut s) = temp_store();
        let ids = s.enqueue(&[msg("A", "a1"), msg("A", "a2")], 100).unwrap();
        s.mark_sending(ids[0], 100).unwrap();
        s.reschedule(ids[0], 5000, "ratelimited", false).unwrap();
        assert!(
            s.due_heads(200).unwrap().is_empty(),
            "a2 never overtakes a1"
        );
        assert_eq!(s.next_due_ms().unwrap(), Some(100));
        let h = s.due_heads(5000).unwrap();
        assert_eq!(
            (h[0].id, h[0].attempts, h[0].sending_since_ms),
            (ids[0], 1, None)
        );
    }

    #[test]
    fn a_crash_while_sending_is_remembered() {
        let (_d, mut s) = temp_store();
        let ids = s.enqueue(&[msg("A", "a1")], 100).unwrap();
        s.mark_sending(ids[0], 150).unwrap();
        let h = s.due_heads(200).unwrap();
        assert_eq!(h[0].sending_since_ms, Some(150));
        s.mark_failed(ids[0], "channel_not_found", 300).unwrap();
        assert_eq!(s.queue_stats().unwrap().failed, 1);
        assert!(s.due_heads(400).unwrap().is_empty());
    }
}
