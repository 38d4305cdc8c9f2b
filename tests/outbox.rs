//! `slackbotd notify` and the outbox: durable before the bot sees it,
//! delivered once, in order, at Slack's pace, through 429s, crashes and a
//! full disk; permanent errors reported, not retried forever.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn notify(s: &Setup, cfg: &std::path::Path, channel: &str, text: &str) -> std::process::Output {
    s.output(cfg, &["notify", "--channel", channel, text])
}

fn config(s: &Setup, pace: &str, extra: &str) -> std::path::PathBuf {
    s.config(1, "30s", &format!("[outbox]\npace = {pace:?}\n{extra}"))
}

#[test]
fn notify_with_the_bot_down_is_posted_exactly_once_when_it_starts() {
    let s = Setup::new();
    let cfg = config(&s, "1s", "");
    let out = notify(&s, &cfg, "C0OPS", "disk /var is 91% full");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "notify is silent"
    );
    let (code, json) = {
        let o = s.output(&cfg, &["status", "--json"]);
        (
            o.status.code(),
            serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(),
        )
    };
    assert_eq!(
        (code, json["outbox_depth"].as_i64()),
        (Some(3), Some(1)),
        "{json}"
    );
    assert!(s.fake.snapshot().posts.is_empty());

    let p = s.spawn(&cfg, &["run"]);
    let post = s
        .fake
        .wait_posts_containing("disk /var", secs(10))
        .unwrap_or_else(|| panic!("{}", p.log()));
    assert_eq!(post.channel, "C0OPS");
    assert!(post.metadata.is_some(), "carries its idempotency key");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.fake.posts_containing("disk /var").len(), 1);

    // With the bot up, a notification goes out at once (the bot is woken).
    let t = Instant::now();
    notify(&s, &cfg, "C0OPS", "second");
    assert!(s.fake.wait_posts_containing("second", secs(5)).is_some());
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "woken, not polled: {:?}",
        t.elapsed()
    );
}

#[test]
fn stdin_pipes_and_long_output_keep_every_line_in_order() {
    let s = Setup::new();
    let cfg = config(&s, "10ms", "");
    let _p = s.spawn(&cfg, &["run"]);
    let text: String = (0..800).map(|i| format!("log line {i:04}\n")).collect();
    let out = output_with_stdin(
        Command::new(bin()).args([
            "--config",
            cfg.to_str().unwrap(),
            "notify",
            "--channel",
            "C0LOGS",
            "--stdin",
        ]),
        text.as_bytes(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let posts = s
        .fake
        .wait_for(secs(15), |snap| {
            let p: Vec<_> = snap
                .posts
                .iter()
                .filter(|p| p.channel == "C0LOGS")
                .cloned()
                .collect();
            p.iter()
                .any(|p| p.text.contains("log line 0799"))
                .then_some(p)
        })
        .expect("all parts posted");
    assert!(posts.len() > 1, "split into several messages");
    let all: String = posts
        .iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let mut last = -1i64;
    for i in 0..800 {
        let at = all
            .find(&format!("log line {i:04}"))
            .unwrap_or_else(|| panic!("line {i} lost")) as i64;
        assert!(at > last, "line {i} out of order");
        last = at;
    }
    // An empty pipe sends nothing and is not an error.
    let out = Command::new(bin())
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "notify",
            "--channel",
            "C0LOGS",
            "--stdin",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn bad_notify_arguments_are_usage_errors() {
    let s = Setup::new();
    let cfg = config(&s, "1s", "");
    for args in [
        vec!["notify", "--channel", "has space", "x"],
        vec!["notify", "--channel", "C1", "--thread", "yesterday", "x"],
        vec!["notify", "--channel", "C1", "  "],
        vec!["notify", "--channel", "C1"],
    ] {
        let out = s.output(&cfg, &args);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn kill_9_in_the_middle_of_a_burst_of_200_loses_none_and_doubles_none() {
    let s = Setup::new();
    let cfg = config(&s, "10ms", "");
    // Answers come late, so the kill lands between posts and their commits.
    s.fake
        .delay_method("chat.postMessage", Some(Duration::from_millis(150)));
    let mut bot = s.spawn(&cfg, &["run"]);
    assert!(s.fake.wait_live_connections(1, secs(10)).is_some());
    for i in 0..200 {
        let out = notify(
            &s,
            &cfg,
            &format!("C{:02}", i % 10),
            &format!("burst message {i:03}"),
        );
        assert_eq!(out.status.code(), Some(0));
    }
    assert!(
        s.fake
            .wait_for(secs(20), |snap| (snap.posts.len() >= 60).then_some(()))
            .is_some(),
        "{}",
        bot.log()
    );
    bot.signal(libc::SIGKILL);
    bot.wait_exit(secs(5));
    let at_kill = s.fake.snapshot().posts.len();
    assert!(at_kill < 200, "the kill came mid-burst ({at_kill} posted)");
    let bot2 = s.spawn(&cfg, &["run"]);
    let done = s
        .fake
        .wait_for(secs(60), |snap| (snap.posts.len() >= 200).then_some(()));
    assert!(
        done.is_some(),
        "only {} delivered:\n{}",
        s.fake.snapshot().posts.len(),
        bot2.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let snap = s.fake.snapshot();
    let mut count: HashMap<String, usize> = HashMap::new();
    for p in &snap.posts {
        *count.entry(p.text.clone()).or_default() += 1;
    }
    for i in 0..200 {
        assert_eq!(
            count.get(&format!("burst message {i:03}")),
            Some(&1),
            "message {i}"
        );
    }
    assert!(
        snap.duplicate_idempotency_keys.is_empty(),
        "{:?}",
        snap.duplicate_idempotency_keys
    );
    assert!(
        bot2.log().contains("had reached Slack before the restart"),
        "the crash-between-post-and-commit path ran:\n{}",
        bot2.log()
    );
    // Per channel, in order.
    for c in 0..10 {
        let texts: Vec<_> = snap
            .posts
            .iter()
            .filter(|p| p.channel == format!("C{c:02}"))
            .map(|p| p.text.clone())
            .collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, sorted, "channel C{c:02} in order");
    }
}

#[test]
fn a_429_storm_is_honoured() {
    let s = Setup::new();
    let cfg = config(&s, "10ms", "");
    let p = s.spawn(&cfg, &["run"]);
    assert!(s.fake.wait_live_connections(1, secs(10)).is_some());
    s.fake.rate_limit("chat.postMessage", 4, 1);
    for i in 0..3 {
        notify(&s, &cfg, "C0STORM", &format!("storm {i}"));
    }
    assert!(
        s.fake
            .wait_for(secs(20), |snap| (snap.posts_containing("storm").len() == 3)
                .then_some(()))
            .is_some(),
        "{}",
        p.log()
    );
    let calls = s.fake.snapshot().calls_to("chat.postMessage");
    for w in calls.windows(2) {
        if w[0].status == 429 {
            assert!(
                w[1].at - w[0].at >= Duration::from_millis(990),
                "retried {:?} after a 429",
                w[1].at - w[0].at
            );
        }
    }
    assert_eq!(calls.iter().filter(|c| c.status == 429).count(), 4);
}

#[test]
fn a_permanent_error_is_reported_not_retried_forever() {
    let s = Setup::new();
    let cfg = config(&s, "10ms", "");
    s.fake
        .set_channel_error("C0GONE", Some("channel_not_found"));
    let p = s.spawn(&cfg, &["run"]);
    notify(&s, &cfg, "C0GONE", "into the void");
    notify(&s, &cfg, "C0OK", "still fine");
    assert!(s
        .fake
        .wait_posts_containing("still fine", secs(10))
        .is_some());
    assert!(
        p.wait_log("cannot be delivered, giving up", secs(5)),
        "{}",
        p.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    let tries = s
        .fake
        .snapshot()
        .calls
        .iter()
        .filter(|c| {
            c.method == "chat.postMessage" && c.error.as_deref() == Some("channel_not_found")
        })
        .count();
    assert_eq!(tries, 1, "not retried");
    let v: serde_json::Value =
        serde_json::from_slice(&s.output(&cfg, &["status", "--json"]).stdout).unwrap();
    assert_eq!(v["outbox_failed"], 1, "{v}");
    assert_eq!(v["outbox_depth"], 0, "{v}");
}

#[test]
fn a_redelivered_event_after_a_restart_is_answered_once() {
    let s = Setup::new();
    let cfg = config(&s, "10ms", "");
    let mut p = s.spawn(&cfg, &["run"]);
    assert!(s.fake.wait_live_connections(1, secs(10)).is_some());
    let id = s.fake.send_mention("C1", "U1", "ping", None);
    assert!(s.fake.wait_posts_containing("pong", secs(5)).is_some());
    p.signal(libc::SIGKILL);
    p.wait_exit(secs(5));
    let p2 = s.spawn(&cfg, &["run"]);
    assert!(s.fake.wait_live_connections(1, secs(10)).is_some());
    assert!(s.fake.resend(&id));
    assert!(s
        .fake
        .wait_for(secs(5), |snap| (snap
            .deliveries_of(&id)
            .iter()
            .filter(|d| d.acked_at.is_some())
            .count()
            == 2)
            .then_some(()))
        .is_some());
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        s.fake.posts_containing("pong").len(),
        1,
        "answered once across the restart:\n{}",
        p2.log()
    );
    assert!(p2.log().contains("already handled"));
}

#[test]
fn a_corrupt_state_file_is_reported_and_left_alone() {
    let s = Setup::new();
    let cfg = config(&s, "1s", "");
    std::fs::create_dir_all(s.path("state")).unwrap();
    std::fs::write(
        s.path("state/slackbotd.sqlite"),
        b"not a database at all\n".repeat(64),
    )
    .unwrap();
    let out = notify(&s, &cfg, "C1", "hello");
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("corrupt") && err.contains("slackbotd.sqlite"),
        "{err}"
    );
    assert!(std::fs::read(s.path("state/slackbotd.sqlite"))
        .unwrap()
        .starts_with(b"not a database"));
    // The bot still answers without its store, and says why.
    let p = s.spawn(&cfg, &["run"]);
    assert!(s.fake.wait_live_connections(1, secs(10)).is_some());
    s.fake.send_mention("C1", "U1", "ping", None);
    assert!(s.fake.wait_posts_containing("pong", secs(5)).is_some());
    assert!(p.log().contains("corrupt"), "{}", p.log());
}

#[test]
fn a_full_disk_fails_notify_loudly_and_loses_nothing_accepted() {
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true needs root for the tmpfs"
        );
        eprintln!("SKIPPED: mounting a small tmpfs needs root");
        return;
    }
    let s = Setup::new();
    let state = s.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Unmount(state.clone());
    let cfg = config(&s, "10ms", "");
    // Leave a little room, then fill it with notifications.
    let filler = state.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1k", "count=380"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    let body = "x".repeat(3000);
    let mut accepted = Vec::new();
    let mut failure = None;
    for i in 0..500 {
        let out = notify(&s, &cfg, "C0FULL", &format!("full {i:03} {body}"));
        if out.status.code() == Some(0) {
            accepted.push(i);
        } else {
            failure = Some(out);
            break;
        }
    }
    let out = failure.expect("the disk filled up");
    assert_eq!(
        out.status.code(),
        Some(74),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("full") && err.contains("not queued"), "{err}");
    assert!(!accepted.is_empty());
    std::fs::remove_file(&filler).unwrap();
    let p = s.spawn(&cfg, &["run"]);
    let n = accepted.len();
    assert!(
        s.fake
            .wait_for(secs(30), |snap| (snap.posts_containing("full ").len() >= n)
                .then_some(()))
            .is_some(),
        "{} of {n} delivered:\n{}",
        s.fake.posts_containing("full ").len(),
        p.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    for i in &accepted {
        assert_eq!(
            s.fake.posts_containing(&format!("full {i:03} ")).len(),
            1,
            "message {i}"
        );
    }
    assert_eq!(
        s.fake.posts_containing("full ").len(),
        n,
        "nothing refused was sent"
    );
}
