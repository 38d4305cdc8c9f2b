//! The durable inbox: every envelope, recorded before its ack leaves the
//! socket, and deleted once it is answered. What is left after a crash is
//! what was acknowledged and not yet answered; the next start handles it
//! first. A row marked with a `command` was running an operator command when
//! the process died: that command is never run again.
//!
//! The socket thread appends through a connection of its own (one commit per
//! flush of acks, `synchronous=NORMAL`: what must survive is a killed
//! process, not a power cut); everything else goes through the store thread.

use std::time::Duration;

use rusqlite::{params, Row};

use super::{ms, sql_ms, Store, StoreError};

/// An envelope as the socket received it, to record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival<'a> {
    /// Its envelope ID.
    pub(crate) envelope_id: &'a str,
    /// `events_api`, `slash_commands` or `interactive`.
    pub(crate) kind: &'a str,
    /// Slack's redelivery count.
    pub(crate) retry_attempt: u64,
    /// Why Slack redelivered it.
    pub(crate) retry_reason: &'a str,
    /// The payload, as Slack sent it.
    pub(crate) payload: &'a str,
}

/// A recorded envelope not yet answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    /// Its row.
    pub(crate) id: i64,
    /// Its envelope ID.
    pub(crate) envelope_id: String,
    /// `events_api`, `slash_commands` or `interactive`.
    pub(crate) kind: String,
    /// Slack's redelivery count.
    pub(crate) retry_attempt: u64,
    /// Why Slack redelivered it.
    pub(crate) retry_reason: String,
    /// The payload, as Slack sent it.
    pub(crate) payload: String,
    /// When it arrived.
    pub(crate) received_ms: u64,
    /// The operator command that was running for it, if one was.
    pub(crate) command: Option<String>,
}

fn pending(r: &Row) -> rusqlite::Result<Pending> {
    Ok(Pending {
        id: r.get("id")?,
        envelope_id: r.get("envelope_id")?,
        kind: r.get("kind")?,
        retry_attempt: r.get("retry_attempt")?,
        retry_reason: r.get("retry_reason")?,
        payload: r.get("payload")?,
        received_ms: ms(r.get("received_ms")?),
        command: r.get("command")?,
    })
}

impl Store {
    /// How long a write may wait for another writer (the socket thread's
    /// connection waits briefly, then falls back to acknowledging first).
    pub(crate) fn set_busy_timeout(&mut self, d: Duration) -> Result<(), StoreError> {
        self.run(|c| c.busy_timeout(d))
    }

    /// Records envelopes in one transaction; returns their rows, in order.
    pub(crate) fn record_arrivals(
        &mut self,
        arrivals: &[Arrival<'_>],
        now_ms: u64,
    ) -> Result<Vec<i64>, StoreError> {
        self.run(|c| {
            let tx = c.transaction()?;
            let mut ids = Vec::with_capacity(arrivals.len());
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO inbox(envelope_id, kind, retry_attempt, retry_reason, payload, received_ms)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for a in arrivals {
                    stmt.execute(params![
                        a.envelope_id,
                        a.kind,
                        a.retry_attempt,
                        a.retry_reason,
                        a.payload,
                        sql_ms(now_ms)
                    ])?;
                    ids.push(tx.last_insert_rowid());
                }
            }
            tx.commit()?;
            Ok(ids)
        })
    }

    /// Up to `limit` envelopes not yet answered, oldest first, from row
    /// `after` on (exclusive).
    pub(crate) fn unanswered(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Pending>, StoreError> {
        self.run(|c| {
            let mut stmt =
                c.prepare_cached("SELECT * FROM inbox WHERE id > ?1 ORDER BY id LIMIT ?2")?;
            let rows = stmt.query_map(params![after, limit as i64], pending)?;
            rows.collect()
        })
    }

    /// An operator command starts for row `id`: after a crash it is not run again.
    pub(crate) fn mark_running(&mut self, id: i64, command: &str) -> Result<(), StoreError> {
        self.run(|c| {
            c.execute(
                "UPDATE inbox SET command = ?2 WHERE id = ?1",
                params![id, command],
            )
            .map(|_| ())
        })
    }

    /// Row `id` is answered (or needs no answer): forget it.
    pub(crate) fn mark_answered(&mut self, id: i64) -> Result<(), StoreError> {
        self.run(|c| {
            c.execute("DELETE FROM inbox WHERE id = ?1", [id])
                .map(|_| ())
        })
    }

    /// The newest row (0 when the inbox is empty): what a new process finds
    /// up to it was left unanswered by the one before.
    pub(crate) fn last_inbox_row(&mut self) -> Result<i64, StoreError> {
        self.run(|c| c.query_row("SELECT COALESCE(MAX(id), 0) FROM inbox", [], |r| r.get(0)))
    }

    /// How many envelopes wait for an answer.
    pub(crate) fn inbox_depth(&mut self) -> Result<u64, StoreError> {
        self.run(|c| c.query_row("SELECT COUNT(*) FROM inbox", [], |r| r.get(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_store;

    fn arrival(id: &str) -> Arrival<'_> {
        Arrival {
            envelope_id: id,
            kind: "events_api",
            retry_attempt: 0,
            retry_reason: "",
            payload: "{\"event_id\":\"Ev1\"}",
        }
    }

    #[test]
    fn recorded_until_answered_and_a_running_command_is_remembered() {
        let (_d, mut s) = temp_store();
        let ids = s
            .record_arrivals(&[arrival("e1"), arrival("e2"), arrival("e3")], 100)
            .unwrap();
        assert_eq!(ids.len(), 3);
        s.mark_answered(ids[0]).unwrap();
        s.mark_running(ids[1], "disk").unwrap();
        let left = s.unanswered(0, 10).unwrap();
        assert_eq!(
            left.iter()
                .map(|p| p.envelope_id.as_str())
                .collect::<Vec<_>>(),
            ["e2", "e3"]
        );
        assert_eq!(left[0].command.as_deref(), Some("disk"));
        assert_eq!(left[0].payload, "{\"event_id\":\"Ev1\"}");
        assert_eq!(s.unanswered(ids[1], 10).unwrap().len(), 1);
        assert_eq!(s.inbox_depth().unwrap(), 2);
    }
}
