//! The durable inbox: every envelope, recorded before its ack leaves the
//! socket, and deleted once it is answered. What is left after a crash is
//! what was acknowledged and not yet answered; the next start handles it
//! first. A row marked with a `command` was running an operator command when
//! the process died: that command is never run again.
//!
//! It is a SQLite file of its own (`inbox.sqlite`, beside the state store),
//! so the socket thread, which writes it on the ack path, never waits for the
//! store's other writers. The socket thread is its one frequent writer: it
//! records each batch in one commit (`synchronous=NORMAL`: what must survive
//! is a killed process, not a power cut) and deletes answered rows in the
//! same commit, or at its next tick. The store thread reads it, and marks the
//! rare row that starts a command.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, Row};

use super::{classify, ms, open_file, sql_ms, Store, StoreError};

/// The inbox file's name inside `state_dir`.
pub(crate) const FILE_NAME: &str = "inbox.sqlite";
/// The inbox schema this build writes.
const SCHEMA_VERSION: i64 = 1;

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

/// An open inbox file.
#[derive(Debug)]
pub(crate) struct Inbox {
    conn: Connection,
    path: PathBuf,
}

impl Inbox {
    /// The inbox path for a state directory.
    pub(crate) fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE_NAME)
    }

    /// Opens (creating if needed) the inbox in `state_dir`; a write waits up
    /// to `busy` for another writer.
    pub(crate) fn open(state_dir: &Path, busy: Duration) -> Result<Inbox, StoreError> {
        let path = Inbox::path_in(state_dir);
        let conn = open_file(state_dir, &path)?;
        let mut inbox = Inbox { conn, path };
        inbox
            .run(|c| {
                c.busy_timeout(busy)?;
                c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
                c.execute_batch(&format!(
                    "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -{};",
                    super::CACHE_KIB
                ))?;
                let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
                if version >= SCHEMA_VERSION {
                    return Ok(version);
                }
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                tx.execute_batch(
                    "CREATE TABLE IF NOT EXISTS inbox (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    envelope_id TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    retry_attempt INTEGER NOT NULL,
                    retry_reason TEXT NOT NULL,
                    payload TEXT NOT NULL,
                    received_ms INTEGER NOT NULL,
                    command TEXT
                 );",
                )?;
                tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
                tx.commit()?;
                Ok(SCHEMA_VERSION)
            })
            .and_then(|v| {
                if v > SCHEMA_VERSION {
                    Err(StoreError::TooNew {
                        path: inbox.path.clone(),
                        found: v,
                    })
                } else {
                    Ok(())
                }
            })?;
        Ok(inbox)
    }

    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        f(&mut self.conn).map_err(|e| classify(&self.path, e))
    }

    /// Records envelopes, and forgets the rows `answered`, in one
    /// transaction; returns the new rows, in order.
    pub(crate) fn record(
        &mut self,
        arrivals: &[Arrival<'_>],
        answered: &[i64],
        now_ms: u64,
    ) -> Result<Vec<i64>, StoreError> {
        self.run(|c| {
            let tx = c.transaction()?;
            let mut ids = Vec::with_capacity(arrivals.len());
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO inbox(envelope_id, kind, retry_attempt, retry_reason, payload, received_ms)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for a in arrivals {
                    insert.execute(params![
                        a.envelope_id,
                        a.kind,
                        a.retry_attempt,
                        a.retry_reason,
                        a.payload,
                        sql_ms(now_ms)
                    ])?;
                    ids.push(tx.last_insert_rowid());
                }
                let mut delete = tx.prepare_cached("DELETE FROM inbox WHERE id = ?1")?;
                for id in answered {
                    delete.execute([id])?;
                }
            }
            tx.commit()?;
            Ok(ids)
        })
    }

    /// Up to `limit` envelopes not yet answered with rows `from..=to`,
    /// oldest first.
    pub(crate) fn between(
        &mut self,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<Pending>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT * FROM inbox WHERE id >= ?1 AND id <= ?2 ORDER BY id LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![from, to, limit as i64], pending)?;
            rows.collect()
        })
    }

    /// When the oldest envelope with a row up to `through` arrived, if any
    /// is left: what a restart recovers was received from then on.
    pub(crate) fn oldest_received(&mut self, through: i64) -> Result<Option<u64>, StoreError> {
        self.run(|c| {
            c.query_row(
                "SELECT MIN(received_ms) FROM inbox WHERE id <= ?1",
                [through],
                |r| r.get::<_, Option<i64>>(0),
            )
        })
        .map(|v| v.map(ms))
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

    /// The newest row (0 when the inbox is empty): what a new process finds
    /// up to it was left unanswered by the one before.
    pub(crate) fn last_row(&mut self) -> Result<i64, StoreError> {
        self.run(|c| c.query_row("SELECT COALESCE(MAX(id), 0) FROM inbox", [], |r| r.get(0)))
    }

    /// How many envelopes wait for an answer.
    pub(crate) fn depth(&mut self) -> Result<u64, StoreError> {
        self.run(|c| c.query_row("SELECT COUNT(*) FROM inbox", [], |r| r.get(0)))
    }
}

/// What records envelopes before their acks: this host's SQLite inbox, or
/// the fleet's table.
pub(crate) trait InboxWriter: Send {
    /// Records envelopes, and forgets the rows `answered`, in one
    /// transaction; returns the new rows, in order.
    fn record(
        &mut self,
        arrivals: &[Arrival<'_>],
        answered: &[i64],
        now_ms: u64,
    ) -> Result<Vec<i64>, StoreError>;
}

impl InboxWriter for Inbox {
    fn record(
        &mut self,
        arrivals: &[Arrival<'_>],
        answered: &[i64],
        now_ms: u64,
    ) -> Result<Vec<i64>, StoreError> {
        Inbox::record(self, arrivals, answered, now_ms)
    }
}

impl Store {
    /// The inbox beside this store, opened on first use.
    pub(crate) fn inbox(&mut self) -> Result<&mut Inbox, StoreError> {
        if self.inbox.is_none() {
            let dir = self.path.parent().unwrap_or(Path::new("/")).to_path_buf();
            self.inbox = Some(Inbox::open(&dir, Duration::from_secs(10))?);
        }
        Ok(self.inbox.as_mut().expect("opened above"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Inbox::open(dir.path(), Duration::from_millis(500)).unwrap();
        let ids = writer
            .record(&[arrival("e1"), arrival("e2"), arrival("e3")], &[], 100)
            .unwrap();
        assert_eq!(ids.len(), 3);
        // The store thread's side: its own connection to the same file.
        let (_d, mut store) = (
            (),
            Store::open(dir.path(), crate::store::Durability::Normal).unwrap(),
        );
        store.inbox().unwrap().mark_running(ids[1], "disk").unwrap();
        writer.record(&[arrival("e4")], &[ids[0]], 200).unwrap();
        let left = store.inbox().unwrap().between(0, i64::MAX, 10).unwrap();
        assert_eq!(
            left.iter()
                .map(|p| p.envelope_id.as_str())
                .collect::<Vec<_>>(),
            ["e2", "e3", "e4"]
        );
        assert_eq!(left[0].command.as_deref(), Some("disk"));
        assert_eq!(left[0].payload, "{\"event_id\":\"Ev1\"}");
        assert_eq!(
            store
                .inbox()
                .unwrap()
                .between(ids[1] + 1, i64::MAX, 10)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            store.inbox().unwrap().between(ids[1], ids[2], 1).unwrap()[0].envelope_id,
            "e2"
        );
        assert_eq!(
            store.inbox().unwrap().oldest_received(ids[2]).unwrap(),
            Some(100),
            "e1 went, e2 and e3 arrived at 100"
        );
        assert_eq!(store.inbox().unwrap().oldest_received(0).unwrap(), None);
        assert_eq!(store.inbox().unwrap().depth().unwrap(), 3);
        assert_eq!(store.inbox().unwrap().last_row().unwrap(), ids[2] + 1);
    }
}
