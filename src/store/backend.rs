//! What the bot asks of its store, whichever holds it: SQLite on one host
//! ([`Store`]), or PostgreSQL shared by a fleet (`fleet::FleetStore`, which
//! keeps this host's own history in SQLite beside it). The bot reaches it
//! through [`SharedStore`](super::SharedStore) and never learns which.
//!
//! The methods are grouped by the job they serve: de-duplication, the
//! durable inbox, the outbox, and the history of this host's runs and exits.

use super::dedup::Claim;
use super::history::Exit;
use super::inbox::Pending as InboxRow;
use super::outbox::{NewMessage, Pending, QueueStats};
use super::{Store, StoreError};

/// The store's operations.
pub(crate) trait Backend: Send {
    /// Claims `event_id` for inbox row `row` (see [`Claim`]).
    fn claim_event(
        &mut self,
        event_id: &str,
        row: Option<i64>,
        now_ms: u64,
    ) -> Result<Claim, StoreError>;
    /// Forgets event IDs seen before `before_ms`; returns how many.
    fn prune_dedup(&mut self, before_ms: u64) -> Result<usize, StoreError>;

    /// Up to `limit` unanswered envelopes with rows `from..=to`, oldest first.
    fn inbox_between(
        &mut self,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<InboxRow>, StoreError>;
    /// When the oldest envelope with a row up to `through` arrived.
    fn inbox_oldest_received(&mut self, through: i64) -> Result<Option<u64>, StoreError>;
    /// Row `id` starts an operator command: after a crash it is not run again.
    fn inbox_mark_running(&mut self, id: i64, command: &str) -> Result<(), StoreError>;
    /// The newest row (0 when empty).
    fn inbox_last_row(&mut self) -> Result<i64, StoreError>;

    /// Queues messages; returns their IDs.
    fn enqueue(&mut self, msgs: &[NewMessage], now_ms: u64) -> Result<Vec<i64>, StoreError>;
    /// The oldest deliverable message of each channel.
    fn due_heads(&mut self, now_ms: u64) -> Result<Vec<Pending>, StoreError>;
    /// When the next waiting message becomes due.
    fn next_due_ms(&mut self) -> Result<Option<u64>, StoreError>;
    /// A post of message `id` begins.
    fn mark_sending(&mut self, id: i64, now_ms: u64) -> Result<(), StoreError>;
    /// Message `id` reached Slack as `ts`.
    fn mark_sent(&mut self, id: i64, ts: &str, now_ms: u64) -> Result<(), StoreError>;
    /// Message `id` is tried again at `at_ms`.
    fn reschedule(
        &mut self,
        id: i64,
        at_ms: u64,
        error: &str,
        reached_slack: bool,
    ) -> Result<(), StoreError>;
    /// Message `id` failed for good.
    fn mark_failed(&mut self, id: i64, error: &str, now_ms: u64) -> Result<(), StoreError>;
    /// The outbox's figures.
    fn queue_stats(&mut self) -> Result<QueueStats, StoreError>;
    /// Forgets delivered and failed messages older than `before_ms`.
    fn prune_outbox(&mut self, before_ms: u64) -> Result<usize, StoreError>;

    /// A run of the bot begins; returns its ID.
    fn begin_run(&mut self, pid: u32, mode: &str, now_ms: u64) -> Result<i64, StoreError>;
    /// Run `run_id` ended.
    fn end_run(&mut self, run_id: i64, clean: bool, now_ms: u64) -> Result<(), StoreError>;
    /// Unclean exits not announced yet.
    fn unannounced_exits(&mut self) -> Result<Vec<Exit>, StoreError>;
    /// Exits up to `last_id` were announced.
    fn mark_announced(&mut self, last_id: i64) -> Result<(), StoreError>;
    /// Unclean exits since `since_ms`.
    fn unclean_exits_since(&mut self, since_ms: u64) -> Result<u64, StoreError>;
    /// Unclean exits by kind of cause.
    fn unclean_exits_by_cause(&mut self) -> Result<Vec<(String, u64)>, StoreError>;
    /// The last unclean exit.
    fn last_unclean_exit(&mut self) -> Result<Option<Exit>, StoreError>;
    /// A value of the store's own key-value table.
    fn meta(&mut self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets a value of the store's own key-value table.
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError>;

    /// Periodic upkeep, every few seconds (a fleet store moves what waited
    /// for the database); nothing for a single host's store.
    fn tick(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Forwards each operation to the inherent method of the same name.
macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(fn $name(&mut self, $($arg: $ty),*) -> Result<$ret, StoreError> {
            Store::$name(self, $($arg),*)
        })*
    };
}

impl Backend for Store {
    forward! {
        claim_event(event_id: &str, row: Option<i64>, now_ms: u64) -> Claim;
        prune_dedup(before_ms: u64) -> usize;
        enqueue(msgs: &[NewMessage], now_ms: u64) -> Vec<i64>;
        due_heads(now_ms: u64) -> Vec<Pending>;
        next_due_ms() -> Option<u64>;
        mark_sending(id: i64, now_ms: u64) -> ();
        mark_sent(id: i64, ts: &str, now_ms: u64) -> ();
        reschedule(id: i64, at_ms: u64, error: &str, reached_slack: bool) -> ();
        mark_failed(id: i64, error: &str, now_ms: u64) -> ();
        queue_stats() -> QueueStats;
        prune_outbox(before_ms: u64) -> usize;
        begin_run(pid: u32, mode: &str, now_ms: u64) -> i64;
        end_run(run_id: i64, clean: bool, now_ms: u64) -> ();
        unannounced_exits() -> Vec<Exit>;
        mark_announced(last_id: i64) -> ();
        unclean_exits_since(since_ms: u64) -> u64;
        unclean_exits_by_cause() -> Vec<(String, u64)>;
        last_unclean_exit() -> Option<Exit>;
        meta(key: &str) -> Option<String>;
        set_meta(key: &str, value: &str) -> ();
    }

    fn inbox_between(
        &mut self,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<InboxRow>, StoreError> {
        self.inbox()?.between(from, to, limit)
    }
    fn inbox_oldest_received(&mut self, through: i64) -> Result<Option<u64>, StoreError> {
        self.inbox()?.oldest_received(through)
    }
    fn inbox_mark_running(&mut self, id: i64, command: &str) -> Result<(), StoreError> {
        self.inbox()?.mark_running(id, command)
    }
    fn inbox_last_row(&mut self) -> Result<i64, StoreError> {
        self.inbox()?.last_row()
    }
}
