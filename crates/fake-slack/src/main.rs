//! The `fake-slack` binary: runs the fake until SIGTERM or SIGINT, for scripts,
//! benchmarks and trying the bot by hand. Prints `api_url=…` on stdout once
//! listening, then one line per notable event on stderr. Drive it through the
//! control API under `/_fake/` on the API port.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fake_slack::{FakeSlack, Options};
use tokio::signal::unix::{signal, SignalKind};

/// A local fake of Slack's Web API and Socket Mode, with fault injection.
#[derive(Debug, Parser)]
#[command(name = "fake-slack", version)]
struct Cli {
    /// Port of the Web API and control API on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    api_port: u16,
    /// Port of the Socket Mode endpoint on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    ws_port: u16,
    /// The app-level token to accept.
    #[arg(long)]
    app_token: Option<String>,
    /// The bot token to accept.
    #[arg(long)]
    bot_token: Option<String>,
    /// Write `app-token` and `bot-token` files (mode 0600) into this directory.
    #[arg(long, value_name = "DIR")]
    write_tokens: Option<String>,
    /// Send an un-acked event again after this many milliseconds.
    #[arg(long, value_name = "N")]
    redelivery_after_ms: Option<u64>,
    /// Do not log events on stderr.
    #[arg(long)]
    quiet: bool,
}

fn write_secret(dir: &Path, name: &str, value: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join(name))?;
    writeln!(file, "{value}")
}

fn write_tokens(dir: &Path, slack: &FakeSlack) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    write_secret(dir, "app-token", slack.app_token())?;
    write_secret(dir, "bot-token", slack.bot_token())
}

async fn terminated() -> io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut opts = Options {
        api_port: cli.api_port,
        ws_port: cli.ws_port,
        log_events: !cli.quiet,
        ..Options::default()
    };
    if let Some(t) = cli.app_token {
        opts.app_token = t;
    }
    if let Some(t) = cli.bot_token {
        opts.bot_token = t;
    }
    if let Some(ms) = cli.redelivery_after_ms {
        opts.redelivery_after = Duration::from_millis(ms);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fake-slack: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let slack = match FakeSlack::start_with(opts) {
        Ok(slack) => slack,
        Err(e) => {
            eprintln!("fake-slack: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(dir) = &cli.write_tokens {
        if let Err(e) = write_tokens(Path::new(dir), &slack) {
            eprintln!("fake-slack: cannot write tokens into {dir}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut out = io::stdout().lock();
    if writeln!(out, "api_url={}", slack.api_url())
        .and_then(|_| out.flush())
        .is_err()
    {
        eprintln!("fake-slack: cannot write to stdout");
    }
    drop(out);
    if let Err(e) = runtime.block_on(terminated()) {
        eprintln!("fake-slack: cannot wait for signals: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!("fake-slack: shutting down");
    drop(slack);
    ExitCode::SUCCESS
}
