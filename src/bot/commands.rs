//! Runs an operator's `[[command]]`: argv (never a shell), a clean
//! environment that holds no token, the event's JSON on stdin, its own
//! process group, a deadline that kills the whole group.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::config::CommandConfig;
use crate::text::cut;

/// PATH given to commands: the system's directories, nothing from our own environment.
pub(crate) const COMMAND_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long a command gets between SIGTERM and SIGKILL after its deadline.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// The most stdout kept in memory; the reply is cut much shorter.
const STDOUT_KEEP: usize = 256 * 1024;
/// The tail of stderr kept for a failure report.
const STDERR_KEEP: usize = 2048;

/// Who asked, for the command's environment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Caller {
    /// `SLACK_USER_ID`.
    pub(crate) user: String,
    /// `SLACK_CHANNEL_ID`.
    pub(crate) channel: String,
    /// `SLACK_TEAM_ID`.
    pub(crate) team: String,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal (not by us).
    Signalled(i32),
    /// Ran past its timeout; its process group was killed.
    TimedOut,
    /// Could not be started at all.
    SpawnFailed(String),
}

/// The result of one run.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// How it ended.
    pub(crate) ending: Ending,
    /// Standard output (at most [`STDOUT_KEEP`] bytes of it).
    pub(crate) stdout: String,
    /// Total bytes written to stdout.
    pub(crate) stdout_len: usize,
    /// The tail of standard error.
    pub(crate) stderr_tail: String,
    /// Wall time.
    pub(crate) duration: Duration,
}

/// Reads a stream to its end, keeping the head (or the tail) within `keep`.
async fn drain<R: AsyncRead + Unpin>(mut r: R, keep: usize, tail: bool) -> (Vec<u8>, usize) {
    let mut kept = Vec::new();
    let mut total = 0usize;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n;
                if tail {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > keep {
                        kept.drain(..kept.len() - keep);
                    }
                } else if kept.len() < keep {
                    let room = keep - kept.len();
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    }
    (kept, total)
}

/// Marks every descriptor above stderr close-on-exec in a command's child,
/// whatever the bot itself inherited (a hand-started `run` gets the
/// shell's): the program sees its three pipes and nothing else. Marked, not
/// closed, so the pipe on which the standard library reports a failed exec
/// keeps working.
fn close_inherited() -> std::io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    // SAFETY: close_range(2) only changes flags of this (child) process's
    // descriptors; it is a single system call, async-signal-safe.
    let done =
        unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) } == 0;
    if !done {
        // Kernels before 5.11: one by one.
        for fd in 3..4096 {
            // SAFETY: as above; a descriptor that is not open gives EBADF.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    Ok(())
}

/// Runs `cmd` with `extra` after its configured argv (the separator and
/// the user's words, allowed by `arguments.rs`), feeding `stdin_json`,
/// within its timeout.
pub(crate) async fn run(
    cmd: &CommandConfig,
    extra: &[String],
    caller: &Caller,
    stdin_json: &[u8],
) -> Outcome {
    let started = Instant::now();
    let mut c = tokio::process::Command::new(&cmd.run[0]);
    c.args(&cmd.run[1..])
        .args(extra)
        .env_clear()
        .env("PATH", COMMAND_PATH)
        .env("LANG", "C.UTF-8")
        .env("HOME", "/")
        .env("SLACK_USER_ID", &caller.user)
        .env("SLACK_CHANNEL_ID", &caller.channel)
        .env("SLACK_TEAM_ID", &caller.team)
        .env("SLACKBOTD_COMMAND", &cmd.name)
        .current_dir(cmd.cwd.as_deref().unwrap_or(std::path::Path::new("/")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(user) = &cmd.user {
        match nix::unistd::User::from_name(user) {
            Ok(Some(u)) => {
                let (uid, gid) = (u.uid.as_raw(), u.gid.as_raw());
                // As root, std also drops the supplementary groups (setgroups(0)) before setuid.
                c.env("HOME", &u.dir).env("USER", &u.name).uid(uid).gid(gid);
            }
            Ok(None) => return spawn_failed(started, format!("user {user:?} does not exist")),
            Err(e) => return spawn_failed(started, format!("cannot look up user {user:?}: {e}")),
        }
    }
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only async-signal-safe system calls.
    unsafe { c.pre_exec(close_inherited) };
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => return spawn_failed(started, format!("cannot start {}: {e}", cmd.run[0])),
    };
    let pgid = child.id().map(|p| Pid::from_raw(p as i32));
    // If this run is abandoned (the bot stops), the whole group goes with it.
    let _group = KillGroupOnDrop(pgid);
    let stdout = child
        .stdout
        .take()
        .map(|s| tokio::spawn(drain(s, STDOUT_KEEP, false)));
    let stderr = child
        .stderr
        .take()
        .map(|s| tokio::spawn(drain(s, STDERR_KEEP, true)));
    if let Some(mut stdin) = child.stdin.take() {
        let input = stdin_json.to_vec();
        tokio::spawn(async move {
            // A program that does not read its input is fine: ignore EPIPE.
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        });
    }
    let ending = match tokio::time::timeout(cmd.timeout, child.wait()).await {
        Ok(Ok(status)) => match (status.code(), status.signal()) {
            (Some(code), _) => Ending::Exited(code),
            (None, Some(sig)) => Ending::Signalled(sig),
            _ => Ending::Exited(-1),
        },
        Ok(Err(e)) => Ending::SpawnFailed(format!("waiting for the command failed: {e}")),
        Err(_) => {
            if let Some(pg) = pgid {
                let _ = killpg(pg, Signal::SIGTERM);
                if tokio::time::timeout(KILL_GRACE, child.wait())
                    .await
                    .is_err()
                {
                    let _ = killpg(pg, Signal::SIGKILL);
                }
            }
            let _ = child.wait().await;
            Ending::TimedOut
        }
    };
    // Whatever the command left behind in its group goes with it.
    if let Some(pg) = pgid {
        let _ = killpg(pg, Signal::SIGKILL);
    }
    let collect = |h: Option<tokio::task::JoinHandle<(Vec<u8>, usize)>>| async move {
        match h {
            Some(h) => tokio::time::timeout(Duration::from_secs(1), h)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => (Vec::new(), 0),
        }
    };
    let (out, out_len) = collect(stdout).await;
    let (err, _) = collect(stderr).await;
    Outcome {
        ending,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stdout_len: out_len,
        stderr_tail: String::from_utf8_lossy(&err).into_owned(),
        duration: started.elapsed(),
    }
}

/// Kills a process group when dropped (harmless if it is already gone).
struct KillGroupOnDrop(Option<Pid>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pg) = self.0 {
            let _ = killpg(pg, Signal::SIGKILL);
        }
    }
}

fn spawn_failed(started: Instant, why: String) -> Outcome {
    Outcome {
        ending: Ending::SpawnFailed(why),
        stdout: String::new(),
        stdout_len: 0,
        stderr_tail: String::new(),
        duration: started.elapsed(),
    }
}

/// The reply for an outcome, within `limit` characters of output.
pub(crate) fn reply_text(name: &str, o: &Outcome, limit: usize) -> String {
    let secs = format!("{:.1}s", o.duration.as_secs_f64());
    match &o.ending {
        Ending::Exited(0) => {
            let out = o.stdout.trim_end();
            if out.is_empty() {
                return format!("`{name}` finished in {secs} with no output.");
            }
            let (shown, was_cut) = cut(out, limit);
            if was_cut || o.stdout_len > o.stdout.len() {
                format!(
                    "{shown}\n… output cut: `{name}` wrote {} bytes; this shows the first {}.",
                    o.stdout_len,
                    shown.len()
                )
            } else {
                shown
            }
        }
        Ending::Exited(code) => failure(
            name,
            &format!("failed with exit code {code} after {secs}"),
            o,
            limit,
        ),
        Ending::Signalled(sig) => {
            let sig_name = Signal::try_from(*sig)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| sig.to_string());
            failure(
                name,
                &format!("was killed by {sig_name} after {secs}"),
                o,
                limit,
            )
        }
        Ending::TimedOut => failure(
            name,
            &format!("timed out after {secs}; its process group was killed"),
            o,
            limit,
        ),
        Ending::SpawnFailed(why) => format!(":x: `{name}` could not run: {why}"),
    }
}

fn failure(name: &str, what: &str, o: &Outcome, limit: usize) -> String {
    let mut s = format!(":x: `{name}` {what}.");
    let tail = o.stderr_tail.trim();
    if !tail.is_empty() {
        let (shown, _) = cut(tail, limit / 2);
        s.push_str(&format!("\nstderr (last lines):\n```\n{shown}\n```"));
    }
    let out = o.stdout.trim();
    if !out.is_empty() {
        let (shown, _) = cut(out, limit / 2);
        s.push_str(&format!("\nstdout:\n```\n{shown}\n```"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(run: &[&str], timeout_ms: u64) -> CommandConfig {
        CommandConfig {
            name: "t".into(),
            run: run.iter().map(|s| s.to_string()).collect(),
            description: None,
            allow_users: None,
            allow_channels: None,
            timeout: Duration::from_millis(timeout_ms),
            max_concurrent: 1,
            cwd: None,
            user: None,
            args: Default::default(),
            args_pattern: None,
            args_separator: None,
        }
    }

    fn caller() -> Caller {
        Caller {
            user: "U1".into(),
            channel: "C1".into(),
            team: "T1".into(),
        }
    }

    #[tokio::test]
    async fn stdout_is_the_reply_and_env_is_clean() {
        std::env::set_var("SLACK_BOT_TOKEN_TEST_LEAK", "xoxb-leak");
        let o = run(
            &spec(&["/bin/sh", "-c", "cat; echo; env"], 5000),
            &[],
            &caller(),
            b"{\"e\":1}",
        )
        .await;
        assert_eq!(o.ending, Ending::Exited(0));
        assert!(o.stdout.starts_with("{\"e\":1}"), "{}", o.stdout);
        assert!(
            o.stdout.contains("SLACK_USER_ID=U1") && o.stdout.contains("SLACKBOTD_COMMAND=t"),
            "{}",
            o.stdout
        );
        assert!(!o.stdout.contains("xoxb-leak"), "{}", o.stdout);
    }

    #[tokio::test]
    async fn failure_shows_stderr_tail() {
        let o = run(
            &spec(&["/bin/sh", "-c", "echo oops >&2; exit 3"], 5000),
            &[],
            &caller(),
            b"",
        )
        .await;
        assert_eq!(o.ending, Ending::Exited(3));
        let r = reply_text("t", &o, 3000);
        assert!(r.contains("exit code 3") && r.contains("oops"), "{r}");
    }

    #[tokio::test]
    async fn timeout_kills_the_group() {
        let o = run(
            &spec(&["/bin/sh", "-c", "sleep 30 & sleep 30"], 200),
            &[],
            &caller(),
            b"",
        )
        .await;
        assert_eq!(o.ending, Ending::TimedOut);
        assert!(o.duration < Duration::from_secs(5), "{:?}", o.duration);
        assert!(reply_text("t", &o, 3000).contains("timed out"));
    }

    #[tokio::test]
    async fn an_abandoned_run_takes_its_process_group_along() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("gc.pid");
        let script = format!("sleep 60 & echo $! > {}; sleep 60", pidfile.display());
        let cmd = spec(&["/bin/sh", "-c", &script], 60_000);
        let r =
            tokio::time::timeout(Duration::from_millis(500), run(&cmd, &[], &caller(), b"")).await;
        assert!(r.is_err(), "still running when abandoned");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.is_empty()
                || stat
                    .rfind(')')
                    .is_some_and(|i| stat[i + 2..].starts_with('Z'))
        };
        for _ in 0..100 {
            if gone() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("grandchild {pid} outlived the abandoned run");
    }

    #[tokio::test]
    async fn missing_program_is_reported() {
        let o = run(&spec(&["/nonexistent/prog"], 1000), &[], &caller(), b"").await;
        assert!(matches!(o.ending, Ending::SpawnFailed(_)));
    }

    #[test]
    fn long_output_is_cut_with_a_note() {
        let o = Outcome {
            ending: Ending::Exited(0),
            stdout: "x\n".repeat(5000),
            stdout_len: 10000,
            stderr_tail: String::new(),
            duration: Duration::from_millis(5),
        };
        let r = reply_text("t", &o, 100);
        assert!(r.len() < 250 && r.contains("output cut"), "{r}");
    }
}
