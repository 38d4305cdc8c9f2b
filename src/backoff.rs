//! Exponential backoff with jitter, shared by reconnects, Web API retries
//! and (in daemon mode) worker restarts.

use std::time::Duration;

use rand::RngExt;

/// Delays that double from `initial` to `max`, each one jittered to between
/// half and all of its nominal value, so a fleet of bots never retries in step.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff starting at `initial` and capped at `max`.
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
        }
    }

    /// The next delay (jittered), and doubles the one after it.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let nominal = self.next;
        self.next = (self.next * 2).min(self.max);
        jitter(nominal)
    }

    /// The nominal delay the next call will be based on (no jitter).
    #[cfg(test)]
    fn peek(&self) -> Duration {
        self.next
    }

    /// Back to `initial`, after a success.
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The next delay, but never shorter than what Slack asked for.
    pub(crate) fn next_delay_at_least(&mut self, floor: Option<Duration>) -> Duration {
        let d = self.next_delay();
        match floor {
            Some(f) => d.max(f),
            None => d,
        }
    }
}

/// Between half and all of `d`.
pub(crate) fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    let extra = rand::rng().random_range(0..=half.as_micros().min(u64::MAX as u128) as u64);
    half + Duration::from_micros(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_max_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(700));
        let nominal = [100u64, 200, 400, 700, 700];
        for n in nominal {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(n / 2) && d <= Duration::from_millis(n),
                "{d:?} not within [{}, {n}] ms",
                n / 2
            );
        }
        b.reset();
        assert_eq!(b.peek(), Duration::from_millis(100));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
        assert_eq!(
            b.next_delay_at_least(Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
    }
}
