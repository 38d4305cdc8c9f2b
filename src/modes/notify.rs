//! `slackbotd notify`: writes a message durably into the outbox (committed,
//! fsynced), then wakes the running bot. It succeeds when the bot is down,
//! too: the message goes out once the bot is back. A full disk or a broken
//! store fails loudly with a non-zero exit, and nothing already accepted is
//! touched.
//!
//! `some-cron-job 2>&1 | slackbotd notify --channel C --stdin` works: long
//! input is split on line boundaries into several messages, in order.

use std::io::Read;

use crate::cli::ConfigSource;
use crate::clock::now_ms;
use crate::config::Config;
use crate::exit::ExitCode;
use crate::modes::Failure;
use crate::store::outbox::NewMessage;
use crate::store::{Durability, Store};

/// The longest text put in one message; Slack truncates at 40,000 and
/// advises staying under 4,000.
pub(crate) const CHUNK: usize = 3_500;
/// The most input `--stdin` accepts.
pub(crate) const MAX_INPUT: usize = 1 << 20;

/// What to send.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) channel: String,
    pub(crate) thread: Option<String>,
    pub(crate) text: Option<String>,
    pub(crate) stdin: bool,
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure::new(ExitCode::USAGE, msg)
}

fn valid_channel(c: &str) -> bool {
    !c.is_empty() && c.len() <= 80 && !c.chars().any(|ch| ch.is_whitespace() || ch.is_control())
}

fn valid_ts(ts: &str) -> bool {
    let mut parts = ts.split('.');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None)
        if !a.is_empty() && !b.is_empty() && a.chars().all(|c| c.is_ascii_digit()) && b.chars().all(|c| c.is_ascii_digit()))
}

/// Queues the message; silent on success.
pub(crate) fn notify(src: &ConfigSource, req: &Request) -> Result<(), Failure> {
    if !valid_channel(&req.channel) {
        return Err(usage(format!(
            "--channel {:?} is not a channel ID (like C0123ABCD) or name",
            req.channel
        )));
    }
    if let Some(t) = &req.thread {
        if !valid_ts(t) {
            return Err(usage(format!(
                "--thread {t:?} is not a message timestamp (like 1700000000.123456)"
            )));
        }
    }
    let text = if req.stdin {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(MAX_INPUT as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| {
                Failure::new(ExitCode::IOERR, format!("cannot read standard input: {e}"))
            })?;
        if buf.len() > MAX_INPUT {
            return Err(Failure::new(
                ExitCode::DATAERR,
                format!(
                    "standard input is larger than {} KiB; nothing was queued",
                    MAX_INPUT / 1024
                ),
            ));
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        if text.trim().is_empty() {
            // An empty pipe (a cron job with nothing to say) sends nothing.
            return Ok(());
        }
        text
    } else {
        match &req.text {
            Some(t) if !t.trim().is_empty() => t.clone(),
            _ => return Err(usage("the message is empty: give TEXT, or --stdin")),
        }
    };
    let config = Config::load(&src.path)?;
    let parts = crate::text::chunks(&text, CHUNK);
    let total = parts.len();
    let msgs: Vec<NewMessage> = parts
        .into_iter()
        .enumerate()
        .map(|(i, t)| NewMessage {
            channel: req.channel.clone(),
            thread_ts: req.thread.clone(),
            text: if total > 1 {
                format!("{t}\n_({}/{total})_", i + 1)
            } else {
                t
            },
        })
        .collect();
    let store = Store::open(&config.daemon.state_dir, Durability::Full).map_err(|e| {
        Failure::new(
            crate::exit::HasExitCode::exit_code(&e),
            format!("not queued: {e}"),
        )
    })?;
    // A fleet member queues into the fleet's outbox (or, while its database
    // is away, here, to be moved there by the bot later).
    let mut store: Box<dyn crate::store::Backend> = match &config.fleet {
        Some(f) => {
            let db = crate::fleet::Db::new(f, config.base_dir.as_deref())?;
            let state =
                std::sync::Arc::new(crate::fleet::FleetState::new(crate::fleet::host_name(f)));
            Box::new(crate::fleet::store::FleetStore::new(
                db,
                state.host.clone(),
                store,
                state,
            ))
        }
        None => Box::new(store),
    };
    store.enqueue(&msgs, now_ms()).map_err(|e| {
        Failure::new(
            crate::exit::HasExitCode::exit_code(&e),
            format!("not queued: {e}"),
        )
    })?;
    drop(store);
    crate::wake::poke(&config.daemon.pidfile);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_and_threads_are_checked() {
        assert!(valid_channel("C0123") && valid_channel("#ops"));
        assert!(!valid_channel("") && !valid_channel("a b"));
        assert!(valid_ts("1700000000.000100"));
        assert!(!valid_ts("17000") && !valid_ts("1.2.3") && !valid_ts("a.b"));
    }
}
