//! `slackbotd manifest`: the Slack app manifest (`etc/slack-app-manifest.yaml`)
//! with the bot's name filled in, so creating the app is one paste.

use crate::exit::ExitCode;
use crate::modes::Failure;

/// The manifest as shipped, for the name `slackbotd`.
pub(crate) const MANIFEST: &str = include_str!("../../etc/slack-app-manifest.yaml");

/// The manifest for a bot called `name`: its display name, its bot user and
/// its slash command. Slack wants them lowercase, without spaces, and a
/// slash command of at most 32 characters.
pub(crate) fn render(name: &str) -> Result<String, Failure> {
    let valid = !name.is_empty()
        && name.len() <= 31
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if !valid {
        return Err(Failure::new(
            ExitCode::USAGE,
            format!(
                "--name {name:?}: Slack wants a bot name of 1 to 31 lowercase letters, digits, '-', '_' or '.'"
            ),
        ));
    }
    // "name: slackbotd" is the app's name and, inside "display_name: …",
    // its bot user's.
    Ok(MANIFEST
        .replace("name: slackbotd", &format!("name: {name}"))
        .replace("command: /slackbotd", &format!("command: /{name}")))
}

/// Prints the manifest.
pub(crate) fn manifest(name: &str) -> Result<(), Failure> {
    print!("{}", render(name)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_fills_every_place_and_a_bad_one_is_refused() {
        let m = render("opsbot").unwrap();
        assert!(m.contains("  name: opsbot\n"));
        assert!(m.contains("display_name: opsbot\n"));
        assert!(m.contains("command: /opsbot\n"));
        assert!(m.contains("socket_mode_enabled: true"));
        for scope in ["app_mentions:read", "chat:write", "im:history", "commands"] {
            assert!(m.contains(&format!("- {scope}\n")), "{scope}");
        }
        for event in ["app_mention", "message.im"] {
            assert!(m.contains(&format!("- {event}\n")), "{event}");
        }
        assert_eq!(render("Ops Bot").unwrap_err().code, ExitCode::USAGE);
        assert_eq!(render("").unwrap_err().code, ExitCode::USAGE);
    }
}
