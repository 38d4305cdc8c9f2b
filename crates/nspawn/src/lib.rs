//! A real systemd, booted in a container with `systemd-nspawn`, for the
//! tests of the shipped unit, `ensure` and cron, and for the benchmarks of
//! healing under systemd. The container's `/` and
//! `/etc` are a fresh tmpfs, `/usr` is the host's (read-only), the network is
//! the host's (so the fake Slack on 127.0.0.1 serves it), and the binary under
//! test is bound to `/opt/slackbotd/slackbotd`.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// What the container tests need from the host, if anything is missing.
pub fn missing_prerequisites() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    for tool in ["systemd-nspawn", "nsenter", "systemctl"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false);
        if !found {
            return Some(format!(
                "{tool} is not installed (apt-get install systemd-container)"
            ));
        }
    }
    if !Path::new("/usr/sbin/cron").exists() {
        return Some("cron is not installed (apt-get install cron)".into());
    }
    None
}

/// How a container is booted.
#[derive(Debug, Clone, Default)]
pub struct Boot {
    /// Bound read-only at `/opt/slackbotd/slackbotd`.
    pub bin: Option<std::path::PathBuf>,
    /// `/usr` and `/var` writable (an overlay over the host's, thrown away
    /// with the container), so a package can be installed inside.
    pub writable_os: bool,
    /// More read-only binds: host path, path inside.
    pub binds: Vec<(std::path::PathBuf, String)>,
}

/// A booted container.
pub struct Container {
    nspawn: Child,
    /// The container's PID 1, as the host sees it.
    pub init: u32,
    pub name: String,
}

impl Container {
    /// Boots a container named `name` with `bin` at /opt/slackbotd/slackbotd.
    pub fn boot(name: &str, bin: &Path, log: &Path) -> Container {
        Container::boot_with(
            name,
            &Boot {
                bin: Some(bin.to_path_buf()),
                ..Boot::default()
            },
            log,
        )
    }

    /// Boots a container named `name` as `how` says.
    pub fn boot_with(name: &str, how: &Boot, log: &Path) -> Container {
        let mut cmd = Command::new("systemd-nspawn");
        cmd.args([
            "--volatile=yes",
            "-D",
            "/",
            "--register=no",
            "--keep-unit",
            "-M",
            name,
        ])
        .arg("--bind-ro=/etc/pam.d:/etc/pam.d")
        .arg("--bind-ro=/etc/security:/etc/security");
        if let Some(bin) = &how.bin {
            cmd.arg(format!(
                "--bind-ro={}:/opt/slackbotd/slackbotd",
                bin.display()
            ));
        }
        if how.writable_os {
            // An empty upper directory: nspawn makes a temporary one.
            cmd.args(["--overlay=/usr::/usr", "--overlay=/var::/var"]);
        }
        for (host, inside) in &how.binds {
            cmd.arg(format!("--bind-ro={}:{inside}", host.display()));
        }
        let nspawn = cmd
            // D-Bus and logind cannot start in a fresh /etc without their
            // users, and a start job waiting for them never lets boot finish.
            .args([
                "-b",
                "--",
                "systemd.firstboot=off",
                "systemd.mask=dbus.service",
                "systemd.mask=dbus.socket",
                "systemd.mask=systemd-logind.service",
            ])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(Stdio::from(
                std::fs::File::options().append(true).open(log).unwrap(),
            ))
            .spawn()
            .expect("systemd-nspawn starts");
        let pid = nspawn.id();
        let deadline = Instant::now() + Duration::from_secs(30);
        let init = loop {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            if let Some(c) = children
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u32>().ok())
            {
                let comm = std::fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    break c;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the container did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let c = Container {
            nspawn,
            init,
            name: name.to_string(),
        };
        loop {
            // "offline" until PID 1 listens on its bus; then --wait waits for the boot.
            let out = c.sh("systemctl is-system-running --wait");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "boot ended {state:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A command run inside, with a clean environment.
    pub fn enter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.args([
            "-t",
            &self.init.to_string(),
            "-a",
            "env",
            "-i",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        ]);
        c
    }

    /// Runs a shell script inside.
    pub fn sh(&self, script: &str) -> Output {
        self.enter()
            .args(["sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs a shell script inside and insists it succeeds; returns stdout.
    /// A failure shows the end of the journal, which says why.
    pub fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "`{script}` failed ({}): {}{}\n--- the journal's last lines:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&self.sh("journalctl --no-pager -n 40").stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a file inside.
    pub fn write(&self, path: &str, content: &str, mode: u32) {
        use std::io::Write;
        let mut child = self
            .enter()
            .args([
                "sh",
                "-c",
                &format!("mkdir -p \"$(dirname {path})\" && cat > {path} && chmod {mode:o} {path}"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(content.as_bytes());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "cannot write {path}");
    }

    /// `systemctl show UNIT` as a map.
    pub fn show(&self, unit: &str) -> HashMap<String, String> {
        self.ok(&format!("systemctl show {unit}"))
            .lines()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect()
    }

    /// One property of a unit.
    pub fn prop(&self, unit: &str, name: &str) -> String {
        self.ok(&format!("systemctl show -p {name} --value {unit}"))
            .trim()
            .to_string()
    }

    /// Waits until `f(show(unit))` holds.
    pub fn wait_unit(
        &self,
        unit: &str,
        timeout: Duration,
        mut f: impl FnMut(&HashMap<String, String>) -> bool,
    ) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if f(&self.show(unit)) {
                return true;
            }
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The host pid of a pid seen inside the container (through NSpid).
    pub fn host_pid(&self, guest: u32) -> Option<u32> {
        let ns = std::fs::read_link(format!("/proc/{}/ns/pid", self.init)).ok()?;
        for e in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .ok()
                .as_ref()
                != Some(&ns)
            {
                continue;
            }
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let nspid = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .unwrap_or("");
            if nspid
                .split_whitespace()
                .last()
                .and_then(|p| p.parse::<u32>().ok())
                == Some(guest)
            {
                return Some(pid);
            }
        }
        None
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.nspawn.id() as i32, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}
