//! The state store: one SQLite file in `[daemon].state_dir`, shared safely by
//! the bot and `slackbotd notify` (WAL, a busy timeout, short transactions).
//!
//! It is versioned with `PRAGMA user_version`: a newer slackbotd migrates an
//! older file in place, a file from a newer slackbotd is refused, and a file
//! that is not a database (or fails its integrity check) is reported with its
//! path and never silently replaced.
//!
//! Times are milliseconds since the epoch (`clock::now_ms`), stored as
//! SQLite integers. The bot reaches the store through [`SharedStore`], a
//! thread of its own, so no query ever runs on the event loop.

pub(crate) mod backend;
pub(crate) mod dedup;
pub(crate) mod history;
pub(crate) mod inbox;
pub(crate) mod outbox;
mod shared;

pub(crate) use backend::Backend;
pub(crate) use shared::SharedStore;

use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::exit::{ExitCode, HasExitCode};

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// Each connection's page cache, in KiB: the bot's tables are small, and
/// SQLite's default (2 MiB a connection) would stay resident after a burst.
pub(crate) const CACHE_KIB: u32 = 256;

/// The database file's name inside `state_dir`.
pub(crate) const FILE_NAME: &str = "slackbotd.sqlite";

/// A state-store problem, always naming the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The directory or file could not be created or opened.
    #[error("cannot open the state store {}: {detail}", .path.display())]
    Open { path: PathBuf, detail: String },
    /// The file is not a slackbotd database, or is damaged.
    #[error(
        "the state store {} is corrupt ({detail}); it was left as it is: move it aside \
         (mv {} {}.corrupt) to start with an empty one, or restore it from a backup",
        .path.display(), .path.display(), .path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    /// Written by a newer slackbotd.
    #[error("the state store {} has schema version {found}, newer than this slackbotd understands ({SCHEMA_VERSION}); upgrade slackbotd", .path.display())]
    TooNew { path: PathBuf, found: i64 },
    /// The disk is full.
    #[error("the disk holding {} is full; nothing was written", .path.display())]
    Full { path: PathBuf },
    /// Any other SQLite failure.
    #[error("state store {}: {detail}", .path.display())]
    Sql { path: PathBuf, detail: String },
}

impl HasExitCode for StoreError {
    fn exit_code(&self) -> ExitCode {
        match self {
            StoreError::Open { .. } => ExitCode::CANTCREAT,
            StoreError::Corrupt { .. } => ExitCode::DATAERR,
            StoreError::TooNew { .. } => ExitCode::CONFIG,
            StoreError::Full { .. } => ExitCode::IOERR,
            StoreError::Sql { .. } => ExitCode::IOERR,
        }
    }
}

/// How hard commits are pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// fsync on every commit: what `notify` promises its caller.
    Full,
    /// Safe against a crash of the process; the bot's bookkeeping.
    Normal,
}

/// An open state store.
#[derive(Debug)]
pub(crate) struct Store {
    conn: Connection,
    path: PathBuf,
    /// The inbox, a file of its own beside this one, opened on first use.
    inbox: Option<inbox::Inbox>,
}

impl Store {
    /// Its database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The database path for a state directory.
    pub(crate) fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE_NAME)
    }

    /// Opens the store only if it exists (for `status`, which creates nothing).
    pub(crate) fn open_existing(state_dir: &Path) -> Option<Result<Store, StoreError>> {
        Store::path_in(state_dir)
            .exists()
            .then(|| Store::open(state_dir, Durability::Normal))
    }

    /// Opens (creating if needed) and migrates the store in `state_dir`.
    pub(crate) fn open(state_dir: &Path, durability: Durability) -> Result<Store, StoreError> {
        let path = Store::path_in(state_dir);
        let conn = open_file(state_dir, &path)?;
        let mut store = Store {
            conn,
            path,
            inbox: None,
        };
        store
            .conn
            .busy_timeout(Duration::from_secs(10))
            .map_err(|e| store.err(e))?;
        store.setup(durability)?;
        Ok(store)
    }

    fn setup(&mut self, durability: Durability) -> Result<(), StoreError> {
        // Two processes switching a new file to WAL at once can deadlock on
        // the lock upgrade, which SQLite reports as busy at once, without
        // waiting in the busy handler: try again for a while.
        let mut tries = 0;
        let mode: String = loop {
            match self
                .conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            {
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ffi::ErrorCode::DatabaseBusy && tries < 100 =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10 + rand::random::<u64>() % 20));
                }
                r => break r.map_err(|e| self.err(e))?,
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                "the state store {} does not support WAL (journal mode {mode})",
                self.path.display()
            );
        }
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        self.conn
            .execute_batch(&format!(
                "PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON; PRAGMA cache_size = -{CACHE_KIB};"
            ))
            .map_err(|e| self.err(e))?;
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
            });
        }
        if version > 0 {
            let ok: String = self
                .conn
                .query_row("PRAGMA quick_check", [], |r| r.get(0))
                .map_err(|e| self.err(e))?;
            if ok != "ok" {
                return Err(StoreError::Corrupt {
                    path: self.path.clone(),
                    detail: ok,
                });
            }
        }
        if version < SCHEMA_VERSION {
            self.migrate()?;
        }
        Ok(())
    }

    /// Brings the schema up to [`SCHEMA_VERSION`], one step per version,
    /// under the write lock: of two processes opening a new file at once
    /// (the bot and `notify`), the second finds the work done.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| classify(&self.path, e))?;
        let from: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| classify(&self.path, e))?;
        if from >= SCHEMA_VERSION {
            return Ok(());
        }
        if from < 1 {
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS outbox (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    key TEXT NOT NULL UNIQUE,
                    channel TEXT NOT NULL,
                    thread_ts TEXT,
                    text TEXT NOT NULL,
                    created_ms INTEGER NOT NULL,
                    state TEXT NOT NULL DEFAULT 'queued',
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
                    sending_since_ms INTEGER,
                    last_error TEXT,
                    sent_ts TEXT,
                    done_ms INTEGER
                );
                CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(state, channel, id);
                CREATE TABLE IF NOT EXISTS dedup (
                    event_id TEXT PRIMARY KEY,
                    seen_ms INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE INDEX IF NOT EXISTS dedup_age ON dedup(seen_ms);
                CREATE TABLE IF NOT EXISTS exits (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    at_ms INTEGER NOT NULL,
                    mode TEXT NOT NULL,
                    cause TEXT NOT NULL,
                    clean INTEGER NOT NULL,
                    announced INTEGER NOT NULL DEFAULT 0
                );
                CREATE TABLE IF NOT EXISTS runs (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    pid INTEGER NOT NULL,
                    mode TEXT NOT NULL,
                    started_ms INTEGER NOT NULL,
                    ended_ms INTEGER,
                    clean INTEGER
                );
                CREATE TABLE IF NOT EXISTS meta (
                    key TEXT PRIMARY KEY,
                    value TEXT NOT NULL
                ) WITHOUT ROWID;",
            )
            .map_err(|e| classify(&self.path, e))?;
        }
        if from < 2 {
            // The restart history moved here from the supervisor's JSON
            // record; which inbox row claimed each event.
            tx.execute_batch(
                "ALTER TABLE exits ADD COLUMN code INTEGER;
                 ALTER TABLE exits ADD COLUMN signal INTEGER;
                 ALTER TABLE exits ADD COLUMN hang INTEGER NOT NULL DEFAULT 0;
                 ALTER TABLE exits ADD COLUMN lifetime_ms INTEGER;
                 ALTER TABLE exits ADD COLUMN downtime_ms INTEGER;
                 ALTER TABLE dedup ADD COLUMN inbox_id INTEGER;",
            )
            .map_err(|e| classify(&self.path, e))?;
        }
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(|e| classify(&self.path, e))?;
        tx.commit().map_err(|e| classify(&self.path, e))
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        classify(&self.path, e)
    }

    /// Runs `f` and sorts its error.
    pub(crate) fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        f(&mut self.conn).map_err(|e| classify(&self.path, e))
    }

    /// A value from the `meta` table.
    pub(crate) fn meta(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        use rusqlite::OptionalExtension;
        self.run(|c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
        })
    }

    /// Sets a value in the `meta` table.
    pub(crate) fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.run(|c| {
            c.execute(
                "INSERT INTO meta(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(|_| ())
        })
    }
}

/// Opens a SQLite file in `state_dir` for reading and writing, creating it
/// (and the directory) if needed; a new file goes to the directory's owner.
fn open_file(state_dir: &Path, path: &Path) -> Result<Connection, StoreError> {
    let open_err = |detail: String| StoreError::Open {
        path: path.to_path_buf(),
        detail,
    };
    if !state_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|e| open_err(format!("cannot create {}: {e}", state_dir.display())))?;
    }
    // The directory may be reached through a link of root's making
    // (systemd's DynamicUser= puts /var/lib/slackbotd → private/slackbotd);
    // only the files inside it must never be links.
    let real_dir = std::fs::canonicalize(state_dir)
        .map_err(|e| open_err(format!("cannot resolve {}: {e}", state_dir.display())))?;
    let path = &real_dir.join(path.file_name().unwrap_or_default());
    prepare_file(&real_dir, path).map_err(open_err)?;
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(|e| open_err(e.to_string()))
}

/// Makes sure the database file is a plain file that only its owner can
/// read, before SQLite opens it: never a symlink (which root would follow,
/// creating or handing over the file it points at), never a file others can
/// read (the outbox holds what cron jobs piped in). A new file is created
/// here, `O_EXCL|O_NOFOLLOW` and mode 0600, and, when root creates it, given
/// by descriptor to the owner of the state directory, the bot's user, so
/// the bot can write it. SQLite gives its `-wal` and `-shm` files the
/// database's mode and owner; they are checked for links too.
fn prepare_file(state_dir: &Path, path: &Path) -> Result<(), String> {
    for side in ["-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_os_string();
        p.push(side);
        refuse_link(Path::new(&p))?;
        narrow(Path::new(&p));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            Err("it is a symbolic link; refusing to follow it".into())
        }
        Ok(m) if !m.is_file() => Err("it is not a regular file".into()),
        Ok(_) => {
            narrow(path);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)
            {
                Ok(file) => {
                    give_to_directory_owner(state_dir, &file);
                    Ok(())
                }
                // Another process (the bot, a concurrent notify) made it
                // first: judge what is there now.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    match std::fs::symlink_metadata(path) {
                        Ok(m) if m.is_file() => Ok(()),
                        _ => Err("it is a symbolic link or not a regular file; refusing it".into()),
                    }
                }
                Err(e) => Err(format!("cannot create it: {e}")),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Makes an existing file made by an older version, or by hand, private
/// (0600), by descriptor: a link swapped in after a check is never followed.
fn narrow(path: &Path) {
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    else {
        return;
    };
    if let Ok(m) = f.metadata() {
        if m.is_file() && m.mode() & 0o077 != 0 && may_change(&m) {
            let _ = f.set_permissions(std::fs::Permissions::from_mode(0o600));
        }
    }
}

/// An error if `path` is a symbolic link.
fn refuse_link(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(format!(
            "{} is a symbolic link; refusing to follow it",
            path.display()
        )),
        _ => Ok(()),
    }
}

/// Whether this process may change a file's mode.
fn may_change(m: &std::fs::Metadata) -> bool {
    let me = nix::unistd::geteuid();
    me.is_root() || m.uid() == me.as_raw()
}

/// Sorts a SQLite error into what an administrator can act on.
fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi::ErrorCode;
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        let detail = msg.clone().unwrap_or_else(|| e.to_string());
        match f.code {
            ErrorCode::DiskFull => {
                return StoreError::Full {
                    path: path.to_path_buf(),
                }
            }
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => {
                return StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail,
                }
            }
            ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly => {
                return StoreError::Open {
                    path: path.to_path_buf(),
                    detail,
                }
            }
            _ => {}
        }
    }
    StoreError::Sql {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// A database created by root (`notify` from a root shell) is handed to the
/// owner of the state directory, the bot's user, by its open descriptor: a
/// path could have been swapped for a link in between.
fn give_to_directory_owner(dir: &Path, file: &std::fs::File) {
    if !nix::unistd::Uid::effective().is_root() {
        return;
    }
    if let Ok(m) = std::fs::metadata(dir) {
        if m.uid() != 0 {
            let _ = std::os::unix::fs::fchown(file, Some(m.uid()), Some(m.gid()));
        }
    }
}

/// A time in milliseconds as SQLite stores it.
pub(crate) fn sql_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A time read back from SQLite (never negative).
pub(crate) fn ms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), Durability::Normal).unwrap();
        (dir, s)
    }

    #[test]
    fn a_state_dir_reached_through_a_link_opens_but_a_linked_file_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("private/slackbotd");
        std::fs::create_dir_all(&real).unwrap();
        let via = dir.path().join("slackbotd");
        std::os::unix::fs::symlink(&real, &via).unwrap();
        drop(Store::open(&via, Durability::Normal).unwrap());
        let m = std::fs::metadata(real.join(FILE_NAME)).unwrap();
        assert_eq!(m.mode() & 0o077, 0, "private: {:o}", m.mode());
        std::fs::remove_file(real.join(FILE_NAME)).unwrap();
        let _ = std::fs::remove_file(real.join(format!("{FILE_NAME}-wal")));
        let _ = std::fs::remove_file(real.join(format!("{FILE_NAME}-shm")));
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), real.join(FILE_NAME)).unwrap();
        let e = Store::open(&via, Durability::Normal)
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(!dir.path().join("elsewhere").exists());
    }

    #[test]
    fn opens_migrates_and_reopens() {
        let (dir, mut s) = temp_store();
        let v: i64 = s
            .run(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        drop(s);
        Store::open(dir.path(), Durability::Full).unwrap();
    }

    #[test]
    fn processes_opening_a_new_file_at_once_migrate_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let d = dir.path().to_path_buf();
                std::thread::spawn(move || Store::open(&d, Durability::Normal).map(|_| ()))
            })
            .collect();
        for t in threads {
            t.join().unwrap().expect("every opener succeeds");
        }
    }

    #[test]
    fn a_corrupt_file_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = Store::path_in(dir.path());
        std::fs::write(
            &path,
            b"this is not a database, it is a grocery list\n".repeat(100),
        )
        .unwrap();
        let e = Store::open(dir.path(), Durability::Normal).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        assert!(
            e.to_string().contains("corrupt") && e.to_string().contains("mv "),
            "{e}"
        );
        assert!(
            std::fs::read(&path)
                .unwrap()
                .starts_with(b"this is not a database"),
            "left as it was"
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let (dir, mut s) = temp_store();
        s.run(|c| c.execute_batch("PRAGMA user_version = 99"))
            .unwrap();
        drop(s);
        let e = Store::open(dir.path(), Durability::Normal).unwrap_err();
        assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{e}");
    }

    #[test]
    fn an_older_schema_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = Store::path_in(dir.path());
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE unrelated(x); PRAGMA user_version = 0;")
            .unwrap();
        drop(c);
        let mut s = Store::open(dir.path(), Durability::Normal).unwrap();
        let n: i64 = s
            .run(|c| c.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(n, 0);
    }
}
