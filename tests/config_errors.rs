//! Every bad configuration ends `run` with exit 78 and a message naming the
//! problem, never a panic.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

fn run_with(s: &Setup, text: &str) -> (Option<i32>, String) {
    let cfg = s.path("bad.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = s.output(&cfg, &["run"]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_bad_config_exits_78_with_its_message() {
    let s = Setup::new();
    let good = s.config_text(1, "30s", "");
    let cases: Vec<(String, &str)> = vec![
        (format!("{good}\n[slack2]\nx = 1\n"), "unknown field"),
        (
            good.replace("connections = 1", "connections = 11"),
            "slack.connections",
        ),
        (
            good.replace(
                "heartbeat_timeout = \"30s\"",
                "heartbeat_timeout = \"soon\"",
            ),
            "invalid duration",
        ),
        (
            good.replace("[slack]", "[slack]\nconection = 2"),
            "conection",
        ),
        ("[slack\n".to_string(), "TOML parse error"),
        (
            good.replace("backoff_max = \"1s\"", "backoff_max = \"10ms\""),
            "supervise.backoff_max",
        ),
        (
            format!("{good}\n[[command]]\nname = \"x\"\nrun = [\"x\"]\n"),
            "absolute",
        ),
        (
            good.replace("api_url = \"", "api_url = \"ftp://"),
            "slack.api_url",
        ),
    ];
    for (text, needle) in cases {
        let (code, err) = run_with(&s, &text);
        assert_eq!(code, Some(78), "expected 78 for {needle}: {err}");
        assert!(err.contains(needle), "message for {needle:?} was: {err}");
        assert!(err.contains("bad.toml"), "the file is named: {err}");
        assert_no_panic(&err);
    }
}

#[test]
fn missing_config_file_exits_78() {
    let s = Setup::new();
    let out = s.output(&s.path("nope.toml"), &["run"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.toml"));
}

#[test]
fn token_problems_exit_78_with_advice() {
    let s = Setup::new();
    let good = s.config_text(1, "30s", "");

    std::fs::set_permissions(s.path("bot-token"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, err) = run_with(&s, &good);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("readable by group or others") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(s.path("bot-token"), std::fs::Permissions::from_mode(0o600)).unwrap();

    s.write_secret("app-token", "xoxb-a-bot-token-in-the-wrong-place\n");
    let (code, err) = run_with(&s, &good);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("bot token (xoxb-…)") && err.contains("app-level token (xapp-…)"),
        "{err}"
    );
    assert!(
        !err.contains("wrong-place"),
        "the token itself is never printed: {err}"
    );

    std::fs::remove_file(s.path("app-token")).unwrap();
    let (code, err) = run_with(&s, &good);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("app-token"), "{err}");

    s.write_secret("app-token", "  \n");
    let (code, err) = run_with(&s, &good);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn usage_errors_exit_64() {
    let out = std::process::Command::new(bin())
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = std::process::Command::new(bin())
        .args(["run", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn a_control_character_in_a_token_file_exits_78_naming_its_place() {
    let s = Setup::new();
    let token = s.fake.bot_token();
    s.write_secret(
        "bot-token",
        &format!("{}\u{1b}{}\n", &token[..5], &token[5..]),
    );
    let cfg = s.config(1, "30s", "");
    for mode in ["check", "run"] {
        let out = s.output(&cfg, &[mode]);
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{mode}: {said}");
        assert!(
            said.contains("control character at byte 5"),
            "{mode}: {said}"
        );
        assert_no_panic(&said);
    }
}

#[test]
fn absurd_durations_on_the_command_line_are_refused_not_panicked_on() {
    let s = Setup::new();
    let cfg = s.config(1, "30s", "");
    for args in [
        &["daemon", "--wait", "500000000000years"][..],
        &["stop", "--for", "500000000000years"][..],
        &["stop", "--timeout", "2years"][..],
    ] {
        let out = s.output(&cfg, args);
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(64), "{args:?}: {said}");
        assert!(
            said.contains("longer than a year") || said.contains("invalid"),
            "{args:?}: {said}"
        );
        assert_no_panic(&said);
    }
}
