//! Identifiers: envelope ids, event ids, WebSocket tickets and message timestamps.

use std::time::{SystemTime, UNIX_EPOCH};

/// A random id shaped like a UUID, as Slack's envelope ids are.
pub(crate) fn uuid_like() -> String {
    let n: u128 = rand::random();
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A random event id such as `Ev07ABCDEF12`.
pub(crate) fn event_id() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut n: u128 = rand::random();
    let mut id = String::from("Ev");
    for _ in 0..10 {
        id.push(ALPHABET[(n % ALPHABET.len() as u128) as usize] as char);
        n /= ALPHABET.len() as u128;
    }
    id
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Hands out Slack message timestamps (`1700000000.000100`): wall-clock
/// microseconds, strictly increasing even when asked twice in a microsecond.
#[derive(Debug, Default)]
pub(crate) struct TsClock {
    last_micros: u128,
}

impl TsClock {
    pub(crate) fn next(&mut self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        self.last_micros = now.max(self.last_micros + 1);
        format_ts(self.last_micros)
    }
}

fn format_ts(micros: u128) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// Parses a Slack timestamp into microseconds, for ordering and filtering.
pub(crate) fn parse_ts(ts: &str) -> Option<u128> {
    let (secs, frac) = match ts.split_once('.') {
        Some((s, f)) => (s, f),
        None => (ts, ""),
    };
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u128 = secs.parse().ok()?;
    let frac: u128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    Some(secs * 1_000_000 + frac)
}

/// The stable direct-message channel id of a user: `U123` → `D123`.
pub(crate) fn dm_channel(user: &str) -> String {
    format!("D{}", user.strip_prefix('U').unwrap_or(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_is_increasing_and_parses_back() {
        let mut clock = TsClock::default();
        let a = clock.next();
        let b = clock.next();
        assert!(parse_ts(&b) > parse_ts(&a));
        assert_eq!(parse_ts("1700000000.000100"), Some(1_700_000_000_000_100));
        assert_eq!(parse_ts("1700000000.5"), Some(1_700_000_000_500_000));
        assert_eq!(parse_ts("12"), Some(12_000_000));
        assert_eq!(parse_ts("x.1"), None);
    }

    #[test]
    fn ids_have_slack_shapes() {
        let uuid = uuid_like();
        assert_eq!(uuid.len(), 36);
        assert_eq!(uuid.matches('-').count(), 4);
        let ev = event_id();
        assert!(ev.starts_with("Ev") && ev.len() == 12);
        assert_eq!(dm_channel("U123"), "D123");
    }
}
