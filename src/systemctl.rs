//! Asking systemd about a unit, and telling it what to do, through
//! `systemctl` (the interface administrators know, and the one that works the
//! same from cron, a shell and a test).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// Where unit files live, in systemd's order.
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

/// A unit file named `unit` on disk, whether or not systemd runs or loaded it.
pub(crate) fn unit_file(unit: &str) -> Option<std::path::PathBuf> {
    UNIT_DIRS
        .iter()
        .map(|d| Path::new(d).join(unit))
        .find(|p| std::fs::symlink_metadata(p).is_ok())
}

/// Whether the machine was booted with systemd (sd_booted(3)).
pub(crate) fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The properties `ensure` reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UnitState {
    /// `loaded`, `not-found`, …
    pub(crate) load_state: String,
    /// `active`, `inactive`, `failed`, `activating`, `deactivating`, `reloading`.
    pub(crate) active_state: String,
    /// `running`, `auto-restart`, `start`, `dead`, …
    pub(crate) sub_state: String,
    /// `success`, `exit-code`, `signal`, `watchdog`, `start-limit-hit`, …
    pub(crate) result: String,
    /// The main process, 0 when none.
    pub(crate) main_pid: u32,
    /// Restarts systemd made.
    pub(crate) n_restarts: u64,
    /// When the main process started (CLOCK_MONOTONIC, µs), 0 when unknown.
    pub(crate) exec_main_start_monotonic: u64,
    /// The main process's exit status (its code, or its signal number).
    pub(crate) exec_main_status: i32,
    /// When the main process exited (CLOCK_MONOTONIC, µs), 0 when it has
    /// not exited since boot.
    pub(crate) exec_main_exit_monotonic: u64,
    /// `enabled`, `disabled`, `masked`, `static`, …
    pub(crate) unit_file_state: String,
    /// The unit file systemd read, when it found one.
    pub(crate) fragment_path: String,
}

impl UnitState {
    /// `active (running)`, as `systemctl status` writes it.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} ({}), result {}",
            self.active_state, self.sub_state, self.result
        )
    }
}

/// A `systemctl` call that failed.
#[derive(Debug, thiserror::Error)]
#[error("systemctl {args}: {detail}")]
pub(crate) struct SystemctlError {
    pub(crate) args: String,
    pub(crate) detail: String,
}

fn systemctl(args: &[&str]) -> Result<String, SystemctlError> {
    let err = |detail: String| SystemctlError {
        args: args.join(" "),
        detail,
    };
    let out = Command::new("systemctl")
        .args(args)
        .env("SYSTEMD_PAGER", "")
        .output()
        .map_err(|e| err(format!("cannot run systemctl: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(err(if stderr.is_empty() {
            format!("exited with {}", out.status)
        } else {
            stderr
        }));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Reads the unit's state.
pub(crate) fn show(unit: &str) -> Result<UnitState, SystemctlError> {
    let out = systemctl(&[
        "show",
        unit,
        "--property=LoadState,ActiveState,SubState,Result,MainPID,NRestarts,ExecMainStartTimestampMonotonic,ExecMainStatus,ExecMainExitTimestampMonotonic,UnitFileState,FragmentPath",
    ])?;
    let props: HashMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| props.get(k).copied().unwrap_or("").to_string();
    Ok(UnitState {
        load_state: get("LoadState"),
        active_state: get("ActiveState"),
        sub_state: get("SubState"),
        result: get("Result"),
        main_pid: get("MainPID").parse().unwrap_or(0),
        n_restarts: get("NRestarts").parse().unwrap_or(0),
        exec_main_start_monotonic: get("ExecMainStartTimestampMonotonic").parse().unwrap_or(0),
        exec_main_status: get("ExecMainStatus").parse().unwrap_or(0),
        exec_main_exit_monotonic: get("ExecMainExitTimestampMonotonic").parse().unwrap_or(0),
        unit_file_state: get("UnitFileState"),
        fragment_path: get("FragmentPath"),
    })
}

/// `systemctl start --no-block UNIT`.
pub(crate) fn start(unit: &str) -> Result<(), SystemctlError> {
    systemctl(&["start", "--no-block", unit]).map(|_| ())
}

/// `systemctl restart --no-block UNIT`.
pub(crate) fn restart(unit: &str) -> Result<(), SystemctlError> {
    systemctl(&["restart", "--no-block", unit]).map(|_| ())
}

/// `systemctl reset-failed UNIT` (clears a start-limit-hit).
pub(crate) fn reset_failed(unit: &str) -> Result<(), SystemctlError> {
    systemctl(&["reset-failed", unit]).map(|_| ())
}

/// CLOCK_MONOTONIC now, in µs (the clock systemd's `…Monotonic` properties use).
pub(crate) fn monotonic_now_us() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
        .unwrap_or(0)
}
