//! The fault-injection table: which Web API calls fail, and how.
//!
//! Counted rules apply to the next `times` calls of a method (`*` matches any
//! method) and are used up in the order they were added.

use std::collections::HashMap;
use std::time::Duration;

/// A failure that replaces the HTTP answer itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TransportFault {
    /// HTTP 500.
    ServerError,
    /// HTTP 429 with `Retry-After` in seconds.
    RateLimited(u64),
}

#[derive(Debug, Clone)]
struct Rule<T> {
    method: String,
    remaining: u32,
    what: T,
}

/// Every fault currently armed.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    transport: Vec<Rule<TransportFault>>,
    failures: Vec<Rule<String>>,
    token_error: Option<String>,
    channel_errors: HashMap<String, String>,
    delays: HashMap<String, Duration>,
}

fn take<T: Clone>(rules: &mut Vec<Rule<T>>, method: &str) -> Option<T> {
    let pos = rules
        .iter()
        .position(|r| r.remaining > 0 && (r.method == "*" || r.method == method))?;
    let rule = &mut rules[pos];
    rule.remaining -= 1;
    let what = rule.what.clone();
    if rule.remaining == 0 {
        rules.remove(pos);
    }
    Some(what)
}

impl Faults {
    pub(crate) fn add_rate_limit(&mut self, method: &str, times: u32, retry_after_secs: u64) {
        self.transport.push(Rule {
            method: method.to_string(),
            remaining: times,
            what: TransportFault::RateLimited(retry_after_secs),
        });
    }

    pub(crate) fn add_server_error(&mut self, method: &str, times: u32) {
        self.transport.push(Rule {
            method: method.to_string(),
            remaining: times,
            what: TransportFault::ServerError,
        });
    }

    pub(crate) fn add_failure(&mut self, method: &str, error: &str, times: u32) {
        self.failures.push(Rule {
            method: method.to_string(),
            remaining: times,
            what: error.to_string(),
        });
    }

    pub(crate) fn set_token_error(&mut self, error: Option<&str>) {
        self.token_error = error.map(str::to_string);
    }

    pub(crate) fn set_channel_error(&mut self, channel: &str, error: Option<&str>) {
        match error {
            Some(e) => {
                self.channel_errors
                    .insert(channel.to_string(), e.to_string());
            }
            None => {
                self.channel_errors.remove(channel);
            }
        }
    }

    /// Uses up the next HTTP-level fault for `method`, if one is armed.
    pub(crate) fn take_transport(&mut self, method: &str) -> Option<TransportFault> {
        take(&mut self.transport, method)
    }

    /// Uses up the next `ok:false` failure for `method`, if one is armed.
    pub(crate) fn take_failure(&mut self, method: &str) -> Option<String> {
        take(&mut self.failures, method)
    }

    pub(crate) fn token_error(&self) -> Option<&str> {
        self.token_error.as_deref()
    }

    pub(crate) fn channel_error(&self, channel: &str) -> Option<&str> {
        self.channel_errors.get(channel).map(String::as_str)
    }

    /// Answers to `method` (`*` for any) come `delay` late: the call has
    /// taken effect, its answer is slow (a crash in between loses it).
    pub(crate) fn set_delay(&mut self, method: &str, delay: Option<Duration>) {
        match delay {
            Some(d) => {
                self.delays.insert(method.to_string(), d);
            }
            None => {
                self.delays.remove(method);
            }
        }
    }

    /// The answer delay for `method`, if one is set.
    pub(crate) fn delay(&self, method: &str) -> Option<Duration> {
        self.delays
            .get(method)
            .or_else(|| self.delays.get("*"))
            .copied()
    }

    /// Disarms everything.
    pub(crate) fn clear(&mut self) {
        *self = Faults::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_rules_run_out() {
        let mut f = Faults::default();
        f.add_rate_limit("chat.postMessage", 2, 7);
        assert_eq!(f.take_transport("auth.test"), None);
        assert_eq!(
            f.take_transport("chat.postMessage"),
            Some(TransportFault::RateLimited(7))
        );
        assert!(f.take_transport("chat.postMessage").is_some());
        assert_eq!(f.take_transport("chat.postMessage"), None);
    }

    #[test]
    fn star_matches_any_method() {
        let mut f = Faults::default();
        f.add_failure("*", "fatal_error", 1);
        assert_eq!(f.take_failure("auth.test").as_deref(), Some("fatal_error"));
        assert_eq!(f.take_failure("auth.test"), None);
    }
}
