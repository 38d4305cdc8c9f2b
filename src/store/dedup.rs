//! Persistent de-duplication: `event_id`s seen within the retention window
//! survive restarts, so a Slack redelivery after a crash is answered once.

use super::{sql_ms, Store, StoreError};

impl Store {
    /// Records `event_id`; true only the first time it is seen.
    pub(crate) fn first_sighting(
        &mut self,
        event_id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        self.run(|c| {
            c.execute(
                "INSERT INTO dedup(event_id, seen_ms) VALUES(?1, ?2) ON CONFLICT(event_id) DO NOTHING",
                rusqlite::params![event_id, sql_ms(now_ms)],
            )
        })
        .map(|n| n == 1)
    }

    /// Forgets event IDs seen before `before_ms`; returns how many.
    pub(crate) fn prune_dedup(&mut self, before_ms: u64) -> Result<usize, StoreError> {
        self.run(|c| c.execute("DELETE FROM dedup WHERE seen_ms < ?1", [sql_ms(before_ms)]))
    }
}

#[cfg(test)]
mod tests {
    use crate::store::tests::temp_store;

    #[test]
    fn seen_once_until_pruned() {
        let (_d, mut s) = temp_store();
        assert!(s.first_sighting("Ev1", 1000).unwrap());
        assert!(!s.first_sighting("Ev1", 2000).unwrap());
        assert_eq!(s.prune_dedup(1500).unwrap(), 1);
        assert!(s.first_sighting("Ev1", 3000).unwrap());
    }
}
