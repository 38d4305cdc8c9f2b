//! What the bot counts for Prometheus, and the one function that renders it
//! in the text exposition format (`prometheus-client`).
//!
//! Two kinds of figure. Events that happen in many places (an operator
//! command ending) are counted where they happen, in families of this
//! process-wide [`Metrics`]. Figures the bot already keeps (connections,
//! frame age, envelopes, the outbox) are read at scrape time from a
//! [`Snapshot`], so the ack path pays nothing for them. Labels stay
//! low-cardinality: a command's name and outcome, never a channel, user or
//! event ID.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The labels of an operator command's run.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CommandLabels {
    /// The command's configured name.
    pub(crate) command: String,
    /// `ok`, `failed`, `timeout`, `signalled`, `spawn_failed` or `refused`.
    pub(crate) outcome: &'static str,
}

/// The labels of a Web API call.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CallLabels {
    /// The method (`chat.postMessage`, …).
    pub(crate) method: &'static str,
    /// `ok`, `api_error`, `rate_limited`, `http_error`, `protocol_error` or `unreachable`.
    pub(crate) outcome: &'static str,
}

/// The label of an envelope's kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabel {
    /// `events_api`, `slash_commands` or `interactive`.
    pub(crate) kind: &'static str,
}

/// The label of a fleet job's outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    /// `ok`, `failed`, `timeout`, `signalled`, `spawn_failed`, `refused` or `undelivered`.
    pub(crate) outcome: &'static str,
}

/// The labels of a command's duration: its name only.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CommandName {
    /// The command's configured name.
    pub(crate) command: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new([0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0])
}

/// Ack latency buckets: the target is under 5 ms.
const ACK_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// What is counted where it happens.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Operator command runs, by command and outcome.
    commands: Family<CommandLabels, Counter>,
    /// Operator command durations, by command.
    command_seconds: Family<CommandName, Histogram, fn() -> Histogram>,
    /// Envelopes acknowledged, by kind.
    acked: Family<KindLabel, Counter>,
    /// From reading a batch of frames to its ack flush.
    ack_latency: Histogram,
    /// Redeliveries answered before, and not answered again.
    duplicates: Counter,
    /// Acknowledged envelopes that waited in the inbox: the bot was busy.
    spilled: Counter,
    /// Replies the bot posted.
    replies: Counter,
    /// Notifications the outbox delivered.
    delivered: Counter,
    /// Web API calls, by method and outcome.
    calls: Family<CallLabels, Counter>,
    /// Fleet jobs this host ran, by outcome.
    jobs: Family<OutcomeLabel, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    commands: Family::default(),
    command_seconds: Family::new_with_constructor(duration_histogram),
    acked: Family::default(),
    ack_latency: Histogram::new(ACK_BUCKETS),
    duplicates: Counter::default(),
    spilled: Counter::default(),
    replies: Counter::default(),
    delivered: Counter::default(),
    calls: Family::default(),
    jobs: Family::default(),
});

/// The process's metrics.
pub(crate) fn global() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// Counts one finished (or refused) run of `command`.
    pub(crate) fn command_ran(&self, command: &str, outcome: &'static str, took: Duration) {
        self.commands
            .get_or_create(&CommandLabels {
                command: command.to_string(),
                outcome,
            })
            .inc();
        if outcome != "refused" {
            self.command_seconds
                .get_or_create(&CommandName {
                    command: command.to_string(),
                })
                .observe(took.as_secs_f64());
        }
    }
}

impl Metrics {
    /// Counts an envelope of `kind` acknowledged `took` after its batch was read.
    pub(crate) fn envelope_acked(&self, kind: &'static str, took: Duration) {
        self.acked.get_or_create(&KindLabel { kind }).inc();
        self.ack_latency.observe(took.as_secs_f64());
    }

    /// Counts a redelivery that was not answered again.
    pub(crate) fn duplicate(&self) {
        self.duplicates.inc();
    }

    /// Counts an acknowledged envelope that did not fit the handlers' queue
    /// and waits in the inbox instead.
    pub(crate) fn spilled(&self) {
        self.spilled.inc();
    }

    /// Counts a fleet job this host ran, by how it ended.
    pub(crate) fn job_ran(&self, outcome: &'static str) {
        self.jobs.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Counts a reply posted.
    pub(crate) fn reply_posted(&self) {
        self.replies.inc();
    }

    /// Counts a notification delivered.
    pub(crate) fn notification_delivered(&self) {
        self.delivered.inc();
    }

    /// Counts a Web API call.
    pub(crate) fn web_call(&self, method: &'static str, outcome: &'static str) {
        self.calls
            .get_or_create(&CallLabels { method, outcome })
            .inc();
    }
}

/// The figures read at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Snapshot {
    /// Connections that said hello and have not ended.
    pub(crate) connections: u64,
    /// Of those, how many heard from Slack within the heartbeat timeout.
    pub(crate) fresh: u64,
    /// Age of the newest frame on any connection; none before the first.
    pub(crate) last_frame_age: Option<Duration>,
    /// Envelopes received since the process started.
    pub(crate) envelopes: u64,
    /// Seconds since the process started.
    pub(crate) uptime: Duration,
    /// Whether envelopes are recorded in the durable inbox before their ack.
    pub(crate) durable: bool,
    /// The outbox, when the store is open.
    pub(crate) outbox: Option<OutboxFigures>,
    /// Unclean exits of the bot recorded in the store, by kind of cause.
    pub(crate) restarts: Vec<(String, u64)>,
    /// For a fleet member: slots held, and whether the database answers.
    pub(crate) fleet: Option<(u64, bool)>,
}

/// The outbox at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct OutboxFigures {
    /// Messages waiting to be delivered.
    pub(crate) waiting: u64,
    /// Age of the oldest waiting message.
    pub(crate) oldest: Option<Duration>,
    /// Messages that failed for good.
    pub(crate) failed: u64,
}

fn gauge(registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>, v: f64) {
    let g: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    g.set(v);
    match unit {
        Some(u) => registry.register_with_unit(name, help, u, g),
        None => registry.register(name, help, g),
    }
}

fn count_gauge(registry: &mut Registry, name: &str, help: &str, v: u64) {
    let g: Gauge = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

fn counter(registry: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    registry.register(name, help, c);
}

/// Renders everything in the Prometheus text format.
pub(crate) fn render(s: &Snapshot) -> String {
    let mut r = Registry::with_prefix("slackbotd");
    let info: Family<Vec<(String, String)>, Gauge> = Family::default();
    info.get_or_create(&vec![("version".into(), env!("CARGO_PKG_VERSION").into())])
        .set(1);
    r.register("build_info", "The running version (always 1)", info);
    count_gauge(
        &mut r,
        "connections",
        "Socket Mode connections that said hello and have not ended",
        s.connections,
    );
    count_gauge(
        &mut r,
        "connections_fresh",
        "Connections that heard from Slack within the heartbeat timeout",
        s.fresh,
    );
    gauge(
        &mut r,
        "last_frame_age",
        "Time since the newest frame from Slack on any connection (-1 before the first)",
        Some(Unit::Seconds),
        s.last_frame_age.map_or(-1.0, |d| d.as_secs_f64()),
    );
    gauge(
        &mut r,
        "uptime",
        "Time since this bot process started",
        Some(Unit::Seconds),
        s.uptime.as_secs_f64(),
    );
    count_gauge(
        &mut r,
        "inbox_durable",
        "1 when envelopes are recorded before their ack, 0 when acknowledged first",
        u64::from(s.durable),
    );
    counter(
        &mut r,
        "envelopes_received",
        "Envelopes received from Slack since the process started",
        s.envelopes,
    );
    if let Some(o) = &s.outbox {
        count_gauge(
            &mut r,
            "outbox_waiting",
            "Notifications waiting to be delivered",
            o.waiting,
        );
        gauge(
            &mut r,
            "outbox_oldest_age",
            "Age of the oldest waiting notification (0 when none waits)",
            Some(Unit::Seconds),
            o.oldest.map_or(0.0, |d| d.as_secs_f64()),
        );
        counter(
            &mut r,
            "outbox_failed",
            "Notifications that failed for good",
            o.failed,
        );
    }
    let restarts: Family<Vec<(String, String)>, Counter> = Family::default();
    for (cause, n) in &s.restarts {
        restarts
            .get_or_create(&vec![("cause".to_string(), cause.clone())])
            .inc_by(*n);
    }
    r.register(
        "restarts",
        "Unclean ends of the bot as the store recorded them, by cause (hang, watchdog, signal, exit_code, unknown)",
        restarts,
    );
    if let Some((slots, up)) = s.fleet {
        count_gauge(
            &mut r,
            "fleet_slots_held",
            "Socket Mode connection slots of the fleet this host holds",
            slots,
        );
        count_gauge(
            &mut r,
            "fleet_database_up",
            "1 when the fleet's database answered last time it was asked",
            u64::from(up),
        );
    }
    let m = global();
    if s.fleet.is_some() {
        r.register(
            "fleet_jobs",
            "Jobs of the fleet this host ran, by outcome",
            m.jobs.clone(),
        );
    }
    r.register(
        "envelopes_acked",
        "Envelopes acknowledged to Slack, by kind",
        m.acked.clone(),
    );
    r.register_with_unit(
        "ack_latency",
        "From reading a batch of frames to the flush of its acks",
        Unit::Seconds,
        m.ack_latency.clone(),
    );
    r.register(
        "envelopes_duplicate",
        "Redeliveries already answered, not answered again",
        m.duplicates.clone(),
    );
    r.register(
        "envelopes_spilled",
        "Acknowledged envelopes that waited in the durable inbox because the handlers were busy",
        m.spilled.clone(),
    );
    r.register(
        "replies_posted",
        "Replies the bot posted",
        m.replies.clone(),
    );
    r.register(
        "outbox_delivered",
        "Notifications the outbox delivered since the process started",
        m.delivered.clone(),
    );
    r.register(
        "web_calls",
        "Slack Web API calls, by method and outcome",
        m.calls.clone(),
    );
    r.register(
        "command_runs",
        "Operator command runs, by command and outcome",
        m.commands.clone(),
    );
    r.register_with_unit(
        "command_duration",
        "How long operator commands ran",
        Unit::Seconds,
        m.command_seconds.clone(),
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &r);
    out
}

/// The same figures in Prometheus's classic text format (version 0.0.4),
/// which node_exporter's textfile collector and older scrapers read: a
/// counter's family takes its `_total` name, and the OpenMetrics-only
/// `# UNIT` and `# EOF` lines go.
pub(crate) fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{p}{name}_total {tail}\n"));
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_snapshot_and_the_counted_runs() {
        global().command_ran("unit-test-disk", "ok", Duration::from_millis(30));
        let text = render(&Snapshot {
            connections: 2,
            fresh: 1,
            last_frame_age: Some(Duration::from_millis(1500)),
            envelopes: 7,
            uptime: Duration::from_secs(60),
            durable: true,
            outbox: Some(OutboxFigures {
                waiting: 3,
                oldest: Some(Duration::from_secs(12)),
                failed: 1,
            }),
            restarts: vec![("signal".into(), 2)],
            fleet: Some((2, true)),
        });
        for line in [
            "slackbotd_fleet_slots_held 2",
            "slackbotd_fleet_database_up 1",
            "slackbotd_connections 2",
            "slackbotd_connections_fresh 1",
            "slackbotd_last_frame_age_seconds 1.5",
            "slackbotd_envelopes_received_total 7",
            "slackbotd_outbox_waiting 3",
            "slackbotd_outbox_oldest_age_seconds 12.0",
            "slackbotd_outbox_failed_total 1",
            "slackbotd_restarts_total{cause=\"signal\"} 2",
            "slackbotd_command_runs_total{command=\"unit-test-disk\",outcome=\"ok\"} 1",
            "slackbotd_command_duration_seconds_count{command=\"unit-test-disk\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
        assert!(text.contains("slackbotd_build_info{version="), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        let classic = to_prometheus_text(&text);
        for line in [
            "# TYPE slackbotd_envelopes_received_total counter",
            "slackbotd_envelopes_received_total 7",
            "# TYPE slackbotd_connections gauge",
        ] {
            assert!(classic.lines().any(|l| l == line), "{line:?} in\n{classic}");
        }
        assert!(
            !classic.contains("# EOF") && !classic.contains("# UNIT"),
            "{classic}"
        );
    }
}
