//! The workspace the fake pretends to be, as far as a bot can see it: the
//! scopes granted to the bot token (Slack sends them in the `x-oauth-scopes`
//! header of every Web API answer to a bot token, and refuses a method
//! without its scope with `missing_scope`), and the channels that
//! `conversations.info` knows, with whether the bot is a member. A channel
//! the fake was never told about is a public channel the bot is in: posts
//! and history work there, as they always did.

use std::collections::BTreeMap;

/// Every scope a slackbotd app asks for: the default grant.
pub const DEFAULT_SCOPES: &[&str] = &[
    "app_mentions:read",
    "channels:history",
    "channels:read",
    "chat:write",
    "chat:write.public",
    "commands",
    "groups:history",
    "groups:read",
    "im:history",
];

/// A channel the fake knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Its ID (`C…` public, `G…` or `C…` private).
    pub id: String,
    /// Its name, without `#`.
    pub name: String,
    /// A private channel (`groups:*` scopes) rather than a public one.
    pub is_private: bool,
    /// Whether the bot was invited.
    pub is_member: bool,
}

/// The scopes and channels.
#[derive(Debug, Clone)]
pub(crate) struct Workspace {
    pub(crate) scopes: Vec<String>,
    pub(crate) channels: BTreeMap<String, Channel>,
}

impl Default for Workspace {
    fn default() -> Self {
        Workspace {
            scopes: DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
            channels: BTreeMap::new(),
        }
    }
}

impl Workspace {
    /// The `x-oauth-scopes` header value.
    pub(crate) fn scope_header(&self) -> String {
        self.scopes.join(",")
    }

    fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether the channel is private, when the fake knows it; otherwise
    /// judged by its ID as Slack's older IDs were (`G…` private).
    fn private(&self, channel: &str) -> bool {
        self.channels
            .get(channel)
            .map_or(channel.starts_with('G'), |c| c.is_private)
    }

    /// The scope `method` needs on `channel`, if the token lacks it.
    pub(crate) fn missing_scope(
        &self,
        method: &str,
        channel: Option<&str>,
    ) -> Option<&'static str> {
        let ch = channel.unwrap_or("");
        let needed = match method {
            "chat.postMessage" => "chat:write",
            "conversations.history" | "conversations.replies" => {
                if ch.starts_with('D') {
                    "im:history"
                } else if self.private(ch) {
                    "groups:history"
                } else {
                    "channels:history"
                }
            }
            "conversations.info" => {
                if self.private(ch) {
                    "groups:read"
                } else {
                    "channels:read"
                }
            }
            _ => return None,
        };
        (!self.has(needed)).then_some(needed)
    }

    /// Why the bot may not post in `channel`, if it may not: not a member
    /// of a known channel, and not allowed to post in public channels it
    /// has not joined.
    pub(crate) fn post_refusal(&self, channel: &str) -> Option<&'static str> {
        let c = self.channels.get(channel)?;
        if c.is_member || (!c.is_private && self.has("chat:write.public")) {
            None
        } else {
            Some("not_in_channel")
        }
    }
}
