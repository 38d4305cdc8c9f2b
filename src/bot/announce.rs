//! Restart announcements: after an unclean stop, the first connection posts
//! to `[announce].channel`, through the outbox, what happened: the signal or
//! exit code, the downtime, and the restarts in the last hour. At most one
//! announcement per `[announce].quiet`: a crash loop's further restarts are
//! summed up in the next one instead of flooding the channel.
//!
//! [`decide`] is the rule, a pure function of what the store knows; [`run`]
//! gathers those facts and carries the decision out in one store call.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::{human, now_ms};
use crate::settings::SettingsRx;
use crate::store::history::Exit;
use crate::store::outbox::NewMessage;
use crate::store::{SharedStore, StoreError};

const LAST_KEY: &str = "last_announce_ms";

/// What the store knows, for one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Unclean exits not yet announced, oldest first.
    pub(crate) exits: Vec<Exit>,
    /// When the last announcement was queued (0: never).
    pub(crate) last_announce_ms: u64,
    /// Unclean exits in the last hour.
    pub(crate) in_hour: u64,
}

/// What one check decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Nothing (more) to say; exits up to this row count as reported.
    Done(Option<i64>),
    /// Post this, and count exits up to this row as reported.
    Queue {
        /// The announcement.
        text: String,
        /// The newest exit it covers.
        through: i64,
    },
    /// Too soon after the last one; look again at this time (ms).
    WaitUntil(u64),
}

/// The rule: one announcement per quiet period, naming the latest exit and
/// counting the others; nothing saved up when no channel is configured.
pub(crate) fn decide(
    facts: &Facts,
    channel: Option<&str>,
    quiet: Duration,
    now_ms: u64,
    host: &str,
) -> Decision {
    let Some(latest) = facts.exits.last() else {
        return Decision::Done(None);
    };
    if channel.is_none() {
        // Nobody to tell: do not save them up for a channel configured later.
        return Decision::Done(Some(latest.id));
    }
    let quiet_ms = quiet.as_millis() as u64;
    if now_ms.saturating_sub(facts.last_announce_ms) < quiet_ms {
        return Decision::WaitUntil(facts.last_announce_ms + quiet_ms);
    }
    let down = Duration::from_millis(now_ms.saturating_sub(latest.at_ms));
    let down = if down < Duration::from_secs(1) {
        format!("{} ms", down.as_millis())
    } else {
        human(down)
    };
    let n = facts.in_hour;
    let mut text = format!(
        ":rotating_light: slackbotd on `{host}` is back after an unclean stop: {}. Down for {down}; {n} unclean restart{} in the last hour.",
        latest.cause,
        if n == 1 { "" } else { "s" }
    );
    if facts.exits.len() > 1 {
        text.push_str(&format!(
            "\n{} unclean stops since the last report; this is the latest. `status` shows the history.",
            facts.exits.len()
        ));
    }
    Decision::Queue {
        text,
        through: latest.id,
    }
}

/// Reads the facts, decides, and carries the decision out, in one go.
fn check(
    st: &mut dyn crate::store::Backend,
    channel: Option<String>,
    quiet: Duration,
    host: &str,
) -> Result<Decision, StoreError> {
    let now = now_ms();
    let facts = Facts {
        exits: st.unannounced_exits()?,
        last_announce_ms: st.meta(LAST_KEY)?.and_then(|v| v.parse().ok()).unwrap_or(0),
        in_hour: st.unclean_exits_since(now.saturating_sub(3_600_000))?,
    };
    let decision = decide(&facts, channel.as_deref(), quiet, now, host);
    match &decision {
        Decision::Done(Some(id)) => st.mark_announced(*id)?,
        Decision::Queue { text, through } => {
            if let Some(channel) = channel {
                st.enqueue(
                    &[NewMessage {
                        channel,
                        thread_ts: None,
                        text: text.clone(),
                    }],
                    now,
                )?;
            }
            st.mark_announced(*through)?;
            st.set_meta(LAST_KEY, &now.to_string())?;
        }
        Decision::Done(None) | Decision::WaitUntil(_) => {}
    }
    Ok(decision)
}

/// Announces once connected, then keeps an eye out during a quiet period.
pub(crate) async fn run(
    store: SharedStore,
    settings: SettingsRx,
    wake: Arc<Notify>,
    mut connected: tokio::sync::watch::Receiver<u64>,
    host: String,
) {
    // The first hello.
    if connected.wait_for(|n| *n > 0).await.is_err() {
        return;
    }
    loop {
        let (channel, quiet) = {
            let s = settings.borrow();
            (s.config.announce.channel.clone(), s.config.announce.quiet)
        };
        let h = host.clone();
        match store.call(move |st| check(st, channel, quiet, &h)).await {
            Ok(Decision::Done(_)) => return,
            Ok(Decision::Queue { text, .. }) => {
                wake.notify_one();
                tracing::info!("restart announced: {text}");
                return;
            }
            Ok(Decision::WaitUntil(at)) => {
                let d = Duration::from_millis(at.saturating_sub(now_ms()).max(1000));
                tracing::info!(
                    "restart announcement held back for {} (one per quiet period)",
                    human(d)
                );
                tokio::time::sleep(d).await;
            }
            Err(e) => {
                tracing::error!("cannot prepare the restart announcement: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(id: i64, at_ms: u64, cause: &str) -> Exit {
        Exit {
            id,
            at_ms,
            cause: cause.into(),
            code: None,
            signal: Some(9),
            hang: false,
            downtime_ms: None,
        }
    }

    #[test]
    fn the_announcement_rule_row_by_row() {
        let quiet = Duration::from_secs(600);
        let now = 10_000_000;
        let one = Facts {
            exits: vec![exit(4, now - 2500, "killed by signal 9 (SIGKILL)")],
            last_announce_ms: 0,
            in_hour: 1,
        };
        assert_eq!(
            decide(
                &Facts {
                    exits: vec![],
                    ..one.clone()
                },
                Some("C1"),
                quiet,
                now,
                "h"
            ),
            Decision::Done(None)
        );
        assert_eq!(decide(&one, None, quiet, now, "h"), Decision::Done(Some(4)));
        let Decision::Queue { text, through } = decide(&one, Some("C1"), quiet, now, "web-3")
        else {
            panic!()
        };
        assert_eq!(through, 4);
        assert!(
            text.contains("`web-3`")
                && text.contains("SIGKILL")
                && text.contains("Down for 2s")
                && text.contains("1 unclean restart in"),
            "{text}"
        );
        let recent = Facts {
            last_announce_ms: now - 1000,
            ..one.clone()
        };
        assert_eq!(
            decide(&recent, Some("C1"), quiet, now, "h"),
            Decision::WaitUntil(now - 1000 + 600_000)
        );
        let many = Facts {
            exits: vec![
                exit(2, now - 9000, "exit code 1"),
                exit(3, now - 900, "exit code 2"),
            ],
            last_announce_ms: 0,
            in_hour: 2,
        };
        let Decision::Queue { text, through } = decide(&many, Some("C1"), quiet, now, "h") else {
            panic!()
        };
        assert_eq!(through, 3);
        assert!(
            text.contains("exit code 2")
                && text.contains("Down for 900 ms")
                && text.contains("2 unclean stops since the last report"),
            "{text}"
        );
    }
}
