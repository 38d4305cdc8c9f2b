//! The supervisor's decisions, as pure functions: what a worker's end means
//! and what follows it. The event loop in `supervisor` gathers the facts and
//! carries the decision out; nothing here touches a process or a file.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::heartbeat::Hang;
use crate::backoff::Backoff;
use crate::exit::ExitCode;

/// A worker that was ready for at least this long had a healthy run: the
/// restart after it is immediate and the backoff starts over.
pub(crate) const HEALTHY_RUN: Duration = Duration::from_secs(1);

/// How one worker's life ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkerEnd {
    /// Its exit code, if it exited.
    pub(crate) code: Option<i32>,
    /// The signal that ended it, if one did.
    pub(crate) signal: Option<i32>,
    /// How long it lived.
    pub(crate) lifetime: Duration,
    /// How long it had been ready (connected), if it ever was.
    pub(crate) ready_for: Option<Duration>,
    /// Why the supervisor ended it, if it judged it hung.
    pub(crate) hang: Option<Hang>,
    /// The last line it wrote on stderr, if any.
    pub(crate) last_words: String,
}

impl WorkerEnd {
    /// The end in words: "exit code 3", "killed by signal 9 (SIGKILL)",
    /// "hung (…); ended by …".
    pub(crate) fn cause(&self) -> String {
        let how = match (self.code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(sig)) => format!(
                "killed by signal {sig} ({})",
                Signal::try_from(sig).map_or("unknown", |s| s.as_str())
            ),
            _ => "an unknown end".to_string(),
        };
        match &self.hang {
            Some(why) => format!("hung ({why}); ended by {how}"),
            None => how,
        }
    }
}

/// What follows a worker's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Start a new worker after this delay.
    Restart(Duration),
    /// Stop supervising and exit with this code, for this reason.
    GiveUp {
        /// The supervisor's exit code.
        code: ExitCode,
        /// Why, in words, for the starter and the log.
        why: String,
    },
}

/// Decides what follows `end`. `starter_waiting` is true while the command
/// that started the supervisor still waits for the first hello: a first
/// worker that dies before it then fails the start instead of looping.
pub(crate) fn after_exit(end: &WorkerEnd, starter_waiting: bool, backoff: &mut Backoff) -> Next {
    let words = end.last_words.trim_start_matches("slackbotd: ");
    if end.code == Some(i32::from(ExitCode::CONFIG.0)) {
        return Next::GiveUp {
            code: ExitCode::CONFIG,
            why: if words.is_empty() {
                "the worker exited 78 (configuration or credentials)".to_string()
            } else {
                words.to_string()
            },
        };
    }
    if starter_waiting && end.ready_for.is_none() {
        let code = end
            .code
            .and_then(|c| u8::try_from(c).ok())
            .filter(|c| (64..=78).contains(c))
            .map_or(ExitCode::SOFTWARE, ExitCode);
        return Next::GiveUp {
            code,
            why: if words.is_empty() {
                format!(
                    "the worker ended ({}) before connecting to Slack",
                    end.cause()
                )
            } else {
                words.to_string()
            },
        };
    }
    if end.ready_for.is_some_and(|d| d >= HEALTHY_RUN) {
        backoff.reset();
        Next::Restart(Duration::ZERO)
    } else {
        Next::Restart(backoff.next_delay())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(code: Option<i32>, signal: Option<i32>, ready_ms: Option<u64>) -> WorkerEnd {
        WorkerEnd {
            code,
            signal,
            lifetime: Duration::from_secs(5),
            ready_for: ready_ms.map(Duration::from_millis),
            hang: None,
            last_words: String::new(),
        }
    }

    #[test]
    fn what_follows_a_workers_end_row_by_row() {
        let ms = Duration::from_millis;
        let fresh = || Backoff::new(ms(100), ms(1000));
        let restart_now = Next::Restart(Duration::ZERO);
        // (the end, the starter still waiting, what follows)
        let rows: Vec<(WorkerEnd, bool, Option<Next>)> = vec![
            // killed after a healthy run: back at once
            (end(None, Some(9), Some(5000)), false, Some(restart_now.clone())),
            // exit 78: never restarted, whoever waits
            (
                end(Some(78), None, Some(5000)),
                false,
                Some(Next::GiveUp {
                    code: ExitCode::CONFIG,
                    why: "the worker exited 78 (configuration or credentials)".into(),
                }),
            ),
            // the first worker dies before hello while the starter waits: the start fails with its code
            (
                end(Some(69), None, None),
                true,
                Some(Next::GiveUp {
                    code: ExitCode::UNAVAILABLE,
                    why: "the worker ended (exit code 69) before connecting to Slack".into(),
                }),
            ),
            // …with a code outside sysexits: 70
            (
                end(None, Some(11), None),
                true,
                Some(Next::GiveUp {
                    code: ExitCode::SOFTWARE,
                    why: "the worker ended (killed by signal 11 (SIGSEGV)) before connecting to Slack"
                        .into(),
                }),
            ),
            // dying young, nobody waiting: backed off (checked below)
            (end(Some(1), None, Some(10)), false, None),
            (end(Some(1), None, None), false, None),
        ];
        for (e, waiting, want) in rows {
            let got = after_exit(&e, waiting, &mut fresh());
            match want {
                Some(w) => assert_eq!(got, w, "{e:?}"),
                None => assert!(
                    matches!(got, Next::Restart(d) if d >= ms(50) && d <= ms(100)),
                    "{e:?}: {got:?}"
                ),
            }
        }
        // Dying young again and again: the delays grow.
        let mut b = fresh();
        let young = end(Some(1), None, None);
        let first = after_exit(&young, false, &mut b);
        for _ in 0..3 {
            after_exit(&young, false, &mut b);
        }
        let Next::Restart(later) = after_exit(&young, false, &mut b) else {
            panic!()
        };
        let Next::Restart(first) = first else {
            panic!()
        };
        assert!(later > first, "{first:?} then {later:?}");
    }

    #[test]
    fn last_words_explain_a_failed_start() {
        let mut e = end(Some(78), None, None);
        e.last_words = "slackbotd: Slack refused the bot token: invalid_auth".into();
        assert_eq!(
            after_exit(&e, true, &mut Backoff::new(Duration::ZERO, Duration::ZERO)),
            Next::GiveUp {
                code: ExitCode::CONFIG,
                why: "Slack refused the bot token: invalid_auth".into()
            }
        );
        e.hang = Some(Hang::Deaf(Duration::from_secs(95)));
        assert_eq!(
            e.cause(),
            "hung (no frame from Slack for 95s); ended by exit code 78"
        );
    }
}
