//! The shipped unit, `install`, `ensure` and the cron line against a real
//! systemd and a real cron, booted in a container (see common/container.rs).
//! Missing prerequisites skip these tests loudly, but fail them under CI=true.

mod common;

use std::time::{Duration, Instant};

use common::container::{self, Container};
use common::*;

const UNIT: &str = "slackbotd.service";

/// Follows INSTALL.md inside a fresh container: `install`, the tokens, the
/// configuration, `check`, `systemctl enable --now`. Returns the container
/// with the bot running.
fn installed(s: &Setup, name: &str, heartbeat: &str) -> Container {
    let c = Container::boot(
        name,
        std::path::Path::new(bin()),
        &s.path(&format!("{name}.log")),
    );
    let out = c.ok("/opt/slackbotd/slackbotd install");
    assert!(out.contains("Next steps"), "{out}");
    assert!(c.ok("stat -c %a /etc/slackbotd/app-token").trim() == "600");
    container::configure(
        &c,
        s,
        &format!("s|^# heartbeat_timeout = .*|heartbeat_timeout = \"{heartbeat}\"|; s|^# channel = .*|channel = \"C0OPS\"|"),
    );
    let check = c.sh("/opt/slackbotd/slackbotd check");
    assert!(
        check.status.success(),
        "check: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    // Test only: a 3 s watchdog instead of the shipped 30 s, so a hang is
    // caught in seconds rather than half a minute.
    c.write(
        "/etc/systemd/system/slackbotd.service.d/test-watchdog.conf",
        "[Service]\nWatchdogSec=3s\n",
        0o644,
    );
    c.ok("systemctl daemon-reload");
    let before = s.fake.snapshot().connections.len();
    c.ok("systemctl enable --now slackbotd");
    let snap = s.fake.snapshot();
    assert!(
        snap.connections
            .iter()
            .skip(before)
            .any(|x| x.hello_at.is_some()),
        "`systemctl start` returned only after hello"
    );
    assert_eq!(c.prop(UNIT, "ActiveState"), "active");
    c
}

fn pings(s: &Setup) -> usize {
    s.fake.posts_containing("pong").len()
}

fn ping_answered(s: &Setup) -> bool {
    let n = pings(s);
    s.fake.send_mention("C1", "U1", "ping", None);
    s.fake
        .wait_for(secs(15), |snap| {
            (snap.posts_containing("pong").len() > n).then_some(())
        })
        .is_some()
}

fn main_host_pid(c: &Container) -> u32 {
    let guest: u32 = c.prop(UNIT, "MainPID").parse().unwrap();
    assert!(guest > 0, "no main pid");
    c.host_pid(guest).expect("main pid mapped to the host")
}

/// The host pid of the unit's bot worker (the main process supervises it).
fn worker_host_pid(c: &Container) -> u32 {
    let rec: serde_json::Value =
        serde_json::from_str(&c.ok("cat /run/slackbotd/slackbotd.supervisor")).unwrap();
    let guest = rec["worker_pid"].as_u64().expect("a worker") as u32;
    c.host_pid(guest).expect("worker pid mapped to the host")
}

fn journal(c: &Container) -> String {
    c.ok("journalctl --no-pager -o cat -t slackbotd")
}

#[test]
fn the_shipped_unit_keeps_the_bot_alive() {
    if !container::require() {
        return;
    }
    let s = Setup::new();
    let c = installed(&s, "sbd-unit", "3s");
    assert!(ping_answered(&s));
    let status = c.ok("systemctl status --no-pager slackbotd");
    assert!(status.contains("Status: \"Connected to Slack"), "{status}");

    // The journal gets structured fields: an operator command run can be
    // found by its name, with who asked and how it ended.
    s.fake.send_mention("C1", "U1", "uptime", None);
    assert!(s
        .fake
        .wait_for(secs(15), |snap| snap
            .posts
            .iter()
            .any(|p| p.text.contains("load average"))
            .then_some(()))
        .is_some());
    let mut found = String::new();
    assert!(
        wait_until(secs(5), || {
            found = c.ok("journalctl --no-pager -o json -u slackbotd COMMAND=uptime");
            !found.trim().is_empty()
        }),
        "no record with COMMAND=uptime:\n{}",
        c.ok("journalctl --no-pager -o json -u slackbotd | tail -5")
    );
    let record: serde_json::Value = serde_json::from_str(found.lines().last().unwrap())
        .expect("journalctl -o json lines parse");
    for field in ["COMMAND", "USER", "CHANNEL", "EXIT", "DURATION_MS"] {
        assert!(record.get(field).is_some(), "{field} in {record}");
    }
    assert_eq!(record["USER"], "U1", "{record}");
    assert_eq!(record["EXIT"], "0", "{record}");

    // kill -9: systemd restarts it and it answers again.
    kill(main_host_pid(&c), libc::SIGKILL);
    assert!(
        c.wait_unit(UNIT, secs(15), |u| u["NRestarts"] == "1"
            && u["ActiveState"] == "active"),
        "{:?}",
        c.show(UNIT)
    );
    assert!(ping_answered(&s));

    // SIGSTOP: the watchdog fires, the unit recovers.
    kill(main_host_pid(&c), libc::SIGSTOP);
    assert!(
        c.wait_unit(UNIT, secs(20), |u| u["NRestarts"] == "2"
            && u["ActiveState"] == "active"),
        "{:?}",
        c.show(UNIT)
    );
    assert!(
        journal(&c).contains("atchdog timeout")
            || c.ok("journalctl --no-pager -u slackbotd")
                .contains("atchdog timeout")
    );
    assert!(ping_answered(&s));

    // A half-open socket that cannot be replaced: the bot stops feeding the watchdog.
    s.fake.server_error("apps.connections.open", 1_000_000);
    s.fake.half_open(None);
    let t = Instant::now();
    assert!(
        c.wait_unit(UNIT, secs(25), |u| u["NRestarts"] == "3"),
        "{:?}",
        c.show(UNIT)
    );
    assert!(
        t.elapsed() >= Duration::from_secs(3),
        "not before the heartbeat timeout"
    );
    s.fake.clear_faults();
    assert!(
        c.wait_unit(UNIT, secs(20), |u| u["ActiveState"] == "active"),
        "{:?}",
        c.show(UNIT)
    );
    assert!(ping_answered(&s));

    // A revoked token: exit 78, failed, and no restart loop.
    s.fake.set_token_error(Some("token_revoked"));
    s.fake.disconnect(None, "refresh_requested");
    assert!(
        c.wait_unit(UNIT, secs(15), |u| u["ActiveState"] == "failed"),
        "{:?}",
        c.show(UNIT)
    );
    std::thread::sleep(secs(3));
    let u = c.show(UNIT);
    assert_eq!(
        (
            u["ActiveState"].as_str(),
            u["ExecMainStatus"].as_str(),
            u["NRestarts"].as_str()
        ),
        ("failed", "78", "3"),
        "{u:?}"
    );
    assert!(journal(&c).contains("token_revoked"));

    // ensure honours RestartPreventExitStatus=78: it says so, and leaves the unit failed.
    let out = c.sh("/opt/slackbotd/slackbotd ensure");
    assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty());
    std::thread::sleep(secs(1));
    assert_eq!(c.prop(UNIT, "ActiveState"), "failed");
    assert!(
        journal(&c).contains("stopped with exit 78"),
        "{}",
        journal(&c)
    );
}

#[test]
fn ensure_and_cron_repair_what_systemd_missed() {
    if !container::require() {
        return;
    }
    let s = Setup::new();
    let c = installed(&s, "sbd-ensure", "3s");
    let ensure = || {
        let out = c.sh("/opt/slackbotd/slackbotd ensure");
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "ensure must be silent: {:?} {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };

    // Healthy: nothing happens.
    let pid = c.prop(UNIT, "MainPID");
    ensure();
    assert_eq!(c.prop(UNIT, "MainPID"), pid);

    // Died, and systemd did not restart it: started.
    // Test only: no Restart=, so a crash leaves the unit failed.
    c.write(
        "/etc/systemd/system/slackbotd.service.d/test-no-restart.conf",
        "[Service]\nRestart=no\n",
        0o644,
    );
    c.ok("systemctl daemon-reload");
    kill(main_host_pid(&c), libc::SIGKILL);
    assert!(
        c.wait_unit(UNIT, secs(15), |u| u["ActiveState"] == "failed"),
        "{:?}",
        c.show(UNIT)
    );
    ensure();
    assert!(
        c.wait_unit(UNIT, secs(15), |u| u["ActiveState"] == "active"),
        "{:?}",
        c.show(UNIT)
    );
    assert!(
        journal(&c).contains("ensure: slackbotd.service was failed"),
        "{}",
        journal(&c)
    );
    c.ok("rm /etc/systemd/system/slackbotd.service.d/test-no-restart.conf && systemctl daemon-reload");

    // Start limit hit: reset and started.
    // Test only: a start limit of 2 so three quick restarts hit it.
    c.write(
        "/etc/systemd/system/slackbotd.service.d/test-limit.conf",
        "[Unit]\nStartLimitBurst=2\nStartLimitIntervalSec=5min\n",
        0o644,
    );
    c.ok("systemctl daemon-reload");
    for _ in 0..3 {
        let _ = c.sh("systemctl restart slackbotd");
    }
    assert!(
        c.wait_unit(UNIT, secs(10), |u| u["Result"] == "start-limit-hit"),
        "{:?}",
        c.show(UNIT)
    );
    ensure();
    assert!(
        c.wait_unit(UNIT, secs(15), |u| u["ActiveState"] == "active"),
        "{:?}",
        c.show(UNIT)
    );
    assert!(journal(&c).contains("hit its start limit; reset it"));
    c.ok("rm /etc/systemd/system/slackbotd.service.d/test-limit.conf && systemctl daemon-reload");

    // Auto-restarting: left to systemd.
    // Test only: a long RestartSec keeps the unit in auto-restart while ensure looks.
    c.write(
        "/etc/systemd/system/slackbotd.service.d/test-slow-restart.conf",
        "[Service]\nRestartSec=2min\n",
        0o644,
    );
    c.ok("systemctl daemon-reload");
    kill(main_host_pid(&c), libc::SIGKILL);
    assert!(
        c.wait_unit(UNIT, secs(10), |u| u["SubState"] == "auto-restart"),
        "{:?}",
        c.show(UNIT)
    );
    ensure();
    std::thread::sleep(secs(1));
    assert_eq!(
        c.prop(UNIT, "SubState"),
        "auto-restart",
        "ensure left it alone"
    );
    assert!(journal(&c).contains("leaving it to systemd's restart backoff"));
    c.ok("rm /etc/systemd/system/slackbotd.service.d/test-slow-restart.conf && systemctl daemon-reload && systemctl restart slackbotd");

    // Active but hung, with the watchdog off: ensure is the backstop.
    // Test only: no watchdog, so that ensure, not systemd, must notice.
    c.write(
        "/etc/systemd/system/slackbotd.service.d/test-watchdog.conf",
        "[Service]\nWatchdogSec=0\n",
        0o644,
    );
    c.ok("systemctl daemon-reload && systemctl restart slackbotd");
    let hung = c.prop(UNIT, "MainPID");
    // The main process and its worker both frozen: nothing inside can heal itself.
    let worker = worker_host_pid(&c);
    kill(main_host_pid(&c), libc::SIGSTOP);
    kill(worker, libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(7500));
    assert_eq!(
        c.prop(UNIT, "ActiveState"),
        "active",
        "systemd did not notice"
    );
    ensure();
    assert!(
        c.wait_unit(UNIT, secs(40), |u| u["ActiveState"] == "active"
            && u["MainPID"] != hung
            && u["MainPID"] != "0"),
        "{:?}",
        c.show(UNIT)
    );
    assert!(journal(&c).contains("is active but deaf or hung"));
    assert!(ping_answered(&s));

    // An administrator stops the unit and runs the bot in the foreground:
    // ensure sees the lock held and leaves both alone.
    c.ok("systemctl stop slackbotd");
    c.ok("setsid /opt/slackbotd/slackbotd run >/dev/null 2>&1 < /dev/null &");
    assert!(wait_until(secs(10), || c
        .sh("/opt/slackbotd/slackbotd status")
        .status
        .code()
        == Some(0)));
    ensure();
    std::thread::sleep(secs(1));
    assert_eq!(
        c.prop(UNIT, "ActiveState"),
        "inactive",
        "ensure did not start a second bot"
    );
    assert!(journal(&c).contains("runs outside it"), "{}", journal(&c));
    c.ok("/opt/slackbotd/slackbotd stop");
    c.ok("systemctl start slackbotd");

    // The cron line from etc/, run by the real cron: a bot that died comes back.
    let cron = c.ok("cat /etc/cron.d/slackbotd");
    assert!(
        cron.contains("/opt/slackbotd/slackbotd --config /etc/slackbotd/slackbotd.toml ensure"),
        "{cron}"
    );
    c.ok("systemctl restart cron");
    c.write(
        "/etc/systemd/system/slackbotd.service.d/test-no-restart.conf",
        "[Service]\nRestart=no\n",
        0o644,
    );
    c.ok("systemctl daemon-reload");
    kill(main_host_pid(&c), libc::SIGKILL);
    assert!(
        c.wait_unit(UNIT, secs(15), |u| u["ActiveState"] == "failed"),
        "{:?}",
        c.show(UNIT)
    );
    let t = Instant::now();
    assert!(
        // Two cron minutes: in this container a start right after a kill can
        // fail with 219/CGROUP while the old cgroup empties (cgroup v1); the
        // next cron run then starts it.
        c.wait_unit(UNIT, secs(140), |u| u["ActiveState"] == "active"),
        "cron did not bring it back: {:?}\n{}",
        c.show(UNIT),
        journal(&c)
    );
    eprintln!(
        "cron brought the bot back after {:.0}s",
        t.elapsed().as_secs_f64()
    );
    assert!(ping_answered(&s));
}

#[test]
fn the_unit_is_hardened_and_verifies_clean() {
    if !container::require() {
        return;
    }
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/slackbotd.service");
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", unit])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .expect("a rating");
    eprintln!("{line}");
    let score: f64 = line
        .split(':')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(score <= 2.0, "{line}");

    let dir = tempfile::tempdir().unwrap();
    let rendered = std::fs::read_to_string(unit)
        .unwrap()
        .replace("/usr/local/bin/slackbotd", bin());
    let path = dir.path().join("slackbotd.service");
    std::fs::write(&path, rendered).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Lines in the journal where cron ran `ensure`.
fn cron_ensure_runs(c: &Container) -> usize {
    c.ok("journalctl --no-pager -o cat -t CRON")
        .lines()
        .filter(|l| l.contains("slackbotd.toml ensure"))
        .count()
}

#[test]
fn deliberate_stops_stick_and_a_broken_unit_never_brings_the_classic_daemon() {
    if !container::require() {
        return;
    }
    let s = Setup::new();
    let c = installed(&s, "sbd-stops", "30s");
    c.ok("systemctl restart cron");

    // systemctl stop, then three cron minutes: it stays stopped.
    c.ok("systemctl stop slackbotd");
    let before = cron_ensure_runs(&c);
    let end = Instant::now() + secs(220);
    while cron_ensure_runs(&c) < before + 3 {
        assert!(Instant::now() < end, "cron did not run ensure three times");
        assert_ne!(c.prop(UNIT, "ActiveState"), "active", "started again");
        std::thread::sleep(secs(2));
    }
    std::thread::sleep(secs(2));
    assert_eq!(c.prop(UNIT, "ActiveState"), "inactive");
    let said = journal(&c)
        .lines()
        .filter(|l| l.contains("stopped on purpose (systemctl stop)"))
        .count();
    assert_eq!(said, 1, "said once, not every minute:\n{}", journal(&c));

    let ensure = || c.sh("/opt/slackbotd/slackbotd ensure");
    // Disabled, or masked: it stays stopped.
    c.ok("systemctl start slackbotd && systemctl disable --now slackbotd");
    ensure();
    ensure();
    std::thread::sleep(secs(1));
    assert_eq!(c.prop(UNIT, "ActiveState"), "inactive");
    assert!(
        journal(&c).contains("and disabled; leaving it stopped"),
        "{}",
        journal(&c)
    );
    // Masking needs the unit outside /etc, where the package puts it too.
    c.ok(
        "mv /etc/systemd/system/slackbotd.service /run/systemd/system/ && systemctl daemon-reload",
    );
    c.ok("systemctl enable --now slackbotd && systemctl mask --now slackbotd");
    ensure();
    std::thread::sleep(secs(1));
    assert_eq!(c.prop(UNIT, "ActiveState"), "inactive");
    assert!(journal(&c).contains("masked"), "{}", journal(&c));
    c.ok("systemctl unmask slackbotd && systemctl enable --now slackbotd");
    assert!(ping_answered(&s));

    // A unit file systemd cannot load: ensure says so and starts no classic daemon.
    c.ok("systemctl stop slackbotd");
    c.ok("sed -i 's|^Type=notify|Type=bogus|; s|^ExecStart=/|ExecStart=relative/|' /run/systemd/system/slackbotd.service && systemctl daemon-reload");
    let load = c.prop(UNIT, "LoadState");
    assert_ne!(load, "loaded", "the unit is broken");
    let out = ensure();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("the classic daemon is not started instead"),
        "{load}: {err}"
    );
    std::thread::sleep(secs(2));
    let daemons = c.sh("pgrep -f '[s]lackbotd.toml daemon' || true");
    assert!(
        daemons.stdout.is_empty(),
        "no classic daemon: {:?}",
        daemons
    );
    assert!(c.sh("/opt/slackbotd/slackbotd status").status.code() == Some(3));
}

#[test]
fn a_maintenance_window_ends_on_time_and_a_burst_survives_both_kills() {
    if !container::require() {
        return;
    }
    let s = Setup::new();
    let c = installed(&s, "sbd-window", "30s");
    c.ok("systemctl restart cron");

    // In-unit healing: the worker killed in a burst, the unit untouched.
    let ids = s.fake.send_burst(400, "ping {n}");
    assert!(wait_posts_with(&s.fake, "pong", 40, secs(20)));
    let worker = worker_host_pid(&c);
    kill(worker, libc::SIGKILL);
    let all_answered = |ids: &[String]| wait_answered(&s.fake, ids, secs(60)).is_ok();
    assert!(
        all_answered(&ids),
        "every ping answered after the worker's kill:\n{}",
        journal(&c)
    );
    assert_eq!(c.prop(UNIT, "NRestarts"), "0", "healed inside the unit");
    assert!(worker_host_pid(&c) != worker);

    // The unit's main process killed in a burst: systemd restarts it.
    let more = s.fake.send_burst(400, "ping {n}");
    assert!(wait_posts_with(&s.fake, "pong", 440, secs(20)));
    kill(main_host_pid(&c), libc::SIGKILL);
    assert!(
        all_answered(&more),
        "every ping answered after the main process's kill:\n{}",
        journal(&c)
    );
    std::thread::sleep(Duration::from_millis(500));
    let n = replies_in(&s.fake.snapshot());
    assert!(n.values().all(|c| *c == 1), "none answered twice");
    assert_eq!(s.fake.posts_containing("pong").len(), 800);
    assert_eq!(c.prop(UNIT, "NRestarts"), "1");

    // stop --for 90s: down for the window, back on the first cron run after it.
    let out = c.ok("/opt/slackbotd/slackbotd stop --for 90s");
    assert!(out.contains("for 1m 30s"), "{out}");
    let t = Instant::now();
    let before = cron_ensure_runs(&c);
    while t.elapsed() < secs(85) {
        assert_ne!(
            c.prop(UNIT, "ActiveState"),
            "active",
            "started inside the window"
        );
        std::thread::sleep(secs(2));
    }
    assert!(cron_ensure_runs(&c) > before, "cron ran inside the window");
    assert!(c
        .ok("/opt/slackbotd/slackbotd status || true")
        .contains("stopped on purpose"));
    assert!(
        c.wait_unit(UNIT, secs(80), |u| u["ActiveState"] == "active"),
        "not back after the window: {:?}",
        c.show(UNIT)
    );
    assert!(t.elapsed() >= secs(90));
    assert!(ping_answered(&s));
}
