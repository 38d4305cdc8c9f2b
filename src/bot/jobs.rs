//! Running the jobs the fleet addressed to this host (`@bot on web-3 disk`):
//! claimed from the fleet's table (from then on never run anywhere else),
//! routed here as if the request had come to this host (so this host's own
//! access lists decide), and answered in the request's thread, the reply
//! prefixed with this host's name.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::event::{Origin, Request};
use super::router::{Reply, Routed};
use super::BotCtx;
use crate::fleet::jobs::{self, Job};
use crate::fleet::pool::Pool;
use crate::fleet::FleetState;

/// Jobs claimed at once.
const CLAIM: i64 = 8;

/// Claims and runs this host's jobs until `stop` turns true.
pub(crate) async fn runner(
    ctx: Arc<BotCtx>,
    pool: Pool,
    state: Arc<FleetState>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => break,
        }
        let host = state.host.clone();
        let claimed = match pool.run(move |c| jobs::claim(c, &host, CLAIM)).await {
            Ok(j) => j,
            Err(e) => {
                tracing::debug!("cannot claim jobs: {e}");
                continue;
            }
        };
        for job in claimed {
            state.jobs_running.fetch_add(1, Ordering::Relaxed);
            let (ctx, pool, state) = (ctx.clone(), pool.clone(), state.clone());
            tokio::spawn(async move {
                let id = job.id;
                let outcome = run(&ctx, &state.host, job).await;
                if let Err(e) = pool.run(move |c| jobs::finish(c, id, outcome)).await {
                    tracing::warn!(job = id, "cannot record that the job ended: {e}");
                }
                state.jobs_running.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }
}

/// Runs one job and posts its answer; returns its outcome.
async fn run(ctx: &BotCtx, host: &str, job: Job) -> &'static str {
    let settings = ctx.settings.borrow().clone();
    let req = Request {
        origin: Origin::Mention,
        text: job.text.clone(),
        user: job.user_id.clone(),
        channel: job.channel.clone(),
        team: job.team.clone(),
        ts: job.thread_ts.clone(),
        thread_ts: job.thread_ts.clone(),
        event_id: Some(format!("job-{}", job.id)),
        raw: serde_json::from_str(&job.event_json).unwrap_or_default(),
    };
    tracing::info!(job = job.id, command = %job.command, user = %job.user_id, channel = %job.channel, origin = %job.origin, "running a job addressed to this host");
    let (reply, outcome) = match ctx.router.route(&req, &settings.config).await {
        Routed::Reply(r) => {
            let known = crate::config::BUILTIN_COMMANDS.contains(&job.command.as_str())
                || settings.config.command(&job.command).is_some();
            (r, if known { "ok" } else { "refused" })
        }
        Routed::Command(c) => c.run_counted().await,
    };
    let reply = Reply {
        text: format!("*{host}*: {}", reply.text),
        threaded: true,
    };
    crate::metrics::global().job_ran(outcome);
    let since = crate::clock::now_ms();
    if let Err(e) =
        super::reply::deliver(&settings.web, &settings.identity, &req, &reply, since, None).await
    {
        tracing::error!(job = job.id, "the job's reply could not be delivered: {e}");
        return "undelivered";
    }
    outcome
}
