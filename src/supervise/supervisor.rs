//! The supervisor: a small, single-threaded process that holds the lock, runs
//! the bot worker as a child (its own binary, re-executed), and restarts it
//! after a crash, a non-zero exit or a hang.
//!
//! This file is the event loop. One `poll` watches a signalfd (no handlers,
//! no threads), the worker's notification socket (it says `READY=1` the
//! instant its first connection said hello, and `WATCHDOG=1` while healthy:
//! the supervisor passes both on to systemd when systemd runs it), and, in
//! daemon mode, the worker's stderr. What an end means and what follows is
//! decided in `policy`; a hang by `heartbeat::hang_reason`; the stop by
//! `escalate`.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use super::daemonize::ReadyWriter;
use super::escalate::Escalation;
use super::heartbeat::{self, Hang};
use super::lock::PidLock;
use super::policy::{self, Next, WorkerEnd};
use super::record::{self, SupervisorRecord};
use crate::backoff::Backoff;
use crate::clock::now_ms;
use crate::config::{Config, SuperviseConfig};
use crate::exit::ExitCode;
use crate::store::history::NewExit;
use crate::systemd::{self, Notifier, NOTIFY_FD_ENV};

/// The descriptor number the worker finds its notification socket at.
const WORKER_NOTIFY_FD: i32 = 3;
/// Bytes of a worker's stderr kept while no newline comes.
const STDERR_LINE_MAX: usize = 16 * 1024;

/// What the supervisor needs to know.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The configuration file, absolute.
    pub(crate) config_path: PathBuf,
    /// The configuration as loaded before the fork.
    pub(crate) config: Config,
    /// `run` or `daemon`: the worker's mode, for logs and `status`.
    pub(crate) mode: &'static str,
    /// How long the starting command waits for the first hello: until then a
    /// failing first worker fails the start; after it, the worker is simply
    /// restarted like any other.
    pub(crate) wait: Duration,
    /// Whether the worker's stderr is read and logged by the supervisor
    /// (daemon mode) or shared with it (run mode: the journal).
    pub(crate) capture_stderr: bool,
}

/// How the watch of one worker ended.
enum Watched {
    /// The worker ended on its own, or was ended for hanging.
    Ended(WorkerEnd),
    /// We were asked to stop, and the worker is gone.
    Stopped,
}

/// The running worker and what is known about it.
struct Worker {
    child: Child,
    pid: u32,
    started: Instant,
    started_ms: u64,
    notify: UnixDatagram,
    stderr: Option<std::process::ChildStderr>,
    pending: Vec<u8>,
    skip_to_newline: bool,
    last_words: String,
    ready_at: Option<Instant>,
    hang: Option<Hang>,
    stop: Option<Escalation>,
}

struct Supervisor {
    /// What to run and how.
    plan: Plan,
    /// Restart and hang timing, re-read on SIGHUP.
    sup: SuperviseConfig,
    /// The single-instance lock, held for the supervisor's whole life.
    lock: PidLock,
    /// The command that started us, while it waits for the first hello.
    starter: Option<ReadyWriter>,
    /// systemd (under `run`), or nobody.
    upstream: Notifier,
    /// Signals, read instead of handled.
    sigfd: SignalFd,
    /// The worker's heartbeat file.
    hb_path: PathBuf,
    /// Where the record is written.
    rec_path: PathBuf,
    /// The current state, as `status` reads it.
    rec: SupervisorRecord,
    /// The last exit's row and when it happened, until the next hello gives
    /// it a downtime.
    pending_downtime: Option<(Option<i64>, Instant)>,
    /// The state store, for the exit history; none if it cannot be opened.
    store: Option<crate::store::Store>,
    /// When the supervisor started, to know whether the starter still waits.
    started: Instant,
    /// Whether systemd has heard READY=1 from us.
    told_ready: bool,
    /// systemd's watchdog interval for us, if it watches.
    watchdog: Option<Duration>,
}

/// Runs the supervisor until told to stop or the worker exits 78; returns
/// the exit code.
pub(crate) fn supervise(
    plan: Plan,
    lock: PidLock,
    mut starter: Option<ReadyWriter>,
    upstream: Notifier,
) -> u8 {
    let sigfd = match signals() {
        Ok(fd) => fd,
        Err(e) => {
            let why = format!("cannot set up signal handling: {e}");
            tracing::error!("{why}");
            if let Some(s) = starter.take() {
                s.failed(ExitCode::OSERR.0, &why);
            }
            return ExitCode::OSERR.0;
        }
    };
    if let Some(s) = starter.as_mut() {
        s.started(std::process::id());
    }
    let pidfile = lock.path().to_path_buf();
    let store = match crate::store::Store::open(
        &plan.config.daemon.state_dir,
        crate::store::Durability::Normal,
    ) {
        Ok(st) => Some(st),
        Err(e) => {
            tracing::warn!("{e}; worker exits are not recorded for the restart announcement");
            None
        }
    };
    let mut s = Supervisor {
        sup: plan.config.supervise.clone(),
        hb_path: heartbeat::path_for(&pidfile),
        rec_path: record::path_for(&pidfile),
        rec: SupervisorRecord {
            pid: std::process::id(),
            mode: plan.mode.to_string(),
            started_ms: now_ms(),
            ..Default::default()
        },
        plan,
        lock,
        starter,
        upstream,
        sigfd,
        pending_downtime: None,
        store,
        started: Instant::now(),
        told_ready: false,
        watchdog: systemd::watchdog_interval(),
    };
    let code = s.run();
    s.rec.worker_pid = None;
    s.save();
    let _ = std::fs::remove_file(&s.hb_path);
    if code == 0 {
        // A clean stop: an empty pidfile tells `status` nobody died.
        if let Err(e) = s.lock.clear() {
            tracing::warn!("cannot clear the pidfile: {e}");
        }
    }
    code
}

fn signals() -> std::io::Result<SignalFd> {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    mask.thread_block()?;
    Ok(SignalFd::with_flags(
        &mask,
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )?)
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
            let worker = match self.spawn() {
                Ok(w) => w,
                Err(e) => {
                    let why = format!("cannot start the worker: {e}");
                    tracing::error!("{why}");
                    if let Some(s) = self.starter.take() {
                        s.failed(ExitCode::OSERR.0, &why);
                        return ExitCode::OSERR.0;
                    }
                    if self.sleep(backoff.next_delay()) {
                        return 0;
                    }
                    continue;
                }
            };
            let end = match self.watch(worker) {
                Watched::Stopped => return 0,
                Watched::Ended(end) => end,
            };
            let cause = end.cause();
            self.rec.worker_pid = None;
            self.save();
            let exit_id = self.store.as_mut().and_then(|st| {
                let exit = NewExit {
                    at_ms: now_ms(),
                    mode: self.plan.mode.to_string(),
                    cause: cause.clone(),
                    clean: false,
                    code: end.code,
                    signal: end.signal,
                    hang: end.hang.is_some(),
                    lifetime_ms: Some(end.lifetime.as_millis() as u64),
                };
                st.record_exit(&exit)
                    .map_err(|e| tracing::warn!("cannot record the worker's exit: {e}"))
                    .ok()
            });
            let words = if end.last_words.is_empty() {
                String::new()
            } else {
                format!(": {}", end.last_words)
            };
            if self.started.elapsed() >= self.plan.wait {
                // The starting command has stopped waiting: restart as usual.
                self.starter = None;
            }
            match policy::after_exit(&end, self.starter.is_some(), &mut backoff) {
                Next::GiveUp { code, why } => {
                    if code == ExitCode::CONFIG {
                        tracing::error!(
                            "the worker exited 78 (configuration or credentials){words}; not restarting"
                        );
                    } else {
                        tracing::error!("the worker ended ({cause}) before it was ready{words}");
                    }
                    if let Some(s) = self.starter.take() {
                        s.failed(code.0, &why);
                    }
                    return code.0;
                }
                Next::Restart(delay) => {
                    self.upstream
                        .status(&format!("Restarting the bot after {cause}"));
                    self.rec.restarts += 1;
                    self.pending_downtime = Some((exit_id, Instant::now()));
                    tracing::warn!(
                        "the worker ended after {}: {cause}{words}; restart {} {}",
                        crate::clock::human(end.lifetime),
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
        }
    }

    /// Starts the worker: this very binary, `worker` subcommand, with its end
    /// of the notification socket at descriptor 3.
    fn spawn(&mut self) -> std::io::Result<Worker> {
        let (ours, theirs) = UnixDatagram::pair()?;
        ours.set_nonblocking(true)?;
        let theirs: OwnedFd = theirs.into();
        let theirs_fd = theirs.as_raw_fd();
        let me = Pid::this();
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg0("slackbotd")
            .arg("--config")
            .arg(&self.plan.config_path)
            .arg("worker")
            .env_remove("NOTIFY_SOCKET")
            // The worker keeps $WATCHDOG_USEC to pace its notifications,
            // which reach systemd through us.
            .env_remove("WATCHDOG_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env(NOTIFY_FD_ENV, WORKER_NOTIFY_FD.to_string())
            .stdin(Stdio::null());
        if self.plan.mode == "run" {
            cmd.arg("--foreground");
        }
        if self.plan.capture_stderr {
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        }
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
                if libc::dup2(theirs_fd, WORKER_NOTIFY_FD) < 0
                    || libc::fcntl(WORKER_NOTIFY_FD, libc::F_SETFD, 0) < 0
                {
                    libc::_exit(ExitCode::OSERR.code());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        drop(theirs);
        let stderr = child.stderr.take();
        if let Some(err) = &stderr {
            let fd = err.as_raw_fd();
            // SAFETY: fcntl on a descriptor we own.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFL);
                libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
        let pid = child.id();
        let started_ms = now_ms();
        self.rec.worker_pid = Some(pid);
        self.rec.worker_started_ms = Some(started_ms);
        self.save();
        tracing::info!("worker started with pid {pid}");
        Ok(Worker {
            child,
            pid,
            started: Instant::now(),
            started_ms,
            notify: ours,
            stderr,
            pending: Vec::new(),
            skip_to_newline: false,
            last_words: String::new(),
            ready_at: None,
            hang: None,
            stop: None,
        })
    }

    /// Watches one worker until it ends or we are told to stop.
    fn watch(&mut self, mut w: Worker) -> Watched {
        let mut stopping = false;
        let mut next_check = Instant::now();
        loop {
            if let Ok(Some(status)) = w.child.try_wait() {
                w.drain_stderr(true);
                if stopping {
                    return Watched::Stopped;
                }
                return Watched::Ended(WorkerEnd {
                    code: status.code(),
                    signal: status.signal(),
                    lifetime: w.started.elapsed(),
                    ready_for: w.ready_at.map(|t| t.elapsed()),
                    hang: w.hang,
                    last_words: w.last_words,
                });
            }
            let timeout = if w.stop.is_some() { 20 } else { 250 };
            let mut fds = vec![
                pollfd(self.sigfd.as_fd().as_raw_fd()),
                pollfd(w.notify.as_raw_fd()),
            ];
            if let Some(e) = &w.stderr {
                fds.push(pollfd(e.as_raw_fd()));
            }
            // SAFETY: valid pollfds for the duration of the call.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if fds.get(2).is_some_and(|f| f.revents != 0) {
                w.drain_stderr(false);
            }
            self.read_notices(&mut w);
            while let Ok(Some(si)) = self.sigfd.read_signal() {
                match Signal::try_from(si.ssi_signo as i32) {
                    Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) if !stopping => {
                        tracing::info!("stopping: asking the worker (pid {}) to finish", w.pid);
                        self.upstream.stopping(
                            "Stopping: closing the Slack connections and finishing requests in progress",
                        );
                        stopping = true;
                        w.stop = Some(Escalation::begin(&[w.pid], self.stop_grace()));
                    }
                    Ok(Signal::SIGHUP) => self.reload(w.pid),
                    _ => {}
                }
            }
            if w.stop.is_none() && Instant::now() >= next_check {
                next_check = Instant::now() + Duration::from_millis(250);
                let hb = heartbeat::read(&self.hb_path).filter(|h| h.pid == w.pid);
                if let Some(why) =
                    heartbeat::hang_reason(hb.as_ref(), w.started_ms, now_ms(), self.limits())
                {
                    tracing::warn!(
                        "worker {} looks hung ({why}): unhealthy, the watchdog is no longer fed; sending SIGTERM",
                        w.pid
                    );
                    self.upstream
                        .status(&format!("Unhealthy: {why}; restarting the bot"));
                    w.hang = Some(why);
                    w.stop = Some(Escalation::begin(&[w.pid], self.stop_grace()));
                }
            }
            if let Some(e) = w.stop.as_mut() {
                if e.tick() {
                    tracing::warn!(
                        "worker {} still runs {}s after SIGTERM; sending SIGKILL",
                        w.pid,
                        e.grace().as_secs()
                    );
                }
            }
        }
    }

    /// The hang rule's limits. Under a watchdog, a frozen worker (its
    /// heartbeat not rewritten) is replaced within half the watchdog
    /// interval, so systemd never has to restart the whole unit for it.
    fn limits(&self) -> heartbeat::Limits {
        let timeout = self.sup.heartbeat_timeout;
        let silent = match self.watchdog {
            Some(w) => timeout.min((w / 2).max(Duration::from_secs(2))),
            None => timeout,
        };
        heartbeat::Limits {
            deaf: timeout,
            silent,
        }
    }

    /// How long a worker gets between SIGTERM and SIGKILL.
    fn stop_grace(&self) -> Duration {
        self.sup.stop_timeout + Duration::from_secs(1)
    }

    /// Reads what the worker said on its notification socket, and passes it on.
    fn read_notices(&mut self, w: &mut Worker) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = w.notify.recv(&mut buf) {
            let notice = systemd::parse(&buf[..n]);
            if notice.ready && w.ready_at.is_none() {
                w.ready_at = Some(Instant::now());
                tracing::info!("worker {} is connected to Slack", w.pid);
                if let Some(s) = self.starter.take() {
                    s.ready(std::process::id());
                }
                if let Some((id, since)) = self.pending_downtime.take() {
                    let down = since.elapsed().as_millis() as u64;
                    if let (Some(id), Some(st)) = (id, self.store.as_mut()) {
                        if let Err(e) = st.set_downtime(id, down) {
                            tracing::warn!("cannot record the downtime: {e}");
                        }
                    }
                }
            }
            let status = notice.status.as_deref().unwrap_or("");
            if notice.ready && !self.told_ready {
                self.told_ready = true;
                self.upstream.ready(status);
            } else if notice.reloading {
                self.upstream.reloading();
            } else if notice.ready {
                self.upstream.ready(status);
            } else if notice.status.is_some() {
                self.upstream.status(status);
            }
            if notice.watchdog {
                self.upstream.watchdog();
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
        if let Ok(pid) = i32::try_from(worker) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGHUP);
        }
    }

    /// Sleeps `d`, still answering signals; true when told to stop.
    fn sleep(&mut self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut fds = [pollfd(self.sigfd.as_fd().as_raw_fd())];
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

impl Worker {
    /// Reads what the worker wrote on stderr and logs it line by line. A line
    /// longer than [`STDERR_LINE_MAX`] is cut, with a note.
    fn drain_stderr(&mut self, eof: bool) {
        let Some(mut e) = self.stderr.take() else {
            return;
        };
        let mut buf = [0u8; 4096];
        let mut open = true;
        loop {
            match e.read(&mut buf) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    while let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = self.pending.drain(..=i).collect();
                        self.note_line(&line);
                    }
                    if self.pending.len() > STDERR_LINE_MAX {
                        let cut = std::mem::take(&mut self.pending);
                        tracing::warn!(
                            "worker stderr: a line longer than {STDERR_LINE_MAX} bytes; the rest of it is dropped"
                        );
                        self.note_line(&cut[..STDERR_LINE_MAX]);
                        self.skip_to_newline = true;
                    }
                }
                Err(_) => break,
            }
        }
        if open {
            self.stderr = Some(e);
        }
        if eof && !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.note_line(&rest);
        }
    }

    fn note_line(&mut self, line: &[u8]) {
        if std::mem::take(&mut self.skip_to_newline) {
            return; // the tail of a line already cut
        }
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end();
        if !line.is_empty() {
            tracing::warn!("worker stderr: {line}");
            self.last_words = line.to_string();
        }
    }
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
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
