//! The Debian package, installed as an administrator would: `dpkg -i` in a
//! systemd container whose /usr and /var are writable, then INSTALL.md's
//! package path (tokens, configuration, `check`, `systemctl enable --now`)
//! to a bot that answers `ping`, an upgrade to a rebuilt package that keeps
//! the configuration and the state and restarts the bot once, and a purge
//! that leaves nothing behind. `lintian` judges the package on the host.
//!
//! `scripts/test` builds both packages first (`scripts/package`, and the
//! same binary with the next Debian revision in target/debian-upgrade).
//! Without them, or without root, nspawn, cron or lintian, these tests skip
//! loudly, and fail under CI=true.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::container::{self, Boot, Container};
use common::*;

const UNIT: &str = "slackbotd.service";

/// The one .deb in `dir`.
fn deb_in(dir: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    found.sort();
    found.pop()
}

/// Both packages, or a loud skip (a failure under CI=true).
fn packages() -> Option<(PathBuf, PathBuf)> {
    if !container::require() {
        return None;
    }
    match (deb_in("target/debian"), deb_in("target/debian-upgrade")) {
        (Some(a), Some(b)) => Some((a, b)),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but the packages are missing: scripts/test builds them with scripts/package")
        }
        _ => {
            eprintln!("SKIPPED: no package in target/debian and target/debian-upgrade (run scripts/package, or scripts/test)");
            None
        }
    }
}

fn ping_answered(s: &Setup) -> bool {
    let n = s.fake.posts_containing("pong").len();
    s.fake.send_mention("C1", "U1", "ping", None);
    wait_posts_with(&s.fake, "pong", n + 1, secs(15))
}

#[test]
fn lintian_finds_no_error_in_the_package() {
    let Some((deb, _)) = packages() else { return };
    let out = match Command::new("lintian")
        .args(["--fail-on", "error", "--allow-root"])
        .arg(&deb)
        .output()
    {
        Ok(o) => o,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but lintian cannot run: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: lintian cannot run ({e}); apt-get install lintian");
            return;
        }
    };
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "lintian: {said}");
    assert!(!said.lines().any(|l| l.starts_with("E: ")), "{said}");
}

#[test]
fn the_package_installs_runs_upgrades_and_purges_cleanly() {
    let Some((deb, upgrade)) = packages() else {
        return;
    };
    let s = Setup::new();
    let c = Container::boot_with(
        "sbd-deb",
        &Boot {
            writable_os: true,
            binds: vec![
                (deb.clone(), "/pkg/slackbotd.deb".into()),
                (upgrade.clone(), "/pkg/slackbotd-upgrade.deb".into()),
            ],
            ..Boot::default()
        },
        &s.path("sbd-deb.log"),
    );

    // The container's /etc is fresh: dpkg needs the system's users and
    // groups (its statoverrides name them), as any installed system has.
    for f in ["/etc/passwd", "/etc/group"] {
        c.write(f, &std::fs::read_to_string(f).unwrap(), 0o644);
    }
    // An image built for Docker forbids maintainer scripts to start services
    // (policy-rc.d exits 101); a Debian machine has no such file.
    c.ok("rm -f /usr/sbin/policy-rc.d");

    // Install: the files in their places, tokens empty and private, the bot
    // neither enabled nor started before it is configured.
    c.ok("dpkg -i /pkg/slackbotd.deb");
    for f in [
        "/usr/bin/slackbotd",
        "/lib/systemd/system/slackbotd.service",
        "/etc/cron.d/slackbotd",
        "/etc/slackbotd/slackbotd.toml",
        "/usr/share/man/man1/slackbotd.1.gz",
        "/usr/share/bash-completion/completions/slackbotd",
        "/usr/share/zsh/vendor-completions/_slackbotd",
        "/usr/share/fish/vendor_completions.d/slackbotd.fish",
    ] {
        c.ok(&format!("test -f {f}"));
    }
    for t in ["app-token", "bot-token"] {
        assert_eq!(
            c.ok(&format!("stat -c '%a %s' /etc/slackbotd/{t}")).trim(),
            "600 0"
        );
    }
    assert_eq!(
        c.prop(UNIT, "LoadState"),
        "loaded",
        "postinst ran daemon-reload"
    );
    assert_eq!(c.prop(UNIT, "UnitFileState"), "disabled");
    assert_eq!(c.prop(UNIT, "ActiveState"), "inactive");
    assert!(c
        .ok("systemctl cat slackbotd")
        .contains("ExecStart=/usr/bin/slackbotd --config /etc/slackbotd/slackbotd.toml run"));
    let verify = c.sh("systemd-analyze verify /lib/systemd/system/slackbotd.service");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let rating = c.ok("systemd-analyze security slackbotd.service | tail -1");
    let exposure: f64 = rating
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no rating in {rating}"));
    assert!(exposure <= 2.0, "{rating}");
    c.ok("zcat /usr/share/man/man1/slackbotd.1.gz | groff -man -Tutf8 -ww -z");
    assert!(c
        .ok("slackbotd manifest")
        .contains("socket_mode_enabled: true"));

    // INSTALL.md's package path: tokens, configuration, check, enable --now.
    container::configure(&c, &s, "0,/^# connections = .*/s//connections = 1/");
    let check = c.sh("slackbotd check");
    assert!(
        check.status.success(),
        "check: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    c.ok("systemctl enable --now slackbotd");
    assert!(ping_answered(&s), "the packaged bot answers");
    c.ok("slackbotd notify --channel C0OPS 'kept across the upgrade'");
    assert!(s
        .fake
        .wait_posts_containing("kept across the upgrade", secs(15))
        .is_some());
    let state = "/var/lib/private/slackbotd/slackbotd.sqlite";
    let inode = c.ok(&format!("stat -c %i {state}"));
    let started = c.prop(UNIT, "ExecMainStartTimestampMonotonic");

    // Upgrade: the configuration and the state kept, the bot restarted once
    // on the new binary, and back.
    c.ok("dpkg -i /pkg/slackbotd-upgrade.deb");
    assert!(c
        .ok("dpkg-query -W -f '${Version}' slackbotd")
        .ends_with("-2"));
    assert!(
        c.ok("cat /etc/slackbotd/slackbotd.toml")
            .contains(&format!("api_url = \"{}\"", s.fake.api_url())),
        "the edited configuration is kept"
    );
    assert_eq!(c.ok("stat -c '%a' /etc/slackbotd/bot-token").trim(), "600");
    assert!(c
        .ok("cat /etc/slackbotd/bot-token")
        .contains(s.fake.bot_token()));
    assert_eq!(
        c.ok(&format!("stat -c %i {state}")),
        inode,
        "the state is kept"
    );
    assert!(
        c.wait_unit(UNIT, secs(20), |u| u.get("ActiveState").map(String::as_str)
            == Some("active")),
        "the bot came back"
    );
    assert_ne!(
        c.prop(UNIT, "ExecMainStartTimestampMonotonic"),
        started,
        "restarted on the new binary"
    );
    let starts = c
        .ok("journalctl --no-pager -o cat -u slackbotd")
        .lines()
        .filter(|l| l.starts_with("Started slackbotd.service"))
        .count();
    assert_eq!(starts, 2, "started, then restarted once by the upgrade");
    assert_eq!(c.prop(UNIT, "UnitFileState"), "enabled", "still enabled");
    assert!(ping_answered(&s), "the upgraded bot answers");

    // Purge: nothing of the package left behind.
    c.ok("dpkg --purge slackbotd");
    for p in [
        "/usr/bin/slackbotd",
        "/lib/systemd/system/slackbotd.service",
        "/etc/cron.d/slackbotd",
        "/etc/slackbotd",
        "/var/lib/slackbotd",
        "/var/lib/private/slackbotd",
        "/run/slackbotd",
        "/usr/share/man/man1/slackbotd.1.gz",
        "/etc/systemd/system/multi-user.target.wants/slackbotd.service",
    ] {
        let out = c.sh(&format!("test -e {p} || test -L {p}"));
        assert!(!out.status.success(), "{p} is left after the purge");
    }
    assert_eq!(c.prop(UNIT, "LoadState"), "not-found");
    assert!(
        c.sh("pgrep -f '[s]lackbotd.toml'").stdout.is_empty(),
        "no bot process left"
    );
}
