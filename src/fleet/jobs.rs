//! Commands addressed to hosts (`@bot on web-3 disk /var`), through the
//! `sbd_jobs` table. The host that received the request writes one job per
//! target and wakes each target with `NOTIFY`; a target claims its jobs
//! with `FOR UPDATE SKIP LOCKED`, marks them running in the same commit, and
//! only then runs them: a job runs at most once. A job whose host died
//! while running it is marked lost (once: one `UPDATE … RETURNING` wins) and
//! never run elsewhere; one still queued at its deadline expires.

use std::time::Duration;

use postgres::Client;

/// The channel a host listens on for its jobs.
pub(crate) fn channel(host: &str) -> String {
    format!("sbd_jobs:{host}")
}

/// A job to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewJob {
    /// The request it answers (the event), shared by a fan-out's jobs.
    pub(crate) request: String,
    /// The host that runs it.
    pub(crate) target: String,
    /// The command's name.
    pub(crate) command: String,
    /// The command line as typed, without the address (`disk /var`).
    pub(crate) text: String,
    /// Who asked.
    pub(crate) user_id: String,
    /// Where.
    pub(crate) channel: String,
    /// The workspace.
    pub(crate) team: String,
    /// The thread its reply goes in.
    pub(crate) thread_ts: Option<String>,
    /// The event, as the command's stdin.
    pub(crate) event_json: String,
    /// The host that received the request.
    pub(crate) origin: String,
    /// How long the target has to start it.
    pub(crate) deadline: Duration,
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Job {
    /// Its row.
    pub(crate) id: i64,
    /// The request it answers.
    pub(crate) request: String,
    /// The host that runs (or ran) it.
    pub(crate) target: String,
    /// The command's name.
    pub(crate) command: String,
    /// The command line, without the address.
    pub(crate) text: String,
    /// Who asked.
    pub(crate) user_id: String,
    /// Where.
    pub(crate) channel: String,
    /// The workspace.
    pub(crate) team: String,
    /// The thread its reply goes in.
    pub(crate) thread_ts: Option<String>,
    /// The event.
    pub(crate) event_json: String,
    /// The host that received the request.
    pub(crate) origin: String,
}

fn job(r: &postgres::Row) -> Job {
    Job {
        id: r.get("id"),
        request: r.get("request"),
        target: r.get("target"),
        command: r.get("command"),
        text: r.get("text"),
        user_id: r.get("user_id"),
        channel: r.get("channel"),
        team: r.get("team"),
        thread_ts: r.get("thread_ts"),
        event_json: r.get("event_json"),
        origin: r.get("origin"),
    }
}

/// Writes the jobs (a request's jobs already written are kept, not
/// doubled: a request handled again after a crash finds them) and wakes
/// their targets.
///
/// The jobs are one request's (all alike but for their target); they are
/// written and their targets woken in one statement, one round trip.
pub(crate) fn create(c: &mut Client, jobs: &[NewJob]) -> Result<(), postgres::Error> {
    let Some(j) = jobs.first() else { return Ok(()) };
    let targets: Vec<&str> = jobs.iter().map(|j| j.target.as_str()).collect();
    let deadline = j.deadline.as_secs_f64();
    c.execute(
        "WITH made AS (
            INSERT INTO sbd_jobs (request, target, command, text, user_id, channel, team, thread_ts, event_json, origin, deadline_at)
            SELECT $1, t, $3, $4, $5, $6, $7, $8, $9, $10, now() + make_interval(secs => $11)
            FROM unnest($2::text[]) AS t
            ON CONFLICT (request, target) DO NOTHING
            RETURNING target)
         SELECT pg_notify('sbd_jobs:' || target, '') FROM made",
        &[
            &j.request, &targets, &j.command, &j.text, &j.user_id, &j.channel, &j.team,
            &j.thread_ts, &j.event_json, &j.origin, &deadline,
        ],
    )
    .map(|_| ())
}

/// Claims up to `limit` of `host`'s queued jobs: from this commit on they
/// are running, and never run anywhere again.
pub(crate) fn claim(c: &mut Client, host: &str, limit: i64) -> Result<Vec<Job>, postgres::Error> {
    let rows = c.query(
        "UPDATE sbd_jobs SET state = 'running', started_at = now()
         WHERE id IN (SELECT id FROM sbd_jobs
                      WHERE target = $1 AND state = 'queued' AND deadline_at > now()
                      ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING *",
        &[&host, &limit],
    )?;
    Ok(rows.iter().map(job).collect())
}

/// Job `id` ended with `outcome` (`ok`, `failed`, `refused`, …).
pub(crate) fn finish(c: &mut Client, id: i64, outcome: &str) -> Result<(), postgres::Error> {
    c.execute(
        "UPDATE sbd_jobs SET state = 'done', finished_at = now(), outcome = $2 WHERE id = $1 AND state = 'running'",
        &[&id, &outcome],
    )
    .map(|_| ())
}

/// Where each job of `request` stands: (target, state, outcome).
pub(crate) fn states(
    c: &mut Client,
    request: &str,
) -> Result<Vec<(String, String, Option<String>)>, postgres::Error> {
    let rows = c.query(
        "SELECT target, state, outcome FROM sbd_jobs WHERE request = $1 ORDER BY target",
        &[&request],
    )?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Jobs of `request` still queued: expired, so they are never started
/// after their requester stopped waiting. Returns their targets.
pub(crate) fn expire(c: &mut Client, request: &str) -> Result<Vec<String>, postgres::Error> {
    let rows = c.query(
        "UPDATE sbd_jobs SET state = 'expired', finished_at = now()
         WHERE request = $1 AND state = 'queued' RETURNING target",
        &[&request],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Running jobs whose host's lease ran out (or, with `host`, this host's
/// own, found at its start): marked lost, once. Returns them, to be reported.
pub(crate) fn lose(c: &mut Client, host: Option<&str>) -> Result<Vec<Job>, postgres::Error> {
    let rows = match host {
        Some(h) => c.query(
            "UPDATE sbd_jobs SET state = 'lost', finished_at = now()
             WHERE state = 'running' AND target = $1 RETURNING *",
            &[&h],
        )?,
        None => c.query(
            "UPDATE sbd_jobs SET state = 'lost', finished_at = now()
             WHERE state = 'running'
               AND target IN (SELECT name FROM sbd_hosts WHERE lease_until < now())
             RETURNING *",
            &[],
        )?,
    };
    Ok(rows.iter().map(job).collect())
}

/// Forgets finished jobs older than a day.
pub(crate) fn prune(c: &mut Client) -> Result<u64, postgres::Error> {
    c.execute(
        "DELETE FROM sbd_jobs WHERE state NOT IN ('queued', 'running') AND finished_at < now() - interval '1 day'",
        &[],
    )
}

/// The channel every host hears when a notification is queued: the one
/// that delivers the outbox starts at once instead of at its next poll.
pub(crate) const OUTBOX_CHANNEL: &str = "sbd_outbox";

/// Listens on `host`'s job channel and rings `wake` for each notification,
/// and once a second in any case (a notification lost while the connection
/// was away must not strand a job); on the outbox's channel, rings
/// `outbox`. Reconnects after a failure.
pub(crate) fn listen(
    db: super::Db,
    host: String,
    wake: std::sync::Arc<tokio::sync::Notify>,
    outbox: std::sync::Arc<tokio::sync::Notify>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    use std::sync::atomic::Ordering;
    std::thread::Builder::new()
        .name("slackbotd-jobs".into())
        .spawn(move || {
            // The channel name is quoted as an identifier; host names are
            // checked to hold no quote.
            let listen = format!(
                "LISTEN \"{}\"; LISTEN {OUTBOX_CHANNEL}",
                channel(&host).replace('"', "\"\"")
            );
            while !stop.load(Ordering::Relaxed) {
                let mut c = match db.connect_within(Duration::from_secs(2)) {
                    Ok(c) => c,
                    Err(_) => {
                        wake.notify_one();
                        std::thread::sleep(Duration::from_secs(2));
                        continue;
                    }
                };
                if c.batch_execute(&listen).is_err() {
                    std::thread::sleep(Duration::from_secs(2));
                    continue;
                }
                while !stop.load(Ordering::Relaxed) && !c.is_closed() {
                    let mut n = c.notifications();
                    use postgres::fallible_iterator::FallibleIterator;
                    let mut it = n.timeout_iter(Duration::from_secs(1));
                    match it.next() {
                        Ok(Some(m)) if m.channel() == OUTBOX_CHANNEL => {
                            outbox.notify_one();
                            continue;
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                    wake.notify_one();
                }
            }
        })
}
