//! Stopping a process that may not want to stop: SIGTERM (with SIGCONT, in
//! case it is stopped), then SIGKILL once a grace period has passed. The
//! supervisor ticks it from its event loop; `ensure` ticks it while it waits
//! for the lock to come free.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// One stop in progress.
#[derive(Debug)]
pub(crate) struct Escalation {
    /// Who gets the signals, the lock holder first.
    targets: Vec<Pid>,
    /// When SIGTERM went out.
    termed: Instant,
    /// How long SIGTERM may take before SIGKILL.
    grace: Duration,
    /// Whether SIGKILL went out already.
    killed: bool,
}

impl Escalation {
    /// Sends SIGTERM and SIGCONT to the first target (SIGCONT alone to the
    /// others, so a frozen child can hear its parent go) and starts the clock.
    pub(crate) fn begin(targets: &[u32], grace: Duration) -> Escalation {
        let targets: Vec<Pid> = targets
            .iter()
            .filter_map(|&p| i32::try_from(p).ok().filter(|p| *p > 1))
            .map(Pid::from_raw)
            .collect();
        if let Some(first) = targets.first() {
            let _ = kill(*first, Signal::SIGTERM);
        }
        for t in &targets {
            let _ = kill(*t, Signal::SIGCONT);
        }
        Escalation {
            targets,
            termed: Instant::now(),
            grace,
            killed: false,
        }
    }

    /// Sends SIGKILL to every target once the grace has passed; true on the
    /// call that did.
    pub(crate) fn tick(&mut self) -> bool {
        if self.killed || self.termed.elapsed() < self.grace {
            return false;
        }
        self.killed = true;
        for t in &self.targets {
            let _ = kill(*t, Signal::SIGKILL);
        }
        true
    }

    /// Whether SIGKILL went out.
    #[cfg(test)]
    fn killed(&self) -> bool {
        self.killed
    }

    /// The grace SIGTERM was given.
    pub(crate) fn grace(&self) -> Duration {
        self.grace
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn a_process_that_ignores_term_is_killed_after_the_grace() {
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "trap '' TERM; sleep 30"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let mut e = Escalation::begin(&[child.id()], Duration::from_millis(300));
        assert!(!e.tick(), "not before the grace");
        std::thread::sleep(Duration::from_millis(350));
        assert!(e.tick() && e.killed());
        assert!(!e.tick(), "only once");
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn pids_that_would_aim_at_everyone_are_never_signalled() {
        let e = Escalation::begin(&[0, 1, u32::MAX], Duration::ZERO);
        assert!(e.targets.is_empty());
    }
}
