//! Slack tokens: where they come from, how they are checked, and a type that
//! never prints them.
//!
//! Sources, in order: the `*_token_file` paths of `[slack]`, then systemd's
//! `$CREDENTIALS_DIRECTORY/slack-app-token` and `slack-bot-token`
//! (`LoadCredential=`), then `$SLACK_APP_TOKEN` and `$SLACK_BOT_TOKEN`, and
//! last the files `app-token` and `bot-token` beside the configuration file.
//! That last source lets the shipped unit load those very files as
//! credentials while `check`, `daemon` and `ensure`, run from a root shell or
//! cron, read them directly, with no token path in the configuration.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::SlackConfig;
use crate::exit::{ExitCode, HasExitCode};

/// A secret token. `Debug` and `Display` show only its kind, never its value.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token(String);

impl Token {
    /// The secret itself, for the one place that must send it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = self.0.split('-').next().unwrap_or("");
        write!(f, "Token({prefix}-…redacted)")
    }
}

/// Which token a value is meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// The app-level token (`xapp-…`) that opens Socket Mode connections.
    App,
    /// The bot token (`xoxb-…`) for the Web API.
    Bot,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::App => "xapp-",
            TokenKind::Bot => "xoxb-",
        }
    }
    fn config_key(self) -> &'static str {
        match self {
            TokenKind::App => "slack.app_token_file",
            TokenKind::Bot => "slack.bot_token_file",
        }
    }
    fn credential(self) -> &'static str {
        match self {
            TokenKind::App => "slack-app-token",
            TokenKind::Bot => "slack-bot-token",
        }
    }
    fn default_file(self) -> &'static str {
        match self {
            TokenKind::App => "app-token",
            TokenKind::Bot => "bot-token",
        }
    }
    fn env(self) -> &'static str {
        match self {
            TokenKind::App => "SLACK_APP_TOKEN",
            TokenKind::Bot => "SLACK_BOT_TOKEN",
        }
    }
    fn describe(self) -> &'static str {
        match self {
            TokenKind::App => {
                "the app-level token (xapp-…) from the app's Basic Information page, \
                 App-Level Tokens, with the connections:write scope"
            }
            TokenKind::Bot => {
                "the Bot User OAuth Token (xoxb-…) from the app's OAuth & Permissions page"
            }
        }
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenKind::App => "app token",
            TokenKind::Bot => "bot token",
        })
    }
}

/// Where a token was read from, for messages (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenSource {
    /// A file named in the configuration.
    File(PathBuf),
    /// A systemd credential.
    Credential(PathBuf),
    /// An environment variable.
    Env(&'static str),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::File(p) => write!(f, "{}", p.display()),
            TokenSource::Credential(p) => write!(f, "systemd credential {}", p.display()),
            TokenSource::Env(v) => write!(f, "${v}"),
        }
    }
}

/// A token problem. All of them are configuration errors (exit 78).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    #[error(
        "no {kind} found: put it in {default}, or set {key} in the configuration, or provide \
         the systemd credential {cred}, or ${env}; it must be {what}",
        default = .default.display(), key = .kind.config_key(), cred = .kind.credential(),
        env = .kind.env(), what = .kind.describe()
    )]
    Missing { kind: TokenKind, default: PathBuf },
    #[error("cannot read the {kind} from {source_}: {err}")]
    Unreadable {
        kind: TokenKind,
        source_: TokenSource,
        err: std::io::Error,
    },
    #[error(
        "the {kind} file {} is {} by group or others (mode {mode:04o}); \
         run: chmod 600 {}", .path.display(),
        if .mode & 0o044 != 0 { "readable" } else { "writable" }, .path.display()
    )]
    Exposed {
        kind: TokenKind,
        path: PathBuf,
        mode: u32,
    },
    #[error(
        "the {kind} file {} belongs to uid {owner}, neither root nor the user the bot runs as; \
         run: chown root {}", .path.display(), .path.display()
    )]
    ForeignOwner {
        kind: TokenKind,
        path: PathBuf,
        owner: u32,
    },
    #[error("the {kind} file {} is not a regular file (a symbolic link, a directory or a device); give the file itself", .path.display())]
    NotAFile { kind: TokenKind, path: PathBuf },
    #[error("the {kind} from {source_} contains a control character at byte {at}; write the token alone on one line")]
    ControlChar {
        kind: TokenKind,
        source_: TokenSource,
        at: usize,
    },
    #[error("the {kind} from {source_} is empty; it must be {what}", what = .kind.describe())]
    Empty {
        kind: TokenKind,
        source_: TokenSource,
    },
    #[error(
        "the {kind} from {source_} is a {found}, but this place needs {what}",
        what = .kind.describe()
    )]
    WrongKind {
        kind: TokenKind,
        source_: TokenSource,
        found: &'static str,
    },
    #[error(
        "the {kind} from {source_} does not look like a Slack token \
         (it should start with {prefix}); it must be {what}",
        prefix = .kind.prefix(), what = .kind.describe()
    )]
    Malformed {
        kind: TokenKind,
        source_: TokenSource,
    },
}

impl HasExitCode for TokenError {
    fn exit_code(&self) -> ExitCode {
        ExitCode::CONFIG
    }
}

/// Both tokens the bot needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tokens {
    /// The app-level token for Socket Mode.
    pub(crate) app: Token,
    /// The bot token for the Web API.
    pub(crate) bot: Token,
}

impl Tokens {
    /// Loads both tokens from their sources, in order; `config_dir` is where
    /// the default token files live.
    pub(crate) fn load(
        slack: &SlackConfig,
        config_dir: Option<&Path>,
    ) -> Result<Tokens, TokenError> {
        Tokens::load_as(slack, config_dir, &[])
    }

    /// As `load`, also accepting token files owned by `owners` (the user a
    /// daemon started by root will run as).
    pub(crate) fn load_as(
        slack: &SlackConfig,
        config_dir: Option<&Path>,
        owners: &[u32],
    ) -> Result<Tokens, TokenError> {
        let dir = config_dir.unwrap_or(Path::new("/etc/slackbotd"));
        let app = load_one(TokenKind::App, slack.app_token_file.as_deref(), dir, owners)?;
        let bot = load_one(TokenKind::Bot, slack.bot_token_file.as_deref(), dir, owners)?;
        Ok(Tokens { app, bot })
    }
}

fn load_one(
    kind: TokenKind,
    file: Option<&Path>,
    dir: &Path,
    owners: &[u32],
) -> Result<Token, TokenError> {
    if let Some(path) = file {
        let raw = read_private_file(kind, path, TokenSource::File(path.to_path_buf()), owners)?;
        return validate(kind, &raw, TokenSource::File(path.to_path_buf()));
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
        let path = Path::new(&dir).join(kind.credential());
        if path.exists() {
            let src = TokenSource::Credential(path.clone());
            let raw = std::fs::read_to_string(&path).map_err(|err| TokenError::Unreadable {
                kind,
                source_: src.clone(),
                err,
            })?;
            return validate(kind, &raw, src);
        }
    }
    if let Ok(raw) = std::env::var(kind.env()) {
        return validate(kind, &raw, TokenSource::Env(kind.env()));
    }
    let default = dir.join(kind.default_file());
    if std::fs::symlink_metadata(&default).is_ok() {
        let raw = read_private_file(kind, &default, TokenSource::File(default.clone()), owners)?;
        return validate(kind, &raw, TokenSource::File(default));
    }
    Err(TokenError::Missing { kind, default })
}

/// Why a secret's file was refused.
#[derive(Debug)]
pub(crate) enum PrivateFileError {
    /// A link, a directory, a FIFO…
    NotAFile,
    /// Group or others may read or write it (the mode).
    Exposed(u32),
    /// Owned by neither root, nor us, nor a user the bot runs as.
    ForeignOwner(u32),
    /// It could not be opened or read.
    Io(std::io::Error),
}

impl std::fmt::Display for PrivateFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrivateFileError::NotAFile => {
                f.write_str("it is not a regular file (a symbolic link?)")
            }
            PrivateFileError::Exposed(mode) => write!(
                f,
                "its mode {mode:04o} lets others read or write it; chmod 600 it"
            ),
            PrivateFileError::ForeignOwner(uid) => {
                write!(f, "it belongs to uid {uid}, not to root or the bot's user")
            }
            PrivateFileError::Io(e) => write!(f, "{}", crate::files::plain_io(e)),
        }
    }
}

/// Reads a secret's file with one open, never through a symbolic link, and
/// judges the open descriptor itself: a regular file, owned by root, by us
/// or by one of `owners`, that nobody else can read or write (whoever can
/// write a token can make the bot talk to a workspace of their choosing).
pub(crate) fn read_private(path: &Path, owners: &[u32]) -> Result<String, PrivateFileError> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => PrivateFileError::NotAFile,
            _ => PrivateFileError::Io(e),
        })?;
    let meta = file.metadata().map_err(PrivateFileError::Io)?;
    if !meta.is_file() {
        return Err(PrivateFileError::NotAFile);
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o066 != 0 {
        return Err(PrivateFileError::Exposed(mode));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me && !owners.contains(&meta.uid()) {
        return Err(PrivateFileError::ForeignOwner(meta.uid()));
    }
    let mut text = String::new();
    // A secret is a line; a huge file is a mistake, not a secret.
    (&mut file)
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(PrivateFileError::Io)?;
    Ok(text)
}

/// A token file, read as [`read_private`] does.
fn read_private_file(
    kind: TokenKind,
    path: &Path,
    src: TokenSource,
    owners: &[u32],
) -> Result<String, TokenError> {
    read_private(path, owners).map_err(|e| match e {
        PrivateFileError::NotAFile => TokenError::NotAFile {
            kind,
            path: path.to_path_buf(),
        },
        PrivateFileError::Exposed(mode) => TokenError::Exposed {
            kind,
            path: path.to_path_buf(),
            mode,
        },
        PrivateFileError::ForeignOwner(owner) => TokenError::ForeignOwner {
            kind,
            path: path.to_path_buf(),
            owner,
        },
        PrivateFileError::Io(err) => TokenError::Unreadable {
            kind,
            source_: src.clone(),
            err,
        },
    })
}

fn validate(kind: TokenKind, raw: &str, source_: TokenSource) -> Result<Token, TokenError> {
    // Only the line end may follow the token: any other control character
    // (a NUL, an escape, a stray carriage return inside) is named, not
    // mistaken later for a network problem.
    let body = raw.trim_end_matches(['\n', '\r']);
    if let Some(at) = body.bytes().position(|b| b.is_ascii_control()) {
        return Err(TokenError::ControlChar { kind, source_, at });
    }
    let t = raw.trim();
    if t.is_empty() {
        return Err(TokenError::Empty { kind, source_ });
    }
    if t.starts_with(kind.prefix()) && !t.chars().any(char::is_whitespace) {
        return Ok(Token(t.to_string()));
    }
    let found = if t.starts_with("xoxb-") {
        "bot token (xoxb-…)"
    } else if t.starts_with("xapp-") {
        "app-level token (xapp-…)"
    } else if t.starts_with("xoxp-") {
        "user token (xoxp-…)"
    } else {
        return Err(TokenError::Malformed { kind, source_ });
    };
    Err(TokenError::WrongKind {
        kind,
        source_,
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let t = Token("xoxb-123-secretvalue".into());
        let shown = format!("{t:?}");
        assert!(!shown.contains("secretvalue"), "{shown}");
        assert!(shown.contains("xoxb"), "{shown}");
    }

    #[test]
    fn trims_and_checks_kind() {
        let src = || TokenSource::Env("X");
        assert_eq!(
            validate(TokenKind::App, "  xapp-1-abc\n", src())
                .unwrap()
                .expose(),
            "xapp-1-abc"
        );
        let e = validate(TokenKind::App, "xoxb-1-abc\n", src())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bot token (xoxb-…)") && e.contains("app-level token"),
            "{e}"
        );
        let e = validate(TokenKind::Bot, "hello", src())
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not look like a Slack token"), "{e}");
        assert!(matches!(
            validate(TokenKind::Bot, " \n", src()),
            Err(TokenError::Empty { .. })
        ));
    }

    #[test]
    fn group_readable_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("slackbotd-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bot");
        std::fs::write(&f, "xoxb-1-x\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = load_one(TokenKind::Bot, Some(&f), &dir, &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("readable by group or others") && e.contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            load_one(TokenKind::Bot, Some(&f), &dir, &[])
                .unwrap()
                .expose(),
            "xoxb-1-x"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_writable_linked_or_control_character_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bot");
        std::fs::write(&f, "xoxb-1-x\n").unwrap();
        // World-writable but not readable: whoever writes it picks the workspace.
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o622)).unwrap();
        let e = load_one(TokenKind::Bot, Some(&f), dir.path(), &[]).unwrap_err();
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        // A symbolic link, even to a private file, is not the file.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let e = load_one(TokenKind::Bot, Some(&link), dir.path(), &[]).unwrap_err();
        assert!(matches!(e, TokenError::NotAFile { .. }), "{e}");
        // A control character is named with its place.
        std::fs::write(&f, "xoxb-1\x07-x\n").unwrap();
        let e = load_one(TokenKind::Bot, Some(&f), dir.path(), &[]).unwrap_err();
        assert!(e.to_string().contains("control character at byte 6"), "{e}");
        assert_eq!(e.exit_code(), ExitCode::CONFIG);
        std::fs::write(&f, "xoxb-1-x\r\n").unwrap();
        assert!(load_one(TokenKind::Bot, Some(&f), dir.path(), &[]).is_ok());
    }
}
