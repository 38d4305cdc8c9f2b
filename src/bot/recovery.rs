//! What a process that died had already posted. After a restart, an event it
//! left half-handled is answered only when no reply of its own is found in
//! Slack. One look-up per channel (or thread) serves every recovered event
//! there, because Slack rate-limits the history methods per minute and a
//! crash in a burst leaves dozens of them.
//!
//! Only events the dead process had *claimed* need the look-up: the claim is
//! written before any reply is sent, so an unclaimed event was never
//! answered.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, OnceCell};

use crate::slack::web::{Identity, OutgoingMessage, Posted, SlackWeb, WebError};

/// A channel, and a thread in it (none: the channel's top level).
type Place = (String, Option<String>);

/// Per channel and thread, what the bot posted since the oldest recovered
/// event arrived, read once.
#[derive(Debug)]
pub(crate) struct Recovery {
    /// When the oldest recovered event arrived (ms since the epoch).
    since_ms: u64,
    /// Keyed by channel and thread; filled on first use.
    found: Mutex<HashMap<Place, Arc<OnceCell<Posted>>>>,
}

impl Recovery {
    /// A recovery of events that arrived from `since_ms` on.
    pub(crate) fn new(since_ms: u64) -> Recovery {
        Recovery {
            since_ms,
            found: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `msg` was posted by the process that died. The first caller
    /// for a channel (or thread) reads it; the others wait for that answer.
    pub(crate) async fn was_posted(
        &self,
        web: &SlackWeb,
        me: &Identity,
        msg: &OutgoingMessage,
    ) -> Result<bool, WebError> {
        let cell = self
            .found
            .lock()
            .await
            .entry((msg.channel.clone(), msg.thread_ts.clone()))
            .or_default()
            .clone();
        let posted = cell
            .get_or_try_init(|| {
                web.posted(&msg.channel, msg.thread_ts.as_deref(), self.since_ms, me)
            })
            .await?;
        Ok(posted.find(msg).is_some())
    }

    /// The recovery is over: forget what was read.
    pub(crate) async fn clear(&self) {
        self.found.lock().await.clear();
    }
}
