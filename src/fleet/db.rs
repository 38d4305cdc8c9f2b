//! Connecting to the fleet's PostgreSQL: the settings from `[fleet]`, the
//! password from a file or credential (never the command line, never a log
//! line: messages name the database as `user@host:port/db`), TLS when the
//! connection string asks for it, and every failure put in an
//! administrator's words with its exit code.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::config::FleetConfig;
use crate::exit::{ExitCode, HasExitCode};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The systemd credential that may hold the password.
pub(crate) const PASSWORD_CREDENTIAL: &str = "fleet-db-password";
/// The environment variable that may hold the password.
pub(crate) const PASSWORD_ENV: &str = "SLACKBOTD_DB_PASSWORD";

/// A fleet database problem, in an administrator's words.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum FleetError {
    /// `[fleet]` itself is wrong.
    #[error("[fleet]: {0}")]
    Config(String),
    /// The server cannot be reached.
    #[error("cannot connect to the fleet database {target} ({why}): is PostgreSQL running there, and does it listen on that address?")]
    Unreachable {
        /// `user@host:port/db`.
        target: String,
        /// The operating system's reason.
        why: String,
    },
    /// The server refused the role or its password.
    #[error("the fleet database {target} refused the login ({why}): check the role and its password ([fleet].password_file), and pg_hba.conf")]
    Auth {
        /// `user@host:port/db`.
        target: String,
        /// The server's words.
        why: String,
    },
    /// The database does not exist.
    #[error("the fleet database {target} does not exist: create it (createdb -O {user} {db})")]
    NoDatabase {
        /// `user@host:port/db`.
        target: String,
        /// The role.
        user: String,
        /// The database.
        db: String,
    },
    /// The schema is newer than this binary knows.
    #[error("the fleet database's schema is version {found}, newer than this slackbotd knows ({known}): upgrade slackbotd on this host")]
    TooNew {
        /// The version found.
        found: i32,
        /// The newest this binary knows.
        known: i32,
    },
    /// A query failed.
    #[error("the fleet database {target}: {why}")]
    Query {
        /// `user@host:port/db`.
        target: String,
        /// What went wrong.
        why: String,
    },
}

impl HasExitCode for FleetError {
    fn exit_code(&self) -> ExitCode {
        match self {
            FleetError::Config(_)
            | FleetError::Auth { .. }
            | FleetError::NoDatabase { .. }
            | FleetError::TooNew { .. } => ExitCode::CONFIG,
            FleetError::Unreachable { .. } | FleetError::Query { .. } => ExitCode::UNAVAILABLE,
        }
    }
}

impl FleetError {
    /// Whether the database may come back by itself (a server down, a
    /// network gone), as opposed to a setting someone must fix.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            FleetError::Unreachable { .. } | FleetError::Query { .. }
        )
    }
}

/// How to reach the fleet database.
#[derive(Clone)]
pub(crate) struct Db {
    config: postgres::Config,
    tls: bool,
    target: String,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Db").field("target", &self.target).finish()
    }
}

/// The password, from the first source that has one: `password_file`, the
/// systemd credential, the environment, `db-password` beside the
/// configuration. `None` when no source has one (the URL may carry it, or
/// the server may not ask).
fn password(f: &FleetConfig, base_dir: Option<&Path>) -> Result<Option<String>, FleetError> {
    let read = |p: &Path| -> Result<String, FleetError> {
        crate::secrets::read_private(p, &[])
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| FleetError::Config(format!("password file {}: {e}", p.display())))
    };
    if let Some(p) = &f.password_file {
        return read(p).map(Some);
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let p = PathBuf::from(dir).join(PASSWORD_CREDENTIAL);
        if p.exists() {
            return read(&p).map(Some);
        }
    }
    if let Ok(v) = std::env::var(PASSWORD_ENV) {
        if !v.is_empty() {
            return Ok(Some(v));
        }
    }
    if let Some(dir) = base_dir {
        let p = dir.join("db-password");
        if p.exists() {
            return read(&p).map(Some);
        }
    }
    Ok(None)
}

impl Db {
    /// The database `[fleet]` names, with its password.
    pub(crate) fn new(f: &FleetConfig, base_dir: Option<&Path>) -> Result<Db, FleetError> {
        let mut config = postgres::Config::from_str(f.database.trim()).map_err(|e| {
            FleetError::Config(format!(
                "database: {} (write e.g. \"postgres://slackbotd@db.example/slackbotd\" or \"host=db.example user=slackbotd dbname=slackbotd\")",
                crate::cause::error_chain(&e)
            ))
        })?;
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        if config.get_user().is_none() {
            config.user("slackbotd");
        }
        if config.get_dbname().is_none() {
            config.dbname("slackbotd");
        }
        if let Some(p) = password(f, base_dir)? {
            config.password(p);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("slackbotd");
        config.keepalives_idle(Duration::from_secs(30));
        let tls = matches!(config.get_ssl_mode(), postgres::config::SslMode::Require);
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let target = format!(
            "{}@{host}:{port}/{}",
            config.get_user().unwrap_or("?"),
            config.get_dbname().unwrap_or("?")
        );
        Ok(Db {
            config,
            tls,
            target,
        })
    }

    /// `user@host:port/db`, for messages (never the password).
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// A new connection.
    pub(crate) fn connect(&self) -> Result<postgres::Client, FleetError> {
        self.connect_with(&self.config)
    }

    /// A new connection, given up after `timeout`.
    pub(crate) fn connect_within(&self, timeout: Duration) -> Result<postgres::Client, FleetError> {
        let mut config = self.config.clone();
        config.connect_timeout(timeout);
        self.connect_with(&config)
    }

    fn connect_with(&self, config: &postgres::Config) -> Result<postgres::Client, FleetError> {
        let r = if self.tls {
            let tls =
                tokio_postgres_rustls::MakeRustlsConnect::new((*crate::tls::verified()).clone());
            config.connect(tls)
        } else {
            config.connect(postgres::NoTls)
        };
        r.map_err(|e| self.classify(&e))
    }

    /// A failure of `e`, in words.
    pub(crate) fn classify(&self, e: &postgres::Error) -> FleetError {
        let target = self.target.clone();
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            return match code {
                // invalid_password, invalid_authorization_specification
                "28P01" | "28000" => FleetError::Auth {
                    target,
                    why: db.message().to_string(),
                },
                // invalid_catalog_name
                "3D000" => FleetError::NoDatabase {
                    target,
                    user: self.config.get_user().unwrap_or("slackbotd").to_string(),
                    db: self.config.get_dbname().unwrap_or("slackbotd").to_string(),
                },
                _ => FleetError::Query {
                    target,
                    why: db.message().to_string(),
                },
            };
        }
        let why = crate::cause::plain_cause(e);
        if e.is_closed()
            || why.contains("refused")
            || why.contains("timed out")
            || why.contains("resolve")
            || why.contains("unreachable")
            || why.contains("connection")
        {
            FleetError::Unreachable { target, why }
        } else {
            FleetError::Query { target, why }
        }
    }
}
