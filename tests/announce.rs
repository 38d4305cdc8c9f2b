//! Restart announcements: after an unclean stop the bot says in Slack what
//! happened, once per quiet period.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn after_kill_9_of_the_worker_the_announcement_names_the_signal_once() {
    let s = Setup::new();
    let sock = s.path("log.sock");
    let _syslog = SyslogListener::bind(&sock);
    let cfg = s.path("config.toml");
    let text = s
        .config_text(
            1,
            "30s",
            "[announce]\nchannel = \"C0OPS\"\nquiet = \"1h\"\n[outbox]\npace = \"10ms\"\n",
        )
        .replace(
            "[daemon]\n",
            &format!("[daemon]\nsyslog_socket = {sock:?}\n"),
        );
    std::fs::write(&cfg, text).unwrap();
    let out = s.output(&cfg, &["daemon", "--wait", "20s"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let worker = || -> u32 {
        let v: serde_json::Value =
            serde_json::from_slice(&s.output(&cfg, &["status", "--json"]).stdout).unwrap();
        v["worker_pid"].as_u64().unwrap() as u32
    };
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        s.fake.snapshot().posts.is_empty(),
        "a clean start announces nothing"
    );
    kill(worker(), libc::SIGKILL);
    let post = s
        .fake
        .wait_for(secs(15), |snap| {
            snap.posts.iter().find(|p| p.channel == "C0OPS").cloned()
        })
        .expect("an announcement");
    assert!(post.text.contains("SIGKILL"), "{}", post.text);
    assert!(
        post.text.contains("Down for") && post.text.contains("1 unclean restart in the last hour"),
        "{}",
        post.text
    );

    // Again within the quiet period: no second message.
    std::thread::sleep(Duration::from_millis(1200));
    kill(worker(), libc::SIGKILL);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        s.fake
            .snapshot()
            .posts
            .iter()
            .filter(|p| p.channel == "C0OPS")
            .count(),
        1,
        "a storm collapses"
    );
    let _ = s.output(&cfg, &["stop"]);
}

#[test]
fn a_foreground_bot_that_died_uncleanly_is_announced_on_its_next_start() {
    let s = Setup::new();
    let cfg = s.config(
        1,
        "30s",
        "[announce]\nchannel = \"C0OPS\"\n[outbox]\npace = \"10ms\"\n",
    );
    let mut p = s.spawn(&cfg, &["run"]);
    assert!(s.fake.wait_live_connections(1, secs(10)).is_some());
    p.signal(libc::SIGKILL);
    p.wait_exit(secs(5));
    let _p2 = s.spawn(&cfg, &["run"]);
    let post = s
        .fake
        .wait_for(secs(15), |snap| {
            snap.posts.iter().find(|p| p.channel == "C0OPS").cloned()
        })
        .expect("an announcement");
    assert!(
        post.text.contains("without a clean shutdown"),
        "{}",
        post.text
    );
}

#[test]
fn a_clean_stop_is_not_announced() {
    let s = Setup::new();
    let cfg = s.config(
        1,
        "30s",
        "[announce]\nchannel = \"C0OPS\"\n[outbox]\npace = \"10ms\"\n",
    );
    let mut p = s.spawn(&cfg, &["run"]);
    assert!(s.fake.wait_live_connections(1, secs(10)).is_some());
    p.signal(libc::SIGTERM);
    p.wait_exit(secs(10));
    let _p2 = s.spawn(&cfg, &["run"]);
    assert!(s.fake.wait_live_connections(1, secs(10)).is_some());
    std::thread::sleep(Duration::from_secs(2));
    assert!(s.fake.snapshot().posts.is_empty());
}
