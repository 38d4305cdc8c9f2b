//! Operator commands through Slack: argv only, a clean environment, the
//! event on stdin, access lists, limits, timeouts that kill the whole group.

mod common;

use std::time::Duration;

use common::*;

fn bot_with(s: &Setup, commands: &str) -> Proc {
    let cfg = s.config(1, "30s", commands);
    let p = s.spawn(&cfg, &["run"]);
    assert!(
        s.fake.wait_live_connections(1, secs(10)).is_some(),
        "{}",
        p.log()
    );
    p
}

fn reply_to(s: &Setup, channel: &str, user: &str, text: &str) -> String {
    let n = s.fake.snapshot().posts.len();
    s.fake.send_mention(channel, user, text, None);
    s.fake
        .wait_for(secs(15), |snap| snap.posts.get(n).map(|p| p.text.clone()))
        .unwrap_or_else(|| panic!("no reply to {text:?}"))
}

#[test]
fn shell_metacharacters_are_plain_arguments() {
    let s = Setup::new();
    let _p = bot_with(
        &s,
        "[[command]]\nname = \"args\"\nrun = [\"/usr/bin/printf\", \"[%s]\\\\n\"]\nargs = \"any\"\n",
    );
    let r = reply_to(
        &s,
        "C1",
        "U1",
        "args $(id) ; rm -rf / | cat `whoami` 'two words' &amp;&amp; >x",
    );
    assert_eq!(
        r,
        "[$(id)]\n[;]\n[rm]\n[-rf]\n[/]\n[|]\n[cat]\n[`whoami`]\n[two words]\n[&&]\n[>x]"
    );
}

#[test]
fn words_from_slack_are_no_options_unless_the_command_allows_them() {
    let s = Setup::new();
    let _p = bot_with(
        &s,
        "[[command]]\nname = \"date\"\nrun = [\"/bin/date\"]\n\
         [[command]]\nname = \"since\"\nrun = [\"/usr/bin/printf\", \"[%s]\\\\n\"]\nargs = [\"--since=*\"]\n\
         [[command]]\nname = \"any\"\nrun = [\"/usr/bin/printf\", \"[%s]\\\\n\"]\nargs = \"any\"\nargs_separator = \"--\"\n",
    );
    // The audit's attack: date reads any file named by -f.
    let r = reply_to(&s, "C1", "U1", "date -f /etc/shadow");
    assert!(
        r.contains("takes no arguments") && r.contains("`args`"),
        "{r}"
    );
    assert!(!r.contains("root:"), "{r}");
    assert_eq!(reply_to(&s, "C1", "U1", "since --since=1h"), "[--since=1h]");
    let r = reply_to(&s, "C1", "U1", "since --until=1h");
    assert!(r.contains("does not accept \"--until=1h\""), "{r}");
    // Whitespace inside quotes reaches the program as typed; `--` first.
    assert_eq!(
        reply_to(&s, "C1", "U1", "any 'a  b' \"x\ny\" -f"),
        "[--]\n[a  b]\n[x\ny]\n[-f]"
    );
}

#[test]
fn the_event_is_on_stdin_and_no_token_in_the_environment() {
    let s = Setup::new();
    let cfg = s.config(1, "30s", "[[command]]\nname = \"env\"\nrun = [\"/usr/bin/env\"]\n[[command]]\nname = \"event\"\nrun = [\"/bin/cat\"]\n");
    // Tokens from the environment this time: the most tempting place to leak them.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.contains("token_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&cfg, text).unwrap();
    let (app, bot) = (
        s.fake.app_token().to_string(),
        s.fake.bot_token().to_string(),
    );
    let _p = s.spawn_with(&cfg, &["run"], |c| {
        c.env("SLACK_APP_TOKEN", &app).env("SLACK_BOT_TOKEN", &bot);
    });
    assert!(s.fake.wait_live_connections(1, secs(10)).is_some());
    let env = reply_to(&s, "C7", "U7", "env");
    assert!(
        env.contains("SLACK_USER_ID=U7") && env.contains("SLACK_CHANNEL_ID=C7"),
        "{env}"
    );
    assert!(
        env.contains("SLACK_TEAM_ID=T0FAKE") && env.contains("SLACKBOTD_COMMAND=env"),
        "{env}"
    );
    assert!(
        !env.contains("xoxb") && !env.contains("xapp") && !env.contains("TOKEN"),
        "{env}"
    );
    let event = reply_to(&s, "C7", "U7", "event");
    let v: serde_json::Value = serde_json::from_str(&event).expect("stdin is the event's JSON");
    assert_eq!(v["event"]["type"], "app_mention");
    assert!(v["event_id"].as_str().unwrap().starts_with("Ev"));
}

#[test]
fn a_timeout_kills_the_grandchildren_too() {
    let s = Setup::new();
    let pidfile = s.path("grandchild.pid");
    let _p = bot_with(
        &s,
        &format!(
            "[[command]]\nname = \"hang\"\nrun = [\"/bin/sh\", \"-c\", \"sleep 300 & echo $! > {}; sleep 300\"]\ntimeout = \"1s\"\n",
            pidfile.display()
        ),
    );
    let r = reply_to(&s, "C1", "U1", "hang");
    assert!(
        r.contains("timed out") && r.contains("process group was killed"),
        "{r}"
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_until(secs(5), || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.is_empty()
                || stat
                    .rfind(')')
                    .is_some_and(|i| stat[i + 2..].starts_with('Z'))
        }),
        "grandchild {pid} still runs"
    );
}

#[test]
fn access_lists_refuse_the_wrong_user_and_channel_and_help_follows_them() {
    let s = Setup::new();
    let p = bot_with(
        &s,
        "[[command]]\nname = \"deploy\"\nrun = [\"/bin/echo\", \"deployed\"]\nallow_users = [\"UADMIN\"]\nallow_channels = [\"COPS\"]\ndescription = \"ship it\"\n",
    );
    assert_eq!(reply_to(&s, "COPS", "UADMIN", "deploy"), "deployed");
    assert!(reply_to(&s, "COPS", "UINTRUDER", "deploy").contains("may not run `deploy`"));
    assert!(reply_to(&s, "CRANDOM", "UADMIN", "deploy").contains("not allowed in this channel"));
    assert!(
        p.log().contains("refused"),
        "refusals are logged:\n{}",
        p.log()
    );
    assert!(p.log().contains("ran operator command"), "runs are audited");
    assert!(reply_to(&s, "COPS", "UADMIN", "help").contains("`deploy` — ship it"));
    assert!(!reply_to(&s, "COPS", "UINTRUDER", "help").contains("deploy"));
}

#[test]
fn failures_show_stderr_and_busy_commands_are_refused() {
    let s = Setup::new();
    let _p = bot_with(
        &s,
        "[[command]]\nname = \"fail\"\nrun = [\"/bin/sh\", \"-c\", \"echo it broke >&2; exit 3\"]\n\
         [[command]]\nname = \"slow\"\nrun = [\"/bin/sh\", \"-c\", \"sleep 2; echo slow done\"]\nmax_concurrent = 1\n",
    );
    let r = reply_to(&s, "C1", "U1", "fail");
    assert!(r.contains("exit code 3") && r.contains("it broke"), "{r}");
    s.fake.send_mention("C1", "U1", "slow", None);
    std::thread::sleep(Duration::from_millis(300));
    let busy = reply_to(&s, "C1", "U2", "slow");
    assert!(busy.contains("Busy"), "{busy}");
    assert!(s
        .fake
        .wait_posts_containing("slow done", secs(10))
        .is_some());
}

#[test]
fn output_is_replied_in_the_thread_and_cut_when_too_long() {
    let s = Setup::new();
    let _p = bot_with(&s, "[bot]\nreply_limit = 200\n[[command]]\nname = \"big\"\nrun = [\"/usr/bin/seq\", \"1\", \"10000\"]\n");
    let id_ts = {
        s.fake.send_mention("C1", "U1", "big", None);
        s.fake
            .wait_posts_containing("output cut", secs(10))
            .expect("cut reply")
    };
    assert!(id_ts.text.len() < 400, "{}", id_ts.text);
    assert!(id_ts.thread_ts.is_some(), "command output goes in a thread");
}

#[test]
fn slash_commands_map_to_the_same_table() {
    let s = Setup::new();
    let _p = bot_with(
        &s,
        "[[command]]\nname = \"echo\"\nrun = [\"/bin/echo\"]\nargs = \"any\"\n",
    );
    s.fake
        .send_slash_command("/echo", "from a slash command", "U1", "C1");
    let p = s
        .fake
        .wait_for(secs(10), |snap| {
            snap.posts
                .iter()
                .find(|p| p.method == "response_url")
                .cloned()
        })
        .expect("answered through the response_url");
    assert_eq!(p.text, "from a slash command");
}

#[test]
fn a_command_runs_as_its_configured_user() {
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true needs root to switch users"
        );
        eprintln!("SKIPPED: switching users needs root");
        return;
    }
    let s = Setup::new();
    let _p = bot_with(
        &s,
        "[[command]]\nname = \"whoami\"\nrun = [\"/usr/bin/id\"]\nuser = \"nobody\"\n",
    );
    let r = reply_to(&s, "C1", "U1", "whoami");
    assert!(r.contains("uid=65534(nobody)"), "{r}");
    assert!(
        !r.contains("groups=0(root)") && !r.contains(",0(root)"),
        "root's groups are dropped: {r}"
    );
}

#[test]
fn a_hand_started_bot_passes_no_inherited_descriptor_to_a_command() {
    let s = Setup::new();
    let cfg = s.config(
        1,
        "30s",
        "[[command]]\nname = \"fds\"\nrun = [\"/bin/ls\", \"/proc/self/fd\"]\n",
    );
    // As a shell would: descriptor 7 open, without close-on-exec.
    let _p = s.spawn_with(&cfg, &["run"], |c| {
        use std::os::unix::process::CommandExt;
        // SAFETY: dup2 is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                libc::dup2(2, 7);
                Ok(())
            })
        };
    });
    assert!(s.fake.wait_live_connections(1, secs(10)).is_some());
    let r = reply_to(&s, "C1", "U1", "fds");
    let fds: Vec<&str> = r.lines().collect();
    // 0-2 are its pipes; 3 is the directory ls itself is reading.
    assert!(
        fds.iter().all(|f| ["0", "1", "2", "3"].contains(f)),
        "only its own descriptors: {r:?}"
    );
    assert!(fds.contains(&"0") && !fds.contains(&"7"), "{r:?}");
}
