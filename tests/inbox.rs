//! Acknowledged means answered: the durable inbox against `kill -9` in the
//! middle of a burst, a reply whose answer never came, and an operator
//! command cut off by a crash.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;

/// The pid of the worker `run` supervises.
fn worker_of(s: &Setup) -> Option<u32> {
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path("run/slackbotd.supervisor")).ok()?).ok()?;
    rec["worker_pid"].as_u64().map(|p| p as u32)
}

fn replies_per_event(s: &Setup) -> HashMap<String, usize> {
    replies_in(&s.fake.snapshot())
}

#[test]
fn kill_9_in_a_burst_of_400_leaves_every_ping_answered_exactly_once_ten_times_over() {
    let s = Setup::new();
    let cfg = s.config(1, "30s", "");
    let p = s.spawn(&cfg, &["run"]);
    assert!(
        s.fake.wait_live_connections(1, secs(10)).is_some(),
        "{}",
        p.log()
    );
    let mut all: Vec<String> = Vec::new();
    for round in 0..10 {
        let before = s.fake.posts_containing("pong").len();
        let worker = worker_of(&s).expect("a worker");
        let ids = s.fake.send_burst(400, "ping {n}");
        assert!(
            wait_posts_with(&s.fake, "pong", before + 40, secs(20)),
            "round {round}: the first 40 replies:\n{}",
            p.log()
        );
        kill(worker, libc::SIGKILL);
        all.extend(ids);
        let want = all.len();
        let answered = wait_answered(&s.fake, &all, secs(60));
        let missing = answered.as_ref().err().cloned().unwrap_or_default();
        assert!(
            answered.is_ok(),
            "round {round}: {} of {want} pings unanswered, e.g. {:?}\n{}",
            missing.len(),
            missing.first(),
            p.log()
        );
        // A moment for any late double to show.
        std::thread::sleep(Duration::from_millis(300));
        let n = replies_per_event(&s);
        let doubled: Vec<_> = n.iter().filter(|(_, c)| **c > 1).collect();
        assert!(
            doubled.is_empty(),
            "round {round}: answered twice: {doubled:?}"
        );
        assert_eq!(s.fake.posts_containing("pong").len(), want, "round {round}");
        assert!(
            s.fake.snapshot().duplicate_idempotency_keys.is_empty(),
            "round {round}"
        );
        assert!(
            wait_until(secs(10), || worker_of(&s).is_some_and(|w| w != worker)),
            "a new worker"
        );
    }
    assert!(p.log().contains("recovered an event"), "{}", p.log());
    assert_no_panic(&p.log());
}

#[test]
fn kill_9_of_the_whole_bot_loses_nothing_acknowledged() {
    let s = Setup::new();
    let cfg = s.config(1, "30s", "");
    let mut p = s.spawn(&cfg, &["run"]);
    assert!(s.fake.wait_live_connections(1, secs(10)).is_some());
    let ids = s.fake.send_burst(400, "ping {n}");
    assert!(wait_posts_with(&s.fake, "pong", 40, secs(20)));
    // The supervisor and its worker at once, as a host losing power to the bot would.
    let worker = worker_of(&s).unwrap();
    p.signal(libc::SIGKILL);
    kill(worker, libc::SIGKILL);
    p.wait_exit(secs(5));
    assert!(wait_until(secs(5), || processes_with(&[
        cfg.to_str().unwrap(),
        "worker"
    ])
    .is_empty()));
    let p2 = s.spawn(&cfg, &["run"]);
    let done = wait_answered(&s.fake, &ids, secs(60));
    assert!(
        done.is_ok(),
        "{} unanswered\n{}",
        done.as_ref().err().map_or(0, Vec::len),
        p2.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    let n = replies_per_event(&s);
    assert!(n.values().all(|c| *c == 1), "answered twice");
    assert_eq!(s.fake.posts_containing("pong").len(), 400);
}

#[test]
fn a_reply_whose_answer_never_came_is_posted_once() {
    let s = Setup::new();
    let cfg = s.config(1, "30s", "");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("connections = 1", "connections = 1\ncall_timeout = \"1s\""),
    )
    .unwrap();
    let p = s.spawn(&cfg, &["run"]);
    assert!(s.fake.wait_live_connections(1, secs(10)).is_some());
    // The fake records the post, then answers only after the bot gave up on it.
    s.fake
        .delay_method("chat.postMessage", Some(Duration::from_millis(2500)));
    let id = s.fake.send_mention("C1", "U1", "ping", None);
    assert!(s.fake.wait_posts_containing("pong", secs(5)).is_some());
    assert!(
        p.wait_log("reply not delivered yet", secs(5)),
        "the bot saw the timeout:\n{}",
        p.log()
    );
    s.fake.delay_method("chat.postMessage", None);
    let t = Instant::now();
    assert!(
        p.wait_log("had reached Slack already", secs(10)),
        "it looked before posting again:\n{}",
        p.log()
    );
    std::thread::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()));
    assert_eq!(replies_per_event(&s).get(&id), Some(&1));
    assert_eq!(s.fake.posts_containing("pong").len(), 1);
    assert!(s.fake.snapshot().duplicate_idempotency_keys.is_empty());
}

#[test]
fn a_command_cut_off_by_kill_9_is_reported_once_and_never_run_again() {
    let s = Setup::new();
    let runs = s.path("runs.log");
    let script = s.path("slow.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho started >> {}\nsleep 30\necho done\n",
            runs.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = s.config(
        1,
        "30s",
        &format!(
            "[[command]]\nname = \"slow\"\nrun = [{:?}]\ntimeout = \"60s\"\n",
            script.to_str().unwrap()
        ),
    );
    let p = s.spawn(&cfg, &["run"]);
    assert!(s.fake.wait_live_connections(1, secs(10)).is_some());
    let worker = worker_of(&s).unwrap();
    s.fake.send_mention("C1", "U1", "slow", None);
    assert!(wait_until(secs(10), || std::fs::read_to_string(&runs)
        .is_ok_and(|r| r.contains("started"))));
    kill(worker, libc::SIGKILL);
    let post = s
        .fake
        .wait_posts_containing("interrupted by a restart", secs(15))
        .unwrap_or_else(|| panic!("no interrupted reply:\n{}", p.log()));
    assert!(post.text.contains("`slow`"), "{}", post.text);
    assert!(post.thread_ts.is_some(), "in the request's thread");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(s.fake.posts_containing("interrupted").len(), 1);
    assert_eq!(
        std::fs::read_to_string(&runs)
            .unwrap()
            .matches("started")
            .count(),
        1,
        "never run again"
    );
}

#[test]
fn a_burst_bigger_than_the_queue_waits_in_the_inbox_and_is_answered_once() {
    let s = Setup::new();
    let cfg = s.config(1, "30s", "");
    let p = s.spawn(&cfg, &["run"]);
    assert!(s.fake.wait_live_connections(1, secs(10)).is_some());
    // Slow replies: 64 in flight and 1,024 queued, then the rest must spill.
    s.fake
        .delay_method("chat.postMessage", Some(Duration::from_millis(40)));
    let ids = s.fake.send_burst(1500, "ping {n}");
    assert!(
        p.wait_log("wait in the inbox", secs(20)),
        "the queue overflowed into the inbox:\n{}",
        p.log()
    );
    let acked = s.fake.wait_for(secs(20), |snap| {
        (snap
            .deliveries
            .iter()
            .filter(|d| d.acked_at.is_some())
            .count()
            >= 1500)
            .then_some(())
    });
    assert!(
        acked.is_some(),
        "every envelope acknowledged at once, busy or not"
    );
    s.fake.delay_method("chat.postMessage", None);
    let done = wait_answered(&s.fake, &ids, secs(90));
    assert!(
        done.is_ok(),
        "{} unanswered\n{}",
        done.as_ref().err().map_or(0, Vec::len),
        p.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    let n = replies_per_event(&s);
    assert!(n.values().all(|c| *c == 1), "answered twice");
    assert_eq!(s.fake.posts_containing("pong").len(), 1500);
    assert_no_panic(&p.log());
}
