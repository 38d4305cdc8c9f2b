//! What the bot needs from Slack, judged from what Slack says it has: the
//! scopes granted to the bot token, and the channels the configuration
//! names. Pure functions of those facts, so each rule has a table test;
//! `check` gathers the facts and prints the findings.

use crate::config::Config;
use crate::slack::web::ChannelFacts;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    /// Fine.
    Ok,
    /// An optional feature will not work.
    Warn,
    /// The bot cannot work: exit 78.
    Fail,
}

/// One thing `check` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    /// How much it matters.
    pub(crate) level: Level,
    /// What it is, and what to do.
    pub(crate) text: String,
}

fn finding(level: Level, text: impl Into<String>) -> Finding {
    Finding {
        level,
        text: text.into(),
    }
}

/// How to add a scope, said once per missing scope.
const ADD_SCOPE: &str = "add it under OAuth & Permissions → Scopes → Bot Token Scopes (or paste \
                         `slackbotd manifest` under App Manifest), then reinstall the app to the \
                         workspace";

/// The scopes a slackbotd bot uses, what each is for, and how much its
/// absence matters.
const SCOPES: &[(&str, Level, &str)] = &[
    ("chat:write", Level::Fail, "the bot cannot reply or post notifications"),
    ("app_mentions:read", Level::Fail, "Slack cannot send it app_mention events (also subscribe to the bot event app_mention under Event Subscriptions), so it never hears `@bot …` in channels"),
    ("im:history", Level::Warn, "Slack cannot send it message.im events (also subscribe to the bot event message.im), so direct messages to the bot go unanswered"),
    ("channels:history", Level::Warn, "after a crash in the middle of a post, the bot cannot look in a public channel first, and may post a reply or notification twice"),
    ("groups:history", Level::Warn, "after a crash in the middle of a post, the bot cannot look in a private channel first, and may post a reply or notification twice"),
];

/// Judges the granted scopes.
pub(crate) fn scopes(granted: &[String]) -> Vec<Finding> {
    let has = |s: &str| granted.iter().any(|g| g == s);
    let mut out: Vec<Finding> = SCOPES
        .iter()
        .filter(|(s, _, _)| !has(s))
        .map(|(s, level, why)| {
            finding(
                *level,
                format!("the bot token lacks the scope {s}: {why}; {ADD_SCOPE}"),
            )
        })
        .collect();
    if out.is_empty() {
        out.push(finding(
            Level::Ok,
            format!(
                "the bot token has every scope the bot uses ({})",
                SCOPES.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    out
}

/// What the bot must be able to do in a channel the configuration names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// Post there (`[announce].channel`).
    Post,
    /// Hear mentions there (a command's or status's `allow_channels`).
    Listen,
}

/// Every channel the configuration names, and why, each once (posting
/// wins over listening).
pub(crate) fn channels(config: &Config) -> Vec<(String, Use, String)> {
    let mut out: Vec<(String, Use, String)> = Vec::new();
    let mut add = |id: &str, u: Use, why: String| match out.iter_mut().find(|(c, _, _)| c == id) {
        Some(e) if u == Use::Post => *e = (id.to_string(), u, why),
        Some(_) => {}
        None => out.push((id.to_string(), u, why)),
    };
    if let Some(c) = &config.announce.channel {
        add(c, Use::Post, "[announce].channel".into());
    }
    for c in config.bot.status_allow_channels.iter().flatten() {
        add(c, Use::Listen, "[bot].status_allow_channels".into());
    }
    for cmd in &config.commands {
        for c in cmd.allow_channels.iter().flatten() {
            add(
                c,
                Use::Listen,
                format!("allow_channels of command {:?}", cmd.name),
            );
        }
    }
    out
}

/// What `conversations.info` answered for a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// The channel, as Slack describes it.
    Found(ChannelFacts),
    /// `channel_not_found`: it does not exist, or it is private and the
    /// bot was not invited.
    NotFound,
    /// The token may not read channel details (`missing_scope`).
    CannotLook,
}

/// Judges one channel the configuration names; `bot` is the bot's name
/// for the `/invite` advice, `public_posts` whether it has `chat:write.public`.
pub(crate) fn channel(
    id: &str,
    u: Use,
    why: &str,
    seen: &Seen,
    bot: &str,
    public_posts: bool,
) -> Finding {
    let invite = format!("invite the bot there (/invite @{bot})");
    match (seen, u) {
        (Seen::CannotLook, _) => finding(
            Level::Warn,
            format!("cannot look at channel {id} ({why}): the bot token lacks channels:read (groups:read for private channels); {ADD_SCOPE}"),
        ),
        (Seen::NotFound, Use::Post) => finding(
            Level::Fail,
            format!("channel {id} ({why}) does not exist, or it is private and the bot is not in it: create it or correct the ID, and {invite}"),
        ),
        (Seen::NotFound, Use::Listen) => finding(
            Level::Warn,
            format!("channel {id} ({why}) does not exist, or it is private and the bot is not in it: nobody can run the command there; correct the ID, or {invite}"),
        ),
        (Seen::Found(c), _) if c.is_archived => finding(
            Level::Fail,
            format!("channel #{} ({id}, {why}) is archived: nobody can post there; unarchive it or name another", c.name),
        ),
        (Seen::Found(c), Use::Post) if c.is_member => {
            finding(Level::Ok, format!("the bot can post in #{} ({why})", c.name))
        }
        (Seen::Found(c), Use::Post) if !c.is_private && public_posts => finding(
            Level::Ok,
            format!("the bot can post in #{} ({why}) without joining it (chat:write.public)", c.name),
        ),
        (Seen::Found(c), Use::Post) => finding(
            Level::Fail,
            format!("the bot is not in #{} ({id}, {why}) and cannot post there: {invite}{}", c.name, if c.is_private { "" } else { ", or add the scope chat:write.public" }),
        ),
        (Seen::Found(c), Use::Listen) if c.is_member => {
            finding(Level::Ok, format!("the bot is in #{} ({why})", c.name))
        }
        (Seen::Found(c), Use::Listen) => finding(
            Level::Warn,
            format!("the bot is not in #{} ({id}, {why}): Slack sends it no mentions from there; {invite}", c.name),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scopes_missing_for_the_core_fail_and_for_extras_warn() {
        let all = granted(&SCOPES.iter().map(|s| s.0).collect::<Vec<_>>());
        let f = scopes(&all);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].level, Level::Ok);
        let f = scopes(&granted(&["chat:write", "app_mentions:read", "im:history"]));
        assert!(f.iter().all(|f| f.level == Level::Warn), "{f:?}");
        assert!(f[0].text.contains("channels:history") && f[0].text.contains("twice"));
        let f = scopes(&granted(&[
            "chat:write",
            "channels:history",
            "groups:history",
            "im:history",
        ]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].level, Level::Fail);
        assert!(f[0].text.contains("app_mentions:read") && f[0].text.contains("reinstall"));
    }

    fn facts(private: bool, member: bool, archived: bool) -> Seen {
        Seen::Found(ChannelFacts {
            name: "ops".into(),
            is_private: private,
            is_member: member,
            is_archived: archived,
        })
    }

    #[test]
    fn one_row_per_case_of_a_named_channel() {
        use Level::*;
        use Use::*;
        let rows: &[(Use, Seen, bool, Level, &str)] = &[
            (
                Post,
                facts(false, true, false),
                false,
                Ok,
                "can post in #ops",
            ),
            (
                Post,
                facts(false, false, false),
                true,
                Ok,
                "chat:write.public",
            ),
            (
                Post,
                facts(false, false, false),
                false,
                Fail,
                "/invite @bot",
            ),
            (Post, facts(true, false, false), true, Fail, "/invite @bot"),
            (Post, facts(false, true, true), true, Fail, "archived"),
            (Post, Seen::NotFound, true, Fail, "does not exist"),
            (Post, Seen::CannotLook, true, Warn, "channels:read"),
            (Listen, facts(false, true, false), false, Ok, "is in #ops"),
            (
                Listen,
                facts(false, false, false),
                true,
                Warn,
                "no mentions",
            ),
            (Listen, Seen::NotFound, false, Warn, "does not exist"),
        ];
        for (i, (u, seen, public_posts, level, says)) in rows.iter().enumerate() {
            let f = channel("C1", *u, "why", seen, "bot", *public_posts);
            assert_eq!(f.level, *level, "row {i}: {}", f.text);
            assert!(f.text.contains(says), "row {i}: {}", f.text);
        }
    }

    #[test]
    fn each_named_channel_once_posting_first() {
        let c: Config = toml::from_str(
            "[announce]\nchannel = \"C1\"\n[bot]\nstatus_allow_channels = [\"C2\", \"C1\"]\n\
             [[command]]\nname = \"x\"\nrun = [\"/bin/true\"]\nallow_channels = [\"C2\", \"C3\"]\n",
        )
        .unwrap();
        let got: Vec<(String, Use)> = channels(&c).into_iter().map(|(c, u, _)| (c, u)).collect();
        assert_eq!(
            got,
            [
                ("C1".to_string(), Use::Post),
                ("C2".to_string(), Use::Listen),
                ("C3".to_string(), Use::Listen)
            ]
        );
    }
}
