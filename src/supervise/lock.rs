//! The single-instance lock: one `flock` on the pidfile, held for the whole
//! life of `run` and `daemon` alike. `ensure` keeps its runs from piling up
//! with the same kind of lock on a file of its own.
//!
//! Liveness is decided by the lock, never by `kill -0` on a pid read from a
//! file: a pid can be reused, a lock dies with its holder. The pid written
//! into the file is only there to tell people (and `stop`) who holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::exit::{ExitCode, HasExitCode};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    /// Another slackbotd holds it.
    #[error("slackbotd is already running{} (it holds the lock on {})", .pid.map(|p| format!(" with pid {p}")).unwrap_or_default(), .path.display())]
    Held { path: PathBuf, pid: Option<u32> },
    /// The pidfile or its directory could not be opened or created.
    #[error("cannot open the pidfile {}: {source}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl HasExitCode for LockError {
    fn exit_code(&self) -> ExitCode {
        match self {
            LockError::Held { .. } => ExitCode::TEMPFAIL,
            LockError::Open { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                ExitCode::NOPERM
            }
            LockError::Open { .. } => ExitCode::CANTCREAT,
        }
    }
}

/// The held lock. Dropping it (or dying) releases it.
#[derive(Debug)]
pub(crate) struct PidLock {
    file: File,
    path: PathBuf,
}

fn open(path: &Path, create: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// `status` and `stop` take a shared lock for an instant to look: waiting
/// this long tells that apart from a real holder.
const PROBE_WAIT: Duration = Duration::from_millis(100);

impl PidLock {
    /// Takes the lock and writes our pid, or says who holds it.
    pub(crate) fn acquire(path: &Path) -> Result<PidLock, LockError> {
        match PidLock::acquire_within(path, PROBE_WAIT)? {
            Ok(lock) => Ok(lock),
            Err(pid) => Err(LockError::Held {
                path: path.to_path_buf(),
                pid,
            }),
        }
    }

    /// Takes the lock, waiting up to `wait` for a holder to let go; the
    /// holder's pid (as its file says) when it does not.
    pub(crate) fn acquire_within(
        path: &Path,
        wait: Duration,
    ) -> Result<Result<PidLock, Option<u32>>, LockError> {
        let err = |source| LockError::Open {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .map_err(err)?;
            }
        }
        let mut file = open(path, true).map_err(err)?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(TryLockError::WouldBlock) => return Ok(Err(read_pid(&mut file))),
                Err(TryLockError::Error(e)) => return Err(err(e)),
            }
        }
        let mut lock = PidLock {
            file,
            path: path.to_path_buf(),
        };
        lock.write_pid(std::process::id()).map_err(err)?;
        Ok(Ok(lock))
    }

    /// Replaces the pid in the file (after a fork, the daemon's own).
    pub(crate) fn write_pid(&mut self, pid: u32) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(format!("{pid}\n").as_bytes())?;
        self.file.sync_data()
    }

    /// Empties the pidfile (still locked): the mark of a clean stop, so
    /// `status` can tell "stopped" from "died and left its pidfile".
    pub(crate) fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_data()
    }

    /// The pidfile's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid written in a pidfile nobody holds: a process that died without
/// a clean stop. `None` when the file is absent or empty.
pub(crate) fn stale_pid(path: &Path) -> Option<u32> {
    let mut f = open(path, false).ok()?;
    read_pid(&mut f)
}

/// Who holds the lock now: `Some(pid)` (pid 0 if unreadable) when held,
/// `None` when nobody does or there is no pidfile.
pub(crate) fn holder(path: &Path) -> std::io::Result<Option<u32>> {
    let mut file = match open(path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            Ok(None)
        }
        Err(TryLockError::WouldBlock) => {
            // The holder may be rewriting its pid this very instant.
            for _ in 0..5 {
                if let Some(pid) = read_pid(&mut file) {
                    return Ok(Some(pid));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok(Some(0))
        }
        Err(TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_names_the_holder() {
        let dir = std::env::temp_dir().join(format!("slackbotd-lock-{}", std::process::id()));
        let path = dir.join("sub/x.pid");
        let lock = PidLock::acquire(&path).unwrap();
        let e = PidLock::acquire(&path).unwrap_err();
        assert!(
            matches!(e, LockError::Held { pid: Some(p), .. } if p == std::process::id()),
            "{e}"
        );
        assert_eq!(holder(&path).unwrap(), Some(std::process::id()));
        drop(lock);
        assert_eq!(holder(&path).unwrap(), None);
        let _again = PidLock::acquire(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn symlinked_pidfile_is_refused() {
        let dir = std::env::temp_dir().join(format!("slackbotd-lock-ln-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("x.pid");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        assert!(matches!(
            PidLock::acquire(&link),
            Err(LockError::Open { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
