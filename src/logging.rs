//! Where log lines go: stderr in the foreground, or journald natively when
//! stderr is the journal (each field its own journal field; priority
//! prefixes on the stream if the journal socket cannot be opened), a quiet
//! stderr for the console.
//!
//! The level comes from `$SLACKBOTD_LOG` (e.g. `debug`, or
//! `info,slackbotd::slack=debug`), default `info`.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::syslog::{Severity, Syslog};

fn filter(default: &str) -> Targets {
    let spec = std::env::var("SLACKBOTD_LOG").unwrap_or_else(|_| default.to_string());
    spec.parse::<Targets>().unwrap_or_else(|e| {
        eprintln!("slackbotd: ignoring SLACKBOTD_LOG={spec:?}: {e}");
        default.parse().expect("default filter parses")
    })
}

/// `<N>message fields`, the sd-daemon(3) prefix journald turns into a priority.
struct JournalFormat;

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(w, "<{}>", Severity::from(event.metadata().level()).number())?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// True when stderr is connected to the journal (`$JOURNAL_STREAM` matches it).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(js) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = js.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// Logging for the foreground modes.
pub(crate) fn init_stderr() {
    let registry = tracing_subscriber::registry().with(filter("info"));
    if stderr_is_journal() {
        // Natively, so fields (COMMAND, USER, CONN, …) can be queried:
        // `journalctl -u slackbotd COMMAND=disk`. The stream is the fallback.
        if let Ok(j) = tracing_journald::layer() {
            let j = j
                .with_field_prefix(None)
                .with_syslog_identifier("slackbotd".to_string());
            let _ = registry.with(j).try_init();
            return;
        }
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .event_format(JournalFormat);
        let _ = registry.with(layer).try_init();
    } else {
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false);
        let _ = registry.with(layer).try_init();
    }
}

/// Logging for interactive commands: warnings and errors only, plain.
pub(crate) fn init_quiet() {
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(filter("warn"))
        .with(layer)
        .try_init();
}

/// Logging to the syslog socket and facility that `[daemon]` names.
pub(crate) fn init_syslog_for(d: &crate::config::DaemonConfig) {
    init_syslog(Syslog::new(
        &d.syslog_socket,
        d.syslog_facility,
        "slackbotd",
    ));
}

/// Logging for daemon mode: every line to syslog, nothing on a terminal.
fn init_syslog(syslog: Syslog) {
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(syslog)
        .with_ansi(false)
        .without_time()
        .with_level(false)
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(filter("info"))
        .with(layer)
        .try_init();
}
