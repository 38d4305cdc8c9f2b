//! `slackbotd exited`: run by systemd as `ExecStopPost=`, it records how the
//! bot's process ended (from `$SERVICE_RESULT`, `$EXIT_CODE`, `$EXIT_STATUS`)
//! in the state store, so the next start can announce what happened.

use crate::cli::ConfigSource;
use crate::clock::now_ms;
use crate::config::Config;
use crate::exit::ExitCode;
use crate::modes::Failure;
use crate::store::history::NewExit;
use crate::store::{Durability, Store};

/// Words for systemd's description of an exit; `clean` when it was asked for.
pub(crate) fn describe(result: &str, code: &str, status: &str) -> (String, bool) {
    let clean = result == "success";
    let how = match code {
        "exited" => match status {
            "78" => "exited with code 78 (configuration or credentials)".to_string(),
            s => format!("exited with code {s}"),
        },
        "killed" => format!("killed by signal SIG{status}"),
        "dumped" => format!("killed by signal SIG{status} (core dumped)"),
        "" => "ended".to_string(),
        other => format!("{other} {status}"),
    };
    let cause = match result {
        "watchdog" => {
            format!("the watchdog fired (it stopped hearing from Slack, or hung) and it was {how}")
        }
        "timeout" => format!("it did not start or stop in time and was {how}"),
        "success" | "" => how,
        other => format!("{how} ({other})"),
    };
    (cause, clean)
}

/// The number of a signal systemd names without its `SIG` (`KILL` → 9).
fn signal_number(name: &str) -> Option<i32> {
    format!("SIG{name}")
        .parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

/// Records the exit systemd describes in the environment.
pub(crate) fn exited(src: &ConfigSource) -> Result<(), Failure> {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let (result, code, status) = (var("SERVICE_RESULT"), var("EXIT_CODE"), var("EXIT_STATUS"));
    if result.is_empty() && code.is_empty() {
        return Err(Failure::new(
            ExitCode::USAGE,
            "`exited` is run by systemd (ExecStopPost=), which sets $SERVICE_RESULT, $EXIT_CODE and $EXIT_STATUS",
        ));
    }
    let config = Config::load(&src.path)?;
    let (cause, clean) = describe(&result, &code, &status);
    let mut store = Store::open(&config.daemon.state_dir, Durability::Full)?;
    let (code, signal) = match code.as_str() {
        "exited" => (status.parse().ok(), None),
        "killed" | "dumped" => (None, signal_number(&status)),
        _ => (None, None),
    };
    store.record_exit(&NewExit {
        at_ms: now_ms(),
        mode: "run".into(),
        cause,
        clean,
        code,
        signal,
        hang: result == "watchdog",
        lifetime_ms: None,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_exits_in_words() {
        assert_eq!(
            describe("signal", "killed", "KILL"),
            ("killed by signal SIGKILL (signal)".to_string(), false)
        );
        assert_eq!(
            describe("success", "exited", "0"),
            ("exited with code 0".to_string(), true)
        );
        let (w, clean) = describe("watchdog", "dumped", "ABRT");
        assert!(
            w.contains("watchdog") && w.contains("SIGABRT") && !clean,
            "{w}"
        );
        assert!(describe("exit-code", "exited", "78")
            .0
            .contains("configuration"));
    }
}
