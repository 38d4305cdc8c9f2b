//! What slackbotd says when things go wrong is for a person: no Rust debug
//! text (`Some(…)`, `Err(…)`, `Os { … }`, `Disconnect("…")`), no prefix said
//! twice, one report of a bad token, and plurals right. Every error path
//! below is taken for real and everything printed is searched.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Shapes of Rust's `{:?}` output that must never reach a person.
fn debug_shapes(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        for shape in [
            "Some(", "None)", "Err(", "Ok(", "Os {", "kind: ", "\")", "\"))",
        ] {
            if line.contains(shape) {
                found.push(format!("{shape:?} in: {line}"));
            }
        }
        // A tuple variant printed by Debug: `Word("` or `Word(0)`.
        let b = line.as_bytes();
        for i in 1..b.len().saturating_sub(1) {
            if b[i] == b'('
                && b[i - 1].is_ascii_alphabetic()
                && b[..i]
                    .iter()
                    .rev()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .count()
                    > 2
            {
                let word_start = b[..i]
                    .iter()
                    .rposition(|c| !c.is_ascii_alphanumeric())
                    .map_or(0, |p| p + 1);
                let starts_upper = b[word_start].is_ascii_uppercase();
                let inner = b[i + 1];
                if starts_upper && (inner == b'"' || inner.is_ascii_digit()) {
                    found.push(format!("debug-like {}: {line}", &line[word_start..=i]));
                }
            }
        }
        // The same prefix twice: "auth.test: auth.test:".
        let parts: Vec<&str> = line.split(": ").collect();
        for w in parts.windows(2) {
            let last = w[0].rsplit(' ').next().unwrap_or("");
            if last.len() > 3 && last == w[1] {
                found.push(format!("doubled prefix: {line}"));
            }
        }
    }
    found
}

fn text_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn the_shape_detector_catches_what_it_must() {
    assert!(
        !debug_shapes("Slack http protocol error: Some(hyper_util::Error(Connect))").is_empty()
    );
    assert!(!debug_shapes("the link ended: Disconnect(\"warning\")").is_empty());
    assert!(!debug_shapes("worker ended: Exited(0)").is_empty());
    assert!(!debug_shapes("auth.test: auth.test: cannot connect").is_empty());
    assert!(!debug_shapes("Os { code: 111, kind: ConnectionRefused }").is_empty());
    assert!(
        debug_shapes("auth.test: cannot connect to http://x/api (connection refused)").is_empty()
    );
    assert!(debug_shapes("FAIL  command \"gone\": its program /x does not exist").is_empty());
}

#[test]
fn every_error_path_speaks_plainly() {
    let s = Setup::new();
    let said = std::cell::RefCell::new(String::new());
    let run = |args: &[&str], cfg: &std::path::Path| {
        let out = s.output(cfg, args);
        said.borrow_mut().push_str(&text_of(&out));
        out
    };

    // A configuration file that is not there.
    let missing = s.path("nope.toml");
    let out = run(&["check"], &missing);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text_of(&out).contains("run `slackbotd install` to write one, or pass --config"),
        "{}",
        text_of(&out)
    );
    // Slack unreachable: a refused port, and a name that does not resolve.
    let port = closed_port();
    for (url, words) in [
        (
            format!("http://127.0.0.1:{port}/api"),
            "(connection refused)",
        ),
        (
            "http://no-such-host.invalid/api".to_string(),
            "cannot resolve the host name",
        ),
    ] {
        let cfg = s.path("unreachable.toml");
        std::fs::write(
            &cfg,
            s.config_text(1, "30s", "").replace(&s.fake.api_url(), &url),
        )
        .unwrap();
        let out = run(&["check"], &cfg);
        assert!(
            text_of(&out).contains(&format!("cannot connect to {url}")),
            "{}",
            text_of(&out)
        );
        assert!(text_of(&out).contains(words), "{}", text_of(&out));
        let out = run(&["notify", "--channel", "C1", "hello"], &cfg);
        assert_eq!(
            out.status.code(),
            Some(0),
            "queued while Slack is away: {}",
            text_of(&out)
        );
        let out = run(&["daemon", "--wait", "1s"], &cfg);
        assert_eq!(out.status.code(), Some(75), "{}", text_of(&out));
        let _ = run(&["stop"], &cfg);
    }
    // Bad input of every kind.
    let cfg = s.config(1, "30s", "");
    run(&["notify", "--channel", "not a channel", "x"], &cfg);
    run(
        &["notify", "--channel", "C1", "--thread", "yesterday", "x"],
        &cfg,
    );
    run(&["status"], &cfg);
    run(&["stop"], &cfg);
    run(&["reload"], &cfg);
    let bad = s.path("bad.toml");
    std::fs::write(&bad, "[slack]\nconnections = 11\nnonsense = 1\n").unwrap();
    run(&["check"], &bad);
    std::fs::write(&bad, "[slack\n").unwrap();
    run(&["run"], &bad);
    std::fs::write(
        &bad,
        s.config_text(1, "30s", "[supervise]\nstop_timeout = \"soon\"\n"),
    )
    .unwrap();
    run(&["check"], &bad);
    let loose = s.path("loose-token");
    std::fs::write(&loose, s.fake.bot_token()).unwrap();
    std::fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(
        &bad,
        s.config_text(1, "30s", "").replace(
            s.path("bot-token").to_str().unwrap(),
            loose.to_str().unwrap(),
        ),
    )
    .unwrap();
    run(&["check"], &bad);

    // A token Slack refuses: `run` says so once and exits 78.
    s.fake.set_token_error(Some("invalid_auth"));
    let mut p = s.spawn(&cfg, &["run"]);
    let status = p.wait_exit(secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(78), "{}", p.log());
    let log = p.log();
    said.borrow_mut().push_str(&log);
    let reports = log.lines().filter(|l| l.contains("invalid_auth")).count();
    assert_eq!(reports, 1, "the bad token is reported once:\n{log}");
    s.fake.set_token_error(None);

    // A running bot through a disconnect and a refresh, and a worker killed.
    let p = s.spawn(&cfg, &["run"]);
    assert!(
        s.fake.wait_live_connections(1, secs(10)).is_some(),
        "{}",
        p.log()
    );
    s.fake.disconnect(None, "warning");
    std::thread::sleep(Duration::from_millis(1500));
    s.fake.disconnect(None, "refresh_requested");
    std::thread::sleep(Duration::from_millis(1500));
    let out = run(&["status"], &cfg);
    assert!(
        !text_of(&out).contains("1 connections"),
        "plural: {}",
        text_of(&out)
    );
    said.borrow_mut().push_str(&p.log());
    drop(p);
    let _ = Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .arg("stop")
        .stdout(Stdio::null())
        .status();

    let said = said.into_inner();
    let found = debug_shapes(&said);
    assert!(
        found.is_empty(),
        "messages with debug text:\n{}\n\nall of it:\n{said}",
        found.join("\n")
    );
    assert!(!said.contains("1 connections"), "{said}");
}
