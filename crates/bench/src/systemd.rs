//! Healing under a real systemd, booted in a container (`crates/nspawn`):
//! for each unit (a minimal one as the yardstick, the shipped one, and any
//! given with `--unit`), the cold start from fork to READY as systemd's own
//! timestamps record it, `kill -9` of the bot's worker and of the unit's main
//! process to the fake's next hello, and the unit's `systemd-analyze
//! security` rating; and daemon mode in the same container, for comparison.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fake_slack::FakeSlack;
use nspawn::Container;

use crate::measure::Failed;

/// The unit every figure is compared with: notify, credentials, Restart=.
pub const MINIMAL: &str = "[Unit]\nDescription=slackbotd, minimal unit (benchmark yardstick)\n\n\
[Service]\nType=notify\nNotifyAccess=main\n\
ExecStart=/opt/slackbotd/slackbotd --config /etc/slackbotd/slackbotd.toml run\n\
Restart=on-failure\nRestartSec=0\n\
LoadCredential=slack-app-token:/etc/slackbotd/app-token\n\
LoadCredential=slack-bot-token:/etc/slackbotd/bot-token\n";

/// What every hardening group needs to start at all: its own state and
/// runtime directories (`ProtectSystem=strict` makes the rest read-only).
const DIRS: &str = "RuntimeDirectory=slackbotd\nStateDirectory=slackbotd\n";

/// The shipped unit's hardening, in groups, each measured alone on top of
/// the minimal unit with [`DIRS`]: where the cold start's time goes.
pub const GROUPS: &[(&str, &str)] = &[
    ("ProtectKernelTunables", "ProtectKernelTunables=yes\n"),
    ("the file-system group", "ProtectSystem=strict\nProtectHome=yes\nPrivateTmp=yes\nPrivateMounts=yes\nPrivateDevices=yes\nPrivateIPC=yes\n"),
    ("ProtectProc", "ProtectProc=invisible\n"),
    ("DynamicUser", "DynamicUser=yes\n"),
    ("ProtectKernelLogs", "ProtectKernelLogs=yes\n"),
    ("ProtectKernelModules", "ProtectKernelModules=yes\n"),
    ("ProtectControlGroups", "ProtectControlGroups=yes\n"),
    ("PrivateUsers", "PrivateUsers=yes\n"),
    ("SystemCallFilter", "SystemCallArchitectures=native\nSystemCallFilter=@system-service\nSystemCallFilter=~@privileged @resources\nSystemCallErrorNumber=EPERM\n"),
    ("the rest", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK\nRestrictNamespaces=yes\nRestrictRealtime=yes\nRestrictSUIDSGID=yes\nLockPersonality=yes\nProtectHostname=yes\nProtectClock=yes\nNoNewPrivileges=yes\nCapabilityBoundingSet=\nKeyringMode=private\nRemoveIPC=yes\nUMask=0077\n"),
];

/// What one unit measured.
#[derive(Debug, Clone, Default)]
pub struct UnitFigures {
    /// The unit's name in the table.
    pub name: String,
    /// fork → READY=1 (ms), per start.
    pub start: Vec<f64>,
    /// `kill -9` of the worker → the next hello (ms).
    pub worker_kill: Vec<f64>,
    /// `kill -9` of the unit's main process → the next hello (ms).
    pub main_kill: Vec<f64>,
    /// `systemd-analyze security` of the unit file.
    pub security: Option<f64>,
}

/// Everything measured in the container.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// One entry per unit, the minimal one first.
    pub units: Vec<UnitFigures>,
    /// Daemon mode: `kill -9` of the worker → the next hello (ms).
    pub daemon_kill: Vec<f64>,
    /// Cold starts of the minimal unit with [`DIRS`] (the base), then with
    /// each of [`GROUPS`] added, in that order.
    pub groups: Vec<UnitFigures>,
    /// `slackbotd ensure` inside the container, the shipped unit healthy (ms).
    pub ensure: Vec<f64>,
    /// `slackbotd --version` inside the container, the yardstick (ms).
    pub version: Vec<f64>,
}

/// Whether this machine can boot the container.
pub fn available() -> Option<String> {
    nspawn::missing_prerequisites()
}

/// The shipped unit, pointed at the binary inside the container.
pub fn shipped() -> String {
    include_str!("../../../etc/slackbotd.service")
        .replace("/usr/local/bin/slackbotd", "/opt/slackbotd/slackbotd")
        .replace("/usr/bin/slackbotd", "/opt/slackbotd/slackbotd")
}

/// The rating `systemd-analyze security --offline` gives a unit text.
pub fn security(unit: &str) -> Option<f64> {
    let dir = std::env::temp_dir().join(format!("slackbotd-bench-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join("slackbotd.service");
    std::fs::write(&path, unit).ok()?;
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&path)
        .output()
        .ok()?;
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    line.split(':')
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn hello_after(fake: &FakeSlack, conns: usize, timeout: Duration) -> Option<Instant> {
    fake.wait_for(timeout, |s| {
        s.connections.get(conns).and_then(|c| c.hello_at)
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mono_us(c: &Container, unit: &str, prop: &str) -> u64 {
    c.prop(unit, prop).parse().unwrap_or(0)
}

fn worker_host_pid(c: &Container) -> Option<u32> {
    let out = c.sh("cat /run/slackbotd/slackbotd.supervisor");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    c.host_pid(v["worker_pid"].as_u64()? as u32)
}

fn kill(pid: u32) {
    // SAFETY: kill has no memory effects.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

/// Boots a container with `bot` inside and measures each unit, then daemon mode.
pub fn measure(
    bot: &Path,
    units: &[(String, String)],
    starts: usize,
    kills: usize,
) -> Result<Figures, Failed> {
    let fake = FakeSlack::start_with(fake_slack::Options::default()).map_err(|e| e.to_string())?;
    let log =
        std::env::temp_dir().join(format!("slackbotd-bench-nspawn-{}.log", std::process::id()));
    let bot = std::fs::canonicalize(bot).map_err(|e| e.to_string())?;
    let c = Container::boot(&format!("sbd-bench-{}", std::process::id()), &bot, &log);
    let config = format!(
        "[slack]\napi_url = {:?}\nconnections = 1\n\n[supervise]\nbackoff_initial = \"100ms\"\n",
        fake.api_url()
    );
    c.write("/etc/slackbotd/slackbotd.toml", &config, 0o644);
    c.write(
        "/etc/slackbotd/app-token",
        &format!("{}\n", fake.app_token()),
        0o600,
    );
    c.write(
        "/etc/slackbotd/bot-token",
        &format!("{}\n", fake.bot_token()),
        0o600,
    );
    let mut out = Figures::default();
    for (name, text) in units {
        crate::progress(&format!("systemd: the {name} unit"));
        out.units
            .push(one_unit(&c, &fake, name, text, starts, kills)?);
    }
    crate::progress("systemd: ensure on the healthy shipped unit");
    (out.ensure, out.version) = ensure(&c, starts * 3)?;
    crate::progress("systemd: the cold start, one hardening group at a time");
    let base = format!("{MINIMAL}{DIRS}");
    out.groups
        .push(one_unit(&c, &fake, "base", &base, starts, 0)?);
    for (name, lines) in GROUPS {
        out.groups.push(one_unit(
            &c,
            &fake,
            name,
            &format!("{base}{lines}"),
            starts,
            0,
        )?);
    }
    crate::progress("systemd: daemon mode in the same container");
    out.daemon_kill = daemon(&c, &fake, kills)?;
    let _ = std::fs::remove_file(&log);
    Ok(out)
}

fn one_unit(
    c: &Container,
    fake: &FakeSlack,
    name: &str,
    text: &str,
    starts: usize,
    kills: usize,
) -> Result<UnitFigures, Failed> {
    const UNIT: &str = "slackbotd.service";
    let path = PathBuf::from("/run/systemd/system").join(UNIT);
    c.write(&path.display().to_string(), text, 0o644);
    // The minimal unit runs as root: give it the state directory the shipped one gets.
    c.ok("mkdir -p /var/lib/slackbotd /run/slackbotd && systemctl daemon-reload && systemctl reset-failed slackbotd 2>/dev/null; true");
    let mut f = UnitFigures {
        name: name.to_string(),
        security: security(text),
        ..UnitFigures::default()
    };
    for _ in 0..starts {
        c.sh("systemctl stop slackbotd");
        let out = c.sh("systemctl start slackbotd");
        if !out.status.success() {
            return Err(format!(
                "the {name} unit did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let fork = mono_us(c, UNIT, "ExecMainStartTimestampMonotonic");
        let ready = mono_us(c, UNIT, "ActiveEnterTimestampMonotonic");
        f.start.push(ready.saturating_sub(fork) as f64 / 1000.0);
    }
    for i in 0..kills * 2 {
        // A healthy run first, so no backoff applies.
        std::thread::sleep(Duration::from_millis(1200));
        let main = i % 2 == 1;
        let pid = if main {
            let guest: u32 = c.prop(UNIT, "MainPID").parse().unwrap_or(0);
            c.host_pid(guest)
        } else {
            worker_host_pid(c)
        }
        .ok_or("no process to kill")?;
        let conns = fake.snapshot().connections.len();
        let t0 = Instant::now();
        kill(pid);
        let h = hello_after(fake, conns, Duration::from_secs(30))
            .ok_or_else(|| format!("the {name} unit did not come back after a kill"))?;
        let d = ms(h.saturating_duration_since(t0));
        if main {
            f.main_kill.push(d);
            // The start limit must not end the series.
            c.sh("systemctl reset-failed slackbotd");
        } else {
            f.worker_kill.push(d);
        }
    }
    c.sh("systemctl stop slackbotd");
    c.sh(&format!(
        "rm -f {}; systemctl daemon-reload",
        path.display()
    ));
    Ok(f)
}

/// `ensure` on the healthy shipped unit, and `--version`, each `n` times,
/// both through the same `nsenter` (so its cost is in both).
fn ensure(c: &Container, n: usize) -> Result<(Vec<f64>, Vec<f64>), Failed> {
    let path = "/run/systemd/system/slackbotd.service";
    c.write(path, &shipped(), 0o644);
    c.ok("systemctl daemon-reload && systemctl reset-failed slackbotd 2>/dev/null; systemctl start slackbotd");
    std::thread::sleep(Duration::from_millis(1500));
    let time = |cmd: &str| -> Result<Vec<f64>, Failed> {
        let mut v = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let out = c.sh(cmd);
            v.push(ms(t.elapsed()));
            if !out.status.success() || !out.stdout.is_empty() && cmd.ends_with("ensure") {
                return Err(format!(
                    "`{cmd}` on a healthy unit was not silent: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(v)
    };
    let ensure = time("/opt/slackbotd/slackbotd --config /etc/slackbotd/slackbotd.toml ensure")?;
    let version = time("/opt/slackbotd/slackbotd --version")?;
    c.sh(&format!(
        "systemctl stop slackbotd; rm -f {path}; systemctl daemon-reload"
    ));
    Ok((ensure, version))
}

fn daemon(c: &Container, fake: &FakeSlack, kills: usize) -> Result<Vec<f64>, Failed> {
    let out = c.sh("/opt/slackbotd/slackbotd daemon --wait 30s");
    if !out.status.success() {
        return Err(format!(
            "the daemon did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut v = Vec::new();
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(1200));
        let pid = worker_host_pid(c).ok_or("no daemon worker")?;
        let conns = fake.snapshot().connections.len();
        let t0 = Instant::now();
        kill(pid);
        let h = hello_after(fake, conns, Duration::from_secs(30)).ok_or("no hello after a kill")?;
        v.push(ms(h.saturating_duration_since(t0)));
    }
    c.sh("/opt/slackbotd/slackbotd stop");
    Ok(v)
}
