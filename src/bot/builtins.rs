//! The commands every slackbotd answers itself: `help`, `ping`, `status`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bot::access::{self, Verdict};
use crate::config::Config;
use crate::health::Health;

/// What the `status` built-in reports about the running process.
#[derive(Debug)]
pub struct BotInfo {
    /// `run`, `daemon` or `console`.
    pub mode: String,
    /// The host name.
    pub host: String,
    /// This process's pid.
    pub pid: u32,
    /// When this process started.
    pub started: Instant,
    /// Connection health, absent in the console.
    pub health: Option<Arc<Health>>,
    /// The state store (restarts, outbox), when open.
    pub store: Option<crate::bot::outbox::SharedStore>,
}

impl BotInfo {
    /// Info for this process in `mode`.
    pub fn new(mode: &str, health: Option<Arc<Health>>) -> BotInfo {
        BotInfo {
            mode: mode.to_string(),
            host: hostname(),
            pid: std::process::id(),
            started: Instant::now(),
            health,
            store: None,
        }
    }
}

/// The machine's host name.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// A duration as people say it, to the second.
pub fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// `ping`: proves the round trip.
pub fn ping() -> String {
    "pong :table_tennis_paddle_and_ball:".to_string()
}

/// `help`: the built-ins and the operator commands this user may run here.
pub fn help(config: &Config, user: &str, channel: &str) -> String {
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

/// `status`: what runs, where, for how long, and how healthy.
pub fn status(info: &BotInfo) -> String {
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
    }
    if let Some(store) = &info.store {
        let mut st = crate::bot::outbox::lock(store);
        let now = crate::store::now_ms();
        if let (Ok(day), Ok(last)) = (
            st.unclean_exits_since(now - 86_400_000),
            st.last_unclean_exit(),
        ) {
            s.push_str(&format!("\nunclean restarts in the last 24 h: {day}"));
            if let Some(e) = last {
                s.push_str(&format!(
                    "; last crash {} ago: {}",
                    human(Duration::from_millis((now - e.at_ms).max(0) as u64)),
                    e.cause
                ));
            }
        }
        if let Ok(q) = st.queue_stats() {
            s.push_str(&format!("\noutbox: {} waiting", q.depth));
            if let Some(t) = q.oldest_ms {
                s.push_str(&format!(
                    " (oldest {} old)",
                    human(Duration::from_millis((now - t).max(0) as u64))
                ));
            }
            if q.failed > 0 {
                s.push_str(&format!(", {} failed for good", q.failed));
            }
        }
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

    #[test]
    fn status_names_version_and_mode() {
        let s = status(&BotInfo::new("console", None));
        assert!(
            s.contains(crate::VERSION) && s.contains("mode console"),
            "{s}"
        );
        assert!(ping().contains("pong"));
    }
}
