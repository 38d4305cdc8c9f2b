//! Shared test support: a fake Slack, a private directory with tokens and a
//! configuration pointing at the fake, and the real `slackbotd` binary run as
//! a child process whose stderr is kept for assertions.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod container;
pub mod pg;

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
        Setup::with_options(Options {
            log_events: std::env::var_os("FAKE_SLACK_LOG").is_some(),
            ..Options::default()
        })
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

/// Runs `cmd` with `input` on its stdin and collects its output.
pub fn output_with_stdin(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    // A child that exits without reading (a bad configuration) closes the pipe.
    match child.stdin.take().unwrap().write_all(input) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.unwrap(),
    }
    child.wait_with_output().unwrap()
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

/// A syslog daemon stand-in: a datagram socket collecting lines.
pub struct SyslogListener {
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SyslogListener {
    pub fn bind(path: &Path) -> SyslogListener {
        let _ = std::fs::remove_file(path);
        let sock = UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (l, s) = (lines.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    l.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        });
        SyslogListener {
            lines,
            stop,
            thread: Some(thread),
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn wait_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(l) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return Some(l);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for SyslogListener {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join(); // the socket closes with the thread, as when syslogd exits
        }
    }
}

/// Sends a signal to a pid.
pub fn kill(pid: u32, sig: i32) {
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// The pid holding the flock on `path`, read the way `status` does.
pub fn lock_holder(path: &Path) -> Option<u32> {
    let f = std::fs::File::open(path).ok()?;
    match f.try_lock_shared() {
        Ok(()) => None,
        Err(_) => std::fs::read_to_string(path).ok()?.trim().parse().ok(),
    }
}

/// A field of /proc/PID/stat (1-based, as in proc(5)).
pub fn proc_field(pid: u32, field: usize) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(field - 3)?.parse().ok()
}

/// Live processes whose command line contains all of `words`.
pub fn processes_with(words: &[&str]) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = state
            .rfind(')')
            .is_some_and(|i| state[i + 2..].starts_with('Z'));
        if !zombie && words.iter().all(|w| cmd.contains(w)) {
            out.push(pid);
        }
    }
    out
}

/// A setup whose bot logs to a syslog listener of its own, for the daemon
/// and `ensure` tests; stops whatever it started when dropped.
pub struct WithSyslog {
    pub s: Setup,
    pub cfg: PathBuf,
    pub syslog: SyslogListener,
}

impl WithSyslog {
    /// `connections`, `heartbeat` and `extra` as in [`Setup::config_text`].
    pub fn new(connections: u8, heartbeat: &str, extra: &str) -> WithSyslog {
        let s = Setup::new();
        let sock = s.path("log.sock");
        let syslog = SyslogListener::bind(&sock);
        let cfg = s.path("config.toml");
        let text = s.config_text(connections, heartbeat, extra).replace(
            "[daemon]\n",
            &format!("[daemon]\nsyslog_socket = {sock:?}\n"),
        );
        fs::write(&cfg, text).unwrap();
        WithSyslog { s, cfg, syslog }
    }

    /// `slackbotd --config CFG ARGS…`, ready to run.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--config")
            .arg(&self.cfg)
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null());
        c
    }

    /// The pidfile of the configuration.
    pub fn pidfile(&self) -> PathBuf {
        self.s.path("run/slackbotd.pid")
    }

    /// Who holds the pidfile lock.
    pub fn holder(&self) -> Option<u32> {
        lock_holder(&self.pidfile())
    }
}

impl Drop for WithSyslog {
    fn drop(&mut self) {
        let _ = self.cmd(&["stop", "--timeout", "10s"]).output();
        if let Some(pid) = self.holder() {
            kill(pid, libc::SIGKILL);
        }
    }
}

/// The event a post answers, by the idempotency key the bot derives from it.
pub fn answered_event(p: &fake_slack::Post) -> Option<&str> {
    p.metadata
        .as_ref()
        .and_then(|m| m.pointer("/event_payload/idempotency_key"))
        .and_then(|k| k.as_str())
        .and_then(|k| k.strip_prefix("sbd-r-"))
}

/// How many replies each event got, by the idempotency key the bot derives
/// from the event (usable inside `wait_for`, which holds the fake's lock).
pub fn replies_in(snap: &fake_slack::Snapshot) -> std::collections::HashMap<String, usize> {
    let mut n = std::collections::HashMap::new();
    for p in &snap.posts {
        if let Some(k) = answered_event(p) {
            *n.entry(k.to_string()).or_insert(0) += 1;
        }
    }
    n
}

/// Waits until every event in `ids` has a reply. It looks only at the posts
/// that are new since its last look: the check runs under the fake's lock
/// after every change, and must stay cheap while thousands of posts pile up.
/// Returns the events still unanswered at the timeout.
pub fn wait_answered(
    fake: &FakeSlack,
    ids: &[String],
    timeout: Duration,
) -> Result<(), Vec<String>> {
    let mut missing: std::collections::HashSet<String> = ids.iter().cloned().collect();
    let mut looked = 0;
    let done = fake.wait_for(timeout, |snap| {
        for p in &snap.posts[looked..] {
            if let Some(k) = answered_event(p) {
                missing.remove(k);
            }
        }
        looked = snap.posts.len();
        missing.is_empty().then_some(())
    });
    match done {
        Some(()) => Ok(()),
        None => Err(ids
            .iter()
            .filter(|i| missing.contains(*i))
            .cloned()
            .collect()),
    }
}

/// Waits until at least `n` posts contain `text`, looking only at new posts
/// each time (see [`wait_answered`]).
pub fn wait_posts_with(fake: &FakeSlack, text: &str, n: usize, timeout: Duration) -> bool {
    let (mut looked, mut found) = (0, 0);
    fake.wait_for(timeout, |snap| {
        found += snap.posts[looked..]
            .iter()
            .filter(|p| p.text.contains(text))
            .count();
        looked = snap.posts.len();
        (found >= n).then_some(())
    })
    .is_some()
}
