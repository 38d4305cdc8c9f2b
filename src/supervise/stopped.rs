//! The mark of a deliberate stop: `slackbotd stop` leaves it in the state
//! directory, `ensure` honours it, `status` shows it, and the next
//! `slackbotd daemon` or `run` clears it. It may end (`stop --for 2h`), and it
//! holds only for the boot it was made in: after a reboot, an enabled bot
//! comes up again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A deliberate stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StopMark {
    /// Who stopped it (the user name, or `uid N`).
    pub(crate) by: String,
    /// When (ms since the epoch).
    pub(crate) at_ms: u64,
    /// Until when, for a maintenance window; none: until started again.
    pub(crate) until_ms: Option<u64>,
    /// The boot it was made in (`/proc/sys/kernel/random/boot_id`).
    pub(crate) boot_id: String,
}

/// Where the mark lives.
pub(crate) fn path_for(state_dir: &Path) -> PathBuf {
    state_dir.join("stopped.json")
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl StopMark {
    /// A mark made now by the calling user, lasting `for_ms` if given.
    pub(crate) fn now(for_ms: Option<u64>) -> StopMark {
        let uid = nix::unistd::Uid::current();
        let by = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| format!("uid {uid}"), |u| u.name);
        let at_ms = crate::clock::now_ms();
        StopMark {
            by,
            at_ms,
            until_ms: for_ms.map(|d| at_ms.saturating_add(d)),
            boot_id: boot_id(),
        }
    }

    /// Whether it still holds at `now_ms`: made in this boot, not yet over.
    pub(crate) fn holds(&self, now_ms: u64) -> bool {
        self.boot_id == boot_id() && self.until_ms.is_none_or(|u| now_ms < u)
    }

    /// "by root at 2026-12-02T14:02:00Z, until 2026-12-02T16:02:00Z".
    pub(crate) fn describe(&self) -> String {
        let mut s = format!("by {} at {}", self.by, crate::clock::rfc3339(self.at_ms));
        if let Some(u) = self.until_ms {
            s.push_str(&format!(", until {}", crate::clock::rfc3339(u)));
        }
        s
    }
}

/// Leaves the mark.
pub(crate) fn write(state_dir: &Path, mark: &StopMark) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)?;
    let bytes = serde_json::to_vec(mark).map_err(std::io::Error::other)?;
    // Like everything in the state directory: for its owner only.
    crate::files::write_atomic(&path_for(state_dir), &bytes, 0o600)
}

/// The mark in `state_dir`, if there is one (whether it still holds or not).
pub(crate) fn read(state_dir: &Path) -> Option<StopMark> {
    crate::files::read_json(&path_for(state_dir))
}

/// Removes the mark: the bot starts.
pub(crate) fn clear(state_dir: &Path) {
    let _ = std::fs::remove_file(path_for(state_dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_holds_in_its_boot_until_its_end() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).is_none());
        let m = StopMark::now(Some(60_000));
        write(dir.path(), &m).unwrap();
        let back = read(dir.path()).unwrap();
        assert_eq!(back, m);
        assert!(back.holds(m.at_ms + 1));
        assert!(!back.holds(m.at_ms + 60_000), "over at its end");
        assert!(back.describe().contains(", until "));
        let other_boot = StopMark {
            boot_id: "another".into(),
            ..StopMark::now(None)
        };
        assert!(!other_boot.holds(other_boot.at_ms), "not after a reboot");
        clear(dir.path());
        assert!(read(dir.path()).is_none());
    }
}
