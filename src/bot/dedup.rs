//! Remembers which events were already handled, so a Slack redelivery (the
//! same `event_id` with `retry_attempt` + 1) is answered once: in the state
//! store, so it holds across restarts, or in memory when the store is not
//! available.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) use crate::store::dedup::Claim;

/// An in-memory set of recently seen event IDs with a retention window.
#[derive(Debug)]
pub(crate) struct Dedup {
    retention: Duration,
    seen: Mutex<HashMap<String, Instant>>,
}

impl Dedup {
    /// Forgets IDs older than `retention`.
    pub(crate) fn new(retention: Duration) -> Dedup {
        Dedup {
            retention,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// True the first time `id` is seen within the retention window.
    pub(crate) fn first_time(&self, id: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if seen.len() > 1024 {
            let retention = self.retention;
            seen.retain(|_, t| now.duration_since(*t) < retention);
        }
        match seen.get(id) {
            Some(t) if now.duration_since(*t) < self.retention => false,
            _ => {
                seen.insert(id.to_string(), now);
                true
            }
        }
    }
}

/// Where seen event IDs are kept.
#[derive(Debug)]
pub(crate) enum Seen {
    /// In the state store: survives restarts.
    Persistent {
        /// The store thread.
        store: crate::store::SharedStore,
        /// How long an ID is remembered.
        retention: Duration,
    },
    /// In memory only (the store could not be opened).
    Memory(Dedup),
}

impl Seen {
    /// Claims `id` for inbox row `row`: new, claimed before by this same row
    /// (a recovery after a crash), or taken by another delivery.
    pub(crate) async fn claim(&self, id: &str, row: Option<i64>) -> Claim {
        match self {
            Seen::Memory(d) => {
                if d.first_time(id) {
                    Claim::New
                } else {
                    Claim::Taken
                }
            }
            Seen::Persistent { store, retention } => {
                let now = crate::clock::now_ms();
                let before = now.saturating_sub(retention.as_millis() as u64);
                // Cheap pruning: roughly once in 512 events.
                let prune = rand::random::<u16>().is_multiple_of(512);
                let event = id.to_string();
                let r = store
                    .call(move |st| {
                        if prune {
                            if let Err(e) = st.prune_dedup(before) {
                                tracing::warn!("cannot prune seen event IDs: {e}");
                            }
                        }
                        st.claim_event(&event, row, now)
                    })
                    .await;
                match r {
                    Ok(claim) => claim,
                    Err(e) => {
                        // Answering twice beats not answering; and since
                        // nobody knows, a reply may already be out.
                        tracing::error!("cannot record event {id}: {e}");
                        Claim::Again
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_sighting_is_a_duplicate() {
        let d = Dedup::new(Duration::from_secs(60));
        assert!(d.first_time("Ev1"));
        assert!(!d.first_time("Ev1"));
        assert!(d.first_time("Ev2"));
    }

    #[test]
    fn forgotten_after_retention() {
        let d = Dedup::new(Duration::from_millis(10));
        assert!(d.first_time("Ev1"));
        std::thread::sleep(Duration::from_millis(20));
        assert!(d.first_time("Ev1"));
    }
}
