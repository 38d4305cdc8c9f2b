//! The classic double fork, done before anything else exists (no threads,
//! no async runtime, no logging), with a readiness pipe so the original
//! parent exits 0 only once the daemon is really running.
//!
//! Written with `nix` rather than the `daemonize` crate, whose `start()` can
//! exit 0 when the daemon failed and which leaves inherited descriptors open.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::{fork, ForkResult};

use crate::exit::ExitCode;

/// What the original parent hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// The daemon holds the lock and its worker said hello.
    Ready { pid: u32 },
    /// The daemon gave up, with an exit code and a reason.
    Failed { code: u8, message: String },
    /// The daemon is running but did not become ready in time.
    Pending { pid: Option<u32> },
    /// The daemon vanished without a word.
    Vanished,
}

/// The parent's end of the readiness pipe.
#[derive(Debug)]
pub(crate) struct ReadyReader(std::fs::File);

/// The daemon's end of the readiness pipe.
#[derive(Debug)]
pub(crate) struct ReadyWriter(std::fs::File);

impl ReadyWriter {
    /// Tells the parent the daemon started (its pid) but is not ready yet.
    pub(crate) fn started(&mut self, pid: u32) {
        let _ = writeln!(self.0, "STARTED {pid}");
    }

    /// Tells the parent all is well, and closes the pipe.
    pub(crate) fn ready(mut self, pid: u32) {
        let _ = writeln!(self.0, "READY {pid}");
    }

    /// Tells the parent why the daemon gives up, and closes the pipe.
    pub(crate) fn failed(mut self, code: u8, message: &str) {
        let _ = writeln!(self.0, "FAIL {code} {}", message.replace('\n', " "));
    }
}

/// The verdict in the lines received so far, if there is one yet.
fn verdict(text: &str) -> Option<Readiness> {
    for line in text.lines() {
        let mut parts = line.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("READY"), Some(pid), _) => {
                return Some(Readiness::Ready {
                    pid: pid.parse().unwrap_or(0),
                })
            }
            (Some("FAIL"), Some(code), msg) => {
                return Some(Readiness::Failed {
                    code: code.parse().unwrap_or(ExitCode::SOFTWARE.0),
                    message: msg.unwrap_or("").to_string(),
                })
            }
            _ => {}
        }
    }
    None
}

/// The pid announced by a `STARTED` line, if any.
fn started_pid(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("STARTED ")?.trim().parse().ok())
}

impl ReadyReader {
    /// Waits up to `timeout` for the daemon's verdict.
    pub(crate) fn wait(mut self, timeout: Duration) -> Readiness {
        let deadline = Instant::now() + timeout;
        let fd = self.0.as_raw_fd();
        let mut text = String::new();
        loop {
            // Only whole lines count: a read may stop in the middle of one.
            let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
            if let Some(v) = verdict(complete) {
                return v;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Readiness::Pending {
                    pid: started_pid(&text),
                };
            }
            let mut pfd = [libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe {
                libc::poll(
                    pfd.as_mut_ptr(),
                    1,
                    left.as_millis().min(i32::MAX as u128) as i32,
                )
            };
            if n <= 0 {
                continue; // timeout (checked above) or EINTR
            }
            let mut buf = [0u8; 1024];
            match self.0.read(&mut buf) {
                Ok(0) | Err(_) => return verdict(&text).unwrap_or(Readiness::Vanished),
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    }
}

/// Which side of the fork this is.
#[derive(Debug)]
pub(crate) enum Forked {
    /// The original process: wait on the reader, then exit.
    Parent(ReadyReader),
    /// The daemon: detached, in `/`, stdio on /dev/null, no inherited descriptors.
    Daemon(ReadyWriter),
}

/// Double-forks into a daemon.
///
/// # Safety
/// Must be called while the process has a single thread (before any runtime
/// or logging thread starts): after `fork` only the calling thread exists.
pub(crate) unsafe fn daemonize() -> std::io::Result<Forked> {
    let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    match unsafe { fork() }? {
        ForkResult::Parent { child } => {
            drop(w);
            // The first child exits at once; reap it so it never lingers.
            let _ = nix::sys::wait::waitpid(child, None);
            Ok(Forked::Parent(ReadyReader(std::fs::File::from(r))))
        }
        ForkResult::Child => {
            drop(r);
            nix::unistd::setsid()?;
            match unsafe { fork() }? {
                ForkResult::Parent { .. } => unsafe { libc::_exit(0) },
                ForkResult::Child => {}
            }
            nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
            nix::unistd::chdir("/")?;
            let null = nix::fcntl::open("/dev/null", OFlag::O_RDWR, Mode::empty())?;
            for fd in 0..3 {
                nix::unistd::dup2(null, fd)?;
            }
            if null > 2 {
                let _ = nix::unistd::close(null);
            }
            let keep = w.as_raw_fd();
            close_from(3, keep);
            Ok(Forked::Daemon(ReadyWriter(std::fs::File::from(w))))
        }
    }
}

/// Closes every descriptor from `first` up, except `keep`.
fn close_from(first: RawFd, keep: RawFd) {
    let ranges = [(first, keep - 1), (keep + 1, RawFd::MAX)];
    for (lo, hi) in ranges {
        if lo > hi {
            continue;
        }
        // SAFETY: close_range only closes descriptors; none of ours is in use.
        let r = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                lo as libc::c_uint,
                hi as libc::c_uint,
                0 as libc::c_uint,
            )
        };
        if r != 0 {
            // Old kernels: close what /proc lists.
            if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
                let fds: Vec<RawFd> = dir
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect();
                for fd in fds {
                    if fd >= lo && fd <= hi {
                        let _ = nix::unistd::close(fd);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_parse() {
        assert_eq!(
            verdict("STARTED 5\nREADY 5\n"),
            Some(Readiness::Ready { pid: 5 })
        );
        assert_eq!(
            verdict("FAIL 75 already running with pid 9\n"),
            Some(Readiness::Failed {
                code: 75,
                message: "already running with pid 9".into()
            })
        );
        assert_eq!(verdict("STARTED 5\n"), None);
        assert_eq!(started_pid("STARTED 5\n"), Some(5));
    }
}
