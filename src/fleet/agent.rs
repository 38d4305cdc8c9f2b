//! This host's fleet agent: a thread with its own connection that, every
//! tick (a third of the lease), renews this host's membership, its
//! connection slots (taking or giving one back as `slots` says) and its
//! roles (the one host that delivers the outbox, the one that announces
//! for the fleet), and takes over what a dead host left: its unanswered
//! envelopes (adopted, and handed to this host's dispatcher) and its
//! running jobs (marked lost, and reported).
//!
//! While the database is away the agent keeps the slots it holds: nobody
//! can take them meanwhile, and the bot keeps answering. Once it is back, a
//! slot another host took in between is given up at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::Client;
use tokio::sync::mpsc;

use super::db::{Db, FleetError};
use super::jobs::{self, Job};
use super::slots::{self, Step};
use super::{schema, FleetState};
use crate::health::Health;

/// What the agent reports to the bot.
#[derive(Debug)]
pub(crate) enum Report {
    /// Inbox rows adopted from a host whose lease ran out.
    Adopted(Vec<i64>),
    /// A job lost with its host (or with this host's previous process).
    Lost(Box<Job>, LostHow),
    /// A fleet announcement to post.
    Announce(String),
}

/// How a job was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LostHow {
    /// Its host went away.
    HostGone,
    /// This host restarted while running it.
    Restarted,
}

/// What the agent needs.
#[derive(Debug)]
pub(crate) struct AgentCtx {
    /// The database.
    pub(crate) db: Db,
    /// This host's shared fleet state.
    pub(crate) state: Arc<FleetState>,
    /// The bot's health: a host without a slot counts as alive while its
    /// agent runs.
    pub(crate) health: Arc<Health>,
    /// How long a lease lasts.
    pub(crate) lease: Duration,
    /// Slots for the whole fleet.
    pub(crate) connections: usize,
    /// This host's tags.
    pub(crate) tags: Vec<String>,
    /// The operator commands this host defines.
    pub(crate) commands: Vec<String>,
    /// Where fleet announcements go, if anywhere.
    pub(crate) announce: Option<String>,
    /// To the bot.
    pub(crate) reports: mpsc::UnboundedSender<Report>,
    /// Set when the bot stops.
    pub(crate) stop: Arc<AtomicBool>,
    /// The previous process's unanswered rows wait for the agent: the
    /// database was away when this process started.
    pub(crate) recover_own: bool,
    /// When this process started (ms since the epoch).
    pub(crate) started_ms: u64,
}

/// How long a host may stay silent before the fleet announces it missing.
const MISSING_AFTER: Duration = Duration::from_secs(120);

/// Starts the agent's thread.
pub(crate) fn spawn(ctx: AgentCtx) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("slackbotd-fleet".into())
        .spawn(move || run(ctx))
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn run(ctx: AgentCtx) {
    let tick = (ctx.lease / 3).max(Duration::from_secs(1));
    let mut client: Option<Client> = None;
    let mut migrated = false;
    let mut started = false;
    let mut announcer = false;
    let mut warned = false;
    while !ctx.stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        if ctx.state.slots_held() == 0 {
            ctx.health.fleet_alive();
        }
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            match ctx.db.connect_within(Duration::from_secs(2)) {
                Ok(c) => client = Some(c),
                Err(e) => {
                    if ctx.state.set_db_up(false) || !warned {
                        tracing::warn!("{e}; this host answers on alone, with what it holds, until the database is back");
                        warned = true;
                    }
                }
            }
        }
        if let Some(c) = client.as_mut() {
            let r = (|| -> Result<(), FleetError> {
                if !migrated {
                    schema::migrate(&ctx.db, c, &ctx.state.host)?;
                    migrated = true;
                }
                if !started {
                    for j in
                        jobs::lose(c, Some(&ctx.state.host)).map_err(|e| ctx.db.classify(&e))?
                    {
                        let _ = ctx
                            .reports
                            .send(Report::Lost(Box::new(j), LostHow::Restarted));
                    }
                    if ctx.recover_own {
                        let started_ms = i64::try_from(ctx.started_ms).unwrap_or(i64::MAX);
                        let own: Vec<i64> = c
                            .query(
                                "SELECT id FROM sbd_inbox WHERE host = $1 AND received_ms < $2 ORDER BY id",
                                &[&ctx.state.host, &started_ms],
                            )
                            .map_err(|e| ctx.db.classify(&e))?
                            .iter()
                            .map(|r| r.get(0))
                            .collect();
                        if !own.is_empty() {
                            let _ = ctx.reports.send(Report::Adopted(own));
                        }
                    }
                    started = true;
                }
                tick_once(&ctx, c, &mut announcer).map_err(|e| ctx.db.classify(&e))
            })();
            match r {
                Ok(()) => {
                    warned = false;
                    if ctx.state.set_db_up(true) {
                        tracing::info!("the fleet database answers again");
                    }
                }
                Err(e) => {
                    if ctx.state.set_db_up(false) || !warned {
                        tracing::warn!(
                            "{e}; this host answers on alone until the database is back"
                        );
                        warned = true;
                    }
                    if e.is_transient() {
                        client = None;
                    }
                }
            }
        }
        let rest = tick.saturating_sub(began.elapsed());
        let end = Instant::now() + rest;
        while Instant::now() < end && !ctx.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
        }
    }
    if let Some(c) = client.as_mut() {
        leave(&ctx, c);
    }
}

/// A clean stop: this host's slots and roles go back at once, and its row
/// goes, so the fleet neither waits out its lease nor calls it missing.
fn leave(ctx: &AgentCtx, c: &mut Client) {
    ctx.state.set_slots(0);
    ctx.state.set_outbox_leader(false);
    let host = &ctx.state.host;
    let _ = c.execute(
        "UPDATE sbd_slots SET host = NULL, lease_until = '-infinity' WHERE host = $1",
        &[host],
    );
    let _ = c.execute(
        "UPDATE sbd_leases SET host = NULL, lease_until = '-infinity' WHERE host = $1",
        &[host],
    );
    let _ = c.execute("DELETE FROM sbd_hosts WHERE name = $1", &[host]);
}

fn tick_once(ctx: &AgentCtx, c: &mut Client, announcer: &mut bool) -> Result<(), postgres::Error> {
    let host = ctx.state.host.as_str();
    let lease = secs(ctx.lease);
    let n = i32::try_from(ctx.connections).unwrap_or(10);
    let jobs_running =
        i32::try_from(ctx.state.jobs_running.load(Ordering::Relaxed)).unwrap_or(i32::MAX);
    let outbox_local =
        i64::try_from(ctx.state.local_outbox.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
    let pid = i32::try_from(std::process::id()).unwrap_or(0);
    let held_before = ctx.state.slots_held();
    c.execute(
        "INSERT INTO sbd_hosts (name, tags, version, commands, pid, started_at, seen_at, lease_until, slots, jobs_running, outbox_depth)
         VALUES ($1, $2, $3, $4, $5, now(), now(), now() + make_interval(secs => $6), $7, $8, $9)
         ON CONFLICT (name) DO UPDATE SET
            tags = EXCLUDED.tags, version = EXCLUDED.version, commands = EXCLUDED.commands,
            started_at = CASE WHEN sbd_hosts.pid = EXCLUDED.pid THEN sbd_hosts.started_at ELSE EXCLUDED.started_at END,
            pid = EXCLUDED.pid, seen_at = now(), lease_until = EXCLUDED.lease_until,
            slots = EXCLUDED.slots, jobs_running = EXCLUDED.jobs_running, outbox_depth = EXCLUDED.outbox_depth",
        &[&host, &ctx.tags, &crate::VERSION, &ctx.commands, &pid, &lease, &(held_before as i32), &jobs_running, &outbox_local],
    )?;

    // Slots: renew, then one step of the rule.
    c.execute(
        "INSERT INTO sbd_slots (slot) SELECT generate_series(0, $1 - 1) ON CONFLICT DO NOTHING",
        &[&n],
    )?;
    let held = c
        .query(
            "UPDATE sbd_slots SET lease_until = now() + make_interval(secs => $3)
             WHERE host = $1 AND slot < $2 RETURNING slot",
            &[&host, &n, &lease],
        )?
        .len();
    if held < held_before {
        tracing::warn!(
            "{} Socket Mode slot(s) went to other hosts while the database was away; closing those connections",
            held_before - held
        );
    }
    ctx.state.set_slots(held);
    let others: Vec<usize> = c
        .query(
            "SELECT (SELECT COUNT(*) FROM sbd_slots s WHERE s.host = h.name AND s.lease_until > now() AND s.slot < $2)
             FROM sbd_hosts h WHERE h.lease_until > now() AND h.name <> $1",
            &[&host, &n],
        )?
        .iter()
        .map(|r| usize::try_from(r.get::<_, i64>(0)).unwrap_or(0))
        .collect();
    let free: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM sbd_slots WHERE slot < $1 AND (host IS NULL OR lease_until < now())",
            &[&n],
        )?
        .get(0);
    match slots::step(held, &others, usize::try_from(free).unwrap_or(0)) {
        Step::Take => {
            let got = c.query(
                "UPDATE sbd_slots SET host = $1, lease_until = now() + make_interval(secs => $3)
                 WHERE slot = (SELECT slot FROM sbd_slots
                               WHERE slot < $2 AND (host IS NULL OR lease_until < now())
                               ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING slot",
                &[&host, &n, &lease],
            )?;
            if let Some(r) = got.first() {
                let slot: i32 = r.get(0);
                tracing::info!(
                    slot,
                    "took a Socket Mode slot of the fleet ({} held)",
                    held + 1
                );
                ctx.state.set_slots(held + 1);
            }
        }
        Step::Release => {
            // The connection closes first: the fleet never holds more than
            // its slots.
            ctx.state.set_slots(held - 1);
            std::thread::sleep(Duration::from_millis(300));
            c.execute(
                "UPDATE sbd_slots SET host = NULL, lease_until = '-infinity'
                 WHERE slot = (SELECT MAX(slot) FROM sbd_slots WHERE host = $1 AND slot < $2) AND host = $1",
                &[&host, &n],
            )?;
            tracing::info!(
                "gave a Socket Mode slot back to the fleet ({} held)",
                held - 1
            );
        }
        Step::Keep => {}
    }

    // Roles: one host delivers the outbox, one announces for the fleet.
    let mut lead = |role: &str| -> Result<bool, postgres::Error> {
        c.execute(
            "INSERT INTO sbd_leases (role) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&role],
        )?;
        Ok(!c
            .query(
                "UPDATE sbd_leases SET host = $2, lease_until = now() + make_interval(secs => $3)
                 WHERE role = $1 AND (host = $2 OR host IS NULL OR lease_until < now())
                 RETURNING host",
                &[&role, &host, &lease],
            )?
            .is_empty())
    };
    let delivers = lead("outbox")?;
    ctx.state.set_outbox_leader(delivers);
    *announcer = lead("announce")?;

    // What dead hosts left.
    let adopted: Vec<i64> = c
        .query(
            "UPDATE sbd_inbox SET host = $1
             WHERE host <> $1 AND host NOT IN (SELECT name FROM sbd_hosts WHERE lease_until >= now())
             RETURNING id",
            &[&host],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !adopted.is_empty() {
        tracing::info!(
            "took over {} event(s) a host that went away had acknowledged and not answered",
            adopted.len()
        );
        let _ = ctx.reports.send(Report::Adopted(adopted));
    }
    for j in jobs::lose(c, None)? {
        let _ = ctx
            .reports
            .send(Report::Lost(Box::new(j), LostHow::HostGone));
    }

    if *announcer && ctx.announce.is_some() {
        let gone = c.query(
            "UPDATE sbd_hosts SET gone_announced = true
             WHERE NOT gone_announced AND seen_at < now() - make_interval(secs => $1)
             RETURNING name, EXTRACT(EPOCH FROM (now() - seen_at))::float8",
            &[&secs(MISSING_AFTER)],
        )?;
        for r in &gone {
            let (name, age): (String, f64) = (r.get(0), r.get(1));
            let _ = ctx.reports.send(Report::Announce(format!(
                ":warning: *{name}* has not been seen for {}.",
                crate::clock::human(Duration::from_secs_f64(age.max(0.0)))
            )));
        }
        let back = c.query(
            "UPDATE sbd_hosts SET gone_announced = false
             WHERE gone_announced AND lease_until > now() RETURNING name",
            &[],
        )?;
        for r in &back {
            let name: String = r.get(0);
            let _ = ctx.reports.send(Report::Announce(format!(
                ":white_check_mark: *{name}* is back."
            )));
        }
        let _ = jobs::prune(c);
    }
    Ok(())
}
