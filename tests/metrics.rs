//! `[metrics]`: the `/metrics` endpoint and the node_exporter textfile,
//! scraped from the running bot against the fake Slack, checked with
//! Prometheus's own `promtool`; and a bad section refused at start.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};

use common::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` over plain HTTP/1.1; the status line and the body.
fn try_get(port: u16, path: &str) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    ))
}

fn get(port: u16, path: &str) -> (String, String) {
    try_get(port, path).expect("the endpoint answers")
}

/// `promtool check metrics` on `text`; `None` when promtool is missing
/// outside CI.
fn promtool(text: &str) -> Option<(bool, String)> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(_) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIPPED promtool check: promtool is not installed (package prometheus)");
            return None;
        }
        Err(e) => panic!("CI=true needs promtool (package prometheus): {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.success(), said))
}

/// Every `slackbotd_…` name in the `expr` strings of a dashboard.
fn collect_names(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v.as_str()) {
                    ("expr" | "query", Some(e)) => {
                        let mut rest = e;
                        while let Some(i) = rest.find("slackbotd_") {
                            let name: String = rest[i..]
                                .chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                .collect();
                            rest = &rest[i + name.len()..];
                            out.push(name);
                        }
                    }
                    _ => collect_names(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_names(v, out)),
        _ => {}
    }
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn the_endpoint_and_the_textfile_count_what_happened_and_pass_promtool() {
    let s = Setup::new();
    let port = free_port();
    let textfile = s.path("slackbotd.prom");
    let cfg = s.config(
        1,
        "30s",
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\ntextfile = {textfile:?}\n\
             [[command]]\nname = \"hi\"\nrun = [\"/bin/echo\", \"hi\"]\n"
        ),
    );
    let p = s.spawn(&cfg, &["run"]);
    assert!(
        s.fake.wait_live_connections(1, secs(10)).is_some(),
        "{}",
        p.log()
    );
    // One 429 on the way: the reply waits it out and is posted once.
    s.fake.rate_limit("chat.postMessage", 1, 1);
    for i in 0..3 {
        s.fake.send_mention("C1", "U1", &format!("ping {i}"), None);
    }
    s.fake.send_mention("C1", "U1", "hi", None);
    assert!(s
        .fake
        .wait_for(secs(10), |snap| (snap.posts.len() >= 4).then_some(()))
        .is_some());
    // The fake records a post before the bot hears its answer: wait for
    // the bot to have counted the last reply too.
    let (mut status, mut body) = (String::new(), String::new());
    wait_until(secs(5), || {
        (status, body) = get(port, "/metrics");
        value(&body, "slackbotd_replies_posted_total") == Some(4.0)
    });
    assert!(status.contains("200"), "{status}");
    assert_eq!(
        value(&body, "slackbotd_envelopes_received_total"),
        Some(4.0),
        "{body}"
    );
    assert_eq!(value(&body, "slackbotd_connections"), Some(1.0), "{body}");
    assert_eq!(
        value(&body, "slackbotd_connections_fresh"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        value(
            &body,
            "slackbotd_command_runs_total{command=\"hi\",outcome=\"ok\"}"
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        value(
            &body,
            "slackbotd_command_duration_seconds_count{command=\"hi\"}"
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        value(
            &body,
            "slackbotd_envelopes_acked_total{kind=\"events_api\"}"
        ),
        Some(4.0),
        "{body}"
    );
    // The histogram counts every acked envelope.
    assert_eq!(
        value(&body, "slackbotd_ack_latency_seconds_count"),
        Some(4.0),
        "{body}"
    );
    assert_eq!(
        value(&body, "slackbotd_replies_posted_total"),
        Some(4.0),
        "{body}"
    );
    assert_eq!(
        value(
            &body,
            "slackbotd_web_calls_total{method=\"chat.postMessage\",outcome=\"rate_limited\"}"
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        value(
            &body,
            "slackbotd_web_calls_total{method=\"chat.postMessage\",outcome=\"ok\"}"
        ),
        Some(4.0),
        "{body}"
    );
    assert_eq!(
        value(
            &body,
            "slackbotd_web_calls_total{method=\"auth.test\",outcome=\"ok\"}"
        ),
        Some(1.0),
        "{body}"
    );
    assert!(
        value(&body, "slackbotd_last_frame_age_seconds").is_some_and(|a| (0.0..30.0).contains(&a))
    );
    assert_eq!(
        value(&body, "slackbotd_outbox_waiting"),
        Some(0.0),
        "{body}"
    );
    assert!(body.contains("slackbotd_build_info{version="), "{body}");
    // No channel, user or event ID ever becomes a label.
    assert!(!body.contains("C1") && !body.contains("U1"), "{body}");
    if let Some((ok, said)) = promtool(&body) {
        assert!(ok, "promtool check metrics: {said}\n{body}");
    }
    let (status, _) = get(port, "/nope");
    assert!(status.contains("404"), "{status}");
    // The textfile is there from the start, whole.
    let text = std::fs::read_to_string(&textfile).expect("the textfile is written at start");
    assert!(text.contains("slackbotd_build_info{version="), "{text}");
    if let Some((ok, said)) = promtool(&text) {
        assert!(ok, "promtool check metrics (textfile): {said}\n{text}");
    }
    // A kill -9 of the worker: the supervisor records it, the new worker
    // counts from zero and reports the restart.
    let workers = processes_with(&["worker", cfg.to_str().unwrap()]);
    assert_eq!(workers.len(), 1, "one worker: {workers:?}");
    kill(workers[0], libc::SIGKILL);
    let mut after = String::new();
    assert!(
        wait_until(secs(10), || {
            after = try_get(port, "/metrics").map(|r| r.1).unwrap_or_default();
            value(&after, "slackbotd_restarts_total{cause=\"signal\"}") == Some(1.0)
                && value(&after, "slackbotd_connections") == Some(1.0)
        }),
        "the restart is counted: {after}"
    );
    assert_eq!(
        value(&after, "slackbotd_envelopes_received_total"),
        Some(0.0),
        "{after}"
    );
    // Every series the shipped dashboard queries is one the bot exposes.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/etc/grafana-dashboard.json"
        ))
        .unwrap(),
    )
    .expect("etc/grafana-dashboard.json parses");
    let both = format!("{body}{after}");
    let exposed: std::collections::HashSet<&str> = both
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut used = Vec::new();
    collect_names(&dashboard, &mut used);
    assert!(
        used.len() >= 10,
        "the dashboard queries the metrics: {used:?}"
    );
    for name in &used {
        assert!(
            exposed.contains(name.as_str()),
            "the dashboard uses {name}, which the bot does not expose:\n{both}"
        );
    }
    assert_no_panic(&p.log());
}

#[test]
fn a_bad_metrics_section_stops_the_start_with_78_and_says_why() {
    let s = Setup::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for (section, expect) in [
        (
            "listen = \"localhost\"".to_string(),
            "invalid socket address",
        ),
        (
            format!("listen = \"127.0.0.1:{port}\""),
            "cannot listen there",
        ),
        (
            "textfile = \"/nonexistent/dir/slackbotd.prom\"".to_string(),
            "cannot write it",
        ),
    ] {
        let cfg = s.config(1, "30s", &format!("[metrics]\n{section}\n"));
        let out = s.output(&cfg, &["run"]);
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(78), "{section}: {said}");
        assert!(said.contains(expect), "{section}: {said}");
        assert_no_panic(&said);
    }
    drop(taken);
}
