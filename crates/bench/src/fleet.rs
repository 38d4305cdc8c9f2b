//! The fleet, measured against a PostgreSQL this benchmark starts itself
//! (`crates/pgtest`, as the tests do): how long a dead host's connection
//! slot takes to come back (`kill -9` of the slot holder → the next hello),
//! a ping's round trip unaddressed and addressed to a host holding the slot
//! or to one without, notifications per second through the fleet's outbox
//! next to a lone bot's SQLite one, and a member's memory next to a lone
//! bot's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_slack::{FakeSlack, Options, DEFAULT_CHANNEL, DEFAULT_USER};
use pgtest::{Pg, PASSWORD};

use crate::measure::Failed;

/// What the fleet measured.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// The lease the hosts ran with.
    pub lease: Duration,
    /// `kill -9` of the host holding the slot → the next hello (ms).
    pub takeover: Vec<f64>,
    /// An unaddressed ping, answered by the host that received it (ms).
    pub ping_here: Vec<f64>,
    /// `on HOLDER ping`: a job to the host holding the slot (ms).
    pub ping_slot: Vec<f64>,
    /// `on OTHER ping`: a job to a host without a slot (ms).
    pub ping_slotless: Vec<f64>,
    /// Notifications delivered per second: through the fleet, and by a lone bot.
    pub notify_rate: (f64, f64),
    /// PSS of a member's process tree, and of a lone bot's (KiB).
    pub pss: (f64, f64),
}

/// Whether this machine can run the fleet figures.
pub fn available() -> Option<String> {
    pgtest::missing_prerequisites()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One host's files.
struct Host {
    dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
}

impl Host {
    fn new(
        root: &Path,
        name: &str,
        fake: &FakeSlack,
        pg: Option<&Pg>,
        lease: Duration,
    ) -> Result<Host, Failed> {
        use std::os::unix::fs::PermissionsExt;
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for (file, value) in [
            ("app-token", fake.app_token().to_string()),
            ("bot-token", fake.bot_token().to_string()),
            ("db-password", PASSWORD.to_string()),
        ] {
            let p = dir.join(file);
            std::fs::write(&p, format!("{value}\n")).map_err(|e| e.to_string())?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| e.to_string())?;
        }
        let fleet = match pg {
            Some(pg) => format!(
                "\n[fleet]\ndatabase = {:?}\nhost = {name:?}\nconnections = 1\nlease = \"{}ms\"\n",
                pg.url(),
                lease.as_millis()
            ),
            None => String::new(),
        };
        let config = dir.join("slackbotd.toml");
        std::fs::write(
            &config,
            format!(
                "[slack]\napi_url = {:?}\nconnections = 1\n\n[daemon]\npidfile = {:?}\nstate_dir = {:?}\n\n\
                 [supervise]\nbackoff_initial = \"100ms\"\nbackoff_max = \"5s\"\n\n[outbox]\npace = \"0ms\"\n{fleet}",
                fake.api_url(),
                dir.join("run/slackbotd.pid"),
                dir.join("state"),
            ),
        )
        .map_err(|e| e.to_string())?;
        Ok(Host {
            dir,
            config,
            child: None,
        })
    }

    fn start(&mut self, bot: &Path) -> Result<(), Failed> {
        let child = Command::new(bot)
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env_remove("NOTIFY_SOCKET")
            .env("SLACKBOTD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        self.child = Some(child);
        Ok(())
    }

    fn worker(&self) -> Option<u32> {
        let rec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.dir.join("run/slackbotd.supervisor")).ok()?)
                .ok()?;
        rec["worker_pid"].as_u64().map(|p| p as u32)
    }

    fn kill(&mut self) {
        let worker = self.worker();
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill has no memory effects.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGKILL);
                if let Some(w) = worker {
                    libc::kill(w as i32, libc::SIGKILL);
                }
            }
            let _ = c.wait();
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which of `names` holds the slot.
fn holder(pg: &Pg, names: &[&str]) -> Option<usize> {
    let h =
        pg.query("SELECT host FROM sbd_slots WHERE lease_until > now() AND host IS NOT NULL")?;
    names.iter().position(|n| h.trim() == *n)
}

fn wait(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Sends `text` as a mention and times it to the next post containing `pong`.
fn round_trip(fake: &FakeSlack, text: &str) -> Option<f64> {
    let before = fake.posts_containing("pong").len();
    let t0 = Instant::now();
    fake.send_mention(DEFAULT_CHANNEL, DEFAULT_USER, text, None);
    let at = fake.wait_for(Duration::from_secs(20), |s| {
        s.posts
            .iter()
            .filter(|p| p.text.contains("pong"))
            .nth(before)
            .map(|p| p.at)
    })?;
    Some(ms(at.saturating_duration_since(t0)))
}

/// Queues `n` notifications through `config` from four senders at once and
/// times them to the last one delivered; returns messages per second.
fn notify_rate(
    bot: &Path,
    fake: &FakeSlack,
    config: &Path,
    n: usize,
    tag: &str,
) -> Result<f64, Failed> {
    let t0 = Instant::now();
    let senders: Vec<_> = (0..4)
        .map(|s| {
            let (bot, config, tag) = (bot.to_path_buf(), config.to_path_buf(), tag.to_string());
            std::thread::spawn(move || {
                for i in (s..n).step_by(4) {
                    let _ = Command::new(&bot)
                        .arg("--config")
                        .arg(&config)
                        .args([
                            "notify",
                            "--channel",
                            &format!("C0{tag}{}", i % 8),
                            &format!("{tag} {i}"),
                        ])
                        .output();
                }
            })
        })
        .collect();
    for s in senders {
        let _ = s.join();
    }
    let prefix = format!("{tag} ");
    fake.wait_for(Duration::from_secs(120), |s| {
        (s.posts
            .iter()
            .filter(|p| p.text.starts_with(&prefix))
            .count()
            >= n)
            .then_some(())
    })
    .ok_or("notifications missing")?;
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

/// Runs the fleet's scenarios: two members (one slot) and a lone bot.
pub fn measure(bot: &Path, kills: usize, pings: usize, notes: usize) -> Result<Figures, Failed> {
    let pg = Pg::start();
    let fake = FakeSlack::start_with(Options::default()).map_err(|e| e.to_string())?;
    let root = std::env::temp_dir().join(format!("slackbotd-bench-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let lease = Duration::from_secs(3);
    let names = ["one", "two"];
    let mut hosts = vec![
        Host::new(&root, names[0], &fake, Some(&pg), lease)?,
        Host::new(&root, names[1], &fake, Some(&pg), lease)?,
    ];
    for h in hosts.iter_mut() {
        h.start(bot)?;
    }
    let mut f = Figures {
        lease,
        ..Figures::default()
    };
    let result = (|| -> Result<(), Failed> {
        if !wait(Duration::from_secs(30), || holder(&pg, &names).is_some()) {
            return Err("no host took the slot".into());
        }
        fake.wait_live_connections(1, Duration::from_secs(20))
            .ok_or("no connection")?;
        std::thread::sleep(Duration::from_secs(2));
        crate::progress("fleet: ping round trips, here, to the slot holder, to the other host");
        let h = holder(&pg, &names).ok_or("no slot holder")?;
        let other = 1 - h;
        for _ in 0..pings {
            f.ping_here
                .push(round_trip(&fake, "ping").ok_or("an unaddressed ping went unanswered")?);
            f.ping_slot.push(
                round_trip(&fake, &format!("on {} ping", names[h]))
                    .ok_or("a ping to the slot holder went unanswered")?,
            );
            f.ping_slotless.push(
                round_trip(&fake, &format!("on {} ping", names[other]))
                    .ok_or("a ping to the other host went unanswered")?,
            );
        }
        crate::progress("fleet: memory of a member");
        let pid = hosts[h].pid().ok_or("no pid")?;
        f.pss.0 = crate::peers::tree_pss_kib(pid).ok_or("no PSS")?;
        crate::progress("fleet: notifications through the fleet's outbox");
        f.notify_rate.0 = notify_rate(bot, &fake, &hosts[other].config, notes, "fleet")?;
        crate::progress("fleet: kill -9 of the slot holder, to the next hello");
        for _ in 0..kills {
            let h = holder(&pg, &names).ok_or("no slot holder")?;
            let conns = fake.snapshot().connections.len();
            let t0 = Instant::now();
            hosts[h].kill();
            let hello = fake
                .wait_for(Duration::from_secs(30), |s| {
                    s.connections.iter().skip(conns).find_map(|c| c.hello_at)
                })
                .ok_or("the slot was not taken over")?;
            f.takeover.push(ms(hello.saturating_duration_since(t0)));
            hosts[h].start(bot)?;
            std::thread::sleep(Duration::from_secs(2));
        }
        Ok(())
    })();
    drop(hosts);
    result?;
    crate::progress("fleet: a lone bot's memory and notifications, for comparison");
    let mut lone = Host::new(&root, "lone", &fake, None, lease)?;
    lone.start(bot)?;
    let conns = fake.snapshot().connections.len();
    fake.wait_for(Duration::from_secs(20), |s| {
        s.connections.get(conns).and_then(|c| c.hello_at)
    })
    .ok_or("the lone bot did not connect")?;
    std::thread::sleep(Duration::from_secs(2));
    round_trip(&fake, "ping").ok_or("the lone bot did not answer")?;
    f.pss.1 = crate::peers::tree_pss_kib(lone.pid().ok_or("no pid")?).ok_or("no PSS")?;
    f.notify_rate.1 = notify_rate(bot, &fake, &lone.config, notes, "lone")?;
    drop(lone);
    let _ = std::fs::remove_dir_all(&root);
    Ok(f)
}
