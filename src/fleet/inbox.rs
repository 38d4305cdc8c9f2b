//! The fleet's inbox writer, on the socket thread's inbox writer thread: a
//! batch of envelopes goes into `sbd_inbox` in one statement and one commit
//! before its acks leave, so another host can answer them should this one
//! die. The commit is asynchronous on the server (`synchronous_commit =
//! off`): what must survive is this process, not the database server's own
//! crash, the same bargain as the single host's `synchronous=NORMAL`.
//!
//! The ack path must never wait for a database that is away: after a
//! failure the writer answers "not recorded" at once (the bot then
//! acknowledges only what it can hold, and Slack delivers the rest again)
//! and tries the database again only after a pause, with a short connect
//! timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::Client;

use super::db::Db;
use super::FleetState;
use crate::store::inbox::{Arrival, InboxWriter};
use crate::store::StoreError;

/// How long after a failure the database is left alone.
const PAUSE: Duration = Duration::from_secs(3);
/// How long a connection attempt on the ack path may take.
const CONNECT: Duration = Duration::from_millis(800);

/// Writes the shared inbox for one host.
pub(crate) struct PgInbox {
    db: Db,
    host: String,
    client: Option<Client>,
    retry_at: Option<Instant>,
    state: Arc<FleetState>,
}

impl PgInbox {
    /// A writer of `host`'s envelopes into `db`'s inbox.
    pub(crate) fn new(db: Db, host: String, state: Arc<FleetState>) -> PgInbox {
        PgInbox {
            db,
            host,
            client: None,
            retry_at: None,
            state,
        }
    }

    fn err(&self, detail: String) -> StoreError {
        StoreError::Sql {
            path: std::path::PathBuf::from(self.db.target()),
            detail,
        }
    }
}

impl InboxWriter for PgInbox {
    fn record(
        &mut self,
        arrivals: &[Arrival<'_>],
        answered: &[i64],
        now_ms: u64,
    ) -> Result<Vec<i64>, StoreError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                return Err(self.err("the fleet database is away".into()));
            }
            match self.db.connect_within(CONNECT) {
                Ok(mut c) => {
                    let _ = c.batch_execute("SET synchronous_commit = off");
                    self.client = Some(c);
                }
                Err(e) => {
                    self.retry_at = Some(Instant::now() + PAUSE);
                    self.state.set_db_up(false);
                    return Err(self.err(e.to_string()));
                }
            }
        }
        let c = self.client.as_mut().expect("connected above");
        let ids: Vec<&str> = arrivals.iter().map(|a| a.envelope_id).collect();
        let kinds: Vec<&str> = arrivals.iter().map(|a| a.kind).collect();
        let attempts: Vec<i64> = arrivals
            .iter()
            .map(|a| i64::try_from(a.retry_attempt).unwrap_or(i64::MAX))
            .collect();
        let reasons: Vec<&str> = arrivals.iter().map(|a| a.retry_reason).collect();
        let payloads: Vec<&str> = arrivals.iter().map(|a| a.payload).collect();
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let host = self.host.as_str();
        let result = (|| -> Result<Vec<i64>, postgres::Error> {
            let mut tx = c.transaction()?;
            let mut rows = Vec::new();
            if !arrivals.is_empty() {
                // One statement for the batch; the envelope IDs put the new
                // rows back in the batch's order.
                let got = tx.query(
                    "INSERT INTO sbd_inbox (host, envelope_id, kind, retry_attempt, retry_reason, payload, received_ms)
                     SELECT $1, e, k, r, w, p, $7
                     FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[]) AS t(e, k, r, w, p)
                     RETURNING id, envelope_id",
                    &[&host, &ids, &kinds, &attempts, &reasons, &payloads, &now],
                )?;
                let by_envelope: std::collections::HashMap<String, i64> = got
                    .iter()
                    .map(|r| (r.get::<_, String>(1), r.get::<_, i64>(0)))
                    .collect();
                rows = ids
                    .iter()
                    .map(|e| by_envelope.get(*e).copied().unwrap_or(0))
                    .collect();
            }
            if !answered.is_empty() {
                tx.execute("DELETE FROM sbd_inbox WHERE id = ANY($1)", &[&answered])?;
            }
            tx.commit()?;
            Ok(rows)
        })();
        match result {
            Ok(rows) => {
                if self.state.set_db_up(true) {
                    tracing::info!("the fleet database answers again");
                }
                Ok(rows)
            }
            Err(e) => {
                let e = self.db.classify(&e);
                if e.is_transient() {
                    self.client = None;
                    self.retry_at = Some(Instant::now() + PAUSE);
                }
                self.state.set_db_up(false);
                Err(self.err(e.to_string()))
            }
        }
    }
}
