//! The measurements. Each one starts its own fake Slack, runs one bot through
//! a scenario, and returns raw samples; nothing here judges them.

use std::process::Command;
use std::time::{Duration, Instant};

use fake_slack::{FakeSlack, Options, DEFAULT_CHANNEL, DEFAULT_USER};

use crate::peers::{self, Kind, Programs, Scratch};

/// An error that ends a measurement.
pub type Failed = String;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn quiet_fake() -> FakeSlack {
    FakeSlack::start_with(Options::default()).expect("the fake Slack starts")
}

/// Waits for the connection numbered `index` (0-based) to say hello.
fn hello_of(fake: &FakeSlack, index: usize, timeout: Duration) -> Option<Instant> {
    fake.wait_for(timeout, |s| {
        s.connections.get(index).and_then(|c| c.hello_at)
    })
}

/// Sends a mention and waits for the post after `posts_before`.
fn ping(fake: &FakeSlack, posts_before: usize, timeout: Duration) -> Option<Instant> {
    fake.send_mention(DEFAULT_CHANNEL, DEFAULT_USER, "ping", None);
    fake.wait_for(timeout, |s| s.posts.get(posts_before).map(|p| p.at))
}

/// Start to ready: (exec → first hello, exec → first pong), per run.
pub fn start(kind: Kind, p: &Programs, runs: usize) -> Result<(Vec<f64>, Vec<f64>), Failed> {
    let fake = quiet_fake();
    let s = Scratch::new(&fake, "start").map_err(|e| e.to_string())?;
    let (mut hello, mut pong) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let snap = fake.snapshot();
        let (conns, posts) = (snap.connections.len(), snap.posts.len());
        let t0 = Instant::now();
        let child = peers::spawn(kind, p, &fake, &s)
            .map_err(|e| format!("cannot start {}: {e}", kind.name()))?;
        let h = hello_of(&fake, conns, Duration::from_secs(30));
        let pg = h.and_then(|_| ping(&fake, posts, Duration::from_secs(30)));
        peers::stop(child);
        let (Some(h), Some(pg)) = (h, pg) else {
            return Err(format!("{} did not connect and answer", kind.name()));
        };
        hello.push(ms(h - t0));
        pong.push(ms(pg - t0));
    }
    Ok((hello, pong))
}

/// Restart after `kill -9`: (kill → new hello, kill → next pong), per kill.
/// slackbotd runs as a daemon and its supervisor restarts the worker; the
/// peer is respawned by this harness the moment it has died.
pub fn restart(kind: Kind, p: &Programs, kills: usize) -> Result<(Vec<f64>, Vec<f64>), Failed> {
    let fake = quiet_fake();
    let s = Scratch::new(&fake, "restart").map_err(|e| e.to_string())?;
    let (mut to_hello, mut to_pong) = (Vec::new(), Vec::new());
    let mut peer_child = None;
    match kind {
        Kind::Slackbotd => start_daemon(p, &s)?,
        Kind::Bolt => {
            peer_child = Some(peers::spawn(kind, p, &fake, &s).map_err(|e| e.to_string())?);
            if hello_of(&fake, 0, Duration::from_secs(30)).is_none() {
                return Err("the peer did not connect".into());
            }
        }
    }
    let result = (|| {
        for _ in 0..kills {
            // A healthy run first, so no backoff applies.
            std::thread::sleep(Duration::from_millis(1200));
            let snap = fake.snapshot();
            let (conns, posts) = (snap.connections.len(), snap.posts.len());
            let t0;
            match kind {
                Kind::Slackbotd => {
                    let w = s.worker_pid().ok_or("no worker pid")?;
                    t0 = Instant::now();
                    peers::signal(w, libc::SIGKILL);
                }
                Kind::Bolt => {
                    let mut c = peer_child.take().expect("a running peer");
                    t0 = Instant::now();
                    let _ = c.kill();
                    let _ = c.wait();
                    peer_child = Some(peers::spawn(kind, p, &fake, &s).map_err(|e| e.to_string())?);
                }
            }
            let h = hello_of(&fake, conns, Duration::from_secs(30))
                .ok_or("no new connection after the kill")?;
            let pg =
                ping(&fake, posts, Duration::from_secs(30)).ok_or("no pong after the restart")?;
            to_hello.push(ms(h - t0));
            to_pong.push(ms(pg - t0));
        }
        Ok::<_, Failed>(())
    })();
    match kind {
        Kind::Slackbotd => {
            let _ = Command::new(&p.bot)
                .arg("--config")
                .arg(&s.config)
                .arg("stop")
                .output();
        }
        Kind::Bolt => {
            if let Some(c) = peer_child {
                peers::stop(c);
            }
        }
    }
    result.map(|_| (to_hello, to_pong))
}

/// Memory in KiB, summed over the bot's processes (the supervisor and its
/// worker, for slackbotd): RSS counts the pages of the executable that both
/// share twice, PSS shares them out.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Once connected and idle: RSS.
    pub idle: f64,
    /// Once connected and idle: PSS.
    pub idle_pss: f64,
    /// Right after a burst of pings was answered: RSS.
    pub busy: f64,
    /// Right after the burst: PSS.
    pub busy_pss: f64,
    /// Of that, anonymous (heap, stacks): what the program itself allocated,
    /// without the pages of its executable and libraries.
    pub busy_anon: f64,
    /// After a quiet while: RSS.
    pub settled: f64,
    /// After a quiet while: PSS.
    pub settled_pss: f64,
}

/// Memory idle, right after `pings` pings pushed at once were answered, and
/// after `settle` more of quiet.
pub fn memory(kind: Kind, p: &Programs, pings: usize, settle: Duration) -> Result<Memory, Failed> {
    let fake = quiet_fake();
    let s = Scratch::new(&fake, "memory").map_err(|e| e.to_string())?;
    let child = peers::spawn(kind, p, &fake, &s).map_err(|e| e.to_string())?;
    let pid = child.id();
    let result = (|| {
        hello_of(&fake, 0, Duration::from_secs(30)).ok_or("did not connect")?;
        std::thread::sleep(Duration::from_secs(1));
        let rss = || peers::tree_kib(pid, "VmRSS").ok_or("no RSS");
        let pss = || peers::tree_pss_kib(pid).ok_or("no PSS");
        let (idle, idle_pss) = (rss()?, pss()?);
        fake.send_burst(pings, "ping {n}");
        fake.wait_for(Duration::from_secs(120), |s| {
            (s.posts.len() >= pings).then_some(())
        })
        .ok_or("pongs missing")?;
        std::thread::sleep(Duration::from_secs(1));
        let (busy, busy_pss) = (rss()?, pss()?);
        let busy_anon = peers::tree_kib(pid, "RssAnon").ok_or("no RssAnon")?;
        std::thread::sleep(settle);
        let (settled, settled_pss) = (rss()?, pss()?);
        Ok::<_, Failed>(Memory {
            idle,
            idle_pss,
            busy,
            busy_pss,
            busy_anon,
            settled,
            settled_pss,
        })
    })();
    peers::stop(child);
    result
}

/// What a burst showed.
#[derive(Debug, Clone)]
pub struct Burst {
    /// Events acked per second, from the first write to the last ack.
    pub rate: f64,
    /// Each acked event's time from its first write to its first ack (ms).
    pub latencies: Vec<f64>,
    /// Events never acked, even after Slack's redeliveries.
    pub lost: usize,
    /// The process tree's PSS once connected, before the burst (KiB).
    pub idle_pss_kib: f64,
    /// Scrapes of /metrics during the burst: answered, and not.
    pub scrapes: (usize, usize),
}

/// A burst over one connection. Each event's latency runs from its first
/// write to its first ack (a redelivery, if the bot was too slow, counts
/// against it).
pub fn burst(kind: Kind, p: &Programs, events: usize, metrics: bool) -> Result<Burst, Failed> {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let fake = quiet_fake();
    let s = Scratch::new(&fake, if metrics { "burst-metrics" } else { "burst" })
        .map_err(|e| e.to_string())?;
    let port = if metrics {
        Some(s.enable_metrics().map_err(|e| e.to_string())?)
    } else {
        None
    };
    let child = peers::spawn(kind, p, &fake, &s).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let result = (|| {
        hello_of(&fake, 0, Duration::from_secs(30)).ok_or("did not connect")?;
        std::thread::sleep(Duration::from_millis(500));
        if let Some(port) = port {
            // One scrape first, so the figures' families exist before measuring.
            scrape(port).ok_or("the metrics endpoint did not answer")?;
        }
        let idle_pss_kib = peers::tree_pss_kib(child.id()).unwrap_or(f64::NAN);
        let scraper = port.map(|port| {
            let (stop, answered, refused) = (stop.clone(), answered.clone(), refused.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match scrape(port) {
                        Some(_) => answered.fetch_add(1, Ordering::Relaxed),
                        None => refused.fetch_add(1, Ordering::Relaxed),
                    };
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        });
        fake.send_burst(events, "ping {n}");
        // Poll, rather than re-check on every ack: a check under the fake's
        // lock on each of thousands of acks would slow the fake itself down.
        let mut last_progress = (0usize, Instant::now());
        let deliveries = loop {
            std::thread::sleep(Duration::from_millis(50));
            let snap = fake.snapshot();
            let acked: std::collections::HashSet<_> = snap
                .deliveries
                .iter()
                .filter(|d| d.acked_at.is_some())
                .map(|d| d.event_id.clone())
                .collect();
            if acked.len() >= events {
                break snap.deliveries;
            }
            if acked.len() > last_progress.0 {
                last_progress = (acked.len(), Instant::now());
            } else if last_progress.1.elapsed() > Duration::from_secs(15) {
                // Slack stops redelivering after its retries: these are lost.
                break snap.deliveries;
            }
        };
        let mut first_sent: HashMap<String, Instant> = HashMap::new();
        let mut first_ack: HashMap<String, Instant> = HashMap::new();
        for d in &deliveries {
            let Some(id) = d.event_id.clone() else {
                continue;
            };
            first_sent
                .entry(id.clone())
                .and_modify(|t| *t = (*t).min(d.sent_at))
                .or_insert(d.sent_at);
            if let Some(a) = d.acked_at {
                first_ack
                    .entry(id)
                    .and_modify(|t| *t = (*t).min(a))
                    .or_insert(a);
            }
        }
        let start = first_sent.values().min().copied().ok_or("no delivery")?;
        let end = first_ack.values().max().copied().ok_or("no ack")?;
        let lat: Vec<f64> = first_ack
            .iter()
            .filter_map(|(id, a)| Some(ms(*a - *first_sent.get(id)?)))
            .collect();
        let rate = first_ack.len() as f64 / (end - start).as_secs_f64().max(1e-9);
        let lost = events.saturating_sub(first_ack.len());
        stop.store(true, Ordering::Relaxed);
        if let Some(t) = scraper {
            let _ = t.join();
        }
        Ok::<_, Failed>(Burst {
            rate,
            latencies: lat,
            lost,
            idle_pss_kib,
            scrapes: (
                answered.load(Ordering::Relaxed),
                refused.load(Ordering::Relaxed),
            ),
        })
    })();
    stop.store(true, Ordering::Relaxed);
    peers::stop(child);
    result
}

/// One GET /metrics; the body when the answer was a 200.
fn scrape(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200").then_some(text)
}

/// Starts slackbotd as a daemon on the scratch configuration.
fn start_daemon(p: &Programs, s: &Scratch) -> Result<(), Failed> {
    let out = Command::new(&p.bot)
        .arg("--config")
        .arg(&s.config)
        .args(["daemon", "--wait", "30s"])
        .env("SLACKBOTD_LOG", "warn")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "the daemon did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Wall times (ms) of `ensure` on a healthy daemon, of `true`, and of `slackbotd --version`.
pub struct EnsureTimes {
    pub ensure: Vec<f64>,
    pub truth: Vec<f64>,
    pub version: Vec<f64>,
}

/// Times `ensure` on a healthy daemon next to its yardsticks.
pub fn ensure(p: &Programs, runs: usize) -> Result<EnsureTimes, Failed> {
    let fake = quiet_fake();
    let s = Scratch::new(&fake, "ensure").map_err(|e| e.to_string())?;
    start_daemon(p, &s)?;
    let time = |cmd: &mut Command| -> Result<f64, Failed> {
        let t0 = Instant::now();
        let out = cmd.output().map_err(|e| e.to_string())?;
        let d = ms(t0.elapsed());
        if !out.status.success() || !out.stdout.is_empty() || !out.stderr.is_empty() {
            return Err(format!(
                "{cmd:?} was not silent and successful: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(d)
    };
    let (mut e, mut t, mut v) = (Vec::new(), Vec::new(), Vec::new());
    let result = (|| {
        for _ in 0..runs {
            e.push(time(
                Command::new(&p.bot)
                    .arg("--config")
                    .arg(&s.config)
                    .arg("ensure"),
            )?);
            t.push(time(&mut Command::new("true"))?);
            let t0 = Instant::now();
            Command::new(&p.bot)
                .arg("--version")
                .output()
                .map_err(|e| e.to_string())?;
            v.push(ms(t0.elapsed()));
        }
        Ok::<_, Failed>(())
    })();
    let _ = Command::new(&p.bot)
        .arg("--config")
        .arg(&s.config)
        .arg("stop")
        .output();
    result.map(|_| EnsureTimes {
        ensure: e,
        truth: t,
        version: v,
    })
}
