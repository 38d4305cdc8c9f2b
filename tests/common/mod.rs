//! Shared test support: a fake Slack, a private directory with tokens and a
//! configuration pointing at the fake, and the real `slackbotd` binary run as
//! a child process whose stderr is kept for assertions.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use fake_slack::{FakeSlack, Options};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_slackbotd")
}

/// A fake Slack plus a scratch directory holding tokens and configuration.
pub struct Setup {
    pub fake: FakeSlack,
    pub dir: tempfile::TempDir,
}

impl Setup {
    /// A fake with default options.
    pub fn new() -> Setup {
        Setup::with_options(Options::default())
    }

    /// A fake with these options.
    pub fn with_options(opts: Options) -> Setup {
        let fake = FakeSlack::start_with(opts).expect("fake Slack starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let s = Setup { fake, dir };
        s.write_secret("app-token", &format!("{}\n", s.fake.app_token()));
        s.write_secret("bot-token", &format!("{}\n", s.fake.bot_token()));
        s
    }

    /// A file in the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file with mode 0600.
    pub fn write_secret(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    /// The base configuration: the fake's URL, private tokens, files in the
    /// scratch directory, a short heartbeat; `extra` is appended.
    pub fn config_text(&self, connections: u8, heartbeat: &str, extra: &str) -> String {
        format!(
            "[slack]\napp_token_file = {app:?}\nbot_token_file = {bot:?}\napi_url = {url:?}\nconnections = {connections}\n\n\
             [daemon]\npidfile = {pid:?}\nstate_dir = {state:?}\n\n\
             [supervise]\nbackoff_initial = \"50ms\"\nbackoff_max = \"1s\"\nheartbeat_timeout = {heartbeat:?}\nstop_timeout = \"5s\"\n\n{extra}\n",
            app = self.path("app-token"),
            bot = self.path("bot-token"),
            url = self.fake.api_url(),
            pid = self.path("run/slackbotd.pid"),
            state = self.path("state"),
        )
    }

    /// Writes `config.toml` and returns its path.
    pub fn config(&self, connections: u8, heartbeat: &str, extra: &str) -> PathBuf {
        let p = self.path("config.toml");
        fs::write(&p, self.config_text(connections, heartbeat, extra)).unwrap();
        p
    }

    /// Starts `slackbotd --config CONFIG ARGS…` with stderr to a log file.
    pub fn spawn(&self, config: &Path, args: &[&str]) -> Proc {
        self.spawn_with(config, args, |_| {})
    }

    /// As [`Setup::spawn`], letting the caller adjust the command first.
    pub fn spawn_with(
        &self,
        config: &Path,
        args: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Proc {
        let log = self.path(&format!("stderr-{}.log", unique()));
        let mut c = Command::new(bin());
        c.arg("--config")
            .arg(config)
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("SLACK_APP_TOKEN")
            .env_remove("SLACK_BOT_TOKEN")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env("SLACKBOTD_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        adjust(&mut c);
        let child = c.spawn().expect("slackbotd starts");
        Proc { child, log }
    }

    /// Runs `slackbotd --config CONFIG ARGS…` to completion.
    pub fn output(&self, config: &Path, args: &[&str]) -> std::process::Output {
        Command::new(bin())
            .arg("--config")
            .arg(config)
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("SLACK_APP_TOKEN")
            .env_remove("SLACK_BOT_TOKEN")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::null())
            .output()
            .expect("slackbotd runs")
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A running slackbotd.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What it wrote to stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for it to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until its log contains `text`.
    pub fn wait_log(&self, text: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(text))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 20 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Seconds, for brevity.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Asserts a process log shows no panic.
pub fn assert_no_panic(log: &str) {
    assert!(!log.contains("panicked"), "a panic was logged:\n{log}");
}
