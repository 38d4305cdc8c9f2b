//! How the fleet's Socket Mode connections are spread: a host holds a
//! connection only while it holds a slot's lease, at most `[fleet].connections`
//! slots exist, and they go one per host before any host takes a second.
//!
//! The rule is a pure function of what this host holds and what the other
//! live hosts hold, so its table test reads like the rule; `agent` carries
//! out its answer, one step per tick, so the hosts take turns.

/// What to do about slots this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Take one free slot.
    Take,
    /// Give one slot back: another live host holds two fewer.
    Release,
    /// Keep what is held.
    Keep,
}

/// The step for a host holding `mine`, when the other live hosts hold
/// `others` (one entry per host) and `free` slots are free or expired.
pub(crate) fn step(mine: usize, others: &[usize], free: usize) -> Step {
    let fewest_other = others.iter().copied().min();
    match fewest_other {
        // Someone holds two fewer than this host: let them have one.
        Some(f) if mine > f + 1 => Step::Release,
        // No live host holds fewer than this host: it may take another.
        _ if free > 0 && fewest_other.is_none_or(|f| mine <= f) => Step::Take,
        _ => Step::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_host_before_any_host_takes_a_second() {
        use Step::*;
        let rows: &[(usize, &[usize], usize, Step)] = &[
            // alone: take everything, one per tick
            (0, &[], 4, Take),
            (3, &[], 1, Take),
            (4, &[], 0, Keep),
            // two hosts share four slots two and two
            (0, &[1], 3, Take),
            (1, &[1], 2, Take),
            (2, &[1], 1, Keep),
            (2, &[2], 0, Keep),
            // twelve hosts, four slots: a holder never takes a second
            (1, &[1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0], 0, Keep),
            (0, &[1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], 0, Keep),
            // a holder died: its slot expired, a host with none takes it
            (0, &[1, 1, 0, 0], 1, Take),
            (1, &[1, 1, 0, 0], 1, Keep),
            // a new host joined a two-host fleet holding 2 + 2 of 4
            (2, &[2, 0], 0, Release),
            (0, &[2, 2], 0, Keep),
            (0, &[2, 1], 1, Take),
        ];
        for (i, (mine, others, free, want)) in rows.iter().enumerate() {
            assert_eq!(step(*mine, others, *free), *want, "row {i}");
        }
    }
}
