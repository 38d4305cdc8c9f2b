//! Giving memory back after a burst. glibc's allocator keeps the pages a
//! burst of events dirtied in its per-thread arenas, so a bot that answered
//! 1,000 pings at once stays megabytes bigger for the rest of its life. Once
//! the bot has been quiet for [`QUIET`], [`Trimmer`] asks glibc once
//! (`malloc_trim(0)`, which walks every arena) to return free pages to the
//! kernel. The decision is a pure function of the event count and the
//! clock; the call itself is cheap (well under a millisecond at this size)
//! and runs on the serve loop's tick, never on the ack path.

use std::time::{Duration, Instant};

/// How long the bot must have been quiet before its memory is trimmed.
pub(crate) const QUIET: Duration = Duration::from_secs(10);

/// Remembers the last activity and whether it was trimmed after.
#[derive(Debug, Default)]
pub(crate) struct Trimmer {
    /// The event count seen at the last observation.
    events: u64,
    /// When the count last moved, while no trim has followed it.
    active_at: Option<Instant>,
}

impl Trimmer {
    /// Records the event count at `now`; true when memory should be trimmed
    /// now: there was activity, and the bot has been quiet since for
    /// [`QUIET`]. True at most once per quiet spell.
    pub(crate) fn due(&mut self, events: u64, now: Instant) -> bool {
        if events != self.events {
            self.events = events;
            self.active_at = Some(now);
            return false;
        }
        match self.active_at {
            Some(at) if now.saturating_duration_since(at) >= QUIET => {
                self.active_at = None;
                true
            }
            _ => false,
        }
    }
}

/// Returns the allocator's free pages to the kernel.
pub(crate) fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and is thread-safe in glibc.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_after_a_quiet_spell() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut t = Trimmer::default();
        // (events, at second, due?)
        let table = [
            (0, 0, false),  // nothing happened yet
            (0, 60, false), // still nothing: an idle bot is never trimmed
            (5, 61, false), // a burst starts
            (9, 62, false),
            (9, 71, false), // quiet for 9 s
            (9, 72, true),  // quiet for 10 s: trim
            (9, 90, false), // once per quiet spell
            (10, 91, false),
            (10, 101, true),
        ];
        for (events, at, want) in table {
            assert_eq!(t.due(events, s(at)), want, "events {events} at {at}s");
        }
    }
}
