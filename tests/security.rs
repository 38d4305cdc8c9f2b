//! The privilege boundary, attacked: an unprivileged user (`nobody`, through
//! `setpriv --reuid`) writes what it can write — the run and state
//! directories a daemon hands to its user, a sticky lock directory — and
//! root's `stop`, `reload`, `ensure` and `notify` must not be turned against
//! anyone. These tests need root; without it they skip loudly, and under
//! `CI=true` they fail.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// The attacker's uid and gid.
const NOBODY: u32 = 65534;

/// Whether the test may run: root is needed to switch to another user.
fn as_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root to attack the privilege boundary, and CI=true");
    }
    eprintln!("SKIPPED {test}: needs root to attack the privilege boundary");
    false
}

/// A command run as the unprivileged attacker.
fn attacker(args: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        "--",
    ])
    .args(args)
    .stdin(Stdio::null());
    c
}

/// Gives `dir` (created if missing) to the attacker, as a daemon with
/// `[daemon].user` gives its run and state directories to the bot's user.
fn hand_to_attacker(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY)).unwrap();
}

/// A scratch directory others may traverse (tokens stay 0600).
fn setup() -> Setup {
    let s = Setup::new();
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    s
}

/// The attacker holds an exclusive flock on `path` (with util-linux `flock`)
/// until killed, after writing `content` into it.
fn hold_lock_as_attacker(path: &Path, content: &str) -> Child {
    let p = path.to_str().unwrap();
    let child = attacker(&[
        "sh",
        "-c",
        &format!("printf '{content}' > '{p}' && exec flock -x '{p}' sleep 60"),
    ])
    .spawn()
    .expect("setpriv and flock run");
    assert!(
        wait_until(secs(5), || lock_holder(path).is_some()),
        "the attacker holds the lock on {p}"
    );
    child
}

/// Whether `pid` lives (a zombie, killed and not yet reaped, does not).
fn alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat.rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next())
        != Some("Z")
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_planted_pidfile_never_aims_roots_signals() {
    if !as_root("a_planted_pidfile_never_aims_roots_signals") {
        return;
    }
    let s = setup();
    let config = s.config(1, "30s", "");
    hand_to_attacker(&s.path("run"));
    let pidfile = s.path("run/slackbotd.pid");
    // A bystander root process the attacker would like to see killed.
    let mut victim = Command::new("sleep").arg("60").spawn().unwrap();
    let victim_pid = victim.id();
    for planted in ["4294967295\\n".to_string(), format!("{victim_pid}\\n")] {
        let mut holder = hold_lock_as_attacker(&pidfile, &planted);
        let holder_pid = holder.id();
        for mode in ["stop", "reload"] {
            let out = s.output(&config, &[mode]);
            let said = stderr(&out);
            assert_eq!(
                out.status.code(),
                Some(77),
                "{mode} with a pidfile saying {planted:?} refuses (EX_NOPERM): {said}"
            );
            assert!(
                said.contains("not signalling it"),
                "{mode} says why: {said}"
            );
            assert!(alive(victim_pid), "{mode} left the bystander alone");
            assert!(alive(holder_pid), "{mode} left the lock holder alone");
        }
        holder.kill().unwrap();
        holder.wait().unwrap();
    }
    // The test process itself was never signalled (kill(-1) would have).
    assert!(alive(std::process::id()));
    victim.kill().unwrap();
    victim.wait().unwrap();
}

#[test]
fn roots_notify_never_follows_a_planted_link_in_the_state_directory() {
    if !as_root("roots_notify_never_follows_a_planted_link_in_the_state_directory") {
        return;
    }
    let s = setup();
    let config = s.config(1, "30s", "");
    let state = s.path("state");
    hand_to_attacker(&state);
    // A root-only directory, and a file there the attacker wants root to make.
    let secret = s.path("root-only");
    fs::create_dir(&secret).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o700)).unwrap();
    for name in ["slackbotd.sqlite", "slackbotd.sqlite-wal"] {
        let target = secret.join(format!("made-by-root-{name}"));
        let link = state.join(name);
        let made = attacker(&["ln", "-s", target.to_str().unwrap(), link.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(made.success(), "the attacker plants {}", link.display());
        let out = s.output(&config, &["notify", "--channel", "C1", "hello"]);
        let said = stderr(&out);
        assert_ne!(out.status.code(), Some(0), "notify refuses: {said}");
        assert!(said.contains("symbolic link"), "notify says why: {said}");
        assert!(
            !target.exists(),
            "root did not create {} through the link",
            target.display()
        );
        fs::remove_file(&link).unwrap();
    }
    // Without a link, root's notify works, and the database is private.
    let out = s.output(&config, &["notify", "--channel", "C1", "hello"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for f in fs::read_dir(&state).unwrap().flatten() {
        let m = f.metadata().unwrap();
        if f.file_name()
            .to_string_lossy()
            .starts_with("slackbotd.sqlite")
        {
            assert_eq!(
                m.mode() & 0o077,
                0,
                "{} is private (mode {:o})",
                f.path().display(),
                m.mode() & 0o777
            );
            assert_eq!(
                m.uid(),
                NOBODY,
                "{} belongs to the bot's user",
                f.path().display()
            );
        }
    }
    let read = attacker(&["cat", state.join("slackbotd.sqlite").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        read.success(),
        "the bot's user can still read its own store"
    );
}

#[test]
fn a_lock_planted_in_a_shared_directory_makes_roots_ensure_complain_not_skip() {
    if !as_root("a_lock_planted_in_a_shared_directory_makes_roots_ensure_complain_not_skip") {
        return;
    }
    let s = setup();
    // A sticky, world-writable directory like /run/lock.
    let shared = s.path("lock");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let lockfile = shared.join("ensure.lock");
    let config = s.config(
        1,
        "30s",
        &format!("[ensure]\nlockfile = {lockfile:?}\ntimeout = \"10s\"\n"),
    );
    // Held by the attacker: a loud refusal, not a silent "another run has it".
    let mut holder = hold_lock_as_attacker(&lockfile, "1\\n");
    let out = s.output(&config, &["ensure"]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(77), "ensure refuses loudly: {said}");
    assert!(said.contains("refusing the lock"), "{said}");
    holder.kill().unwrap();
    holder.wait().unwrap();
    // Merely planted, not held: still the attacker's file, still refused.
    let out = s.output(&config, &["ensure"]);
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("belongs to uid 65534"),
        "{}",
        stderr(&out)
    );
    assert!(lock_holder(&s.path("run/slackbotd.pid")).is_none());
    // A symlink planted there is never followed.
    fs::remove_file(&lockfile).unwrap();
    let target = s.path("root-owned-file");
    fs::write(&target, "keep").unwrap();
    let ok = attacker(&[
        "ln",
        "-s",
        target.to_str().unwrap(),
        lockfile.to_str().unwrap(),
    ])
    .status()
    .unwrap();
    assert!(ok.success());
    let out = s.output(&config, &["ensure"]);
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn root_refuses_a_token_file_another_user_owns() {
    if !as_root("root_refuses_a_token_file_another_user_owns") {
        return;
    }
    let s = setup();
    let cfg = s.config(1, "30s", "");
    // Private (0600), but the attacker's: they chose the token root would use.
    std::os::unix::fs::chown(s.path("bot-token"), Some(NOBODY), Some(NOBODY)).unwrap();
    for mode in ["check", "run"] {
        let out = s.output(&cfg, &[mode]);
        let said = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out);
        assert_eq!(out.status.code(), Some(78), "{mode}: {said}");
        assert!(said.contains("belongs to uid 65534"), "{mode}: {said}");
    }
    // Given to the daemon's own user, the same file is accepted for it.
    let cfg = s.config(1, "30s", "");
    let text = fs::read_to_string(&cfg).unwrap().replace(
        "[daemon]\n",
        "[daemon]\nuser = \"nobody\"\ngroup = \"nogroup\"\n",
    );
    fs::write(&cfg, text).unwrap();
    std::os::unix::fs::chown(s.path("app-token"), Some(NOBODY), Some(NOBODY)).unwrap();
    let out = s.output(&cfg, &["daemon", "--wait", "1ms"]);
    assert!(
        !stderr(&out).contains("belongs to uid"),
        "the daemon's user may own its tokens: {}",
        stderr(&out)
    );
    let _ = s.output(&cfg, &["stop"]);
}

#[test]
fn a_planted_stale_daemon_never_aims_roots_ensure() {
    if !as_root("a_planted_stale_daemon_never_aims_roots_ensure") {
        return;
    }
    let s = setup();
    // ensure as it runs from root's crontab where systemd does not run;
    // its own lock in a root-owned place.
    let config = s.config(
        1,
        "30s",
        &format!("[ensure]\nlockfile = {:?}\n", s.path("ensure.lock")),
    );
    hand_to_attacker(&s.path("run"));
    let pidfile = s.path("run/slackbotd.pid");
    let mut victim = Command::new("sleep").arg("60").spawn().unwrap();
    let victim_pid = victim.id();
    // The attacker holds the pidfile's lock, names the bystander in it, and
    // plants a heartbeat an hour old: a "hung daemon" for ensure to replace.
    let mut holder = hold_lock_as_attacker(&pidfile, &format!("{victim_pid}\\n"));
    let holder_pid = holder.id();
    let old = clock_ms() - 3_600_000;
    // (The heartbeat names the holder, as a daemon's own would.)
    let hb = serde_json::json!({
        "pid": holder_pid, "mode": "daemon", "started_ms": old, "written_ms": old,
        "last_frame_ms": old, "last_event_ms": null, "connections": 1, "fresh": 0,
        "heartbeat_timeout_ms": 30_000, "durable": true
    });
    let health = s.path("run/slackbotd.health");
    let wrote = attacker(&[
        "sh",
        "-c",
        &format!("printf '%s' '{hb}' > '{}'", health.display()),
    ])
    .status()
    .unwrap();
    assert!(wrote.success());
    let out = s.output(&config, &["ensure"]);
    let said = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(77),
        "ensure refuses (EX_NOPERM): {said}"
    );
    assert!(
        said.contains("not signalling it"),
        "ensure says why: {said}"
    );
    assert!(alive(victim_pid), "ensure left the bystander alone");
    assert!(alive(holder_pid), "ensure left the lock holder alone");
    assert!(alive(std::process::id()));
    holder.kill().unwrap();
    holder.wait().unwrap();
    victim.kill().unwrap();
    victim.wait().unwrap();
}

fn clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
