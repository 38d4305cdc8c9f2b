//! The `fake-slack` binary: prints its API URL, writes token files, obeys the
//! control API and stops cleanly on SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_runs_until_sigterm() {
    let dir = std::env::temp_dir().join(format!("fake-slack-bin-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-slack"))
        .args([
            "--write-tokens",
            dir.to_str().unwrap(),
            "--bot-token",
            "xoxb-custom",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let api_url = line
        .trim()
        .strip_prefix("api_url=")
        .expect(&line)
        .to_string();
    assert!(api_url.starts_with("http://127.0.0.1:") && api_url.ends_with("/api"));
    let port: u16 = api_url["http://127.0.0.1:".len()..api_url.len() - 4]
        .parse()
        .unwrap();

    let bot = std::fs::read_to_string(dir.join("bot-token")).unwrap();
    assert_eq!(bot.trim(), "xoxb-custom");
    let mode = std::fs::metadata(dir.join("app-token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let reply = http(
        port,
        "POST",
        "/api/auth.test",
        &[("Authorization", "Bearer xoxb-custom")],
        "",
    )
    .await;
    assert_eq!(reply.json()["ok"], true);
    let reply = http(port, "POST", "/_fake/mention", &[], r#"{"text":"queued"}"#).await;
    assert!(reply.json()["event_id"].as_str().unwrap().starts_with("Ev"));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("api auth.test") || log.contains("listening"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
