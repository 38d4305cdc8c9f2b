//! `slackbotd-bench`: slackbotd measured side by side with the bot teams run
//! today (a Python Slack Bolt app on Socket Mode), both against the same
//! local fake Slack, in one run. Prints a table and, unless `--quick`, writes
//! it into BENCHMARKS.md between the markers, keeping the rest of the file.
//! `--quick` only keeps the benchmark from rotting: tiny sample counts, no
//! file written, and no timing judged.

mod fleet;
mod measure;
mod peers;
mod report;
mod stats;
mod systemd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use peers::{Kind, Programs};
use report::{Ratio, Row};
use stats::summarize;

const BEGIN: &str = "<!-- bench:begin (written by scripts/bench; edit outside these markers) -->";
const END: &str = "<!-- bench:end -->";

/// Measure slackbotd next to a Python Slack Bolt bot.
#[derive(Debug, Parser)]
#[command(name = "slackbotd-bench")]
struct Cli {
    /// The slackbotd binary (a release build).
    #[arg(long, default_value = "target/release/slackbotd")]
    bot: PathBuf,
    /// The Python with slack_bolt installed; without it only slackbotd is measured.
    #[arg(long)]
    python: Option<PathBuf>,
    /// The Bolt peer app.
    #[arg(long, default_value = "bench/peer_bolt.py")]
    peer: PathBuf,
    /// Tiny sample counts, nothing written, nothing judged (for CI).
    #[arg(long)]
    quick: bool,
    /// Where the table goes.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Measure one figure only (start, restart, memory, burst, ensure, systemd); nothing is written.
    #[arg(long, value_name = "FIGURE")]
    only: Option<String>,
    /// Also measure this unit file under systemd, next to the shipped one
    /// (for trying hardening settings); repeatable.
    #[arg(long, value_name = "FILE")]
    unit: Vec<PathBuf>,
}

struct Counts {
    settle: std::time::Duration,
    unit_starts: usize,
    starts: usize,
    kills: usize,
    pings: usize,
    events: usize,
    ensures: usize,
}

pub(crate) fn progress(what: &str) {
    eprintln!("bench: {what}");
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|k| format!("{:.0} GiB", k / 1024.0 / 1024.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let run = |cmd: &str, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .output()
            .ok()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout).trim().to_string()
                    + String::from_utf8_lossy(&o.stderr).trim()
            })
            .unwrap_or_default()
    };
    format!(
        "{cpu}, {cores} cores, {mem} RAM, Linux {}; {}; {}",
        kernel.trim(),
        run("rustc", "--version"),
        run("python3", "--version")
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !peers::executable(&cli.bot) {
        eprintln!(
            "slackbotd-bench: {} is not an executable; build it first (cargo build --release)",
            cli.bot.display()
        );
        return ExitCode::from(66);
    }
    let python = cli.python.clone().filter(|p| peers::executable(p));
    if python.is_none() {
        eprintln!("slackbotd-bench: no Python with slack_bolt given (--python); measuring slackbotd alone");
    }
    let programs = Programs {
        bot: cli.bot.clone(),
        python,
        peer: cli.peer.clone(),
    };
    let n = if cli.quick {
        Counts {
            settle: std::time::Duration::from_secs(2),
            unit_starts: 2,
            starts: 2,
            kills: 3,
            pings: 50,
            events: 200,
            ensures: 5,
        }
    } else {
        Counts {
            settle: std::time::Duration::from_secs(60),
            unit_starts: 10,
            starts: 15,
            kills: 20,
            pings: 1000,
            events: 2000,
            ensures: 50,
        }
    };
    let kinds: Vec<Kind> = if programs.python.is_some() {
        vec![Kind::Slackbotd, Kind::Bolt]
    } else {
        vec![Kind::Slackbotd]
    };
    let mut failures = Vec::new();
    let mut note = |kind: Kind, what: &str, e: String| {
        eprintln!("bench: {} {what}: FAILED: {e}", kind.name());
        failures.push(format!("{} {what}: {e}", kind.name()));
    };

    let wanted = |f: &str| cli.only.as_deref().is_none_or(|o| o == f);
    let mut start = [None, None];
    let mut restart = [None, None];
    let mut memory = [None, None];
    let mut burst = [None, None];
    for (i, &k) in kinds.iter().enumerate() {
        if wanted("start") {
            progress(&format!("{}: start to ready ({} runs)", k.name(), n.starts));
            match measure::start(k, &programs, n.starts) {
                Ok(v) => start[i] = Some(v),
                Err(e) => note(k, "start", e),
            }
        }
        if wanted("restart") {
            progress(&format!(
                "{}: restart after kill -9 ({} kills)",
                k.name(),
                n.kills
            ));
            match measure::restart(k, &programs, n.kills) {
                Ok(v) => restart[i] = Some(v),
                Err(e) => note(k, "restart", e),
            }
        }
        if wanted("memory") {
            progress(&format!(
                "{}: memory, idle, after {} pings pushed at once, and a quiet while later",
                k.name(),
                n.pings
            ));
            match measure::memory(k, &programs, n.pings, n.settle) {
                Ok(v) => memory[i] = Some(v),
                Err(e) => note(k, "memory", e),
            }
        }
        if wanted("burst") {
            progress(&format!(
                "{}: a burst of {} events over one connection",
                k.name(),
                n.events
            ));
            match measure::burst(k, &programs, n.events, false) {
                Ok(v) => burst[i] = Some(v),
                Err(e) => note(k, "burst", e),
            }
        }
    }
    let burst_metrics = if wanted("burst") {
        progress(&format!(
            "slackbotd: the same burst with /metrics scraped every 20 ms ({} events)",
            n.events
        ));
        match measure::burst(Kind::Slackbotd, &programs, n.events, true) {
            Ok(v) => Some(v),
            Err(e) => {
                note(Kind::Slackbotd, "burst with metrics", e);
                None
            }
        }
    } else {
        None
    };
    let ensure = if wanted("ensure") {
        progress(&format!(
            "slackbotd: ensure on a healthy daemon ({} runs)",
            n.ensures
        ));
        match measure::ensure(&programs, n.ensures) {
            Ok(v) => Some(v),
            Err(e) => {
                note(Kind::Slackbotd, "ensure", e);
                None
            }
        }
    } else {
        None
    };

    let mut units_measured = None;
    if wanted("systemd") {
        match systemd::available() {
            Some(why) => eprintln!("bench: systemd figures skipped: {why}"),
            None => {
                let mut units = vec![
                    ("minimal".to_string(), systemd::MINIMAL.to_string()),
                    ("shipped".to_string(), systemd::shipped()),
                ];
                for u in &cli.unit {
                    match std::fs::read_to_string(u) {
                        Ok(t) => units.push((
                            u.file_name()
                                .unwrap_or_default()
                                .to_string_lossy()
                                .into_owned(),
                            t.replace("/usr/bin/slackbotd", "/opt/slackbotd/slackbotd")
                                .replace("/usr/local/bin/slackbotd", "/opt/slackbotd/slackbotd"),
                        )),
                        Err(e) => note(Kind::Slackbotd, "systemd", format!("{}: {e}", u.display())),
                    }
                }
                match systemd::measure(&programs.bot, &units, n.unit_starts, n.kills) {
                    Ok(f) => units_measured = Some(f),
                    Err(e) => note(Kind::Slackbotd, "systemd", e),
                }
            }
        }
    }

    let mut fleet_measured = None;
    if wanted("fleet") {
        match fleet::available() {
            Some(why) => eprintln!("bench: fleet figures skipped: {why}"),
            None => {
                let (kills, pings, notes) = if cli.quick { (1, 3, 40) } else { (5, 30, 400) };
                match fleet::measure(&programs.bot, kills, pings, notes) {
                    Ok(f) => fleet_measured = Some(f),
                    Err(e) => note(Kind::Slackbotd, "fleet", e),
                }
            }
        }
    }

    let judge = |ok: bool| (!cli.quick).then_some(ok);
    let pick = |v: &Option<(Vec<f64>, Vec<f64>)>, second: bool| {
        v.as_ref()
            .and_then(|(a, b)| summarize(if second { b } else { a }))
    };
    let mib = |v: &Option<measure::Memory>, which: u8| {
        v.map(|m| match which {
            0 => m.idle,
            1 => m.idle_pss,
            2 => m.busy,
            3 => m.busy_pss,
            4 => m.busy_anon,
            5 => m.settled,
            _ => m.settled_pss,
        })
        .and_then(|k| summarize(&[k / 1024.0]))
    };
    let mut rows = Vec::new();
    let (s0, s1) = (pick(&start[0], false), pick(&start[1], false));
    rows.push(Row {
        figure: "start: exec → first hello (ms)".into(),
        met: match (s0, s1) {
            (Some(o), Some(p)) => judge(p.median >= 10.0 * o.median),
            _ => None,
        },
        ours: s0,
        peer: s1,
        ratio: Ratio::PeerOverOurs,
        target: "≥ 10× sooner".into(),
        decimals: 1,
    });
    rows.push(Row {
        figure: "start: exec → first pong posted (ms)".into(),
        ours: pick(&start[0], true),
        peer: pick(&start[1], true),
        ratio: Ratio::PeerOverOurs,
        target: "".into(),
        met: None,
        decimals: 1,
    });
    let r0 = pick(&restart[0], false);
    rows.push(Row {
        figure: "restart: kill -9 → new connection (ms)".into(),
        met: r0.map(|o| o.median < 50.0).and_then(judge),
        ours: r0,
        peer: pick(&restart[1], false),
        ratio: Ratio::PeerOverOurs,
        target: "median < 50 ms".into(),
        decimals: 1,
    });
    rows.push(Row {
        figure: "restart: kill -9 → next pong (ms)".into(),
        ours: pick(&restart[0], true),
        peer: pick(&restart[1], true),
        ratio: Ratio::PeerOverOurs,
        target: "".into(),
        met: None,
        decimals: 1,
    });
    for (which, label, judged) in [
        (0u8, "RSS once connected (MiB)", false),
        (1, "  PSS once connected (MiB)", true),
        (2, "RSS after 1,000 pings at once (MiB)", false),
        (3, "  PSS after the pings (MiB)", true),
        (4, "  of which anonymous (MiB)", false),
        (5, "RSS a quiet while later (MiB)", false),
        (6, "  PSS a quiet while later (MiB)", false),
    ] {
        let (o, p) = (mib(&memory[0], which), mib(&memory[1], which));
        rows.push(Row {
            figure: label.into(),
            met: match (o, p) {
                (Some(o), Some(p)) if judged => judge(o.median * 4.0 <= p.median),
                _ => None,
            },
            ours: o,
            peer: p,
            ratio: Ratio::OursOverPeer,
            target: if judged {
                "≤ ¼ of the peer".into()
            } else {
                String::new()
            },
            decimals: 1,
        });
    }
    if let Some(m) = memory[0] {
        let settled = summarize(&[m.settled_pss / 1024.0]);
        rows.push(Row {
            figure: "PSS a quiet while later, over idle (MiB)".into(),
            met: judge((m.settled_pss - m.idle_pss) / 1024.0 <= 2.0),
            ours: summarize(&[(m.settled_pss - m.idle_pss) / 1024.0]),
            peer: None,
            ratio: Ratio::None,
            target: format!(
                "within 2 MiB of idle ({:.1} → {:.1} MiB)",
                m.idle_pss / 1024.0,
                settled.map(|s| s.median).unwrap_or(f64::NAN)
            ),
            decimals: 1,
        });
    }
    let rate = |v: &Option<measure::Burst>| v.as_ref().and_then(|b| summarize(&[b.rate]));
    let (e0, e1) = (rate(&burst[0]), rate(&burst[1]));
    rows.push(Row {
        figure: "burst: events/s over one connection".into(),
        met: match (e0, e1) {
            (Some(o), Some(p)) => judge(o.median >= 5.0 * p.median),
            _ => None,
        },
        ours: e0,
        peer: e1,
        ratio: Ratio::OursOverPeer,
        target: "≥ 5× the peer".into(),
        decimals: 0,
    });
    let lat = |v: &Option<measure::Burst>, q: f64| {
        v.as_ref().and_then(|b| {
            let mut s = b.latencies.clone();
            s.sort_by(|a, b| a.total_cmp(b));
            (!s.is_empty())
                .then(|| summarize(&[stats::quantile(&s, q)]))
                .flatten()
        })
    };
    rows.push(Row {
        figure: "burst: ack latency p50 (ms)".into(),
        ours: lat(&burst[0], 0.5),
        peer: lat(&burst[1], 0.5),
        ratio: Ratio::PeerOverOurs,
        target: "".into(),
        met: None,
        decimals: 2,
    });
    let p99 = lat(&burst[0], 0.99);
    rows.push(Row {
        figure: "burst: ack latency p99 (ms)".into(),
        met: p99.map(|o| o.median < 5.0).and_then(judge),
        ours: p99,
        peer: lat(&burst[1], 0.99),
        ratio: Ratio::PeerOverOurs,
        target: "< 5 ms".into(),
        decimals: 2,
    });
    let lost = |v: &Option<measure::Burst>| v.as_ref().and_then(|b| summarize(&[b.lost as f64]));
    rows.push(Row {
        figure: "burst: events never acked".into(),
        ours: lost(&burst[0]),
        peer: lost(&burst[1]),
        ratio: Ratio::None,
        target: "".into(),
        met: None,
        decimals: 0,
    });
    if let (Some(off), Some(on)) = (&burst[0], &burst_metrics) {
        let (p_off, p_on) = (lat(&Some(off.clone()), 0.99), lat(&Some(on.clone()), 0.99));
        rows.push(Row {
            figure: "burst, /metrics scraped every 20 ms: ack p99 (ms)".into(),
            met: match (p_on, p_off) {
                (Some(a), Some(b)) => judge(a.median <= b.median + 1.0),
                _ => None,
            },
            ours: p_on,
            peer: None,
            ratio: Ratio::None,
            target: format!(
                "within noise (1 ms) of metrics off ({:.2} ms)",
                p_off.map(|s| s.median).unwrap_or(f64::NAN)
            ),
            decimals: 2,
        });
        rows.push(Row {
            figure: "burst, /metrics: scrapes answered, of those tried".into(),
            met: judge(on.scrapes.1 == 0 && on.scrapes.0 > 0),
            ours: summarize(&[on.scrapes.0 as f64]),
            peer: None,
            ratio: Ratio::None,
            target: format!("all ({} tried)", on.scrapes.0 + on.scrapes.1),
            decimals: 0,
        });
        let cost = (on.idle_pss_kib - off.idle_pss_kib) / 1024.0;
        rows.push(Row {
            figure: "metrics on: PSS cost once connected (MiB)".into(),
            met: judge(cost <= 0.5),
            ours: summarize(&[cost]),
            peer: None,
            ratio: Ratio::None,
            target: "≤ 0.5 MiB".into(),
            decimals: 2,
        });
    }
    if let Some(times) = &ensure {
        let (e, t, v) = (&times.ensure, &times.truth, &times.version);
        let (se, sv) = (summarize(e), summarize(v));
        rows.push(Row {
            figure: "ensure, healthy, no systemd (ms)".into(),
            met: match (se, sv) {
                (Some(a), Some(b)) => judge(a.median <= 2.0 * b.median),
                _ => None,
            },
            ours: se,
            peer: None,
            ratio: Ratio::None,
            target: format!(
                "≤ 2× `--version` ({:.2} ms); `true`: {:.2} ms",
                sv.map(|s| s.median).unwrap_or(f64::NAN),
                summarize(t).map(|s| s.median).unwrap_or(f64::NAN)
            ),
            decimals: 2,
        });
    }

    let unit_rows = units_measured
        .as_ref()
        .map(|f| unit_rows(f, &judge))
        .unwrap_or_default();
    let fleet_rows = fleet_measured
        .as_ref()
        .map(|f| fleet_rows(f, &judge))
        .unwrap_or_default();
    let table = report::text(&rows, report::PEER_HEAD);
    println!("\n{table}");
    if !unit_rows.is_empty() {
        println!(
            "\nUnder systemd, in a container:\n{}",
            report::text(&unit_rows, report::UNIT_HEAD)
        );
    }
    if !fleet_rows.is_empty() {
        println!(
            "\nThe fleet, two hosts sharing one slot over a local PostgreSQL:\n{}",
            report::text(&fleet_rows, report::FLEET_HEAD)
        );
    }
    println!("Medians, with the 10th–90th percentile in brackets. Ratios compare medians.");
    if cli.quick {
        println!("(--quick: tiny samples; nothing judged, nothing written)");
    } else if cli.only.is_some() {
        println!("(--only: nothing written)");
    } else {
        let block = format!(
            "{BEGIN}\nMeasured on {}, at {}.\n\n{}\nMedians, with the 10th–90th percentile in brackets; ratios compare medians. \
             Samples: {} starts, {} kills, {} pings, a burst of {} events, {} `ensure` runs.\n{END}",
            machine(),
            std::process::Command::new("date")
                .args(["-u", "+%Y-%m-%d %H:%M UTC"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default(),
            report::markdown(&rows, report::PEER_HEAD)
                + &if unit_rows.is_empty() {
                    String::new()
                } else {
                    format!(
                        "\nUnder systemd, booted in a container on the same machine, in the same run (ratios: shipped over minimal):\n\n{}",
                        report::markdown(&unit_rows, report::UNIT_HEAD)
                    )
                }
                + &if fleet_rows.is_empty() {
                    String::new()
                } else {
                    format!(
                        "\nThe fleet: two hosts sharing one connection slot over a local PostgreSQL, in the same run (lease {}):\n\n{}",
                        fleet_measured.as_ref().map(|f| format!("{} s", f.lease.as_secs())).unwrap_or_default(),
                        report::markdown(&fleet_rows, report::FLEET_HEAD)
                    )
                },
            n.starts,
            n.kills,
            n.pings,
            n.events,
            n.ensures
        );
        let old = std::fs::read_to_string(&cli.out).unwrap_or_default();
        let new = match (old.find(BEGIN), old.find(END)) {
            (Some(a), Some(b)) if b > a => format!("{}{block}{}", &old[..a], &old[b + END.len()..]),
            _ => format!("# Benchmarks\n\nRun `scripts/bench` to reproduce.\n\n{block}\n"),
        };
        if let Err(e) = std::fs::write(&cli.out, new) {
            eprintln!("slackbotd-bench: cannot write {}: {e}", cli.out.display());
            return ExitCode::from(73);
        }
        println!("written to {}", cli.out.display());
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "slackbotd-bench: {} measurement(s) failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
        ExitCode::FAILURE
    }
}

/// The systemd table: the shipped unit (and any tried with `--unit`) next
/// to the minimal one, `ensure` on it, the cold start's breakdown by
/// hardening group, and daemon mode in the same container.
fn unit_rows(f: &systemd::Figures, judge: &dyn Fn(bool) -> Option<bool>) -> Vec<Row> {
    let minimal = f.units.iter().find(|u| u.name == "minimal");
    let mut rows = shipped_rows(f, minimal, judge);
    let version = summarize(&f.version);
    if let Some(e) = summarize(&f.ensure) {
        rows.push(Row {
            figure: "ensure, healthy shipped unit, via nsenter (ms)".into(),
            met: version.map(|v| e.median <= 2.0 * v.median).and_then(judge),
            ours: Some(e),
            peer: None,
            ratio: Ratio::None,
            target: format!(
                "≤ 2× `--version` via nsenter ({:.1} ms)",
                version.map(|v| v.median).unwrap_or(f64::NAN)
            ),
            decimals: 1,
        });
    }
    if let Some((base, groups)) = f.groups.split_first() {
        let b = summarize(&base.start);
        rows.push(Row {
            figure: "cold start, minimal + its directories (the base) (ms)".into(),
            met: None,
            ours: b,
            peer: minimal.and_then(|m| summarize(&m.start)),
            ratio: Ratio::OursOverPeer,
            target: String::new(),
            decimals: 1,
        });
        for g in groups {
            let s = summarize(&g.start);
            rows.push(Row {
                figure: format!("cold start, base + {} (ms)", g.name),
                met: None,
                ours: s,
                peer: b,
                ratio: Ratio::OursOverPeer,
                target: match (s, b) {
                    (Some(s), Some(b)) => format!("{:+.1} ms over the base", s.median - b.median),
                    _ => String::new(),
                },
                decimals: 1,
            });
        }
    }
    rows.push(daemon_row(f));
    rows
}

/// The shipped unit's (and `--unit`'s) rows.
fn shipped_rows(
    f: &systemd::Figures,
    minimal: Option<&systemd::UnitFigures>,
    judge: &dyn Fn(bool) -> Option<bool>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for u in f.units.iter().filter(|u| u.name != "minimal") {
        let label = |what: &str| {
            if u.name == "shipped" {
                what.to_string()
            } else {
                format!("{} ({})", what, u.name)
            }
        };
        let shipped = u.name == "shipped";
        let start = summarize(&u.start);
        rows.push(Row {
            figure: label("cold start: fork → READY (ms)"),
            met: if shipped {
                start.map(|s| s.median <= 60.0).and_then(judge)
            } else {
                None
            },
            ours: start,
            peer: minimal.and_then(|m| summarize(&m.start)),
            ratio: Ratio::OursOverPeer,
            target: if shipped {
                "≤ 60 ms".into()
            } else {
                String::new()
            },
            decimals: 1,
        });
        let worker = summarize(&u.worker_kill);
        rows.push(Row {
            figure: label("kill -9 of the worker → new hello (ms)"),
            met: if shipped {
                worker.map(|s| s.median <= 100.0).and_then(judge)
            } else {
                None
            },
            ours: worker,
            peer: minimal.and_then(|m| summarize(&m.worker_kill)),
            ratio: Ratio::OursOverPeer,
            target: if shipped {
                "≤ 100 ms".into()
            } else {
                String::new()
            },
            decimals: 1,
        });
        let main = summarize(&u.main_kill);
        rows.push(Row {
            figure: label("kill -9 of the main process → new hello (ms)"),
            met: if shipped {
                main.map(|s| s.median <= 300.0).and_then(judge)
            } else {
                None
            },
            ours: main,
            peer: minimal.and_then(|m| summarize(&m.main_kill)),
            ratio: Ratio::OursOverPeer,
            target: if shipped {
                "≤ 300 ms".into()
            } else {
                String::new()
            },
            decimals: 1,
        });
        rows.push(Row {
            figure: label("systemd-analyze security (exposure)"),
            met: if shipped {
                u.security.map(|s| s <= 2.0).and_then(judge)
            } else {
                None
            },
            ours: u.security.and_then(|s| summarize(&[s])),
            peer: minimal
                .and_then(|m| m.security)
                .and_then(|s| summarize(&[s])),
            ratio: Ratio::None,
            target: if shipped {
                "≤ 2.0".into()
            } else {
                String::new()
            },
            decimals: 1,
        });
    }
    rows
}

/// The fleet table: what a member costs next to a lone bot, and how fast a
/// dead host's slot comes back.
fn fleet_rows(f: &fleet::Figures, judge: &dyn Fn(bool) -> Option<bool>) -> Vec<Row> {
    let here = summarize(&f.ping_here);
    let slot = summarize(&f.ping_slot);
    let slotless = summarize(&f.ping_slotless);
    let takeover = summarize(&f.takeover);
    let lease_ms = f.lease.as_secs_f64() * 1000.0;
    let mib = |kib: f64| summarize(&[kib / 1024.0]);
    vec![
        Row {
            figure: "kill -9 of the slot's host → a new hello elsewhere (ms)".into(),
            met: takeover
                .map(|t| t.median <= lease_ms + 5000.0)
                .and_then(judge),
            ours: takeover,
            peer: None,
            ratio: Ratio::None,
            target: format!("≤ lease + 5 s ({:.0} ms)", lease_ms + 5000.0),
            decimals: 0,
        },
        Row {
            figure: "ping, `on HOST ping` to the host with the slot (ms)".into(),
            met: match (slot, here) {
                (Some(s), Some(h)) => judge(s.median - h.median < 5.0),
                _ => None,
            },
            ours: slot,
            peer: here,
            ratio: Ratio::OursOverPeer,
            target: "median within 5 ms of an unaddressed ping".into(),
            decimals: 1,
        },
        Row {
            figure: "ping, `on HOST ping` to a host without a slot (ms)".into(),
            met: match (slotless, here) {
                (Some(s), Some(h)) => judge(s.median - h.median < 5.0),
                _ => None,
            },
            ours: slotless,
            peer: here,
            ratio: Ratio::OursOverPeer,
            target: "median within 5 ms of an unaddressed ping".into(),
            decimals: 1,
        },
        Row {
            figure: "notifications delivered per second".into(),
            met: None,
            ours: summarize(&[f.notify_rate.0]),
            peer: summarize(&[f.notify_rate.1]),
            ratio: Ratio::OursOverPeer,
            target: String::new(),
            decimals: 0,
        },
        Row {
            figure: "PSS of a member, connected (MiB)".into(),
            met: judge(f.pss.0 - f.pss.1 < 2.0 * 1024.0),
            ours: mib(f.pss.0),
            peer: mib(f.pss.1),
            ratio: Ratio::OursOverPeer,
            target: format!(
                "under 2 MiB over a lone bot (+{:.2} MiB)",
                (f.pss.0 - f.pss.1) / 1024.0
            ),
            decimals: 1,
        },
    ]
}

/// Daemon mode in the same container, for comparison.
fn daemon_row(f: &systemd::Figures) -> Row {
    Row {
        figure: "daemon mode: kill -9 of the worker → new hello (ms)".into(),
        ours: summarize(&f.daemon_kill),
        peer: None,
        ratio: Ratio::None,
        target: String::new(),
        met: None,
        decimals: 1,
    }
}
