//! A throwaway PostgreSQL server for slackbotd's fleet tests and benchmarks:
//! `initdb` into a temporary directory as the `postgres` user, `pg_ctl` on
//! 127.0.0.1 with a free port, a role `slackbotd` with a password and its
//! database. Stopped and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The role's password.
pub const PASSWORD: &str = "fleet-test-secret-7Hq";

/// A running server.
pub struct Pg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

/// Why a server cannot be started here, if it cannot.
pub fn missing_prerequisites() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (the server runs as the postgres user)".into());
    }
    if bin_dir().is_none() {
        return Some("no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)".into());
    }
    if uid_of("postgres").is_none() {
        return Some("no postgres user (apt-get install postgresql)".into());
    }
    None
}

fn uid_of(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user) && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
    c
}

impl Pg {
    /// Starts a fresh server (see [`missing_prerequisites`] first).
    pub fn start() -> Pg {
        let bin = bin_dir().expect("initdb is installed");
        let dir = tempfile::Builder::new()
            .prefix("slackbotd-pg")
            .tempdir()
            .unwrap();
        let (uid, gid) = uid_of("postgres").expect("a postgres user");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let data = dir.path().join("data");
        let out = as_postgres(&bin, "initdb")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let pg = Pg { dir, bin, port };
        pg.pg_ctl_start();
        pg.psql(&format!(
            "CREATE ROLE slackbotd LOGIN PASSWORD '{PASSWORD}'"
        ));
        pg.psql("CREATE DATABASE slackbotd OWNER slackbotd");
        pg
    }

    fn pg_ctl_start(&self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("server.log");
        let out = as_postgres(&self.bin, "pg_ctl")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "-o",
            ])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                self.port,
                self.dir.path().display()
            ))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (fast shutdown: sessions are cut), keeping its data.
    pub fn stop(&self) {
        let data = self.dir.path().join("data");
        let _ = as_postgres(&self.bin, "pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"])
            .output();
    }

    /// Starts it again after [`Pg::stop`].
    pub fn restart(&self) {
        self.pg_ctl_start();
    }

    /// Runs `sql` in database `db` as the superuser; what psql printed
    /// (unaligned, no headers), or its complaint.
    fn run_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = as_postgres(&self.bin, "psql")
            .args([
                "-h",
                self.dir.path().to_str().unwrap(),
                "-p",
                &self.port.to_string(),
            ])
            .args([
                "-U",
                "postgres",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atq",
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs SQL as the superuser (in the slackbotd database, or before it
    /// exists in postgres); returns what psql printed. Panics on an error.
    pub fn psql(&self, sql: &str) -> String {
        self.run_psql("slackbotd", sql)
            .or_else(|_| self.run_psql("postgres", sql))
            .unwrap_or_else(|e| panic!("psql {sql}: {e}"))
    }

    /// Runs SQL in the slackbotd database as the superuser; `None` when it fails.
    pub fn query(&self, sql: &str) -> Option<String> {
        self.run_psql("slackbotd", sql).ok()
    }

    /// The connection string for the bot (the password goes in a file).
    pub fn url(&self) -> String {
        format!("postgres://slackbotd@127.0.0.1:{}/slackbotd", self.port)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop();
    }
}
