//! Persistent de-duplication: `event_id`s seen within the retention window
//! survive restarts, so a Slack redelivery after a crash is answered once.
//! Each ID is claimed by the inbox row that saw it first: after a crash that
//! same row may claim it again (it was never answered), another may not.

use rusqlite::OptionalExtension;

use super::{sql_ms, Store, StoreError};

impl Store {
    /// Claims `event_id` for inbox row `row` (none without an inbox); true
    /// the first time it is seen, or when `row` is the one that claimed it.
    pub(crate) fn claim_event(
        &mut self,
        event_id: &str,
        row: Option<i64>,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        self.run(|c| {
            let n = c.execute(
                "INSERT INTO dedup(event_id, seen_ms, inbox_id) VALUES(?1, ?2, ?3) ON CONFLICT(event_id) DO NOTHING",
                rusqlite::params![event_id, sql_ms(now_ms), row],
            )?;
            if n == 1 || row.is_none() {
                return Ok(n == 1);
            }
            let owner: Option<Option<i64>> = c
                .query_row(
                    "SELECT inbox_id FROM dedup WHERE event_id = ?1",
                    [event_id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(owner.flatten() == row)
        })
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
        assert!(s.claim_event("Ev1", None, 1000).unwrap());
        assert!(!s.claim_event("Ev1", None, 2000).unwrap());
        assert_eq!(s.prune_dedup(1500).unwrap(), 1);
        assert!(s.claim_event("Ev1", None, 3000).unwrap());
    }

    #[test]
    fn the_row_that_claimed_an_event_may_claim_it_again() {
        let (_d, mut s) = temp_store();
        assert!(s.claim_event("Ev1", Some(7), 1000).unwrap());
        assert!(
            s.claim_event("Ev1", Some(7), 1500).unwrap(),
            "recovering row 7"
        );
        assert!(
            !s.claim_event("Ev1", Some(8), 2000).unwrap(),
            "a redelivery"
        );
        assert!(!s.claim_event("Ev1", None, 2000).unwrap());
    }
}
