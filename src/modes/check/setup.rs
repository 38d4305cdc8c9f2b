//! The local setup, judged before it fails at 3 a.m.: every operator
//! command's program exists and is executable, a `[daemon].user` exists,
//! no command asks to change users under the shipped unit, which cannot,
//! and the `[metrics]` port is free and its textfile's directory writable.
//! `check` prints these; `install` prints them as warnings.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::needs::{Finding, Level};
use crate::config::Config;

/// The directories systemd loads units from, most specific first.
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

/// The drop-in that lets the unit's bot run commands as other users.
pub(crate) const USER_DROP_IN: &str = "DynamicUser=no, PrivateUsers=no, \
     CapabilityBoundingSet=CAP_SETUID CAP_SETGID, and SystemCallFilter= then \
     SystemCallFilter=@system-service (systemctl edit slackbotd)";

/// Whether this machine was booted with systemd.
pub(crate) fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Whether `unit` is installed in one of systemd's unit directories.
fn unit_installed(unit: &str) -> bool {
    UNIT_DIRS.iter().any(|d| Path::new(d).join(unit).exists())
}

/// Why the program at `path` cannot run, if it cannot.
pub(crate) fn not_runnable(path: &Path) -> Option<String> {
    if !path.is_absolute() {
        return Some("is not an absolute path".into());
    }
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("does not exist".into()),
        Err(e) => Some(format!("cannot be examined ({e})")),
        Ok(m) if !m.is_file() => Some("is not a file".into()),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Some("is not executable (chmod +x)".into()),
        Ok(_) => None,
    }
}

/// Everything wrong with the local setup, or one line saying it is fine.
pub(crate) fn findings(config: &Config) -> Vec<Finding> {
    findings_with(
        config,
        systemd_runs() && unit_installed(&config.ensure.unit),
    )
}

/// [`findings`], told whether the bot runs under the shipped unit.
fn findings_with(config: &Config, under_unit: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in &config.commands {
        let Some(program) = c.run.first() else {
            continue;
        };
        if let Some(why) = not_runnable(Path::new(program)) {
            out.push(Finding {
                level: Level::Fail,
                text: format!(
                    "command {:?}: its program {program} {why}; the command can never run",
                    c.name
                ),
            });
        }
        if let (Some(user), true) = (&c.user, under_unit) {
            out.push(Finding {
                level: Level::Warn,
                text: format!(
                    "command {:?} runs as user {user:?}, but the shipped unit runs the bot as a dynamic, \
                     unprivileged user that cannot change users, so the command will fail; to allow it, \
                     add a drop-in with {USER_DROP_IN}",
                    c.name
                ),
            });
        }
    }
    if let Some(user) = &config.daemon.user {
        match nix::unistd::User::from_name(user) {
            Ok(Some(_)) => {}
            Ok(None) => out.push(Finding {
                level: Level::Fail,
                text: format!(
                    "[daemon].user {user:?} does not exist: create it (adduser --system {user}) or correct the name"
                ),
            }),
            Err(e) => out.push(Finding {
                level: Level::Warn,
                text: format!("cannot look up [daemon].user {user:?}: {e}"),
            }),
        }
    }
    let running = crate::supervise::lock::holder(&config.daemon.pidfile)
        .ok()
        .flatten()
        .is_some();
    out.extend(metrics(config, running));
    if out.is_empty() {
        out.push(Finding {
            level: Level::Ok,
            text: "every command's program exists and is executable".into(),
        });
    }
    out
}

/// Whether `[metrics]` can work: its port free (unless the running bot
/// holds it) and its textfile's directory there and writable.
fn metrics(config: &Config, bot_running: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(addr) = config.metrics.listen {
        match std::net::TcpListener::bind(addr) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && bot_running => out.push(Finding {
                level: Level::Warn,
                text: format!("[metrics].listen {addr} is in use, presumably by the running bot; if another program holds it, the next start fails"),
            }),
            Err(e) => out.push(Finding {
                level: Level::Fail,
                text: format!("[metrics].listen {addr} cannot be bound ({}): the start would fail; pick a free port", crate::files::plain_io(&e)),
            }),
        }
    }
    if let Some(file) = &config.metrics.textfile {
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let why = if !dir.is_dir() {
            Some("does not exist".to_string())
        } else {
            nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK)
                .err()
                .map(|e| format!("is not writable ({})", e.desc()))
        };
        if let Some(why) = why {
            out.push(Finding {
                level: Level::Fail,
                text: format!(
                    "[metrics].textfile {}: its directory {} {why}; create it, or pick another",
                    file.display(),
                    dir.display()
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Config {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn programs_that_cannot_run_and_users_that_do_not_exist_fail() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        let c = config(&format!(
            "[daemon]\nuser = \"no-such-user-sbd\"\n\
             [[command]]\nname = \"a\"\nrun = [\"/bin/true\"]\n\
             [[command]]\nname = \"b\"\nrun = [\"/no/such/program\"]\n\
             [[command]]\nname = \"c\"\nrun = [{:?}]\n",
            plain.display()
        ));
        let f = findings_with(&c, false);
        let texts: Vec<&str> = f.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(f.len(), 3, "{texts:?}");
        assert!(f.iter().all(|f| f.level == Level::Fail));
        assert!(texts[0].contains("\"b\"") && texts[0].contains("does not exist"));
        assert!(texts[1].contains("\"c\"") && texts[1].contains("not executable"));
        assert!(texts[2].contains("no-such-user-sbd") && texts[2].contains("does not exist"));
    }

    #[test]
    fn a_metrics_port_in_use_or_a_missing_textfile_directory_fails() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let c = config(&format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\ntextfile = \"/no/such/dir/x.prom\"\n"
        ));
        let f = metrics(&c, false);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f.iter().all(|f| f.level == Level::Fail));
        assert!(
            f[0].text.contains("cannot be bound") && f[0].text.contains("in use"),
            "{}",
            f[0].text
        );
        assert!(
            f[1].text.contains("/no/such/dir does not exist"),
            "{}",
            f[1].text
        );
        let f = metrics(&c, true);
        assert_eq!(f[0].level, Level::Warn, "the running bot may hold it");
        drop(taken);
        let free = config(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
        assert!(metrics(&free, false).is_empty());
    }

    #[test]
    fn a_user_command_under_the_unit_warns_with_the_drop_in() {
        let c = config("[[command]]\nname = \"a\"\nrun = [\"/bin/true\"]\nuser = \"nobody\"\n");
        assert_eq!(findings_with(&c, false)[0].level, Level::Ok);
        let f = findings_with(&c, true);
        assert_eq!(f[0].level, Level::Warn);
        assert!(f[0].text.contains("CAP_SETUID") && f[0].text.contains("systemctl edit"));
    }
}
