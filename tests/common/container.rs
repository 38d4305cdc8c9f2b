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

/// INSTALL.md's third step inside a container: the fake's tokens in the
/// token files, and `sed` edits (`s|…|…|` expressions) to the configuration.
pub fn configure(c: &Container, s: &super::Setup, edits: &str) {
    c.write(
        "/etc/slackbotd/app-token",
        &format!("{}\n", s.fake.app_token()),
        0o600,
    );
    c.write(
        "/etc/slackbotd/bot-token",
        &format!("{}\n", s.fake.bot_token()),
        0o600,
    );
    c.ok(&format!(
        "sed -i 's|^# api_url = .*|api_url = \"{}\"|; {edits}' /etc/slackbotd/slackbotd.toml",
        s.fake.api_url()
    ));
}
