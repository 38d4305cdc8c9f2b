//! The single-instance lock: one `flock` on the pidfile, held for the whole
//! life of `run` and `daemon` alike. `ensure` keeps its runs from piling up
//! with the same kind of lock on a file of its own.
//!
//! Liveness is decided by the lock, never by `kill -0` on a pid read from a
//! file: a pid can be reused, a lock dies with its holder. Who holds it is
//! the kernel's word too (`/proc/locks`): the pid written into the file is
//! there for people to read, and for a stale file to name the dead. Before a
//! signal goes anywhere, `signal_target` checks the holder again (see
//! `procfs.rs`), since another user may be able to write the file.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::procfs::{self, FileId};
use crate::exit::{ExitCode, HasExitCode};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    /// Another slackbotd holds it.
    #[error("slackbotd is already running{} (it holds the lock on {})", .pid.map(|p| format!(" with pid {p}")).unwrap_or_default(), .path.display())]
    Held { path: PathBuf, pid: Option<u32> },
    /// A private lock (ensure's, as root) that another user could have
    /// planted or holds.
    #[error("refusing the lock {}: {why}", .path.display())]
    Untrusted { path: PathBuf, why: String },
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
            LockError::Untrusted { .. } => ExitCode::NOPERM,
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

/// Opens the pidfile: never through a link, and never a FIFO or device that
/// another user planted under its name (`O_NONBLOCK` keeps a FIFO from
/// blocking the open; the type check refuses it).
fn open(path: &Path, create: bool) -> std::io::Result<File> {
    crate::files::regular(
        OpenOptions::new()
            .read(true)
            .write(create)
            .create(create)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)?,
        path,
    )
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.rewind().ok()?;
    // A pid is short; a huge file is not ours to read through.
    file.take(32).read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// Creates the directory `path` lives in, with `mode`, if it is missing.
fn create_parent(path: &Path, mode: u32) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if !dir.exists() => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir),
        _ => Ok(()),
    }
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
    /// holder's pid (as the kernel says) when it does not.
    pub(crate) fn acquire_within(
        path: &Path,
        wait: Duration,
    ) -> Result<Result<PidLock, Option<u32>>, LockError> {
        let err = |source| LockError::Open {
            path: path.to_path_buf(),
            source,
        };
        create_parent(path, 0o755).map_err(err)?;
        let file = open(path, true).map_err(err)?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(TryLockError::WouldBlock) => {
                    let id = FileId::of(&file.metadata().map_err(err)?);
                    return Ok(Err(procfs::lock_holder(id)));
                }
                Err(TryLockError::Error(e)) => return Err(err(e)),
            }
        }
        PidLock::taken(file, path).map(Ok).map_err(err)
    }

    /// Like `acquire_within`, for a lock only this user may have a say in:
    /// `ensure`'s, which root takes from cron. Its directory must belong to
    /// this user or root and be writable by nobody else (unless sticky, like
    /// `/run/lock`); the file must be a regular file of this user's, writable
    /// by nobody else; and a holder running as another user is an error, not
    /// a reason to stand aside.
    pub(crate) fn acquire_private(
        path: &Path,
        wait: Duration,
    ) -> Result<Result<PidLock, Option<u32>>, LockError> {
        let me = nix::unistd::geteuid().as_raw();
        let untrusted = |why: String| LockError::Untrusted {
            path: path.to_path_buf(),
            why,
        };
        let err = |source| LockError::Open {
            path: path.to_path_buf(),
            source,
        };
        create_parent(path, 0o700).map_err(err)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let m = std::fs::metadata(dir).map_err(err)?;
            if m.uid() != me && m.uid() != 0 {
                return Err(untrusted(format!(
                    "its directory {} belongs to uid {}",
                    dir.display(),
                    m.uid()
                )));
            }
            if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
                return Err(untrusted(format!(
                    "its directory {} is writable by others (mode {:o})",
                    dir.display(),
                    m.mode() & 0o7777
                )));
            }
        }
        // Looked at before opening, for the message: the kernel itself may
        // refuse to open another user's file in a sticky directory.
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if m.file_type().is_symlink() {
                return Err(untrusted("it is a symbolic link".into()));
            }
            if m.uid() != me {
                return Err(untrusted(format!(
                    "it belongs to uid {}, not to uid {me} (remove it)",
                    m.uid()
                )));
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => untrusted("it is a symbolic link".into()),
                _ => err(e),
            })?;
        let m = file.metadata().map_err(err)?;
        if !m.is_file() {
            return Err(untrusted("it is not a regular file".into()));
        }
        if m.uid() != me {
            return Err(untrusted(format!(
                "it belongs to uid {}, not to uid {me} (remove it)",
                m.uid()
            )));
        }
        if m.mode() & 0o022 != 0 {
            return Err(untrusted(format!(
                "it is writable by others (mode {:o}; remove it)",
                m.mode() & 0o7777
            )));
        }
        let id = FileId::of(&m);
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let holder = procfs::lock_holder(id);
                    if let Some(pid) = holder {
                        match procfs::uid(pid) {
                            Some(uid) if uid != me => {
                                return Err(untrusted(format!("pid {pid} of uid {uid} holds it")))
                            }
                            _ => {}
                        }
                    }
                    if Instant::now() >= deadline {
                        return Ok(Err(holder));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(TryLockError::Error(e)) => return Err(err(e)),
            }
        }
        PidLock::taken(file, path).map(Ok).map_err(err)
    }

    /// The lock just taken on `file`, with our pid written into it.
    fn taken(file: File, path: &Path) -> std::io::Result<PidLock> {
        let mut lock = PidLock {
            file,
            path: path.to_path_buf(),
        };
        lock.write_pid(std::process::id())?;
        Ok(lock)
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

/// Who holds the lock now: `Some(pid)` when held, with the pid the kernel
/// names (0 when it names none we can see), `None` when nobody does or there
/// is no pidfile.
pub(crate) fn holder(path: &Path) -> std::io::Result<Option<u32>> {
    let file = match open(path, false) {
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
            let id = FileId::of(&file.metadata()?);
            Ok(Some(procfs::lock_holder(id).unwrap_or(0)))
        }
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Whether the lock on `path` is held and `pid` has the file open: how a
/// worker checks that its parent is the supervisor holding the lock, without
/// a walk of every lock on the host.
pub(crate) fn held_by(path: &Path, pid: u32) -> bool {
    let Ok(file) = open(path, false) else {
        return false;
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(TryLockError::WouldBlock) => file
            .metadata()
            .is_ok_and(|m| procfs::has_open(pid, FileId::of(&m))),
        Err(TryLockError::Error(_)) => false,
    }
}

/// Why the holder of a lock may not be signalled.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TargetError {
    /// The pidfile could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The holder is not a process this command may signal.
    #[error("{} is locked by {who}, which is {why}; not signalling it", .path.display())]
    Untrusted {
        path: PathBuf,
        who: String,
        why: &'static str,
    },
}

/// The process to signal to reach the holder of the lock on `path`: the
/// holder as the kernel names it, when it has that very file open, runs the
/// slackbotd executable, and runs as root, as the caller, or as the
/// pidfile's owner. `None` when nobody holds the lock.
pub(crate) fn signal_target(path: &Path) -> Result<Option<i32>, TargetError> {
    let unreadable = |source| TargetError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let file = match open(path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            return Ok(None);
        }
        Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Error(e)) => return Err(unreadable(e)),
    }
    let meta = file.metadata().map_err(unreadable)?;
    let id = FileId::of(&meta);
    let untrusted = |who: String, why| TargetError::Untrusted {
        path: path.to_path_buf(),
        who,
        why,
    };
    let Some(pid) = procfs::lock_holder(id) else {
        return Err(untrusted("a process".into(), "not named in /proc/locks"));
    };
    let who = format!("pid {pid}");
    let Some(target) = procfs::signalable(pid) else {
        return Err(untrusted(who, "not a single process"));
    };
    if !procfs::has_open(pid, id) {
        return Err(untrusted(who, "not a process with the pidfile open"));
    }
    if !procfs::runs_slackbotd(pid) {
        return Err(untrusted(who, "not running slackbotd"));
    }
    let allowed = [0, nix::unistd::getuid().as_raw(), meta.uid()];
    if !procfs::uid(pid).is_some_and(|u| allowed.contains(&u)) {
        return Err(untrusted(who, "running as another user"));
    }
    Ok(Some(target))
}

/// `child` when the kernel says it is a slackbotd child of `parent`: the
/// supervisor's record names its worker, but another user may have written it.
pub(crate) fn verified_child(parent: i32, child: u32) -> Option<i32> {
    let pid = procfs::signalable(child)?;
    (procfs::parent(child) == Some(parent as u32) && procfs::runs_slackbotd(child)).then_some(pid)
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
        // A test binary is not slackbotd: it holds the lock, yet is no target.
        assert!(matches!(
            signal_target(&path),
            Err(TargetError::Untrusted {
                why: "not running slackbotd",
                ..
            })
        ));
        // The pid written in the file is not believed.
        std::fs::write(&path, "4294967295\n").unwrap();
        assert_eq!(holder(&path).unwrap(), Some(std::process::id()));
        drop(lock);
        assert_eq!(holder(&path).unwrap(), None);
        assert!(matches!(signal_target(&path), Ok(None)));
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
