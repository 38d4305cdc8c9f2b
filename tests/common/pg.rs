//! A throwaway PostgreSQL server for the fleet tests: `initdb` into a
//! temporary directory as the `postgres` user, `pg_ctl` on 127.0.0.1 with a
//! free port, a role `slackbotd` with a password and its database. Stopped
//! and removed when dropped. Without PostgreSQL installed (or without root,
//! to become `postgres`) the tests skip loudly, and under `CI=true` fail.

#![allow(dead_code)]

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

/// Skips loudly, or fails under CI=true.
fn missing(why: &str) -> Option<Pg> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but the fleet tests cannot run: {why}");
    }
    eprintln!("SKIPPED: the fleet tests need PostgreSQL and root: {why}");
    None
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
    c
}

impl Pg {
    /// Starts a fresh server, or says why it cannot.
    pub fn start() -> Option<Pg> {
        if unsafe { libc::geteuid() } != 0 {
            return missing("not root");
        }
        let Some(bin) = bin_dir() else {
            return missing("no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)");
        };
        let dir = tempfile::Builder::new()
            .prefix("slackbotd-pg")
            .tempdir()
            .unwrap();
        let uid = nix::unistd::User::from_name("postgres").ok().flatten()?;
        std::os::unix::fs::chown(dir.path(), Some(uid.uid.as_raw()), Some(uid.gid.as_raw()))
            .unwrap();
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
        Some(pg)
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

    /// Runs SQL as the superuser; returns what psql printed (unaligned, no headers).
    pub fn psql(&self, sql: &str) -> String {
        let out = as_postgres(&self.bin, "psql")
            .args([
                "-h",
                self.dir.path().to_str().unwrap(),
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "slackbotd",
                "-v",
                "ON_ERROR_STOP=1",
                "-Atq",
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        if !out.status.success() {
            // The database may not exist yet (the setup's own statement).
            let again = as_postgres(&self.bin, "psql")
                .args([
                    "-h",
                    self.dir.path().to_str().unwrap(),
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-Atq",
                    "-c",
                    sql,
                ])
                .output()
                .unwrap();
            assert!(
                again.status.success(),
                "psql {sql}: {}",
                String::from_utf8_lossy(&again.stderr)
            );
            return String::from_utf8_lossy(&again.stdout).into_owned();
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs SQL in the slackbotd database as the superuser; `None` when it fails.
    pub fn query(&self, sql: &str) -> Option<String> {
        let out = as_postgres(&self.bin, "psql")
            .args([
                "-h",
                self.dir.path().to_str().unwrap(),
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "slackbotd",
                "-v",
                "ON_ERROR_STOP=1",
                "-Atq",
                "-c",
                sql,
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
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
