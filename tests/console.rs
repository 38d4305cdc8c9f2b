//! `slackbotd console` answers through the same router, with no Slack.

mod common;

use std::process::Command;

use common::*;

fn console(config: Option<&std::path::Path>, input: &str) -> (Option<i32>, String) {
    let mut c = Command::new(bin());
    if let Some(p) = config {
        c.arg("--config").arg(p);
    } else {
        c.env("SLACKBOTD_CONFIG", "");
    }
    let out = output_with_stdin(c.arg("console"), input.as_bytes());
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn builtins_answer_without_slack_or_config() {
    let (code, out) = console(None, "ping\nstatus\nhelp\nwhat\n@slackbotd ping\n");
    assert_eq!(code, Some(0));
    assert!(out.contains("pong"), "{out}");
    assert_eq!(
        out.matches("pong :").count(),
        2,
        "a leading @mention is read as Slack reads it: {out}"
    );
    assert!(out.contains("mode console"), "{out}");
    assert!(out.contains("`help`"), "{out}");
    assert!(out.contains("I don't know `what`"), "{out}");
}

#[test]
fn operator_commands_run_from_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[[command]]\nname = \"echo\"\nrun = [\"/bin/echo\", \"said:\"]\nargs = \"any\"\n",
    )
    .unwrap();
    let (code, out) = console(Some(&cfg), "echo 'two words' ; $(id)\n");
    assert_eq!(code, Some(0));
    assert!(out.contains("said: two words ; $(id)"), "{out}");
}

#[test]
fn an_explicit_bad_config_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[nonsense]\n").unwrap();
    let (code, _) = console(Some(&cfg), "ping\n");
    assert_eq!(code, Some(78));
}
