//! The two bots under measurement and how to start, find and stop them:
//! slackbotd (foreground `run`, or `daemon` for restarts) and the Python
//! Slack Bolt peer, both pointed at one fake Slack.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_slack::FakeSlack;

/// Which bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Slackbotd,
    Bolt,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Slackbotd => "slackbotd",
            Kind::Bolt => "Bolt (Python)",
        }
    }
}

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Programs {
    pub bot: PathBuf,
    pub python: Option<PathBuf>,
    pub peer: PathBuf,
}

/// A scratch directory with tokens and a slackbotd configuration for one fake.
pub struct Scratch {
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl Scratch {
    pub fn new(fake: &FakeSlack, tag: &str) -> std::io::Result<Scratch> {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("slackbotd-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        for (name, value) in [
            ("app-token", fake.app_token()),
            ("bot-token", fake.bot_token()),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, format!("{value}\n"))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
        }
        let config = dir.join("slackbotd.toml");
        std::fs::write(
            &config,
            format!(
                "[slack]\napi_url = {:?}\nconnections = 1\n\n[daemon]\npidfile = {:?}\nstate_dir = {:?}\nsyslog_socket = {:?}\n\n\
                 [supervise]\nbackoff_initial = \"100ms\"\nbackoff_max = \"5s\"\n\n[ensure]\nlockfile = {:?}\n",
                fake.api_url(),
                dir.join("run/slackbotd.pid"),
                dir.join("state"),
                dir.join("no-syslog.sock"),
                dir.join("ensure.lock"),
            ),
        )?;
        Ok(Scratch { dir, config })
    }

    /// Turns the metrics endpoint on, on a free loopback port; the port.
    pub fn enable_metrics(&self) -> std::io::Result<u16> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut text = std::fs::read_to_string(&self.config)?;
        text.push_str(&format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
        std::fs::write(&self.config, text)?;
        Ok(port)
    }

    /// The daemon's supervisor record (worker pid).
    pub fn worker_pid(&self) -> Option<u32> {
        let text = std::fs::read(self.dir.join("run/slackbotd.supervisor")).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
        v["worker_pid"].as_u64().map(|p| p as u32)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a bot in the foreground.
pub fn spawn(kind: Kind, p: &Programs, fake: &FakeSlack, s: &Scratch) -> std::io::Result<Child> {
    match kind {
        Kind::Slackbotd => Command::new(&p.bot)
            .arg("--config")
            .arg(&s.config)
            .arg("run")
            .env("SLACKBOTD_LOG", "warn")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn(),
        Kind::Bolt => Command::new(p.python.as_ref().expect("python for the peer"))
            .arg(&p.peer)
            .env("SLACK_API_URL", fake.api_url())
            .env("SLACK_APP_TOKEN", fake.app_token())
            .env("SLACK_BOT_TOKEN", fake.bot_token())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn(),
    }
}

/// Sends a signal.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill has no memory effects.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// SIGTERM, then SIGKILL after 5 s; reaps the child.
pub fn stop(mut child: Child) {
    signal(child.id(), libc::SIGTERM);
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `RssAnon`, …).
pub fn status_kib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A `/proc/PID/status` field summed over a process and its descendants.
pub fn tree_kib(pid: u32, field: &str) -> Option<f64> {
    let mut total = status_kib(pid, field)?;
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        total += tree_kib(c, field).unwrap_or(0.0);
    }
    Some(total)
}

/// PSS (KiB) summed over a process and its descendants.
pub fn tree_pss_kib(pid: u32) -> Option<f64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let mut total: f64 = rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        total += tree_pss_kib(c).unwrap_or(0.0);
    }
    Some(total)
}

/// Whether a file exists and is executable.
pub fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
