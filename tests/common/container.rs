//! The container the systemd tests boot (`crates/nspawn`), and the rule for
//! when they may skip.

#![allow(unused_imports)]

pub use nspawn::{missing_prerequisites, Boot, Container};

/// Skips loudly on a developer's machine; fails under CI=true.
pub fn require() -> bool {
    match missing_prerequisites() {
        None => true,
        Some(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but the systemd tests cannot run: {why}")
        }
        Some(why) => {
            eprintln!(
                "SKIPPED: the systemd container tests need root, systemd-nspawn and cron: {why}"
            );
            false
        }
    }
}
