//! Persistent de-duplication: `event_id`s seen within the retention window
//! survive restarts, so a Slack redelivery after a crash is answered once.
//! Each ID is claimed by the inbox row that saw it first: after a crash that
//! same row may claim it again (it was never answered), another may not.

use rusqlite::OptionalExtension;

use super::{sql_ms, Store, StoreError};

/// What claiming an event found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Seen for the first time: nothing has been done for it yet.
    New,
    /// Claimed before by this same inbox row: a process that died while
    /// handling it. Its reply may have gone out already.
    Again,
    /// Claimed by another delivery: a redelivery, not to be answered.
    Taken,
}

impl Store {
    /// Claims `event_id` for inbox row `row` (none without an inbox).
    pub(crate) fn claim_event(
        &mut self,
        event_id: &str,
        row: Option<i64>,
        now_ms: u64,
    ) -> Result<Claim, StoreError> {
        self.run(|c| {
            let n = c.execute(
                "INSERT INTO dedup(event_id, seen_ms, inbox_id) VALUES(?1, ?2, ?3) ON CONFLICT(event_id) DO NOTHING",
                rusqlite::params![event_id, sql_ms(now_ms), row],
            )?;
            if n == 1 {
                return Ok(Claim::New);
            }
            if row.is_none() {
                return Ok(Claim::Taken);
            }
            let owner: Option<Option<i64>> = c
                .query_row(
                    "SELECT inbox_id FROM dedup WHERE event_id = ?1",
                    [event_id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(if owner.flatten() == row {
                Claim::Again
            } else {
                Claim::Taken
            })
        })
    }

    /// Forgets event IDs seen before `before_ms`; returns how many.
    pub(crate) fn prune_dedup(&mut self, before_ms: u64) -> Result<usize, StoreError> {
        self.run(|c| c.execute("DELETE FROM dedup WHERE seen_ms < ?1", [sql_ms(before_ms)]))
    }
}

#[cfg(test)]
mod tests {
    use super::Claim;
    use crate::store::tests::temp_store;

    #[test]
    fn seen_once_until_pruned() {
        let (_d, mut s) = temp_store();
        assert_eq!(s.claim_event("Ev1", None, 1000).unwrap(), Claim::New);
        assert_eq!(s.claim_event("Ev1", None, 2000).unwrap(), Claim::Taken);
        assert_eq!(s.prune_dedup(1500).unwrap(), 1);
        assert_eq!(s.claim_event("Ev1", None, 3000).unwrap(), Claim::New);
    }

    #[test]
    fn the_row_that_claimed_an_event_may_claim_it_again() {
        let (_d, mut s) = temp_store();
        assert_eq!(s.claim_event("Ev1", Some(7), 1000).unwrap(), Claim::New);
        assert_eq!(
            s.claim_event("Ev1", Some(7), 1500).unwrap(),
            Claim::Again,
            "recovering row 7"
        );
        assert_eq!(
            s.claim_event("Ev1", Some(8), 2000).unwrap(),
            Claim::Taken,
            "a redelivery"
        );
        assert_eq!(s.claim_event("Ev1", None, 2000).unwrap(), Claim::Taken);
    }
}
