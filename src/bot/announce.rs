//! Restart announcements: after an unclean stop, the first connection posts
//! to `[announce].channel`, through the outbox, what happened: the signal or
//! exit code, the downtime, and the restarts in the last hour. At most one
//! announcement per `[announce].quiet`: a crash loop's further restarts are
//! summed up in the next one instead of flooding the channel.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::bot::builtins::{hostname, human};
use crate::bot::outbox::{lock, SharedStore};
use crate::settings::SettingsRx;
use crate::store::outbox::NewMessage;
use crate::store::{now_ms, StoreError};

const LAST_KEY: &str = "last_announce_ms";

/// What one check decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing (more) to say.
    Done,
    /// Queued an announcement.
    Queued(String),
    /// Too soon after the last one; look again at this time (ms).
    WaitUntil(i64),
}

/// Checks for unannounced unclean exits and queues one announcement.
pub fn check(
    store: &SharedStore,
    settings: &SettingsRx,
    wake: &Notify,
) -> Result<Decision, StoreError> {
    let (channel, quiet) = {
        let s = settings.borrow();
        (s.config.announce.channel.clone(), s.config.announce.quiet)
    };
    let mut st = lock(store);
    let exits = st.unannounced_exits()?;
    let Some(latest) = exits.last().cloned() else {
        return Ok(Decision::Done);
    };
    let Some(channel) = channel else {
        // Nobody to tell: do not save them up for a channel configured later.
        st.mark_announced(latest.id)?;
        return Ok(Decision::Done);
    };
    let now = now_ms();
    let last: i64 = st.meta(LAST_KEY)?.and_then(|v| v.parse().ok()).unwrap_or(0);
    let quiet_ms = quiet.as_millis() as i64;
    if now - last < quiet_ms {
        return Ok(Decision::WaitUntil(last + quiet_ms));
    }
    let in_hour = st.unclean_exits_since(now - 3_600_000)?;
    let down = Duration::from_millis((now - latest.at_ms).max(0) as u64);
    let down = if down < Duration::from_secs(1) {
        format!("{} ms", down.as_millis())
    } else {
        human(down)
    };
    let mut text = format!(
        ":rotating_light: slackbotd on `{}` is back after an unclean stop: {}. Down for {down}; {in_hour} unclean restart{} in the last hour.",
        hostname(),
        latest.cause,
        if in_hour == 1 { "" } else { "s" }
    );
    if exits.len() > 1 {
        text.push_str(&format!(
            "\n{} unclean stops since the last report; this is the latest. `status` shows the history.",
            exits.len()
        ));
    }
    st.enqueue(
        &[NewMessage {
            channel,
            thread_ts: None,
            text: text.clone(),
        }],
        now,
    )?;
    st.mark_announced(latest.id)?;
    st.set_meta(LAST_KEY, &now.to_string())?;
    drop(st);
    wake.notify_one();
    Ok(Decision::Queued(text))
}

/// Announces once connected, then keeps an eye out during a quiet period.
pub async fn run(
    store: SharedStore,
    settings: SettingsRx,
    wake: Arc<Notify>,
    mut connected: tokio::sync::watch::Receiver<u64>,
) {
    // The first hello.
    if connected.wait_for(|n| *n > 0).await.is_err() {
        return;
    }
    loop {
        match check(&store, &settings, &wake) {
            Ok(Decision::Done) => return,
            Ok(Decision::Queued(text)) => {
                tracing::info!("restart announced: {text}");
                return;
            }
            Ok(Decision::WaitUntil(at)) => {
                let d = Duration::from_millis((at - now_ms()).max(1000) as u64);
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
