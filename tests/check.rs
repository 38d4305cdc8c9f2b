//! `slackbotd check` explains each problem and exits with the right code.

mod common;

use common::*;

fn check(s: &Setup) -> (Option<i32>, String) {
    let cfg = s.config(1, "30s", "");
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
    assert!(all.contains("cannot reach Slack"), "{all}");
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
