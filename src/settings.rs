//! The live settings of a running bot: the configuration and the Web API
//! client built from it, swapped as one value when SIGHUP reloads them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::{Config, ConfigError};
use crate::secrets::{TokenError, Tokens};
use crate::slack::web::{Identity, SlackWeb};

/// One generation of settings.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Where the configuration was read from.
    pub(crate) path: PathBuf,
    /// The configuration.
    pub(crate) config: Config,
    /// A Web API client with this generation's tokens.
    pub(crate) web: SlackWeb,
    /// Who the bot is, once `auth.test` answered (empty before).
    pub(crate) identity: Identity,
}

/// A configuration or token problem while loading settings.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl crate::exit::HasExitCode for LoadError {
    fn exit_code(&self) -> crate::exit::ExitCode {
        crate::exit::ExitCode::CONFIG
    }
}

impl Settings {
    /// Reads the configuration and tokens.
    pub(crate) fn load(path: &Path) -> Result<Settings, LoadError> {
        let config = Config::load(path)?;
        Settings::from_config(path, config)
    }

    /// Reads the tokens for an already parsed configuration.
    pub(crate) fn from_config(path: &Path, config: Config) -> Result<Settings, LoadError> {
        let tokens = Tokens::load(&config.slack, config.base_dir.as_deref())?;
        let web = SlackWeb::new(&config.slack.api_url, &tokens, config.slack.call_timeout);
        Ok(Settings {
            path: path.to_path_buf(),
            config,
            web,
            identity: Identity::default(),
        })
    }
}

/// Receives each new generation of settings.
pub(crate) type SettingsRx = watch::Receiver<Arc<Settings>>;

impl crate::slack::pool::PoolSettings for Settings {
    fn web(&self) -> &SlackWeb {
        &self.web
    }
    fn connections(&self) -> usize {
        usize::from(self.config.slack.connections)
    }
    fn backoff(&self) -> (std::time::Duration, std::time::Duration) {
        (
            self.config.supervise.backoff_initial,
            self.config.supervise.backoff_max,
        )
    }
}
