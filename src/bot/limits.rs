//! Limits on operator commands running at once: one per command, one for all.
//! A request beyond a limit is refused as busy, never queued behind a slow run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Counts of running commands.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per: HashMap<String, usize>,
}

/// Why a run may not start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Busy {
    /// This command already runs `max` times.
    Command { max: usize },
    /// All commands together already run `max` times.
    Global { max: usize },
}

/// A running slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Permit {
    limits: Arc<Limits>,
    name: String,
}

impl Limits {
    /// Takes a slot for `name` if both limits allow it.
    pub(crate) fn try_acquire(
        self: &Arc<Self>,
        name: &str,
        per_command: usize,
        global: usize,
    ) -> Result<Permit, Busy> {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let running = c.per.get(name).copied().unwrap_or(0);
        if running >= per_command {
            return Err(Busy::Command { max: per_command });
        }
        if c.total >= global {
            return Err(Busy::Global { max: global });
        }
        c.total += 1;
        *c.per.entry(name.to_string()).or_default() += 1;
        Ok(Permit {
            limits: self.clone(),
            name: name.to_string(),
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.limits.inner.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per.get_mut(&self.name) {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_command_and_global() {
        let l = Arc::new(Limits::default());
        let a = l.try_acquire("a", 1, 2).unwrap();
        assert_eq!(
            l.try_acquire("a", 1, 2).unwrap_err(),
            Busy::Command { max: 1 }
        );
        let _b = l.try_acquire("b", 5, 2).unwrap();
        assert_eq!(
            l.try_acquire("c", 5, 2).unwrap_err(),
            Busy::Global { max: 2 }
        );
        drop(a);
        assert!(l.try_acquire("a", 1, 2).is_ok());
    }
}
