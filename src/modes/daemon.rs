//! `slackbotd daemon`: the classic Unix daemon. Everything that can fail is
//! checked on the terminal first (configuration, tokens, user, syslog); then,
//! in order: double fork, `setsid`, umask, chdir /, stdio to /dev/null,
//! inherited descriptors closed, the lock taken, the pid written, privileges
//! dropped, and only then logging. The original parent exits 0 only once the
//! supervisor holds the lock and its worker said hello.

use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{Gid, Uid};

use crate::cli::ConfigSource;
use crate::config::Config;
use crate::exit::{ExitCode, HasExitCode};
use crate::modes::Failure;
use crate::secrets::Tokens;
use crate::supervise::daemonize::{daemonize, Forked, Readiness, ReadyWriter};
use crate::supervise::lock::{self, PidLock};
use crate::supervise::supervisor::{supervise, Plan};
use crate::syslog::Syslog;

/// The user and group the daemon drops to.
#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    uid: Uid,
    gid: Gid,
}

fn resolve_identity(config: &Config) -> Result<Option<RunAs>, Failure> {
    let d = &config.daemon;
    let bad = |m: String| Failure::new(ExitCode::CONFIG, m);
    let user = match &d.user {
        None => None,
        Some(name) => match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Some(u),
            Ok(None) => {
                return Err(bad(format!(
                    "daemon.user: no such user {name:?} (create it: useradd --system {name})"
                )))
            }
            Err(e) => return Err(bad(format!("daemon.user: cannot look up {name:?}: {e}"))),
        },
    };
    let group = match &d.group {
        None => None,
        Some(name) => match nix::unistd::Group::from_name(name) {
            Ok(Some(g)) => Some(g.gid),
            Ok(None) => return Err(bad(format!("daemon.group: no such group {name:?}"))),
            Err(e) => return Err(bad(format!("daemon.group: cannot look up {name:?}: {e}"))),
        },
    };
    let id = match (user, group) {
        (None, None) => return Ok(None),
        (Some(u), g) => RunAs {
            name: u.name,
            uid: u.uid,
            gid: g.unwrap_or(u.gid),
        },
        (None, Some(g)) => RunAs {
            name: "(unchanged)".into(),
            uid: Uid::current(),
            gid: g,
        },
    };
    if !Uid::effective().is_root() && (id.uid != Uid::effective() || id.gid != Gid::effective()) {
        return Err(Failure::new(
            ExitCode::NOPERM,
            "daemon.user/daemon.group: only root can switch users; start the daemon as root or remove these keys",
        ));
    }
    // The worker re-reads the tokens after the switch: they must be its own.
    if id.uid != Uid::effective() {
        for f in [&config.slack.app_token_file, &config.slack.bot_token_file]
            .into_iter()
            .flatten()
        {
            if let Ok(m) = std::fs::metadata(f) {
                if m.uid() != id.uid.as_raw() {
                    return Err(bad(format!(
                        "{} is not owned by {} (daemon.user), who must read it: run chown {} {}",
                        f.display(),
                        id.name,
                        id.name,
                        f.display()
                    )));
                }
            }
        }
    }
    Ok(Some(id))
}

/// Starts the daemon and reports whether it came up.
pub(crate) fn daemon(src: &ConfigSource, wait: Duration) -> Result<(), Failure> {
    let path = std::path::absolute(&src.path)
        .map_err(|e| Failure::new(ExitCode::CONFIG, format!("{}: {e}", src.path.display())))?;
    let config = Config::load(&path)?;
    let identity = resolve_identity(&config)?;
    let owners: Vec<u32> = identity.iter().map(|id| id.uid.as_raw()).collect();
    Tokens::load_as(&config.slack, config.base_dir.as_deref(), &owners)?;
    if let Ok(Some(pid)) = lock::holder(&config.daemon.pidfile) {
        return Err(Failure::new(
            ExitCode::TEMPFAIL,
            format!(
                "slackbotd is already running with pid {pid} (it holds the lock on {})",
                config.daemon.pidfile.display()
            ),
        ));
    }
    let socket = config.daemon.syslog_socket.clone();
    if !Syslog::available(&socket) {
        eprintln!(
            "slackbotd: warning: no syslog socket at {}: the daemon runs anyway, and its logs are lost until a syslog daemon listens there (it retries every second)",
            socket.display()
        );
    }
    // SAFETY: no thread, runtime or logger exists yet in this process.
    match unsafe { daemonize() } {
        Err(e) => Err(Failure::new(ExitCode::OSERR, format!("cannot fork the daemon: {e}"))),
        Ok(Forked::Parent(reader)) => match reader.wait(wait) {
            Readiness::Ready { pid } => {
                println!("slackbotd is running as a daemon (supervisor pid {pid}) and connected to Slack");
                Ok(())
            }
            Readiness::Failed { code, message } => Err(Failure::new(ExitCode(code), message)),
            Readiness::Pending { pid } => Err(Failure::new(
                ExitCode::TEMPFAIL,
                format!(
                    "the daemon started{} but has not connected to Slack within {}; it keeps trying (see syslog, or `slackbotd status`)",
                    pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                    crate::clock::short(wait)
                ),
            )),
            Readiness::Vanished => Err(Failure::new(ExitCode::SOFTWARE, "the daemon ended before it was ready; see syslog")),
        },
        Ok(Forked::Daemon(ready)) => {
            let code = run_daemon(path, config, identity, ready, wait);
            std::process::exit(i32::from(code));
        }
    }
}

/// Directories a daemon must never take over.
fn shared_dir(dir: &Path) -> bool {
    ["/", "/run", "/var/run", "/tmp", "/var/tmp", "/var", "/etc"]
        .iter()
        .any(|d| dir == Path::new(d))
}

/// Gives the run and state directories to `id`, which writes there.
/// Creates the run directory and the state directory (`0700`: the outbox
/// holds what cron jobs piped in) and gives both to the bot's user.
fn hand_over(dirs: &[(PathBuf, u32)], id: &RunAs) -> Result<(), String> {
    for (dir, mode) in dirs {
        let dir = dir.as_path();
        if shared_dir(dir) {
            return Err(format!(
                "{} is a shared directory; with daemon.user set, give slackbotd its own (e.g. /run/slackbotd/slackbotd.pid)",
                dir.display()
            ));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(*mode)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // By descriptor, never following a link: root's chown must not land
        // on a directory someone pointed this path at.
        let d = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(dir)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
                    format!(
                        "{} is not a directory (a symbolic link?); refusing it",
                        dir.display()
                    )
                }
                _ => format!("cannot open {}: {e}", dir.display()),
            })?;
        std::os::unix::fs::fchown(&d, Some(id.uid.as_raw()), Some(id.gid.as_raw()))
            .map_err(|e| format!("cannot chown {}: {e}", dir.display()))?;
    }
    Ok(())
}

fn drop_privileges(id: &RunAs) -> nix::Result<()> {
    nix::unistd::setgroups(&[id.gid])?;
    nix::unistd::setgid(id.gid)?;
    nix::unistd::setuid(id.uid)
}

/// The daemon process itself, after the double fork.
fn run_daemon(
    path: PathBuf,
    config: Config,
    identity: Option<RunAs>,
    ready: ReadyWriter,
    wait: Duration,
) -> u8 {
    let pidfile = config.daemon.pidfile.clone();
    let lock = match PidLock::acquire(&pidfile) {
        Ok(l) => l,
        Err(e) => {
            let code = e.exit_code().0;
            ready.failed(code, &e.to_string());
            return code;
        }
    };
    // Started on purpose: an earlier deliberate stop is over.
    crate::supervise::stopped::clear(&config.daemon.state_dir);
    if let Some(id) = &identity {
        let run_dir = pidfile
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        if let Err(e) = hand_over(
            &[(run_dir, 0o755), (config.daemon.state_dir.clone(), 0o700)],
            id,
        ) {
            ready.failed(ExitCode::CONFIG.0, &e);
            return ExitCode::CONFIG.0;
        }
        if let Err(e) = drop_privileges(id) {
            let msg = format!("cannot switch to user {}: {e}", id.name);
            ready.failed(ExitCode::NOPERM.0, &msg);
            return ExitCode::NOPERM.0;
        }
    }
    let d = &config.daemon;
    crate::logging::init_syslog_for(d);
    tracing::info!(
        "daemon started (pid {}, configuration {}); supervising the bot worker",
        std::process::id(),
        path.display()
    );
    let code = supervise(
        Plan {
            config_path: path,
            config,
            mode: "daemon",
            wait,
            capture_stderr: true,
        },
        lock,
        Some(ready),
        crate::systemd::Notifier::Off,
    );
    tracing::info!("daemon stopped (exit {code})");
    code
}
