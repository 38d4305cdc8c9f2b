//! `slackbotd check` explains each problem and exits with the right code.

mod common;

use common::*;

fn check(s: &Setup) -> (Option<i32>, String) {
    check_with(s, "")
}

/// `check` with `extra` appended to the base configuration: its code and all it said.
fn check_with(s: &Setup, extra: &str) -> (Option<i32>, String) {
    let cfg = s.config(1, "30s", extra);
    let out = s.output(&cfg, &["check"]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn a_good_setup_passes_every_check() {
    let s = Setup::new();
    let (code, out) = check(&s);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("bot token works")
            && out.contains("app token works")
            && out.contains("all checks passed"),
        "{out}"
    );
    let snap = s.fake.snapshot();
    assert_eq!(snap.connections.len(), 1);
    assert!(
        s.fake
            .wait_for(secs(3), |s| s.connections[0].closed_at.map(|_| ()))
            .is_some(),
        "the test connection is closed again"
    );
}

#[test]
fn invalid_auth_is_explained() {
    let s = Setup::new();
    s.fake.set_token_error(Some("invalid_auth"));
    let (code, out) = check(&s);
    assert_eq!(code, Some(78), "{out}");
    assert!(
        out.contains("invalid_auth") && out.contains("Replace the bot token"),
        "{out}"
    );
}

#[test]
fn not_authed_and_wrong_token_type_are_explained() {
    let s = Setup::new();
    s.fake
        .fail_method("apps.connections.open", "not_allowed_token_type", 1);
    s.fake.fail_method("auth.test", "not_authed", 1);
    let (code, out) = check(&s);
    assert_eq!(code, Some(78), "{out}");
    assert!(
        out.contains("not_authed") && out.contains("no token was sent"),
        "{out}"
    );
    assert!(out.contains("wrong kind"), "{out}");
}

#[test]
fn unreachable_api_exits_69() {
    let s = Setup::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let text = s
        .config_text(1, "30s", "")
        .replace(&s.fake.api_url(), &format!("http://127.0.0.1:{port}/api"));
    let cfg = s.path("unreachable.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = s.output(&cfg, &["check"]);
    let all = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(matches!(out.status.code(), Some(69) | Some(75)), "{all}");
    assert!(
        all.contains(&format!(
            "auth.test: cannot connect to http://127.0.0.1:{port}/api (connection refused)"
        )),
        "{all}"
    );
}

#[test]
fn wrong_kind_of_token_file_is_caught_before_any_call() {
    let s = Setup::new();
    s.write_secret("bot-token", &format!("{}\n", s.fake.app_token()));
    let (code, out) = check(&s);
    assert_eq!(code, Some(78), "{out}");
    assert!(out.contains("app-level token (xapp-…)"), "{out}");
    assert!(
        s.fake.snapshot().calls.is_empty(),
        "nothing was sent to Slack"
    );
}

#[test]
fn a_missing_scope_membership_or_event_subscription_is_named_with_its_fix() {
    let s = Setup::new();
    s.fake.add_channel("C0OPS", "ops", true, false);
    s.fake.add_channel("C0DEV", "dev", false, false);
    let announce = "[announce]\nchannel = \"C0OPS\"\n\
                    [[command]]\nname = \"up\"\nrun = [\"/bin/true\"]\nallow_channels = [\"C0DEV\"]\n";

    // Everything granted, but the bot was never invited to the private
    // announce channel: it cannot post there (78); the command's channel
    // only warns (it hears no mentions there).
    let (code, out) = check_with(&s, announce);
    assert_eq!(code, Some(78), "{out}");
    assert!(out.contains("every scope the bot uses"), "{out}");
    assert!(
        out.contains("FAIL  the bot is not in #ops") && out.contains("/invite @slackbotd"),
        "{out}"
    );
    assert!(out.contains("WARN  the bot is not in #dev"), "{out}");

    // Invited: it passes, and the warning alone keeps exit 0.
    s.fake.add_channel("C0OPS", "ops", true, true);
    let (code, out) = check_with(&s, announce);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok    the bot can post in #ops"), "{out}");

    // Without im:history Slack cannot send message.im events (a DM
    // subscription that cannot work): a warning, exit 0.
    s.fake.set_scopes(&[
        "chat:write",
        "app_mentions:read",
        "channels:history",
        "groups:history",
        "channels:read",
        "groups:read",
    ]);
    let (code, out) = check_with(&s, "");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("WARN  the bot token lacks the scope im:history")
            && out.contains("message.im")
            && out.contains("reinstall the app"),
        "{out}"
    );

    // Without app_mentions:read the bot never hears a mention: 78.
    s.fake
        .set_scopes(&["chat:write", "im:history", "channels:read"]);
    let (code, out) = check_with(&s, "");
    assert_eq!(code, Some(78), "{out}");
    assert!(
        out.contains("FAIL  the bot token lacks the scope app_mentions:read")
            && out.contains("app_mention events"),
        "{out}"
    );
    assert!(!out.contains("all checks passed"), "{out}");
}

#[test]
fn a_command_that_cannot_run_fails_the_check() {
    let s = Setup::new();
    let (code, out) = check_with(
        &s,
        "[[command]]\nname = \"gone\"\nrun = [\"/no/such/program\"]\n",
    );
    assert_eq!(code, Some(78), "{out}");
    assert!(
        out.contains("command \"gone\": its program /no/such/program does not exist"),
        "{out}"
    );
}

#[test]
fn install_refuses_a_unit_that_could_never_run() {
    let s = Setup::new();
    let cfg = s.path("etc/slackbotd.toml");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin())
            .arg("--config")
            .arg(&cfg)
            .arg("install")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let units = s.path("units");
    let units = units.to_str().unwrap();
    let (code, out) = run(&[
        "--dry-run",
        "--bin",
        "/tmp/x/slackbotd",
        "--unit-dir",
        units,
    ]);
    assert_eq!(code, Some(64), "{out}");
    assert!(
        out.contains("ProtectHome") && out.contains("--bin /usr/local/bin/slackbotd"),
        "{out}"
    );
    let (code, out) = run(&["--dry-run", "--bin", "/root/slackbotd", "--unit-dir", units]);
    assert_eq!(code, Some(64), "{out}");
    // Without a unit, /tmp is fine (cron and the daemon can run it).
    let (code, out) = run(&["--dry-run", "--bin", "/tmp/x/slackbotd", "--no-systemd"]);
    assert_eq!(code, Some(0), "{out}");
    if !std::path::Path::new("/run/systemd/system").exists() {
        // This host was not booted with systemd: a unit in /etc/systemd/system would never run.
        let (code, out) = run(&["--dry-run", "--bin", "/usr/local/bin/slackbotd"]);
        assert_eq!(code, Some(64), "{out}");
        assert!(out.contains("--no-systemd"), "{out}");
    }
    assert!(!cfg.exists(), "a dry run writes nothing");
}

#[test]
fn an_announce_channel_that_does_not_exist_fails_the_check() {
    let s = Setup::new();
    s.fake
        .set_channel_error("C0GONE", Some("channel_not_found"));
    let (code, out) = check_with(&s, "[announce]\nchannel = \"C0GONE\"\n");
    assert_eq!(code, Some(78), "{out}");
    assert!(
        out.contains("FAIL  channel C0GONE ([announce].channel) does not exist"),
        "{out}"
    );
}
