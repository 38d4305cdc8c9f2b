//! The fleet tests' PostgreSQL (`crates/pgtest`), and the rule for when
//! they may skip: loudly on a developer's machine, never under CI=true.

#![allow(unused_imports, dead_code)]

pub use pgtest::{missing_prerequisites, Pg, PASSWORD};

/// A fresh server, or a loud skip (a failure under CI=true).
pub fn start() -> Option<Pg> {
    match missing_prerequisites() {
        None => Some(Pg::start()),
        Some(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but the fleet tests cannot run: {why}")
        }
        Some(why) => {
            eprintln!("SKIPPED: the fleet tests need PostgreSQL: {why}");
            None
        }
    }
}
