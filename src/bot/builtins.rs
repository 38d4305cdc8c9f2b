//! The commands every slackbotd answers itself: `help`, `ping`, `status`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bot::access::{self, Verdict};
use crate::clock::human;
use crate::config::Config;
use crate::health::Health;

/// What the `status` built-in reports about the running process.
#[derive(Debug)]
pub(crate) struct BotInfo {
    /// `run`, `daemon` or `console`.
    pub(crate) mode: String,
    /// The host name.
    pub(crate) host: String,
    /// This process's pid.
    pub(crate) pid: u32,
    /// When this process started.
    pub(crate) started: Instant,
    /// Connection health, absent in the console.
    pub(crate) health: Option<Arc<Health>>,
    /// The state store (restarts, outbox), when open.
    pub(crate) store: Option<crate::store::SharedStore>,
    /// The fleet, for a member of one.
    pub(crate) fleet: Option<Arc<crate::bot::fleet::FleetCtx>>,
}

impl BotInfo {
    /// Info for this process in `mode`.
    pub(crate) fn new(mode: &str, health: Option<Arc<Health>>) -> BotInfo {
        BotInfo {
            mode: mode.to_string(),
            host: crate::host::hostname(),
            pid: std::process::id(),
            started: Instant::now(),
            health,
            store: None,
            fleet: None,
        }
    }
}

/// `ping`: proves the round trip.
pub(crate) fn ping() -> String {
    "pong :table_tennis_paddle_and_ball:".to_string()
}

/// `help`: the built-ins and the operator commands this user may run here.
pub(crate) fn help(config: &Config, user: &str, channel: &str) -> String {
    let mut s = String::from(
        "I answer these:\n\
         • `ping` — check that I am alive (I answer pong)\n\
         • `status` — version, host, uptime and connection health\n\
         • `help` — this list",
    );
    let mine: Vec<_> = config
        .commands
        .iter()
        .filter(|c| access::check(c, user, channel) == Verdict::Allowed)
        .collect();
    if !mine.is_empty() {
        s.push_str("\nCommands you may run here:");
        for c in mine {
            match &c.description {
                Some(d) => s.push_str(&format!("\n• `{}` — {d}", c.name)),
                None => s.push_str(&format!("\n• `{}`", c.name)),
            }
        }
    }
    s
}

/// For a fleet member, what `help` adds: how to address hosts, and the
/// commands other hosts define, with where each runs.
pub(crate) async fn fleet_help(info: &BotInfo, config: &Config) -> Option<String> {
    let fleet = info.fleet.as_ref()?;
    let mut s =
        String::from("\nIn this fleet, address hosts: `on HOST CMD`, `on TAG CMD`, `on all CMD`.");
    let Ok(members) = fleet.members().await else {
        s.push_str(" (The fleet's database does not answer now.)");
        return Some(s);
    };
    let mut where_: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for m in members.iter().filter(|m| m.live) {
        for c in &m.commands {
            where_.entry(c.as_str()).or_default().push(m.name.as_str());
        }
    }
    if !where_.is_empty() {
        s.push_str("\nCommands in the fleet, and where they run:");
        for (cmd, hosts) in where_ {
            let here = if config.command(cmd).is_some() {
                " (here too)"
            } else {
                ""
            };
            s.push_str(&format!("\n• `{cmd}` on {}{here}", hosts.join(", ")));
        }
    }
    Some(s)
}

/// For a fleet member, what `status` adds: a line per host.
async fn fleet_status(fleet: &crate::bot::fleet::FleetCtx) -> String {
    match fleet.members().await {
        Err(e) => format!("\nfleet: {e}; this host answers on its own"),
        Ok(members) => {
            let live = members.iter().filter(|m| m.live).count();
            let mut s = format!(
                "\nfleet: this is `{}`; {} of {} live",
                fleet.host,
                live,
                crate::text::count(members.len() as u64, "host", "hosts")
            );
            for m in &members {
                s.push_str(&format!(
                    "\n• `{}`{} {} {}, seen {} ago, {}, {} running, {} waiting here",
                    m.name,
                    if m.tags.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", m.tags.join(", "))
                    },
                    if m.live { "live" } else { "GONE" },
                    m.version,
                    human(Duration::from_secs_f64(m.seen_s.max(0.0))),
                    crate::text::count(m.slots as u64, "slot", "slots"),
                    crate::text::count(m.jobs_running as u64, "job", "jobs"),
                    m.outbox_depth
                ));
            }
            s
        }
    }
}

/// `status`: what runs, where, for how long, and how healthy.
pub(crate) async fn status(info: &BotInfo) -> String {
    let mut s = format!(
        "slackbotd {} on `{}` (pid {}, mode {})\nup {}",
        crate::VERSION,
        info.host,
        info.pid,
        info.mode,
        human(info.started.elapsed())
    );
    if let Some(h) = &info.health {
        let snap = h.snapshot();
        s.push_str(&format!(
            "\nconnections: {} live, {} fresh (heartbeat timeout {})",
            snap.connections,
            snap.fresh,
            human(h.heartbeat_timeout())
        ));
        if let Some(age) = snap.freshest_frame_age {
            s.push_str(&format!(", last frame from Slack {} ago", human(age)));
        }
        s.push_str(&format!("\nevents received: {}", snap.events));
        if !snap.durable {
            s.push_str(" (the inbox is not written: a crash may lose an event)");
        }
    }
    if let Some(store) = &info.store {
        let now = crate::clock::now_ms();
        let ago = |t: u64| human(Duration::from_millis(now.saturating_sub(t)));
        let facts = store
            .call(move |st| {
                Ok((
                    st.unclean_exits_since(now.saturating_sub(86_400_000))?,
                    st.last_unclean_exit()?,
                    st.queue_stats()?,
                ))
            })
            .await;
        if let Ok((day, last, q)) = facts {
            s.push_str(&format!("\nunclean restarts in the last 24 h: {day}"));
            if let Some(e) = last {
                s.push_str(&format!("; last crash {} ago: {}", ago(e.at_ms), e.cause));
            }
            s.push_str(&format!("\noutbox: {} waiting", q.depth));
            if let Some(t) = q.oldest_ms {
                s.push_str(&format!(" (oldest {} old)", ago(t)));
            }
            if q.failed > 0 {
                s.push_str(&format!(", {} failed for good", q.failed));
            }
        }
    }
    if let Some(f) = &info.fleet {
        s.push_str(&fleet_status(f).await);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn help_lists_only_what_the_user_may_run() {
        let cfg = Config::parse(
            Path::new("x.toml"),
            "[[command]]\nname=\"deploy\"\nrun=[\"/bin/true\"]\nallow_users=[\"U1\"]\ndescription=\"ship it\"\n\
             [[command]]\nname=\"uptime\"\nrun=[\"/usr/bin/uptime\"]\n",
        )
        .unwrap();
        let h1 = help(&cfg, "U1", "C1");
        assert!(
            h1.contains("`deploy` — ship it") && h1.contains("`uptime`"),
            "{h1}"
        );
        let h2 = help(&cfg, "U2", "C1");
        assert!(!h2.contains("deploy") && h2.contains("`uptime`"), "{h2}");
    }

    #[tokio::test]
    async fn status_names_version_and_mode() {
        let s = status(&BotInfo::new("console", None)).await;
        assert!(
            s.contains(crate::VERSION) && s.contains("mode console"),
            "{s}"
        );
        assert!(ping().contains("pong"));
    }
}
