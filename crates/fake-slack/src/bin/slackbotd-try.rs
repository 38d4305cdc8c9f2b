//! `slackbotd-try`: see slackbotd work with no Slack workspace. Starts the
//! fake Slack, writes tokens and a configuration into a scratch directory,
//! runs `slackbotd run` against it, sends the bot a few `@mentions` the way
//! Slack would, and prints the replies. Then every line typed on stdin is sent
//! as a mention too, until end of input.

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use clap::Parser;
use fake_slack::{FakeSlack, DEFAULT_CHANNEL, DEFAULT_USER};

/// Try slackbotd against a local fake Slack.
#[derive(Debug, Parser)]
#[command(name = "slackbotd-try")]
struct Cli {
    /// The slackbotd binary to run.
    #[arg(long, default_value = "target/release/slackbotd")]
    bot: PathBuf,
}

fn secret(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{value}\n"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

fn say(slack: &FakeSlack, text: &str) -> Option<String> {
    let before = slack.snapshot().posts.len();
    println!("you> @slackbotd {text}");
    slack.send_mention(DEFAULT_CHANNEL, DEFAULT_USER, text, None);
    let reply = slack.wait_for(Duration::from_secs(40), |s| {
        s.posts.get(before).map(|p| p.text.clone())
    });
    match &reply {
        Some(r) => {
            for (i, line) in r.lines().enumerate() {
                println!("{}{line}", if i == 0 { "bot> " } else { "     " });
            }
        }
        None => println!("bot> (no reply within 40s)"),
    }
    reply
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.bot.exists() {
        eprintln!(
            "slackbotd-try: {} does not exist; build it first (cargo build --release)",
            cli.bot.display()
        );
        return ExitCode::from(66);
    }
    let slack = match FakeSlack::start_with(fake_slack::Options::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("slackbotd-try: cannot start the fake Slack: {e}");
            return ExitCode::from(71);
        }
    };
    let dir = std::env::temp_dir().join(format!("slackbotd-try-{}", std::process::id()));
    let setup = || -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&dir)?;
        secret(&dir.join("app-token"), slack.app_token())?;
        secret(&dir.join("bot-token"), slack.bot_token())?;
        let config = dir.join("slackbotd.toml");
        std::fs::write(
            &config,
            format!(
                "[slack]\napp_token_file = {:?}\nbot_token_file = {:?}\napi_url = {:?}\nconnections = 2\n\n\
                 [daemon]\npidfile = {:?}\nstate_dir = {:?}\n\n\
                 [[command]]\nname = \"uptime\"\nrun = [\"/usr/bin/uptime\"]\ndescription = \"how long this machine has been up\"\n\n\
                 [[command]]\nname = \"echo\"\nrun = [\"/bin/echo\"]\ndescription = \"repeat the words after it (no shell ever sees them)\"\n",
                dir.join("app-token"),
                dir.join("bot-token"),
                slack.api_url(),
                dir.join("slackbotd.pid"),
                dir.join("state"),
            ),
        )?;
        Ok(config)
    };
    let config = match setup() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("slackbotd-try: cannot write into {}: {e}", dir.display());
            return ExitCode::from(73);
        }
    };
    println!(
        "A fake Slack listens at {}; the bot's configuration is {}",
        slack.api_url(),
        config.display()
    );
    println!(
        "Starting: {} --config {} run   (its log follows on stderr)\n",
        cli.bot.display(),
        config.display()
    );
    let mut bot = match Command::new(&cli.bot)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("slackbotd-try: cannot start {}: {e}", cli.bot.display());
            return ExitCode::from(71);
        }
    };
    let code = if slack
        .wait_live_connections(2, Duration::from_secs(20))
        .is_none()
    {
        eprintln!("slackbotd-try: the bot did not connect within 20s");
        ExitCode::from(69)
    } else {
        std::thread::sleep(Duration::from_millis(200));
        println!();
        let mut ok = true;
        for text in [
            "ping",
            "status",
            "help",
            "echo 'hello world' ; rm -rf /",
            "uptime",
        ] {
            ok &= say(&slack, text).is_some();
            println!();
        }
        let interactive = std::io::stdin().is_terminal();
        if interactive {
            println!("Your turn: type a message for the bot (Ctrl-D to stop).");
        }
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if !line.trim().is_empty() {
                say(&slack, line.trim());
            }
            let _ = std::io::stdout().flush();
        }
        let snap = slack.snapshot();
        let acked = snap
            .deliveries
            .iter()
            .filter(|d| d.acked_at.is_some())
            .count();
        println!(
            "\n{} events sent over Socket Mode, {} acknowledged; {} replies posted.",
            snap.deliveries.len(),
            acked,
            snap.posts.len()
        );
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    };
    terminate(&mut bot);
    let _ = std::fs::remove_dir_all(&dir);
    code
}

/// Stops the bot with SIGTERM (it finishes in-flight work), SIGKILL after 10 s.
fn terminate(bot: &mut std::process::Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(bot.id().to_string())
        .status();
    for _ in 0..100 {
        if let Ok(Some(_)) = bot.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = bot.kill();
    let _ = bot.wait();
}
