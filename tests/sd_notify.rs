//! READY, STATUS, WATCHDOG and STOPPING arrive on a real `NOTIFY_SOCKET`
//! datagram socket, at the right moments.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;

struct Listener {
    sock: UnixDatagram,
}

impl Listener {
    fn bind(path: &std::path::Path) -> Listener {
        let sock = UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Listener { sock }
    }

    /// Messages received within `d`, each with its arrival time.
    fn collect(&self, d: Duration) -> Vec<(Instant, String)> {
        let end = Instant::now() + d;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                out.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
        }
        out
    }

    /// Waits for a message containing `needle`.
    fn wait_for(&self, needle: &str, d: Duration) -> Option<(Instant, String)> {
        let end = Instant::now() + d;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                if m.contains(needle) {
                    return Some((Instant::now(), m));
                }
            }
        }
        None
    }
}

#[test]
fn ready_watchdog_and_stopping_follow_health() {
    let s = Setup::new();
    let sock_path = s.path("notify.sock");
    let l = Listener::bind(&sock_path);
    let cfg = s.config(1, "2s", "");
    // WATCHDOG_PID must be the bot's own pid: exec keeps the shell's.
    let mut p = s.spawn_with(&cfg, &[], |c| {
        let prog = c.get_program().to_owned();
        let args: Vec<_> = c.get_args().map(|a| a.to_owned()).collect();
        *c = std::process::Command::new("/bin/sh");
        c.arg("-c")
            .arg("WATCHDOG_PID=$$ exec \"$@\" run")
            .arg("sh")
            .arg(prog)
            .args(args)
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "1000000")
            .env("SLACKBOTD_LOG", "debug")
            .stdin(std::process::Stdio::null())
            .stderr(std::fs::File::create(s.path("notify-bot.log")).unwrap());
    });
    p.log = s.path("notify-bot.log");

    let (ready_at, ready) = l
        .wait_for("READY=1", secs(10))
        .unwrap_or_else(|| panic!("no READY=1:\n{}", p.log()));
    let hello = s.fake.snapshot().connections[0]
        .hello_at
        .expect("hello sent");
    assert!(hello <= ready_at, "READY=1 only after hello");
    assert!(ready.contains("STATUS=Connected to Slack"), "{ready}");
    let healthy = l.collect(Duration::from_millis(1500));
    assert!(
        healthy
            .iter()
            .filter(|(_, m)| m.contains("WATCHDOG=1"))
            .count()
            >= 2,
        "watchdog fed while healthy: {healthy:?}"
    );

    // Half-open, and no way to reconnect: the watchdog must go hungry.
    s.fake.server_error("apps.connections.open", 1000);
    s.fake.half_open(None);
    let _draining = l.collect(Duration::from_millis(2500));
    let sick = l.collect(Duration::from_millis(2500));
    assert!(
        !sick.iter().any(|(_, m)| m.contains("WATCHDOG=1")),
        "watchdog fed while unhealthy: {sick:?}\n{}",
        p.log()
    );
    assert!(
        sick.iter().any(|(_, m)| m.contains("STATUS=Unhealthy")) || p.log().contains("unhealthy"),
        "{sick:?}"
    );

    s.fake.clear_faults();
    assert!(
        l.wait_for("WATCHDOG=1", secs(10)).is_some(),
        "watchdog fed again after recovery:\n{}",
        p.log()
    );

    p.signal(libc::SIGTERM);
    assert!(l.wait_for("STOPPING=1", secs(5)).is_some());
    assert_eq!(
        p.wait_exit(secs(10)).and_then(|s| s.code()),
        Some(0),
        "{}",
        p.log()
    );
}
