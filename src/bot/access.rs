//! Who may run which operator command, and where: the `allow_users` and
//! `allow_channels` lists of each `[[command]]`, checked before anything
//! runs; and the same two lists for the built-in `status`
//! (`[bot].status_allow_users`, `status_allow_channels`), which tells the
//! host, pid and last crash cause.

use crate::config::{BotConfig, CommandConfig};

/// The outcome of an access check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go ahead.
    Allowed,
    /// This user is not in `allow_users`.
    UserRefused,
    /// This channel is not in `allow_channels`.
    ChannelRefused,
}

/// Checks `user` in `channel` against the command's lists. An absent list
/// allows everyone; an empty list allows no one.
pub(crate) fn check(cmd: &CommandConfig, user: &str, channel: &str) -> Verdict {
    lists(
        cmd.allow_users.as_deref(),
        cmd.allow_channels.as_deref(),
        user,
        channel,
    )
}

/// Checks `user` in `channel` against the lists for `status`.
pub(crate) fn check_status(bot: &BotConfig, user: &str, channel: &str) -> Verdict {
    lists(
        bot.status_allow_users.as_deref(),
        bot.status_allow_channels.as_deref(),
        user,
        channel,
    )
}

fn lists(
    users: Option<&[String]>,
    channels: Option<&[String]>,
    user: &str,
    channel: &str,
) -> Verdict {
    if let Some(users) = users {
        if !users.iter().any(|u| u == user) {
            return Verdict::UserRefused;
        }
    }
    if let Some(channels) = channels {
        if !channels.iter().any(|c| c == channel) {
            return Verdict::ChannelRefused;
        }
    }
    Verdict::Allowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cmd(users: Option<&[&str]>, channels: Option<&[&str]>) -> CommandConfig {
        CommandConfig {
            name: "x".into(),
            run: vec!["/bin/true".into()],
            description: None,
            allow_users: users.map(|u| u.iter().map(|s| s.to_string()).collect()),
            allow_channels: channels.map(|c| c.iter().map(|s| s.to_string()).collect()),
            timeout: Duration::from_secs(1),
            max_concurrent: 1,
            cwd: None,
            user: None,
            args: Default::default(),
            args_pattern: None,
            args_separator: None,
        }
    }

    #[test]
    fn lists_restrict() {
        assert_eq!(check(&cmd(None, None), "U1", "C1"), Verdict::Allowed);
        let c = cmd(Some(&["U1"]), Some(&["C1"]));
        assert_eq!(check(&c, "U1", "C1"), Verdict::Allowed);
        assert_eq!(check(&c, "U2", "C1"), Verdict::UserRefused);
        assert_eq!(check(&c, "U1", "C2"), Verdict::ChannelRefused);
        assert_eq!(
            check(&cmd(Some(&[]), None), "U1", "C1"),
            Verdict::UserRefused
        );
    }

    #[test]
    fn status_is_open_unless_listed() {
        let mut bot = BotConfig::default();
        assert_eq!(check_status(&bot, "U1", "C1"), Verdict::Allowed);
        bot.status_allow_channels = Some(vec!["COPS".into()]);
        assert_eq!(check_status(&bot, "U1", "C1"), Verdict::ChannelRefused);
        assert_eq!(check_status(&bot, "U1", "COPS"), Verdict::Allowed);
        bot.status_allow_users = Some(vec!["UADMIN".into()]);
        assert_eq!(check_status(&bot, "U1", "COPS"), Verdict::UserRefused);
    }
}
