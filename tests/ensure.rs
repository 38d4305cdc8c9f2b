//! `slackbotd ensure` without systemd: silent when healthy, starts the
//! daemon when nothing runs, replaces a stale holder, never starts two.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

struct E(WithSyslog);

impl std::ops::Deref for E {
    type Target = WithSyslog;
    fn deref(&self) -> &WithSyslog {
        &self.0
    }
}

impl E {
    fn new(heartbeat: &str) -> E {
        // Relative paths in a configuration are relative to its directory.
        E(WithSyslog::new(
            1,
            heartbeat,
            "[ensure]\nlockfile = \"ensure.lock\"\ntimeout = \"20s\"\n",
        ))
    }

    fn ensure(&self) -> std::process::Output {
        self.cmd(&["ensure"]).output().unwrap()
    }
}

fn silent(out: &std::process::Output) -> bool {
    out.status.code() == Some(0) && out.stdout.is_empty() && out.stderr.is_empty()
}

#[test]
fn thirty_concurrent_ensures_with_nothing_running_leave_exactly_one_daemon() {
    let e = E::new("30s");
    let runs: Vec<_> = (0..30)
        .map(|_| {
            e.cmd(&["ensure"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = runs
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outs {
        assert!(
            silent(o),
            "ensure is silent: {:?} {} {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let cfg = e.cfg.to_str().unwrap();
    assert!(
        wait_until(secs(5), || processes_with(&[cfg, "daemon"]).len() == 1),
        "{:?}",
        processes_with(&[cfg, "daemon"])
    );
    assert_eq!(processes_with(&[cfg, "worker"]).len(), 1);
    assert_eq!(e.s.fake.live_connections().len(), 1);
    let started = e
        .syslog
        .lines()
        .iter()
        .filter(|l| l.contains("ensure: slackbotd was not running; started the daemon"))
        .count();
    assert_eq!(started, 1, "{:?}", e.syslog.lines());
}

#[test]
fn a_healthy_daemon_is_left_alone_in_silence() {
    let e = E::new("30s");
    assert!(silent(&e.ensure()));
    let pid = e.holder().expect("started");
    let connections = e.s.fake.snapshot().connections.len();
    let t = Instant::now();
    let out = e.ensure();
    assert!(silent(&out));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the healthy path is quick: {:?}",
        t.elapsed()
    );
    assert_eq!(e.holder(), Some(pid));
    assert_eq!(
        e.s.fake.snapshot().connections.len(),
        connections,
        "nothing was reconnected"
    );
}

#[test]
fn a_stale_holder_is_replaced() {
    let e = E::new("1s");
    assert!(silent(&e.ensure()));
    let old = e.holder().unwrap();
    let cfg = e.cfg.to_str().unwrap();
    let worker = processes_with(&[cfg, "worker"])[0];
    // Supervisor and worker both frozen: nothing inside can heal itself.
    kill(old, libc::SIGSTOP);
    kill(worker, libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(2600));
    let out = e.ensure();
    assert!(silent(&out), "{}", String::from_utf8_lossy(&out.stderr));
    let new = e.holder().expect("a new daemon");
    assert_ne!(new, old);
    assert!(
        e.syslog.wait_line("is stale", secs(2)).is_some(),
        "{:?}",
        e.syslog.lines()
    );
    assert!(
        wait_until(secs(10), || processes_with(&[cfg, "worker"]).len() == 1),
        "the frozen worker is gone"
    );
    e.s.fake.send_mention("C1", "U1", "ping", None);
    assert!(e.s.fake.wait_posts_containing("pong", secs(10)).is_some());
}

#[test]
fn a_held_ensure_lock_means_another_run_is_in_charge() {
    let e = E::new("30s");
    std::fs::write(
        &e.cfg,
        std::fs::read_to_string(&e.cfg)
            .unwrap()
            .replace("timeout = \"20s\"", "timeout = \"2s\""),
    )
    .unwrap();
    let f = std::fs::File::create(e.s.path("ensure.lock")).unwrap();
    f.lock().unwrap();
    let t = Instant::now();
    let out = e.ensure();
    assert!(silent(&out));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "bounded: {:?}",
        t.elapsed()
    );
    assert_eq!(e.holder(), None, "it started nothing");
    assert!(e.syslog.wait_line("another ensure run", secs(2)).is_some());
}

#[test]
fn a_broken_configuration_is_reported_loudly() {
    let e = E::new("30s");
    std::fs::write(&e.cfg, "[slack]\nconections = 2\n").unwrap();
    let out = e.ensure();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("conections"));
}

#[test]
fn a_failing_start_is_reported_on_stderr_and_syslog() {
    let e = E::new("30s");
    e.s.fake.set_token_error(Some("invalid_auth"));
    let out = e.ensure();
    assert_eq!(
        out.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_auth"));
    assert!(
        e.syslog
            .wait_line("starting the daemon failed", secs(2))
            .is_some(),
        "{:?}",
        e.syslog.lines()
    );
}

#[test]
fn a_deliberate_stop_sticks_until_the_daemon_is_started_again() {
    let e = E::new("30s");
    assert!(silent(&e.ensure()));
    assert!(e.holder().is_some(), "started");
    let out = e.cmd(&["stop"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("leaves it stopped"));
    for _ in 0..3 {
        assert!(silent(&e.ensure()));
        assert_eq!(e.holder(), None, "left stopped");
    }
    let said = e
        .syslog
        .lines()
        .iter()
        .filter(|l| l.contains("stopped on purpose (by "))
        .count();
    assert_eq!(said, 1, "said once, not every run: {:?}", e.syslog.lines());
    let status = e.cmd(&["status"]).output().unwrap();
    assert_eq!(status.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("stopped on purpose (by "),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    // Started by hand: the mark is gone, and ensure keeps it running again.
    let out = e.cmd(&["daemon"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let pid = e.holder().unwrap();
    e.cmd(&["stop"]).output().unwrap();
    assert!(std::fs::read_dir(e.s.path("state"))
        .unwrap()
        .any(|f| f.unwrap().file_name() == "stopped.json"));
    e.cmd(&["daemon"]).output().unwrap();
    assert_ne!(e.holder(), Some(pid));
    kill(e.holder().unwrap(), libc::SIGKILL);
    assert!(wait_until(secs(5), || e.holder().is_none()));
    assert!(silent(&e.ensure()));
    assert!(e.holder().is_some(), "a crash is repaired");
}

#[test]
fn a_maintenance_window_ends_on_time() {
    let e = E::new("30s");
    assert!(silent(&e.ensure()));
    let out = e.cmd(&["stop", "--for", "3s"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("for 3s"));
    let status = String::from_utf8_lossy(&e.cmd(&["status"]).output().unwrap().stdout).into_owned();
    assert!(status.contains(", until "), "{status}");
    assert!(silent(&e.ensure()));
    assert_eq!(e.holder(), None, "inside the window");
    std::thread::sleep(Duration::from_millis(3200));
    assert!(silent(&e.ensure()));
    assert!(e.holder().is_some(), "after the window");
}
