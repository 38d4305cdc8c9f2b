//! The daemon's supervisor: a small, single-threaded process that holds the
//! lock, runs the bot worker as a child (its own binary, re-executed), and
//! restarts it after a crash, a non-zero exit or a hang.
//!
//! Signals arrive through a signalfd and the worker's stderr through a pipe,
//! both watched by one `poll`, so there are no handlers and no threads. A hang
//! is a heartbeat older than `heartbeat_timeout`: the worker gets SIGTERM (and
//! SIGCONT, in case it was stopped), then SIGKILL after `stop_timeout`. The
//! first restart after a healthy run is immediate; the backoff doubles from
//! `backoff_initial` to `backoff_max` only while the worker keeps dying young.
//! Exit 78 (configuration or credentials) ends the loop.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use super::daemonize::ReadyWriter;
use super::heartbeat::{self, Heartbeat};
use super::lock::PidLock;
use super::record::{self, ExitRecord, SupervisorRecord};
use crate::clock::now_ms;
use crate::config::{Config, SuperviseConfig};
use crate::slack::backoff::Backoff;

/// A worker that was ready for at least this long had a healthy run: the
/// restart after it is immediate and the backoff starts over.
pub const HEALTHY_RUN: Duration = Duration::from_secs(1);

/// What the supervisor needs to know.
#[derive(Debug)]
pub struct Plan {
    /// The configuration file, absolute.
    pub config_path: PathBuf,
    /// The configuration as loaded before the fork.
    pub config: Config,
    /// How long the starting command waits for the first hello: until then a
    /// failing first worker fails the start; after it, the worker is simply
    /// restarted like any other.
    pub wait: Duration,
}

/// How one worker's life ended.
enum End {
    /// It exited (or was killed); `hang` when we killed it for silence.
    Exited {
        status: ExitStatus,
        lifetime: Duration,
        ready_for: Option<Duration>,
        hang: Option<String>,
        last_words: String,
    },
    /// We were asked to stop (SIGTERM/SIGINT) and the worker is gone.
    Stopped,
}

struct Supervisor {
    plan: Plan,
    sup: SuperviseConfig,
    lock: PidLock,
    ready: Option<ReadyWriter>,
    sigfd: SignalFd,
    hb_path: PathBuf,
    rec_path: PathBuf,
    rec: SupervisorRecord,
    pending_downtime: Option<Instant>,
    store: Option<crate::store::Store>,
    started: Instant,
}

/// Runs the supervisor until told to stop or the worker exits 78; returns the exit code.
pub fn supervise(plan: Plan, lock: PidLock, mut ready: ReadyWriter) -> u8 {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    let sigfd = match mask
        .thread_block()
        .map_err(std::io::Error::from)
        .and_then(|_| {
            SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
                .map_err(std::io::Error::from)
        }) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!("cannot set up signal handling: {e}");
            ready.failed(71, &format!("cannot set up signal handling: {e}"));
            return 71;
        }
    };
    ready.started(std::process::id());
    let pidfile = lock.path().to_path_buf();
    let sup = plan.config.supervise.clone();
    let mut s = Supervisor {
        sup,
        hb_path: heartbeat::path_for(&pidfile),
        rec_path: record::path_for(&pidfile),
        rec: SupervisorRecord {
            pid: std::process::id(),
            started_ms: now_ms(),
            ..Default::default()
        },
        plan,
        lock,
        ready: Some(ready),
        sigfd,
        pending_downtime: None,
        store: None,
        started: Instant::now(),
    };
    s.store = match crate::store::Store::open(
        &s.plan.config.daemon.state_dir,
        crate::store::Durability::Normal,
    ) {
        Ok(st) => Some(st),
        Err(e) => {
            tracing::warn!("{e}; worker exits are not recorded for the restart announcement");
            None
        }
    };
    let code = s.run();
    s.rec.worker_pid = None;
    s.save();
    let _ = std::fs::remove_file(&s.hb_path);
    if let Err(e) = s.lock.clear() {
        tracing::warn!("cannot clear the pidfile: {e}");
    }
    code
}

fn describe(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!(
            "killed by signal {sig} ({})",
            Signal::try_from(sig)
                .map(|s| s.as_str())
                .unwrap_or("unknown")
        ),
        _ => "an unknown end".to_string(),
    }
}

impl Supervisor {
    fn save(&self) {
        if let Err(e) = record::write(&self.rec_path, &self.rec) {
            tracing::warn!("cannot write {}: {e}", self.rec_path.display());
        }
    }

    fn run(&mut self) -> u8 {
        let mut backoff = Backoff::new(self.sup.backoff_initial, self.sup.backoff_max);
        loop {
            let child = match self.spawn() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("cannot start the worker: {e}");
                    if let Some(r) = self.ready.take() {
                        r.failed(71, &format!("cannot start the worker: {e}"));
                        return 71;
                    }
                    if self.sleep(backoff.next_delay()) {
                        return 0;
                    }
                    continue;
                }
            };
            let (status, lifetime, ready_for, hang, last_words) = match self.watch(child) {
                End::Stopped => return 0,
                End::Exited {
                    status,
                    lifetime,
                    ready_for,
                    hang,
                    last_words,
                } => (status, lifetime, ready_for, hang, last_words),
            };
            let cause = match &hang {
                Some(why) => format!("hung ({why}); ended by {}", describe(&status)),
                None => describe(&status),
            };
            self.rec.push(ExitRecord {
                at_ms: now_ms(),
                cause: cause.clone(),
                code: status.code(),
                signal: status.signal(),
                hang: hang.is_some(),
                lifetime_ms: lifetime.as_millis() as u64,
                downtime_ms: None,
            });
            self.rec.worker_pid = None;
            self.save();
            if let Some(st) = self.store.as_mut() {
                if let Err(e) = st.record_exit(crate::store::now_ms(), "daemon", &cause, false) {
                    tracing::warn!("cannot record the worker's exit: {e}");
                }
            }
            let words = if last_words.is_empty() {
                String::new()
            } else {
                format!(": {last_words}")
            };
            if status.code() == Some(78) {
                tracing::error!(
                    "the worker exited 78 (configuration or credentials){words}; not restarting"
                );
                if let Some(r) = self.ready.take() {
                    r.failed(78, last_words.trim_start_matches("slackbotd: "));
                }
                return 78;
            }
            if self.started.elapsed() >= self.plan.wait {
                // The starting command has stopped waiting: restart as usual.
                self.ready = None;
            }
            if let Some(r) = self.ready.take() {
                // The first worker never became ready: starting failed.
                let code = status
                    .code()
                    .filter(|c| (64..=78).contains(c))
                    .unwrap_or(70) as u8;
                let msg = if last_words.is_empty() {
                    format!("the worker ended ({cause}) before connecting to Slack")
                } else {
                    last_words.trim_start_matches("slackbotd: ").to_string()
                };
                tracing::error!("the worker ended ({cause}) before it was ready{words}");
                r.failed(code, &msg);
                return code;
            }
            self.rec.restarts += 1;
            self.pending_downtime = Some(Instant::now());
            let healthy = ready_for.is_some_and(|d| d >= HEALTHY_RUN);
            let delay = if healthy {
                backoff.reset();
                Duration::ZERO
            } else {
                backoff.next_delay()
            };
            tracing::warn!(
                "the worker ended after {}: {cause}{words}; restart {} {}",
                crate::bot::builtins::human(lifetime),
                self.rec.restarts,
                if delay.is_zero() {
                    "now".to_string()
                } else {
                    format!("in {} ms (it keeps dying young)", delay.as_millis())
                }
            );
            if !delay.is_zero() && self.sleep(delay) {
                return 0;
            }
        }
    }

    /// Starts the worker: this very binary, `worker` subcommand.
    fn spawn(&mut self) -> std::io::Result<Child> {
        let me = Pid::this();
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg0("slackbotd")
            .arg("--config")
            .arg(&self.plan.config_path)
            .arg("worker")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let empty = libc_sigset_empty();
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                // The worker must not outlive its supervisor.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if libc::getppid() != me.as_raw() {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        if let Some(err) = &child.stderr {
            let fd = err.as_raw_fd();
            // SAFETY: fcntl on a descriptor we own.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFL);
                libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
        self.rec.worker_pid = Some(child.id());
        self.rec.worker_started_ms = Some(now_ms());
        self.save();
        tracing::info!("worker started with pid {}", child.id());
        Ok(child)
    }

    /// Watches one worker until it ends or we are told to stop.
    fn watch(&mut self, mut child: Child) -> End {
        let pid = child.id();
        let started = Instant::now();
        let mut ready_at: Option<Instant> = None;
        let mut hang: Option<String> = None;
        let mut term_sent: Option<Instant> = None;
        let mut stopping = false;
        let mut stderr = child.stderr.take();
        let mut pending = String::new();
        let mut last_words = String::new();
        let startup_limit = self.sup.heartbeat_timeout.max(Duration::from_secs(30));
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                drain(&mut stderr, &mut pending, &mut last_words, true);
                if stopping {
                    return End::Stopped;
                }
                return End::Exited {
                    status,
                    lifetime: started.elapsed(),
                    ready_for: ready_at.map(|t| t.elapsed()),
                    hang,
                    last_words,
                };
            }
            let timeout = if ready_at.is_none() || term_sent.is_some() {
                20
            } else {
                250
            };
            let mut fds = vec![libc::pollfd {
                fd: self.sigfd.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if let Some(e) = &stderr {
                fds.push(libc::pollfd {
                    fd: e.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            // SAFETY: valid pollfds for the duration of the call.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if fds.get(1).is_some_and(|f| f.revents != 0) {
                drain(&mut stderr, &mut pending, &mut last_words, false);
            }
            while let Ok(Some(si)) = self.sigfd.read_signal() {
                match Signal::try_from(si.ssi_signo as i32) {
                    Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) if !stopping => {
                        tracing::info!("stopping: asking the worker (pid {pid}) to finish");
                        stopping = true;
                        term_sent = Some(Instant::now());
                        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                    }
                    Ok(Signal::SIGHUP) => self.reload(pid),
                    _ => {}
                }
            }
            let now = now_ms();
            let hb = heartbeat::read(&self.hb_path).filter(|h: &Heartbeat| h.pid == pid);
            if ready_at.is_none() && hb.as_ref().is_some_and(|h| h.last_frame_ms.is_some()) {
                ready_at = Some(Instant::now());
                tracing::info!("worker {pid} is connected to Slack");
                if let Some(r) = self.ready.take() {
                    r.ready(std::process::id());
                }
                if let Some(since) = self.pending_downtime.take() {
                    if let Some(last) = self.rec.history.last_mut() {
                        last.downtime_ms = Some(since.elapsed().as_millis() as u64);
                    }
                    self.save();
                }
            }
            if term_sent.is_none() {
                let why = match (&ready_at, &hb) {
                    (Some(_), Some(h)) if !h.is_fresh(now) => Some(match h.last_frame_age_s(now) {
                        Some(age) if now.saturating_sub(h.written_ms) <= h.heartbeat_timeout_ms => {
                            format!("no frame from Slack for {age:.0}s")
                        }
                        _ => format!(
                            "no heartbeat for {:.0}s",
                            now.saturating_sub(h.written_ms) as f64 / 1000.0
                        ),
                    }),
                    (Some(t), None) if t.elapsed() > self.sup.heartbeat_timeout => {
                        Some("its heartbeat file is gone".into())
                    }
                    (None, _) if started.elapsed() > startup_limit => Some(format!(
                        "not connected to Slack after {}s",
                        startup_limit.as_secs()
                    )),
                    _ => None,
                };
                if let Some(why) = why {
                    tracing::warn!("worker {pid} looks hung ({why}); sending SIGTERM");
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                    term_sent = Some(Instant::now());
                    hang = Some(why);
                }
            }
            if let Some(t) = term_sent {
                let grace = self.sup.stop_timeout + Duration::from_secs(1);
                if t.elapsed() > grace {
                    tracing::warn!(
                        "worker {pid} still runs {}s after SIGTERM; sending SIGKILL",
                        grace.as_secs()
                    );
                    let _ = child.kill();
                    term_sent = Some(Instant::now() + Duration::from_secs(3600));
                }
            }
        }
    }

    /// SIGHUP: re-read our own timing, pass the signal on to the worker.
    fn reload(&mut self, worker: u32) {
        match Config::load(&self.plan.config_path) {
            Ok(c) => {
                self.sup = c.supervise.clone();
                self.plan.config = c;
                tracing::info!("SIGHUP: configuration re-read; passing it on to the worker");
            }
            Err(e) => tracing::error!("SIGHUP: {e}; the worker keeps its configuration too"),
        }
        let _ = kill(Pid::from_raw(worker as i32), Signal::SIGHUP);
    }

    /// Sleeps `d`, still answering signals; true when told to stop.
    fn sleep(&mut self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut fds = [libc::pollfd {
                fd: self.sigfd.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(fds.as_mut_ptr(), 1, left.as_millis().clamp(1, 1000) as i32) };
            while let Ok(Some(si)) = self.sigfd.read_signal() {
                if matches!(
                    Signal::try_from(si.ssi_signo as i32),
                    Ok(Signal::SIGTERM) | Ok(Signal::SIGINT)
                ) {
                    tracing::info!("stopping during the restart delay");
                    return true;
                }
            }
        }
    }
}

/// An empty signal set, built without allocating (for `pre_exec`).
fn libc_sigset_empty() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        set
    }
}

/// Reads what the worker wrote on stderr and logs it line by line.
fn drain(
    stderr: &mut Option<std::process::ChildStderr>,
    pending: &mut String,
    last: &mut String,
    eof: bool,
) {
    let Some(e) = stderr else { return };
    let mut buf = [0u8; 4096];
    loop {
        match e.read(&mut buf) {
            Ok(0) => {
                *stderr = None;
                break;
            }
            Ok(n) => pending.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => break,
        }
    }
    while let Some(i) = pending.find('\n') {
        let line: String = pending.drain(..=i).collect();
        let line = line.trim_end();
        if !line.is_empty() {
            tracing::warn!("worker stderr: {line}");
            *last = line.to_string();
        }
    }
    if eof && !pending.trim().is_empty() {
        tracing::warn!("worker stderr: {}", pending.trim_end());
        *last = pending.trim_end().to_string();
        pending.clear();
    }
}
