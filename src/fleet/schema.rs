//! The fleet's tables, and their migrations. Every host runs them at start,
//! under one advisory lock, so ten hosts starting at once migrate once;
//! each applied version is a row of `sbd_migrations`. A schema newer than
//! this binary knows is refused: an older slackbotd must not write a shape
//! it does not understand.
//!
//! Times that decide leases are the server's (`now()`), so hosts with
//! drifting clocks still agree on who holds what; times the bot only
//! reports (an envelope's arrival, a message's creation) are milliseconds
//! since the epoch, as in the single-host store.

use postgres::Client;

use super::db::{Db, FleetError};

/// The advisory lock key the migrations run under ("sbdmigr").
const MIGRATION_LOCK: i64 = 0x0073_6264_6d69_6772;

/// The schema this binary writes.
pub(crate) const SCHEMA_VERSION: i32 = 1;

/// Version 1: hosts, connection slots, leases, the inbox, de-duplication,
/// the outbox and jobs.
const V1: &str = "
CREATE TABLE sbd_hosts (
    name text PRIMARY KEY,
    tags text[] NOT NULL DEFAULT '{}',
    version text NOT NULL,
    commands text[] NOT NULL DEFAULT '{}',
    pid integer NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at timestamptz NOT NULL,
    lease_until timestamptz NOT NULL,
    slots integer NOT NULL DEFAULT 0,
    jobs_running integer NOT NULL DEFAULT 0,
    outbox_depth bigint NOT NULL DEFAULT 0,
    gone_announced boolean NOT NULL DEFAULT false
);
CREATE TABLE sbd_slots (
    slot integer PRIMARY KEY,
    host text,
    lease_until timestamptz NOT NULL DEFAULT '-infinity'
);
CREATE TABLE sbd_leases (
    role text PRIMARY KEY,
    host text,
    lease_until timestamptz NOT NULL DEFAULT '-infinity'
);
CREATE TABLE sbd_inbox (
    id bigserial PRIMARY KEY,
    host text NOT NULL,
    envelope_id text NOT NULL,
    kind text NOT NULL,
    retry_attempt bigint NOT NULL,
    retry_reason text NOT NULL,
    payload text NOT NULL,
    received_ms bigint NOT NULL,
    command text
);
CREATE INDEX sbd_inbox_host ON sbd_inbox (host, id);
CREATE TABLE sbd_dedup (
    event_id text PRIMARY KEY,
    seen_ms bigint NOT NULL,
    inbox_id bigint
);
CREATE INDEX sbd_dedup_age ON sbd_dedup (seen_ms);
CREATE TABLE sbd_outbox (
    id bigserial PRIMARY KEY,
    key text NOT NULL UNIQUE,
    channel text NOT NULL,
    thread_ts text,
    text text NOT NULL,
    created_ms bigint NOT NULL,
    state text NOT NULL DEFAULT 'queued',
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_ms bigint NOT NULL DEFAULT 0,
    sending_since_ms bigint,
    last_error text,
    sent_ts text,
    done_ms bigint,
    host text NOT NULL
);
CREATE INDEX sbd_outbox_pending ON sbd_outbox (state, channel, id);
CREATE TABLE sbd_jobs (
    id bigserial PRIMARY KEY,
    request text NOT NULL,
    target text NOT NULL,
    command text NOT NULL,
    text text NOT NULL,
    user_id text NOT NULL,
    channel text NOT NULL,
    team text NOT NULL,
    thread_ts text,
    event_json text NOT NULL,
    origin text NOT NULL,
    state text NOT NULL DEFAULT 'queued',
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    deadline_at timestamptz NOT NULL,
    outcome text,
    UNIQUE (request, target)
);
CREATE INDEX sbd_jobs_target ON sbd_jobs (target, state, id);
";

/// Every migration, in order: entry `i` takes the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[V1];

/// What `check` reports of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// No slackbotd tables yet: the first host to start creates them.
    Empty,
    /// At this binary's version.
    Current,
    /// Older: the next start migrates it.
    Older(i32),
    /// Newer than this binary knows.
    Newer(i32),
}

fn version(c: &mut Client) -> Result<Option<i32>, postgres::Error> {
    let exists: bool = c
        .query_one("SELECT to_regclass('sbd_migrations') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(None);
    }
    c.query_one("SELECT COALESCE(MAX(version), 0) FROM sbd_migrations", &[])
        .map(|r| Some(r.get(0)))
}

/// The schema's state, without changing anything.
pub(crate) fn state(db: &Db, c: &mut Client) -> Result<State, FleetError> {
    Ok(match version(c).map_err(|e| db.classify(&e))? {
        None | Some(0) => State::Empty,
        Some(v) if v == SCHEMA_VERSION => State::Current,
        Some(v) if v < SCHEMA_VERSION => State::Older(v),
        Some(v) => State::Newer(v),
    })
}

/// Brings the schema to this binary's version, under the advisory lock;
/// returns how many migrations this host applied.
pub(crate) fn migrate(db: &Db, c: &mut Client, host: &str) -> Result<usize, FleetError> {
    let q = |e: postgres::Error| db.classify(&e);
    c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .map_err(q)?;
    let result = (|| {
        c.batch_execute(
            "CREATE TABLE IF NOT EXISTS sbd_migrations (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now(),
                host text NOT NULL
            )",
        )
        .map_err(q)?;
        let found = version(c).map_err(q)?.unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(FleetError::TooNew {
                found,
                known: SCHEMA_VERSION,
            });
        }
        let mut applied = 0;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let mut tx = c.transaction().map_err(q)?;
            tx.batch_execute(sql).map_err(q)?;
            let v = i as i32 + 1;
            tx.execute(
                "INSERT INTO sbd_migrations (version, host) VALUES ($1, $2)",
                &[&v, &host],
            )
            .map_err(q)?;
            tx.commit().map_err(q)?;
            tracing::info!("fleet database: schema migrated to version {v}");
            applied += 1;
        }
        Ok(applied)
    })();
    let _ = c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    result
}
