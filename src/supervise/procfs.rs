//! What the kernel says about a process, read from `/proc`: who holds a
//! `flock`, which files a process has open, its uid, parent and executable.
//!
//! These are the facts a root `stop`, `reload` or `ensure` may act on. A pid
//! written in a file is not one: whoever can write the file chooses it, and
//! `kill(-1)` signals every process on the host. So a signal goes only to a
//! process that the kernel says holds the lock on the pidfile, that has that
//! very file open, and that runs the slackbotd executable.

use std::os::unix::fs::MetadataExt;

/// A file's identity: device and inode, as `stat` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    /// `st_dev`.
    pub(crate) dev: u64,
    /// `st_ino`.
    pub(crate) ino: u64,
}

impl FileId {
    /// The identity of an open file.
    pub(crate) fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The pids that hold an exclusive `flock` on the file `id`, from the text
/// of `/proc/locks`. Waiters (`->`) and shared locks are left out. The device
/// there is the file system's own, which on some file systems (btrfs
/// subvolumes) differs from `st_dev`; a device match is preferred, an inode
/// match accepted.
pub(crate) fn flock_writers(locks: &str, id: FileId) -> Vec<u32> {
    let (major, minor) = (libc::major(id.dev) as u64, libc::minor(id.dev) as u64);
    let mut exact = Vec::new();
    let mut by_ino = Vec::new();
    for line in locks.lines() {
        let mut f = line.split_whitespace().skip(1);
        let (Some(kind), Some(_), Some(mode), Some(pid), Some(file)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if kind != "FLOCK" || mode != "WRITE" {
            continue;
        }
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let mut parts = file.rsplitn(3, ':');
        let (Some(ino), Some(mi), Some(ma)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if ino.parse::<u64>().ok() != Some(id.ino) {
            continue;
        }
        let dev_matches = u64::from_str_radix(ma, 16).ok() == Some(major)
            && u64::from_str_radix(mi, 16).ok() == Some(minor);
        if dev_matches {
            exact.push(pid);
        } else {
            by_ino.push(pid);
        }
    }
    if exact.is_empty() {
        by_ino
    } else {
        exact
    }
}

/// The pid the kernel names as the holder of an exclusive `flock` on `id`.
pub(crate) fn lock_holder(id: FileId) -> Option<u32> {
    // In big reads: the kernel walks every lock on the host for each read
    // of /proc/locks, and a small first read (as `read_to_string` makes)
    // costs a whole walk for 32 bytes.
    use std::io::Read;
    let mut f = std::fs::File::open("/proc/locks").ok()?;
    let mut buf = Vec::with_capacity(256 * 1024);
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let locks = String::from_utf8_lossy(&buf);
    flock_writers(&locks, id).into_iter().find(|p| *p > 0)
}

/// Whether process `pid` has the file `id` open.
pub(crate) fn has_open(pid: u32, id: FileId) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::metadata(fd.path()).is_ok_and(|m| FileId::of(&m) == id))
}

/// The real uid of process `pid`.
pub(crate) fn uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The parent of process `pid`.
pub(crate) fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether process `pid` runs a slackbotd executable (an upgraded binary
/// shows as `slackbotd (deleted)`, and counts).
pub(crate) fn runs_slackbotd(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
        exe.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n == "slackbotd" || n.starts_with("slackbotd "))
    })
}

/// A pid that fits `kill(2)` and names one process other than init: never 0
/// (the caller's group), -1 (everything) or 1.
pub(crate) fn signalable(pid: u32) -> Option<i32> {
    i32::try_from(pid).ok().filter(|p| *p > 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCKS: &str = "\
1: POSIX  ADVISORY  WRITE 100 08:02:555 0 EOF
2: FLOCK  ADVISORY  READ 200 08:02:777 0 EOF
3: FLOCK  ADVISORY  WRITE 300 08:02:777 0 EOF
3: -> FLOCK  ADVISORY  WRITE 301 08:02:777 0 EOF
4: FLOCK  ADVISORY  WRITE 400 00:2f:777 0 EOF
5: OFDLCK ADVISORY  WRITE -1 08:02:777 0 EOF
";

    fn id(major: u32, minor: u32, ino: u64) -> FileId {
        FileId {
            dev: libc::makedev(major, minor),
            ino,
        }
    }

    #[test]
    fn the_exclusive_flock_on_the_inode_names_its_holder() {
        // Shared locks, waiters, POSIX and OFD locks are not the holder.
        assert_eq!(flock_writers(LOCKS, id(8, 2, 777)), vec![300]);
        // Another device with the same inode: its own holder.
        assert_eq!(flock_writers(LOCKS, id(0, 0x2f, 777)), vec![400]);
        // A device /proc/locks spells differently (btrfs): the inode decides.
        assert_eq!(flock_writers(LOCKS, id(0, 99, 777)), vec![300, 400]);
        assert!(flock_writers(LOCKS, id(8, 2, 555)).is_empty());
        assert!(flock_writers("garbage\n\n1: FLOCK", id(8, 2, 777)).is_empty());
    }

    #[test]
    fn only_pids_of_one_process_can_be_signalled() {
        for (pid, want) in [
            (0, None),
            (1, None),
            (2, Some(2)),
            (4_294_967_295, None),
            (2_147_483_648, None),
            (2_147_483_647, Some(i32::MAX)),
        ] {
            assert_eq!(signalable(pid), want, "pid {pid}");
        }
    }

    #[test]
    fn this_process_is_read_back() {
        let me = std::process::id();
        assert_eq!(uid(me), Some(nix::unistd::getuid().as_raw()));
        assert_eq!(parent(me), Some(nix::unistd::getppid().as_raw() as u32));
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        let id = FileId::of(&f.metadata().unwrap());
        assert!(has_open(me, id));
        assert!(!has_open(me, FileId { dev: 0, ino: 1 }));
    }
}
