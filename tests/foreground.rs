//! `slackbotd run` against the fake Slack: round trips, acks, redeliveries,
//! reconnects, half-open links, rate limits, bad credentials.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// The pid of the bot worker `run` supervises.
fn worker_of(s: &Setup) -> u32 {
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path("run/slackbotd.supervisor")).unwrap())
            .unwrap();
    rec["worker_pid"].as_u64().expect("a worker") as u32
}

/// Starts a bot with `connections` connections and waits until they are live.
fn started(s: &Setup, connections: u8, heartbeat: &str, extra: &str) -> Proc {
    let cfg = s.config(connections, heartbeat, extra);
    let p = s.spawn(&cfg, &["run"]);
    assert!(
        s.fake
            .wait_live_connections(connections as usize, secs(10))
            .is_some(),
        "bot did not connect:\n{}",
        p.log()
    );
    p
}

#[test]
fn ping_round_trip_in_channel_thread_dm_and_slash_command() {
    let s = Setup::new();
    let p = started(&s, 2, "30s", "");
    s.fake.send_mention("C1", "U1", "ping", None);
    let post = s
        .fake
        .wait_posts_containing("pong", secs(5))
        .unwrap_or_else(|| panic!("no pong:\n{}", p.log()));
    assert_eq!(
        (post.channel.as_str(), post.thread_ts.as_deref()),
        ("C1", None)
    );

    s.fake
        .send_mention("C1", "U1", "ping", Some("1700000000.000001"));
    let threaded = s
        .fake
        .wait_for(secs(5), |snap| {
            snap.posts.iter().find(|p| p.thread_ts.is_some()).cloned()
        })
        .expect("threaded reply");
    assert_eq!(threaded.thread_ts.as_deref(), Some("1700000000.000001"));

    s.fake.send_dm("U7", "ping");
    let dm = FakeSlack::dm_channel("U7");
    assert!(s
        .fake
        .wait_for(secs(5), |snap| snap
            .posts
            .iter()
            .find(|p| p.channel == dm)
            .cloned())
        .is_some());

    s.fake.send_slash_command("/bot", "ping", "U1", "C2");
    let via_url = s
        .fake
        .wait_for(secs(5), |snap| {
            snap.posts
                .iter()
                .find(|p| p.method == "response_url")
                .cloned()
        })
        .expect("slash command answered through its response_url");
    assert!(via_url.text.contains("pong"), "{}", via_url.text);
    assert_no_panic(&p.log());
}

#[test]
fn own_messages_edits_and_unknown_events_get_no_reply() {
    let s = Setup::new();
    let p = started(&s, 1, "30s", "");
    s.fake.send_dm(fake_slack::BOT_USER_ID, "ping");
    s.fake.send_event(json!({"type":"message","subtype":"message_changed","channel":"D1","channel_type":"im","hidden":true,"ts":"1.0"}));
    let unknown = s.fake.send_event(json!({"type":"brand_new_event","x":1}));
    assert!(
        s.fake.wait_acked(&unknown, secs(5)).is_some(),
        "unknown event types are acknowledged too"
    );
    // A marker proves everything before it was processed.
    s.fake.send_mention("C1", "U1", "ping", None);
    assert!(s.fake.wait_posts_containing("pong", secs(5)).is_some());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        s.fake.snapshot().posts.len(),
        1,
        "only the marker was answered:\n{}",
        p.log()
    );
}

#[test]
fn garbage_frames_are_survived() {
    let s = Setup::new();
    let p = started(&s, 1, "30s", "");
    s.fake.send_raw_frame("this is not json {");
    s.fake.send_raw_frame("[1,2,3]");
    s.fake
        .send_raw_frame(r#"{"type":"events_api","envelope_id":"broken-1"}"#);
    s.fake
        .send_raw_frame(r#"{"type":"mystery","envelope_id":"m-1"}"#);
    s.fake.send_binary_frame(&[0, 159, 146, 150]);
    s.fake.send_mention("C1", "U1", "ping", None);
    assert!(
        s.fake.wait_posts_containing("pong", secs(5)).is_some(),
        "{}",
        p.log()
    );
    let log = p.log();
    assert!(log.contains("does not parse"), "{log}");
    assert_no_panic(&log);
    assert_eq!(
        s.fake.snapshot().connections.len(),
        1,
        "garbage did not cost the connection"
    );
}

#[test]
fn ack_arrives_before_a_slow_handler_finishes() {
    let s = Setup::new();
    let p = started(&s, 1, "30s", "[[command]]\nname = \"slow\"\nrun = [\"/bin/sh\", \"-c\", \"sleep 2; echo done slowly\"]\n");
    let id = s.fake.send_mention("C1", "U1", "slow", None);
    let d = s.fake.wait_acked(&id, secs(5)).expect("acked");
    let ack_latency = d.acked_at.unwrap() - d.sent_at;
    assert!(
        ack_latency < Duration::from_millis(500),
        "ack took {ack_latency:?}"
    );
    let post = s
        .fake
        .wait_posts_containing("done slowly", secs(10))
        .unwrap_or_else(|| panic!("{}", p.log()));
    assert!(
        post.at > d.acked_at.unwrap() + Duration::from_secs(1),
        "the ack came first"
    );
    assert_eq!(
        s.fake.snapshot().deliveries_of(&id).len(),
        1,
        "no redelivery was needed"
    );
}

#[test]
fn a_redelivered_event_is_answered_once() {
    let s = Setup::new();
    let p = started(&s, 2, "30s", "");
    // A stopped bot cannot ack, so Slack redelivers; both copies then arrive.
    let worker = worker_of(&s);
    kill(worker, libc::SIGSTOP);
    let id = s.fake.send_mention("C1", "U1", "ping", None);
    assert!(
        s.fake
            .wait_for(secs(8), |snap| (snap.deliveries_of(&id).len() >= 2)
                .then_some(()))
            .is_some(),
        "the fake redelivered"
    );
    kill(worker, libc::SIGCONT);
    assert!(
        s.fake.wait_posts_containing("pong", secs(5)).is_some(),
        "{}",
        p.log()
    );
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        s.fake.posts_containing("pong").len(),
        1,
        "answered once:\n{}",
        p.log()
    );
    assert!(p.log().contains("already handled"), "{}", p.log());
}

fn reconnect_loses_no_event(reason: &str) {
    let s = Setup::new();
    let p = started(&s, 2, "30s", "");
    let before: Vec<u64> = s.fake.live_connections().iter().map(|c| c.id).collect();
    s.fake.disconnect(None, reason);
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(s.fake.send_mention("C1", "U1", &format!("ping {i}"), None));
        std::thread::sleep(Duration::from_millis(150));
    }
    let done = s.fake.wait_for(secs(15), |snap| {
        (snap.posts_containing("pong").len() >= 10).then_some(())
    });
    assert!(
        done.is_some(),
        "{reason}: not every event was answered:\n{}",
        p.log()
    );
    for id in &ids {
        assert!(
            s.fake.snapshot().acked(id).is_some(),
            "{reason}: {id} never acked"
        );
    }
    let snap = s.fake.snapshot();
    let new: Vec<_> = snap
        .connections
        .iter()
        .filter(|c| !before.contains(&c.id) && c.is_live())
        .collect();
    assert_eq!(new.len(), 2, "{reason}: two fresh connections");
    // Make before break: each new connection said hello before an old one closed.
    let first_close = snap
        .connections
        .iter()
        .filter(|c| before.contains(&c.id))
        .filter_map(|c| c.closed_at)
        .min()
        .unwrap();
    assert!(
        new.iter()
            .filter(|c| c.hello_at.unwrap() < first_close)
            .count()
            >= 1,
        "{reason}: a new connection opened before the old closed"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        s.fake.posts_containing("pong").len(),
        10,
        "{reason}: none answered twice"
    );
}

#[test]
fn reconnect_after_warning_loses_no_event() {
    reconnect_loses_no_event("warning");
}

#[test]
fn reconnect_after_refresh_requested_loses_no_event() {
    reconnect_loses_no_event("refresh_requested");
}

#[test]
fn link_disabled_exits_78_with_advice() {
    let s = Setup::new();
    let mut p = started(&s, 1, "30s", "");
    s.fake.disconnect(None, "link_disabled");
    let status = p.wait_exit(secs(10)).expect("exits");
    assert_eq!(status.code(), Some(78), "{}", p.log());
    assert!(p.log().contains("Socket Mode"), "{}", p.log());
}

#[test]
fn a_half_open_socket_is_replaced_within_the_heartbeat_timeout() {
    let s = Setup::new();
    let p = started(&s, 2, "2s", "");
    let t0 = Instant::now();
    let stale = s.fake.half_open(None);
    assert_eq!(stale.len(), 2);
    let fresh = s.fake.wait_for(secs(8), |snap| {
        let live: Vec<_> = snap
            .live_connections()
            .into_iter()
            .filter(|c| !stale.contains(&c.id))
            .collect();
        (live.len() == 2).then_some(Instant::now())
    });
    let replaced_after = fresh.unwrap_or_else(|| panic!("not replaced:\n{}", p.log())) - t0;
    assert!(
        replaced_after < Duration::from_millis(4000),
        "replaced after {replaced_after:?}:\n{}",
        p.log()
    );
    s.fake.send_mention("C1", "U1", "ping", None);
    assert!(s.fake.wait_posts_containing("pong", secs(5)).is_some());
    assert!(p.log().contains("half-open"), "{}", p.log());
}

#[test]
fn rate_limits_are_honoured() {
    let s = Setup::new();
    s.fake.rate_limit("apps.connections.open", 1, 2);
    let p = started(&s, 1, "30s", "");
    let calls = s.fake.snapshot().calls_to("apps.connections.open");
    assert_eq!(calls[0].status, 429);
    let gap = calls[1].at - calls[0].at;
    assert!(
        gap >= Duration::from_secs(2),
        "retried after {gap:?}, before Retry-After"
    );

    s.fake.rate_limit("chat.postMessage", 1, 2);
    s.fake.send_mention("C1", "U1", "ping", None);
    assert!(
        s.fake.wait_posts_containing("pong", secs(8)).is_some(),
        "{}",
        p.log()
    );
    let posts = s
        .fake
        .wait_for(secs(2), |snap| {
            let c = snap.calls_to("chat.postMessage");
            (c.len() >= 2).then_some(c)
        })
        .expect("two calls recorded");
    assert_eq!((posts[0].status, posts[1].status), (429, 200));
    assert!(
        posts[1].at - posts[0].at >= Duration::from_secs(2),
        "post retried before Retry-After"
    );
}

#[test]
fn invalid_auth_exits_78() {
    let s = Setup::new();
    s.fake.set_token_error(Some("invalid_auth"));
    let cfg = s.config(1, "30s", "");
    let mut p = s.spawn(&cfg, &["run"]);
    let status = p.wait_exit(secs(10)).expect("exits");
    assert_eq!(status.code(), Some(78), "{}", p.log());
    assert!(p.log().contains("invalid_auth"), "{}", p.log());
    assert_no_panic(&p.log());
}

#[test]
fn a_token_revoked_while_running_exits_78() {
    let s = Setup::new();
    let mut p = started(&s, 1, "30s", "");
    s.fake.set_token_error(Some("token_revoked"));
    s.fake.disconnect(None, "refresh_requested");
    let status = p.wait_exit(secs(10)).expect("exits");
    assert_eq!(status.code(), Some(78), "{}", p.log());
    assert!(p.log().contains("token_revoked"), "{}", p.log());
}

#[test]
fn a_second_instance_is_refused_with_the_holders_pid() {
    let s = Setup::new();
    let first = started(&s, 1, "30s", "");
    let out = s.output(&s.path("config.toml"), &["run"]);
    assert_eq!(out.status.code(), Some(75));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("already running with pid {}", first.pid())),
        "{err}"
    );
}

#[test]
fn sighup_reloads_without_a_gap() {
    let s = Setup::new();
    let p = started(&s, 2, "30s", "");
    let old: Vec<u64> = s.fake.live_connections().iter().map(|c| c.id).collect();
    s.config(2, "30s", "[[command]]\nname = \"hello\"\nrun = [\"/bin/echo\", \"hello from the reloaded config\"]\n");
    p.signal(libc::SIGHUP);
    let snap = s
        .fake
        .wait_for(secs(10), |snap| {
            let all_old_closed = snap
                .connections
                .iter()
                .filter(|c| old.contains(&c.id))
                .all(|c| c.closed_at.is_some());
            let new_live = snap
                .live_connections()
                .iter()
                .filter(|c| !old.contains(&c.id))
                .count();
            (all_old_closed && new_live == 2).then(|| snap.clone())
        })
        .unwrap_or_else(|| panic!("connections were not replaced:\n{}", p.log()));
    for c in snap.connections.iter().filter(|c| old.contains(&c.id)) {
        let closed = c.closed_at.unwrap();
        assert!(
            snap.connections
                .iter()
                .any(|n| !old.contains(&n.id) && n.hello_at.unwrap() < closed),
            "a connection closed before its replacement said hello"
        );
    }
    s.fake.send_mention("C1", "U1", "hello", None);
    assert!(
        s.fake
            .wait_posts_containing("hello from the reloaded config", secs(5))
            .is_some(),
        "{}",
        p.log()
    );
}

#[test]
fn sigterm_stops_gracefully_and_finishes_work_in_progress() {
    let s = Setup::new();
    let mut p = started(
        &s,
        1,
        "30s",
        "[[command]]\nname = \"slow\"\nrun = [\"/bin/sh\", \"-c\", \"sleep 1; echo finished\"]\n",
    );
    s.fake.send_mention("C1", "U1", "slow", None);
    std::thread::sleep(Duration::from_millis(300));
    p.signal(libc::SIGTERM);
    let status = p.wait_exit(secs(10)).expect("stops");
    assert_eq!(status.code(), Some(0), "{}", p.log());
    assert!(
        s.fake.posts_containing("finished").len() == 1,
        "in-flight work finished:\n{}",
        p.log()
    );
    assert!(!s.path("run/slackbotd.pid").exists() || fs_lock_free(&s.path("run/slackbotd.pid")));
}

fn fs_lock_free(p: &std::path::Path) -> bool {
    let f = std::fs::File::open(p).unwrap();
    f.try_lock().is_ok()
}

#[test]
fn status_describes_the_foreground_bot() {
    let s = Setup::new();
    let mut p = started(&s, 2, "30s", "");
    let cfg = s.path("config.toml");
    let ok = wait_until(secs(5), || {
        s.output(&cfg, &["status", "--json"]).status.code() == Some(0)
    });
    assert!(ok, "{}", p.log());
    let out = s.output(&cfg, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "run");
    assert_eq!(v["pid"], p.pid());
    assert_eq!(v["connections"], 2);
    // `run` supervises its bot as a worker, as daemon mode does.
    assert_eq!(v["worker_pid"], worker_of(&s));
    assert_ne!(v["worker_pid"], v["pid"]);
    // The documented interface: every field INSTALL.md lists is there, and
    // nothing is there that it does not list.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/INSTALL.md")).unwrap();
    let table = doc
        .split("### `status --json`")
        .nth(1)
        .expect("INSTALL.md documents status --json");
    let documented: std::collections::BTreeSet<String> = table
        .lines()
        .take_while(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            let cell = l.split('|').nth(1).unwrap_or("");
            cell.split(',')
                .map(|f| f.trim().trim_matches('`').to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let present: std::collections::BTreeSet<String> =
        v.as_object().unwrap().keys().cloned().collect();
    assert_eq!(present, documented, "status --json and INSTALL.md agree");
    assert_eq!(v["schema"], 1);
    let text = String::from_utf8_lossy(&s.output(&cfg, &["status"]).stdout).into_owned();
    assert!(
        text.contains("running (run mode") && text.contains("healthy"),
        "{text}"
    );
    p.signal(libc::SIGTERM);
    p.wait_exit(secs(10)).unwrap();
    assert_eq!(s.output(&cfg, &["status"]).status.code(), Some(3));
}
