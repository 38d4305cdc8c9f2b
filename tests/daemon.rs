//! `slackbotd daemon` for real: the double fork, the lock, the supervisor
//! healing its worker, syslog on a real datagram socket, `stop`, `status`.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A daemon test: fake Slack, syslog, configuration; stops the daemon at the end.
struct D(WithSyslog);

impl std::ops::Deref for D {
    type Target = WithSyslog;
    fn deref(&self) -> &WithSyslog {
        &self.0
    }
}

impl std::ops::DerefMut for D {
    fn deref_mut(&mut self) -> &mut WithSyslog {
        &mut self.0
    }
}

impl D {
    fn new(heartbeat: &str, extra: &str) -> D {
        D(WithSyslog::new(2, heartbeat, extra))
    }

    fn start(&self) -> std::process::Output {
        self.cmd(&["daemon", "--wait", "20s"]).output().unwrap()
    }

    /// Starts the daemon and waits until both its connections are up: the
    /// start returns at the first hello, the second follows a moment later.
    fn started(&self) -> u32 {
        let out = self.start();
        assert_eq!(
            out.status.code(),
            Some(0),
            "daemon failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            wait_until(secs(5), || self.status().1["connections"] == 2),
            "{:?}",
            self.status()
        );
        self.supervisor().expect("a supervisor holds the lock")
    }

    fn status(&self) -> (i32, Value) {
        let out = self.cmd(&["status", "--json"]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), v)
    }

    fn supervisor(&self) -> Option<u32> {
        self.holder()
    }

    fn worker(&self) -> Option<u32> {
        self.status().1["worker_pid"].as_u64().map(|p| p as u32)
    }

    /// Waits for a worker other than `old` that is connected and healthy.
    fn new_healthy_worker(&self, old: Option<u32>, timeout: Duration) -> Option<u32> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            let (code, v) = self.status();
            if code == 0 {
                if let Some(w) = v["worker_pid"].as_u64().map(|p| p as u32) {
                    if Some(w) != old {
                        return Some(w);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn ping_answered(&self, n: usize) -> bool {
        self.s.fake.send_mention("C1", "U1", "ping", None);
        self.s
            .fake
            .wait_for(secs(10), |s| {
                (s.posts_containing("pong").len() >= n).then_some(())
            })
            .is_some()
    }
}

#[test]
fn the_parent_returns_only_after_hello_and_the_daemon_is_detached() {
    let d = D::new("30s", "");
    // A descriptor without close-on-exec, which the daemon must not keep.
    let marker = d.s.path("inherited-marker");
    let f = std::fs::File::create(&marker).unwrap();
    use std::os::fd::AsRawFd;
    unsafe {
        libc::fcntl(f.as_raw_fd(), libc::F_SETFD, 0);
    }
    let out = d.start();
    drop(f);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap = d.s.fake.snapshot();
    assert!(
        snap.connections.iter().any(|c| c.hello_at.is_some()),
        "hello came before the parent returned"
    );
    let sup = d.supervisor().expect("lock held");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("pid {sup}")), "{said:?} / {sup}");

    let sid = proc_field(sup, 6).unwrap();
    assert_ne!(sid, sup as i64, "not a session leader");
    assert_eq!(proc_field(sup, 7), Some(0), "no controlling tty");
    assert_ne!(
        proc_field(sup, 4),
        Some(std::process::id() as i64),
        "not the starter's child"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{sup}/cwd")).unwrap(),
        PathBuf::from("/")
    );
    for fd in 0..3 {
        assert_eq!(
            std::fs::read_link(format!("/proc/{sup}/fd/{fd}")).unwrap(),
            PathBuf::from("/dev/null")
        );
    }
    let worker = d.worker().unwrap();
    for pid in [sup, worker] {
        for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
        {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            assert_ne!(target, marker, "pid {pid} kept an inherited descriptor");
        }
    }
    assert_eq!(
        proc_field(worker, 4),
        Some(sup as i64),
        "the worker is the supervisor's child"
    );
}

#[test]
fn a_second_daemon_and_a_run_beside_it_both_refuse_with_the_holders_pid() {
    let d = D::new("30s", "");
    let sup = d.started();
    let out = d.start();
    assert_eq!(out.status.code(), Some(75));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("already running with pid {sup}"))
    );
    let out = d.cmd(&["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(75));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("already running with pid {sup}"))
    );
}

#[test]
fn a_bad_token_fails_the_start_with_78_and_its_reason() {
    let d = D::new("30s", "");
    d.s.fake.set_token_error(Some("invalid_auth"));
    let out = d.start();
    assert_eq!(
        out.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid_auth"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(secs(5), || d.supervisor().is_none()),
        "nothing keeps running"
    );
}

#[test]
fn kill_9_of_the_worker_brings_a_new_connection_and_answers_again() {
    let d = D::new("30s", "");
    d.started();
    assert!(d.ping_answered(1));
    std::thread::sleep(Duration::from_millis(1100)); // a healthy run
    let old = d.worker().unwrap();
    let opened_before = d.s.fake.snapshot().connections.len();
    let t0 = Instant::now();
    kill(old, libc::SIGKILL);
    let new = d
        .new_healthy_worker(Some(old), secs(10))
        .expect("a new worker");
    assert_ne!(new, old);
    assert!(d.s.fake.snapshot().connections.len() > opened_before);
    assert!(
        t0.elapsed() < secs(5),
        "the first restart after a healthy run is immediate: {:?}",
        t0.elapsed()
    );
    assert!(d.ping_answered(2), "ping answered again");
    let (_, v) = d.status();
    assert_eq!(v["restarts"], 1);
    assert!(
        v["last_exit"]["cause"]
            .as_str()
            .unwrap()
            .contains("SIGKILL"),
        "{v}"
    );
}

#[test]
fn sigstop_of_the_worker_is_detected_as_a_hang_and_healed() {
    let d = D::new("2s", "");
    d.started();
    let old = d.worker().unwrap();
    kill(old, libc::SIGSTOP);
    let new = d.new_healthy_worker(Some(old), secs(20)).expect("healed");
    assert_ne!(new, old);
    assert!(d.ping_answered(1));
    let (_, v) = d.status();
    assert_eq!(v["last_exit"]["hang"], true, "{v}");
    assert!(d.syslog.wait_line("looks hung", secs(2)).is_some());
}

#[test]
fn a_crash_loop_backs_off_and_exit_78_ends_it() {
    let d = D::new("30s", "");
    std::fs::write(
        &d.cfg,
        std::fs::read_to_string(&d.cfg)
            .unwrap()
            .replace("backoff_initial = \"50ms\"", "backoff_initial = \"200ms\"")
            .replace("backoff_max = \"1s\"", "backoff_max = \"3s\""),
    )
    .unwrap();
    let sup = d.started();
    let mut gaps = Vec::new();
    let mut last = d.worker().unwrap();
    for _ in 0..4 {
        kill(last, libc::SIGKILL);
        let died = Instant::now();
        let next = loop {
            let rec: Value = serde_json::from_slice(
                &std::fs::read(d.s.path("run/slackbotd.supervisor")).unwrap_or_default(),
            )
            .unwrap_or(Value::Null);
            if let Some(w) = rec["worker_pid"].as_u64().map(|p| p as u32) {
                if w != last {
                    break w;
                }
            }
            assert!(died.elapsed() < secs(10), "no new worker");
            std::thread::sleep(Duration::from_millis(5));
        };
        gaps.push(died.elapsed());
        last = next;
    }
    // Dying young each time: the delays grow (200, 400, 800, 1600 ms nominal, jittered to half).
    assert!(
        gaps[3] >= Duration::from_millis(700),
        "backoff grew: {gaps:?}"
    );
    assert!(gaps[3] > gaps[0], "backoff grew: {gaps:?}");

    d.s.fake.set_token_error(Some("token_revoked"));
    kill(last, libc::SIGKILL);
    assert!(
        wait_until(secs(15), || d.supervisor().is_none()),
        "exit 78 ends the supervisor"
    );
    assert!(
        d.syslog.wait_line("not restarting", secs(2)).is_some(),
        "{:?}",
        d.syslog.lines()
    );
    assert!(processes_with(&[d.cfg.to_str().unwrap(), "worker"]).is_empty());
    let _ = sup;
}

#[test]
fn kill_9_of_the_supervisor_releases_the_lock_and_takes_the_worker_along() {
    let d = D::new("30s", "");
    let sup = d.started();
    let worker = d.worker().unwrap();
    kill(sup, libc::SIGKILL);
    assert!(
        wait_until(secs(5), || d.supervisor().is_none()),
        "lock released"
    );
    assert!(
        wait_until(secs(10), || processes_with(&[
            d.cfg.to_str().unwrap(),
            "worker"
        ])
        .is_empty()),
        "the orphaned worker {worker} stops too"
    );
    let (code, v) = d.status();
    assert_eq!(code, 1, "dead with a stale pidfile: {v}");
    let sup2 = d.started();
    assert_ne!(sup2, sup);
}

#[test]
fn stop_releases_the_lock_and_status_follows() {
    let d = D::new("30s", "");
    assert_eq!(d.status().0, 3, "not running");
    let sup = d.started();
    let (code, v) = d.status();
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["running"], true);
    assert_eq!(v["healthy"], true);
    assert_eq!(v["mode"], "daemon");
    assert_eq!(v["pid"], sup);
    assert_eq!(v["connections"], 2);
    assert!(v["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(v["last_event_age_s"].is_null());
    d.ping_answered(1);
    std::thread::sleep(Duration::from_millis(1100));
    assert!(d.status().1["last_event_age_s"].as_f64().unwrap() >= 1.0);

    let out = d.cmd(&["stop"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped"));
    assert!(d.supervisor().is_none());
    assert_eq!(d.status().0, 3, "a clean stop leaves no stale pidfile");
    let out = d.cmd(&["stop"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stopping what is not running is fine"
    );
}

#[test]
fn status_reports_an_unhealthy_bot_with_150() {
    let d = D::new("2s", "");
    d.started();
    d.s.fake.server_error("apps.connections.open", 10_000);
    d.s.fake.half_open(None);
    assert!(
        wait_until(secs(10), || d.status().0 == 150),
        "{:?}",
        d.status()
    );
}

#[test]
fn syslog_lines_carry_the_right_pid_and_survive_a_syslog_restart() {
    let mut d = D::new(
        "30s",
        "[[command]]\nname = \"hi\"\nrun = [\"/bin/echo\", \"hi\"]\n",
    );
    let sup = d.started();
    let worker = d.worker().unwrap();
    assert!(
        d.syslog
            .wait_line(&format!("slackbotd[{sup}]: daemon started"), secs(2))
            .is_some(),
        "{:?}",
        d.syslog.lines()
    );
    assert!(
        d.syslog
            .wait_line(&format!("slackbotd[{worker}]: "), secs(2))
            .is_some(),
        "{:?}",
        d.syslog.lines()
    );
    assert!(
        d.syslog.lines().iter().all(|l| l.starts_with("<3")),
        "facility daemon: {:?}",
        d.syslog.lines()
    );

    // syslogd restarts: the old socket goes, a new one appears at the same path.
    let path = d.s.path("log.sock");
    d.syslog = SyslogListener::bind(&d.s.path("placeholder.sock")); // the old listener exits
    d.syslog = SyslogListener::bind(&path);
    d.s.fake.send_mention("C1", "U1", "hi", None);
    assert!(d.s.fake.wait_posts_containing("hi", secs(5)).is_some());
    assert!(
        d.syslog
            .wait_line(
                &format!("slackbotd[{worker}]: ran operator command"),
                secs(5)
            )
            .is_some(),
        "{:?}",
        d.syslog.lines()
    );
    kill(sup, libc::SIGHUP);
    assert!(
        d.syslog
            .wait_line(&format!("slackbotd[{sup}]: SIGHUP"), secs(5))
            .is_some(),
        "{:?}",
        d.syslog.lines()
    );
}

#[test]
fn without_a_syslog_socket_the_daemon_says_so_and_runs() {
    let d = D::new("30s", "");
    std::fs::remove_file(d.s.path("log.sock")).unwrap();
    let out = d.start();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no syslog socket"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.ping_answered(1));
}

#[test]
fn twenty_concurrent_starts_leave_exactly_one_daemon() {
    let d = D::new("30s", "");
    let children: Vec<_> = (0..20)
        .map(|_| {
            d.cmd(&["daemon", "--wait", "30s"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<Option<i32>> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code())
        .collect();
    assert_eq!(
        codes.iter().filter(|c| **c == Some(0)).count(),
        1,
        "{codes:?}"
    );
    assert!(
        codes.iter().all(|c| *c == Some(0) || *c == Some(75)),
        "{codes:?}"
    );
    let cfg = d.cfg.to_str().unwrap();
    assert!(
        wait_until(secs(5), || processes_with(&[cfg, "daemon"]).len() == 1),
        "{:?}",
        processes_with(&[cfg, "daemon"])
    );
    assert_eq!(processes_with(&[cfg, "worker"]).len(), 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        d.s.fake.live_connections().len(),
        2,
        "one worker's two connections"
    );
}

#[test]
fn reload_passes_sighup_to_the_worker() {
    let d = D::new("30s", "");
    d.started();
    let old: Vec<u64> = d.s.fake.live_connections().iter().map(|c| c.id).collect();
    std::fs::write(
        &d.cfg,
        std::fs::read_to_string(&d.cfg).unwrap()
            + "[[command]]\nname = \"after\"\nrun = [\"/bin/echo\", \"reloaded\"]\n",
    )
    .unwrap();
    let out = d.cmd(&["reload"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        d.s.fake
            .wait_for(secs(10), |s| s
                .connections
                .iter()
                .filter(|c| old.contains(&c.id))
                .all(|c| c.closed_at.is_some())
                .then_some(()))
            .is_some(),
        "connections replaced"
    );
    d.s.fake.send_mention("C1", "U1", "after", None);
    assert!(d
        .s
        .fake
        .wait_posts_containing("reloaded", secs(5))
        .is_some());
}

#[test]
fn a_daemon_that_cannot_connect_at_first_keeps_trying_after_the_wait() {
    let d = D::new("30s", "");
    d.s.fake.server_error("apps.connections.open", 1_000_000);
    let out = d.cmd(&["daemon", "--wait", "1s"]).output().unwrap();
    assert_eq!(out.status.code(), Some(75));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has not connected to Slack within"), "{err}");
    let sup = d.supervisor().expect("the daemon keeps running");
    // The first worker gets 30 s; after that it is restarted, not given up on.
    assert!(
        wait_until(secs(50), || d
            .syslog
            .lines()
            .iter()
            .any(|l| l.contains("restart 1"))),
        "{:?}",
        d.syslog.lines()
    );
    assert_eq!(d.supervisor(), Some(sup), "the same supervisor");
    d.s.fake.clear_faults();
    assert!(d.new_healthy_worker(None, secs(20)).is_some());
    assert!(d.ping_answered(1));
}
