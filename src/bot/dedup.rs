//! Remembers which events were already handled, so a Slack redelivery (the
//! same `event_id` with `retry_attempt` + 1) is answered once: in the state
//! store, so it holds across restarts, or in memory when the store is not
//! available.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An in-memory set of recently seen event IDs with a retention window.
#[derive(Debug)]
pub struct Dedup {
    retention: Duration,
    seen: Mutex<HashMap<String, Instant>>,
}

impl Dedup {
    /// Forgets IDs older than `retention`.
    pub fn new(retention: Duration) -> Dedup {
        Dedup {
            retention,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// True the first time `id` is seen within the retention window.
    pub fn first_time(&self, id: &str) -> bool {
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
pub enum Seen {
    /// In the state store: survives restarts.
    Persistent {
        store: crate::bot::outbox::SharedStore,
        retention: Duration,
    },
    /// In memory only (the store could not be opened).
    Memory(Dedup),
}

impl Seen {
    /// True the first time `id` is seen within the retention window.
    pub fn first_time(&self, id: &str) -> bool {
        match self {
            Seen::Memory(d) => d.first_time(id),
            Seen::Persistent { store, retention } => {
                let now = crate::store::now_ms();
                let mut st = crate::bot::outbox::lock(store);
                // Cheap pruning: roughly once in 512 events.
                if rand::random::<u16>().is_multiple_of(512) {
                    if let Err(e) = st.prune_dedup(now - retention.as_millis() as i64) {
                        tracing::warn!("cannot prune seen event IDs: {e}");
                    }
                }
                match st.first_sighting(id, now) {
                    Ok(first) => first,
                    Err(e) => {
                        // Answering twice beats not answering.
                        tracing::error!("cannot record event {id}: {e}");
                        true
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
