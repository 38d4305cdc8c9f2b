//! The fleet's store: the [`Backend`] the bot uses when `[fleet]` is set.
//! De-duplication, the inbox and the outbox live in PostgreSQL, shared by
//! every host; this host's own history (its runs, exits, announcements)
//! stays in its SQLite store beside it.
//!
//! When the database cannot be reached the bot keeps answering: event IDs
//! are remembered in memory, and notifications are queued in the local
//! SQLite outbox, then moved into the fleet's, in order and under their own
//! idempotency keys (so a move repeated after a crash never doubles one),
//! once the database is back ([`FleetStore::tick`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::Client;

use super::db::{Db, FleetError};
use super::FleetState;
use crate::store::dedup::Claim;
use crate::store::history::Exit;
use crate::store::inbox::Pending as InboxRow;
use crate::store::outbox::{new_key, NewMessage, Pending, QueueStats};
use crate::store::{Backend, Store, StoreError};

/// How long to wait before trying the database again after a failure.
const RETRY: Duration = Duration::from_secs(2);
/// Local notifications moved per tick.
const DRAIN_BATCH: usize = 200;

/// PostgreSQL for what the fleet shares, SQLite for this host's own.
pub(crate) struct FleetStore {
    db: Db,
    host: String,
    client: Option<Client>,
    retry_at: Option<Instant>,
    local: Store,
    /// Event IDs seen while the database was away.
    seen: HashMap<String, u64>,
    state: Arc<FleetState>,
}

impl std::fmt::Debug for FleetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetStore")
            .field("db", &self.db)
            .field("host", &self.host)
            .finish()
    }
}

fn ms_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn sql_ms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl FleetStore {
    /// A store for `host` over `db`, with `local` beside it.
    pub(crate) fn new(db: Db, host: String, local: Store, state: Arc<FleetState>) -> FleetStore {
        FleetStore {
            db,
            host,
            client: None,
            retry_at: None,
            local,
            seen: HashMap::new(),
            state,
        }
    }

    /// Runs `f` with a connection; a failure drops the connection, says so
    /// once, and keeps the database unasked for a moment.
    fn pg<T>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, FleetError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                return Err(FleetError::Unreachable {
                    target: self.db.target().to_string(),
                    why: "it failed a moment ago".into(),
                });
            }
            match self.db.connect() {
                Ok(c) => self.client = Some(c),
                Err(e) => {
                    self.failed(&e);
                    return Err(e);
                }
            }
        }
        let c = self.client.as_mut().expect("connected above");
        match f(c) {
            Ok(v) => {
                self.retry_at = None;
                self.state.set_db_up(true);
                Ok(v)
            }
            Err(e) => {
                let e = self.db.classify(&e);
                if e.is_transient() {
                    self.client = None;
                }
                self.failed(&e);
                Err(e)
            }
        }
    }

    fn failed(&mut self, e: &FleetError) {
        self.retry_at = Some(Instant::now() + RETRY);
        if self.state.set_db_up(false) {
            tracing::warn!("{e}; answering on with this host's own store until it is back");
        }
    }

    fn store_err(&self, e: FleetError) -> StoreError {
        StoreError::Sql {
            path: std::path::PathBuf::from(self.db.target()),
            detail: e.to_string(),
        }
    }

    /// Moves notifications queued locally while the database was away into
    /// the fleet's outbox, oldest first; returns how many moved.
    fn drain_local(&mut self) -> Result<usize, StoreError> {
        let rows = self.local.queued_locally(DRAIN_BATCH)?;
        if rows.is_empty() {
            return Ok(0);
        }
        let host = self.host.clone();
        let moved = rows.clone();
        self.pg(move |c| {
            let mut tx = c.transaction()?;
            for r in &moved {
                tx.execute(
                    "INSERT INTO sbd_outbox (key, channel, thread_ts, text, created_ms, next_attempt_ms, host)
                     VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT (key) DO NOTHING",
                    &[&r.key, &r.channel, &r.thread_ts, &r.text, &ms_sql(r.created_ms), &host],
                )?;
            }
            tx.execute("SELECT pg_notify($1, '')", &[&super::jobs::OUTBOX_CHANNEL])?;
            tx.commit()
        })
        .map_err(|e| self.store_err(e))?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        self.local.forget_outbox(&ids)?;
        tracing::info!(
            "moved {} notification(s) queued on this host while the fleet database was away into the fleet's outbox",
            ids.len()
        );
        Ok(ids.len())
    }
}

fn inbox_row(r: &postgres::Row) -> InboxRow {
    InboxRow {
        id: r.get("id"),
        envelope_id: r.get("envelope_id"),
        kind: r.get("kind"),
        retry_attempt: u64::try_from(r.get::<_, i64>("retry_attempt")).unwrap_or(0),
        retry_reason: r.get("retry_reason"),
        payload: r.get("payload"),
        received_ms: sql_ms(r.get("received_ms")),
        command: r.get("command"),
    }
}

fn outbox_row(r: &postgres::Row) -> Pending {
    Pending {
        id: r.get("id"),
        key: r.get("key"),
        channel: r.get("channel"),
        thread_ts: r.get("thread_ts"),
        text: r.get("text"),
        attempts: u32::try_from(r.get::<_, i32>("attempts")).unwrap_or(0),
        sending_since_ms: r.get::<_, Option<i64>>("sending_since_ms").map(sql_ms),
    }
}

impl Backend for FleetStore {
    fn claim_event(
        &mut self,
        event_id: &str,
        row: Option<i64>,
        now_ms: u64,
    ) -> Result<Claim, StoreError> {
        let id = event_id.to_string();
        let r = self.pg(move |c| {
            let n = c.execute(
                "INSERT INTO sbd_dedup (event_id, seen_ms, inbox_id) VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING",
                &[&id, &ms_sql(now_ms), &row],
            )?;
            if n == 1 {
                return Ok(Claim::New);
            }
            let Some(row) = row else { return Ok(Claim::Taken) };
            let owner: Option<i64> = c
                .query_opt("SELECT inbox_id FROM sbd_dedup WHERE event_id = $1", &[&id])?
                .and_then(|r| r.get(0));
            Ok(if owner == Some(row) { Claim::Again } else { Claim::Taken })
        });
        match r {
            Ok(c) => Ok(c),
            // The database is away: remember in memory, as a lone bot would.
            Err(_) => Ok(match self.seen.insert(event_id.to_string(), now_ms) {
                None => Claim::New,
                Some(_) => Claim::Taken,
            }),
        }
    }

    fn prune_dedup(&mut self, before_ms: u64) -> Result<usize, StoreError> {
        self.seen.retain(|_, t| *t >= before_ms);
        self.pg(move |c| {
            c.execute(
                "DELETE FROM sbd_dedup WHERE seen_ms < $1",
                &[&ms_sql(before_ms)],
            )
            .map(|n| n as usize)
        })
        .map_err(|e| self.store_err(e))
    }

    fn inbox_between(
        &mut self,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<InboxRow>, StoreError> {
        let host = self.host.clone();
        let limit = limit as i64;
        self.pg(move |c| {
            c.query(
                "SELECT * FROM sbd_inbox WHERE host = $1 AND id >= $2 AND id <= $3 ORDER BY id LIMIT $4",
                &[&host, &from, &to, &limit],
            )
            .map(|rows| rows.iter().map(inbox_row).collect())
        })
        .map_err(|e| self.store_err(e))
    }

    fn inbox_oldest_received(&mut self, through: i64) -> Result<Option<u64>, StoreError> {
        let host = self.host.clone();
        self.pg(move |c| {
            c.query_one(
                "SELECT MIN(received_ms) FROM sbd_inbox WHERE host = $1 AND id <= $2",
                &[&host, &through],
            )
            .map(|r| r.get::<_, Option<i64>>(0).map(sql_ms))
        })
        .map_err(|e| self.store_err(e))
    }

    fn inbox_mark_running(&mut self, id: i64, command: &str) -> Result<(), StoreError> {
        let command = command.to_string();
        self.pg(move |c| {
            c.execute(
                "UPDATE sbd_inbox SET command = $2 WHERE id = $1",
                &[&id, &command],
            )
            .map(|_| ())
        })
        .map_err(|e| self.store_err(e))
    }

    fn inbox_last_row(&mut self) -> Result<i64, StoreError> {
        let host = self.host.clone();
        self.pg(move |c| {
            c.query_one(
                "SELECT COALESCE(MAX(id), 0) FROM sbd_inbox WHERE host = $1",
                &[&host],
            )
            .map(|r| r.get(0))
        })
        .map_err(|e| self.store_err(e))
    }

    fn enqueue(&mut self, msgs: &[NewMessage], now_ms: u64) -> Result<Vec<i64>, StoreError> {
        let host = self.host.clone();
        let owned = msgs.to_vec();
        let r = self.pg(move |c| {
            let mut tx = c.transaction()?;
            let mut ids = Vec::with_capacity(owned.len());
            for m in &owned {
                let row = tx.query_one(
                    "INSERT INTO sbd_outbox (key, channel, thread_ts, text, created_ms, next_attempt_ms, host)
                     VALUES ($1, $2, $3, $4, $5, $5, $6) RETURNING id",
                    &[&new_key(), &m.channel, &m.thread_ts, &m.text, &ms_sql(now_ms), &host],
                )?;
                ids.push(row.get(0));
            }
            // Whichever host delivers the outbox starts now.
            tx.execute("SELECT pg_notify($1, '')", &[&super::jobs::OUTBOX_CHANNEL])?;
            tx.commit()?;
            Ok(ids)
        });
        match r {
            Ok(ids) => Ok(ids),
            Err(e) if e.is_transient() => {
                tracing::warn!("{e}; the notification waits in this host's outbox and moves to the fleet's when the database is back");
                self.local.enqueue(msgs, now_ms)
            }
            Err(e) => Err(self.store_err(e)),
        }
    }

    fn due_heads(&mut self, now_ms: u64) -> Result<Vec<Pending>, StoreError> {
        self.pg(move |c| {
            c.query(
                "SELECT o.* FROM sbd_outbox o
                 JOIN (SELECT MIN(id) AS id FROM sbd_outbox WHERE state IN ('queued', 'sending') GROUP BY channel) h ON o.id = h.id
                 WHERE o.next_attempt_ms <= $1 ORDER BY o.id",
                &[&ms_sql(now_ms)],
            )
            .map(|rows| rows.iter().map(outbox_row).collect())
        })
        .map_err(|e| self.store_err(e))
    }

    fn next_due_ms(&mut self) -> Result<Option<u64>, StoreError> {
        self.pg(|c| {
            c.query_one(
                "SELECT MIN(next_attempt_ms) FROM sbd_outbox WHERE state IN ('queued', 'sending')",
                &[],
            )
            .map(|r| r.get::<_, Option<i64>>(0).map(sql_ms))
        })
        .map_err(|e| self.store_err(e))
    }

    fn mark_sending(&mut self, id: i64, now_ms: u64) -> Result<(), StoreError> {
        self.pg(move |c| {
            c.execute(
                "UPDATE sbd_outbox SET state = 'sending', attempts = attempts + 1,
                 sending_since_ms = COALESCE(sending_since_ms, $2) WHERE id = $1",
                &[&id, &ms_sql(now_ms)],
            )
            .map(|_| ())
        })
        .map_err(|e| self.store_err(e))
    }

    fn mark_sent(&mut self, id: i64, ts: &str, now_ms: u64) -> Result<(), StoreError> {
        let ts = ts.to_string();
        self.pg(move |c| {
            c.execute(
                "UPDATE sbd_outbox SET state = 'sent', sent_ts = $2, done_ms = $3, last_error = NULL WHERE id = $1",
                &[&id, &ts, &ms_sql(now_ms)],
            )
            .map(|_| ())
        })
        .map_err(|e| self.store_err(e))
    }

    fn reschedule(
        &mut self,
        id: i64,
        at_ms: u64,
        error: &str,
        reached_slack: bool,
    ) -> Result<(), StoreError> {
        let error = error.to_string();
        self.pg(move |c| {
            c.execute(
                "UPDATE sbd_outbox SET state = 'queued', next_attempt_ms = $2, last_error = $3,
                 sending_since_ms = CASE WHEN $4 THEN sending_since_ms ELSE NULL END WHERE id = $1",
                &[&id, &ms_sql(at_ms), &error, &reached_slack],
            )
            .map(|_| ())
        })
        .map_err(|e| self.store_err(e))
    }

    fn mark_failed(&mut self, id: i64, error: &str, now_ms: u64) -> Result<(), StoreError> {
        let error = error.to_string();
        self.pg(move |c| {
            c.execute(
                "UPDATE sbd_outbox SET state = 'failed', last_error = $2, done_ms = $3 WHERE id = $1",
                &[&id, &error, &ms_sql(now_ms)],
            )
            .map(|_| ())
        })
        .map_err(|e| self.store_err(e))
    }

    fn queue_stats(&mut self) -> Result<QueueStats, StoreError> {
        let local = self.local.queue_stats()?;
        let fleet = self.pg(|c| {
            c.query_one(
                "SELECT
                    (SELECT COUNT(*) FROM sbd_outbox WHERE state IN ('queued', 'sending')),
                    (SELECT MIN(created_ms) FROM sbd_outbox WHERE state IN ('queued', 'sending')),
                    (SELECT COUNT(*) FROM sbd_outbox WHERE state = 'failed')",
                &[],
            )
            .map(|r| QueueStats {
                depth: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
                oldest_ms: r.get::<_, Option<i64>>(1).map(sql_ms),
                failed: u64::try_from(r.get::<_, i64>(2)).unwrap_or(0),
            })
        });
        // What waits here for the database counts too.
        Ok(match fleet {
            Ok(f) => QueueStats {
                depth: f.depth + local.depth,
                oldest_ms: match (f.oldest_ms, local.oldest_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
                failed: f.failed + local.failed,
            },
            Err(_) => local,
        })
    }

    fn prune_outbox(&mut self, before_ms: u64) -> Result<usize, StoreError> {
        let here = self.local.prune_outbox(before_ms)?;
        let there = self
            .pg(move |c| {
                c.execute(
                    "DELETE FROM sbd_outbox WHERE state IN ('sent', 'failed') AND done_ms < $1",
                    &[&ms_sql(before_ms)],
                )
            })
            .map_err(|e| self.store_err(e))?;
        Ok(here + there as usize)
    }

    fn begin_run(&mut self, pid: u32, mode: &str, now_ms: u64) -> Result<i64, StoreError> {
        self.local.begin_run(pid, mode, now_ms)
    }
    fn end_run(&mut self, run_id: i64, clean: bool, now_ms: u64) -> Result<(), StoreError> {
        self.local.end_run(run_id, clean, now_ms)
    }
    fn unannounced_exits(&mut self) -> Result<Vec<Exit>, StoreError> {
        self.local.unannounced_exits()
    }
    fn mark_announced(&mut self, last_id: i64) -> Result<(), StoreError> {
        self.local.mark_announced(last_id)
    }
    fn unclean_exits_since(&mut self, since_ms: u64) -> Result<u64, StoreError> {
        self.local.unclean_exits_since(since_ms)
    }
    fn unclean_exits_by_cause(&mut self) -> Result<Vec<(String, u64)>, StoreError> {
        self.local.unclean_exits_by_cause()
    }
    fn last_unclean_exit(&mut self) -> Result<Option<Exit>, StoreError> {
        self.local.last_unclean_exit()
    }
    fn meta(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        self.local.meta(key)
    }
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.local.set_meta(key, value)
    }

    fn tick(&mut self) -> Result<(), StoreError> {
        let waiting = self.local.queue_stats().map(|q| q.depth).unwrap_or(0);
        self.state
            .local_outbox
            .store(waiting, std::sync::atomic::Ordering::Relaxed);
        if self.local.queued_locally(1)?.is_empty() {
            // Only a reachable database clears a "down" state.
            if !self.state.db_up() {
                let _ = self.pg(|c| c.simple_query("SELECT 1").map(|_| ()));
            }
            return Ok(());
        }
        self.drain_local().map(|_| ())
    }
}
