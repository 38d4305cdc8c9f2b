//! One Slack app for a fleet of hosts, sharing state in a real PostgreSQL
//! (started by the test, `common/pg.rs`): each host is a separate
//! `slackbotd run` with its own configuration, host name, state directory
//! and pidfile, against one fake Slack and one database. Without
//! PostgreSQL or root these tests skip loudly, and fail under CI=true.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::pg::{self, Pg, PASSWORD};
use common::*;

/// A fake Slack, a database, and the hosts' directories.
struct Fleet {
    s: Setup,
    pg: Pg,
}

/// One host: its process and its directory.
struct Host {
    name: String,
    dir: PathBuf,
    config: PathBuf,
    proc: Option<Proc>,
}

impl Host {
    /// The worker under this host's `run`.
    fn worker(&self) -> Option<u32> {
        let rec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.dir.join("run/slackbotd.supervisor")).ok()?)
                .ok()?;
        rec["worker_pid"].as_u64().map(|p| p as u32)
    }

    /// `kill -9` of the whole host: its supervisor and its worker at once.
    fn kill(&mut self) {
        let worker = self.worker();
        if let Some(p) = self.proc.as_mut() {
            p.signal(libc::SIGKILL);
            if let Some(w) = worker {
                kill(w, libc::SIGKILL);
            }
            p.wait_exit(secs(5));
        }
    }

    fn log(&self) -> String {
        self.proc.as_ref().map(|p| p.log()).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Fleet {
    fn new() -> Option<Fleet> {
        let pg = pg::start()?;
        Some(Fleet {
            s: Setup::new(),
            pg,
        })
    }

    /// Writes host `name`'s configuration: `connections` slots for the
    /// fleet, `lease`, its `tags`, and `extra` (commands…).
    fn host(&self, name: &str, tags: &[&str], connections: u8, lease: &str, extra: &str) -> Host {
        let dir = self.s.path(&format!("hosts/{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("db-password");
        std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
        std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let tags: Vec<String> = tags.iter().map(|t| format!("{t:?}")).collect();
        let text = format!(
            "[slack]\napp_token_file = {app:?}\nbot_token_file = {bot:?}\napi_url = {url:?}\nconnections = 1\n\n\
             [daemon]\npidfile = {pid:?}\nstate_dir = {state:?}\n\n\
             [supervise]\nbackoff_initial = \"50ms\"\nbackoff_max = \"1s\"\nheartbeat_timeout = \"30s\"\nstop_timeout = \"5s\"\n\n\
             [fleet]\ndatabase = {db:?}\npassword_file = {pw:?}\nhost = {name:?}\ntags = [{tags}]\nconnections = {connections}\nlease = {lease:?}\n\n{extra}\n",
            app = self.s.path("app-token"),
            bot = self.s.path("bot-token"),
            url = self.s.fake.api_url(),
            pid = dir.join("run/slackbotd.pid"),
            state = dir.join("state"),
            db = self.pg.url(),
            tags = tags.join(", "),
        );
        let config = dir.join("config.toml");
        std::fs::write(&config, text).unwrap();
        Host {
            name: name.to_string(),
            dir,
            config,
            proc: None,
        }
    }

    fn start(&self, h: &mut Host) {
        h.proc = Some(self.s.spawn(&h.config, &["run"]));
    }

    /// The hosts the database lists as live.
    fn live_hosts(&self) -> usize {
        self.pg
            .query("SELECT COUNT(*) FROM sbd_hosts WHERE lease_until > now()")
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    fn wait_members(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.live_hosts() >= n)
    }
}

fn text_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn check_explains_the_fleet_database_in_an_administrators_words() {
    let Some(f) = Fleet::new() else { return };
    let h = f.host("web-1", &["web"], 2, "5s", "");
    let out = f.s.output(&h.config, &["check"]);
    let said = text_of(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("answers (PostgreSQL "), "{said}");
    assert!(said.contains("schema is empty"), "{said}");
    assert!(
        said.contains("joins the fleet as web-1 (tags: web)"),
        "{said}"
    );

    // A wrong password: 78, in words, and the password never shown.
    std::fs::write(h.dir.join("db-password"), "not-the-password\n").unwrap();
    let out = f.s.output(&h.config, &["check"]);
    let said = text_of(&out);
    assert_eq!(out.status.code(), Some(78), "{said}");
    assert!(
        said.contains("refused the login") && said.contains("password"),
        "{said}"
    );
    assert!(
        !said.contains("not-the-password") && !said.contains(PASSWORD),
        "{said}"
    );
    let out = f.s.output(&h.config, &["run"]);
    assert_eq!(out.status.code(), Some(78), "run too: {}", text_of(&out));
    assert!(!text_of(&out).contains("not-the-password"));
    std::fs::write(h.dir.join("db-password"), format!("{PASSWORD}\n")).unwrap();

    // A database that does not exist: 78, with the command that makes it.
    let cfg = std::fs::read_to_string(&h.config).unwrap();
    std::fs::write(&h.config, cfg.replace("/slackbotd\"", "/nope\"")).unwrap();
    let out = f.s.output(&h.config, &["check"]);
    let said = text_of(&out);
    assert_eq!(out.status.code(), Some(78), "{said}");
    assert!(
        said.contains("does not exist: create it (createdb -O slackbotd nope)"),
        "{said}"
    );

    // Nobody listening there: 69.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    std::fs::write(
        &h.config,
        cfg.replace(&format!(":{}/", f.pg.port), &format!(":{closed}/")),
    )
    .unwrap();
    let out = f.s.output(&h.config, &["check"]);
    let said = text_of(&out);
    assert_eq!(out.status.code(), Some(69), "{said}");
    assert!(
        said.contains("cannot connect to the fleet database")
            && said.contains("connection refused"),
        "{said}"
    );

    // A [fleet] that cannot be read: 78 at once.
    std::fs::write(
        &h.config,
        cfg.replace("connections = 2\nlease", "connections = 11\nlease"),
    )
    .unwrap();
    let out = f.s.output(&h.config, &["check"]);
    assert_eq!(out.status.code(), Some(78), "{}", text_of(&out));
    assert!(
        text_of(&out).contains("fleet.connections"),
        "{}",
        text_of(&out)
    );
}

#[test]
fn ten_hosts_starting_at_once_on_an_empty_database_migrate_once() {
    let Some(f) = Fleet::new() else { return };
    let mut hosts: Vec<Host> = (0..10)
        .map(|i| f.host(&format!("h{i}"), &[], 4, "5s", ""))
        .collect();
    for h in hosts.iter_mut() {
        f.start(h);
    }
    assert!(
        f.wait_members(10, secs(30)),
        "all ten joined: {}",
        hosts[0].log()
    );
    assert_eq!(f.pg.psql("SELECT COUNT(*) FROM sbd_migrations").trim(), "1");
    for h in &hosts {
        let log = h.log();
        assert!(!log.contains(" ERROR "), "{}: {log}", h.name);
        assert_no_panic(&log);
    }
    let migrated = hosts
        .iter()
        .filter(|h| h.log().contains("schema migrated to version 1"))
        .count();
    assert_eq!(migrated, 1, "one host migrated");
}

#[test]
fn commands_go_where_they_are_addressed_and_a_fan_out_is_summed_up() {
    let Some(f) = Fleet::new() else { return };
    let cmd = |name: &str| {
        format!("[[command]]\nname = \"where\"\nrun = [\"/bin/echo\", \"here is {name}\"]\n")
    };
    let mut hosts = [
        f.host("web-1", &["web"], 1, "5s", &cmd("web-1")),
        f.host("web-2", &["web"], 1, "5s", &cmd("web-2")),
        f.host("db-1", &["db"], 1, "5s", &cmd("db-1")),
    ];
    for h in hosts.iter_mut() {
        f.start(h);
    }
    assert!(f.wait_members(3, secs(20)), "{}", hosts[0].log());
    assert!(f.s.fake.wait_live_connections(1, secs(10)).is_some());

    f.s.fake.send_mention("C1", "U1", "on web-2 where", None);
    assert!(
        f.s.fake
            .wait_posts_containing("here is web-2", secs(15))
            .is_some(),
        "{}",
        hosts[1].log()
    );
    std::thread::sleep(Duration::from_secs(1));
    let posts = f.s.fake.posts_containing("here is");
    assert_eq!(posts.len(), 1, "on web-2 only: {posts:?}");
    assert!(posts[0].text.starts_with("*web-2*: "), "{}", posts[0].text);
    assert!(posts[0].thread_ts.is_some(), "in the request's thread");

    f.s.fake.send_mention("C1", "U1", "on all where", None);
    assert!(
        f.s.fake
            .wait_posts_containing("`where` on 3 hosts", secs(20))
            .is_some(),
        "the summary"
    );
    for name in ["web-1", "web-2", "db-1"] {
        let n = f.s.fake.posts_containing(&format!("here is {name}")).len();
        assert_eq!(n, if name == "web-2" { 2 } else { 1 }, "{name}");
    }
    let summary = f.s.fake.posts_containing("`where` on 3 hosts")[0]
        .text
        .clone();
    assert!(
        summary.contains("answered: db-1, web-1, web-2"),
        "{summary}"
    );

    f.s.fake.send_mention("C1", "U1", "on web where", None);
    assert!(f
        .s
        .fake
        .wait_posts_containing("`where` on 2 hosts", secs(20))
        .is_some());

    f.s.fake.send_mention("C1", "U1", "on mail-9 where", None);
    let no =
        f.s.fake
            .wait_posts_containing("no host or tag `mail-9`", secs(10))
            .expect("an unknown host is answered");
    assert!(
        no.text.contains("db-1, web-1, web-2") && no.text.contains("tags: db, web"),
        "{}",
        no.text
    );
    for h in &hosts {
        assert_no_panic(&h.log());
    }
}

#[test]
fn never_more_connections_than_slots_while_hosts_come_and_go() {
    let Some(f) = Fleet::new() else { return };
    let mut hosts: Vec<Host> = (0..12)
        .map(|i| f.host(&format!("n{i:02}"), &[], 4, "3s", ""))
        .collect();
    for h in hosts.iter_mut() {
        f.start(h);
    }
    let end = Instant::now() + secs(20);
    let mut most = 0;
    let mut killed = 0;
    let mut t = 0;
    while Instant::now() < end {
        let live = f.s.fake.live_connections().len();
        most = most.max(live);
        assert!(live <= 4, "{live} connections live, over the fleet's 4");
        t += 1;
        // Every two seconds, a host dies and another starts again.
        if t % 20 == 0 {
            hosts[killed % 12].kill();
            let revived = (killed + 6) % 12;
            if hosts[revived]
                .proc
                .as_mut()
                .is_none_or(|p| p.child.try_wait().ok().flatten().is_some())
            {
                f.start(&mut hosts[revived]);
            }
            killed += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(most, 4, "the fleet used its four connections");
    assert!(
        f.s.fake.wait_live_connections(4, secs(10)).is_some(),
        "four again after the churn"
    );
}

#[test]
fn a_dead_hosts_slots_and_acknowledged_events_are_taken_over() {
    let Some(f) = Fleet::new() else { return };
    let mut hosts = [
        f.host("a", &[], 3, "3s", ""),
        f.host("b", &[], 3, "3s", ""),
        f.host("c", &[], 3, "3s", ""),
    ];
    for h in hosts.iter_mut() {
        f.start(h);
    }
    assert!(
        f.s.fake.wait_live_connections(3, secs(20)).is_some(),
        "{}",
        hosts[0].log()
    );
    // The burst goes over one connection: kill the host that holds it.
    let ids = f.s.fake.send_burst(500, "ping {n}");
    assert!(wait_posts_with(&f.s.fake, "pong", 40, secs(20)));
    // The host that acknowledged the burst's envelopes holds its connection.
    let envelope =
        f.s.fake
            .snapshot()
            .deliveries
            .last()
            .map(|d| d.envelope_id.clone())
            .unwrap();
    let holder = hosts
        .iter()
        .position(|h| h.log().contains(&envelope))
        .expect("one host received the burst");
    let t = Instant::now();
    hosts[holder].kill();
    let done = wait_answered(&f.s.fake, &ids, secs(60));
    assert!(
        done.is_ok(),
        "{} of 500 unanswered\n{}",
        done.as_ref().err().map_or(0, Vec::len),
        hosts
            .iter()
            .map(|h| h.log())
            .collect::<Vec<_>>()
            .join("\n-----\n")
    );
    std::thread::sleep(Duration::from_millis(500));
    let n = replies_in(&f.s.fake.snapshot());
    let doubled: Vec<_> = n.iter().filter(|(_, c)| **c > 1).collect();
    assert!(doubled.is_empty(), "answered twice: {doubled:?}");
    assert!(
        hosts.iter().any(|h| h.log().contains("took over")),
        "a surviving host took over what the dead one had acknowledged"
    );
    assert!(
        f.s.fake.wait_live_connections(3, secs(8)).is_some(),
        "the dead host's slot taken over within lease + 5 s"
    );
    assert!(t.elapsed() < secs(60));
}

#[test]
fn notifications_from_three_hosts_arrive_once_though_one_host_dies() {
    let Some(f) = Fleet::new() else { return };
    // Slack's pace is a message a second per channel; the test is not.
    let fast = "[outbox]\npace = \"20ms\"\n";
    let mut hosts = [
        f.host("a", &[], 2, "3s", fast),
        f.host("b", &[], 2, "3s", fast),
        f.host("c", &[], 2, "3s", fast),
    ];
    for h in hosts.iter_mut() {
        f.start(h);
    }
    assert!(f.wait_members(3, secs(20)));
    let configs: Vec<PathBuf> = hosts.iter().map(|h| h.config.clone()).collect();
    let senders: Vec<_> = configs
        .iter()
        .enumerate()
        .map(|(i, cfg)| {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                for n in 0..100 {
                    let out = std::process::Command::new(bin())
                        .arg("--config")
                        .arg(&cfg)
                        .args(["notify", "--channel", "C0NOTE", &format!("note {i}-{n}")])
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    hosts[0].kill();
    for s in senders {
        s.join().unwrap();
    }
    let all = f.s.fake.wait_for(secs(90), |snap| {
        (snap
            .posts
            .iter()
            .filter(|p| p.text.starts_with("note "))
            .count()
            >= 300)
            .then_some(())
    });
    let got: HashMap<String, usize> =
        f.s.fake
            .posts_containing("note ")
            .iter()
            .fold(HashMap::new(), |mut m, p| {
                *m.entry(p.text.clone()).or_insert(0) += 1;
                m
            });
    assert!(
        all.is_some(),
        "{} of 300 delivered\n{}",
        got.len(),
        hosts[1].log()
    );
    assert_eq!(got.len(), 300);
    assert!(got.values().all(|c| *c == 1), "none twice");
    assert!(f.s.fake.snapshot().duplicate_idempotency_keys.is_empty());
}

#[test]
fn a_job_whose_host_dies_is_reported_lost_once_and_never_run_again() {
    let Some(f) = Fleet::new() else { return };
    let runs = f.s.path("runs.log");
    let script = f.s.path("slow.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho started >> {}\nsleep 30\n", runs.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let slow = format!(
        "[[command]]\nname = \"slow\"\nrun = [{:?}]\ntimeout = \"60s\"\n",
        script.to_str().unwrap()
    );
    let mut hosts = [
        f.host("front", &[], 1, "3s", ""),
        f.host("worker", &[], 1, "3s", &slow),
    ];
    for h in hosts.iter_mut() {
        f.start(h);
    }
    assert!(f.wait_members(2, secs(20)));
    assert!(f.s.fake.wait_live_connections(1, secs(10)).is_some());
    f.s.fake.send_mention("C1", "U1", "on worker slow", None);
    assert!(
        wait_until(secs(15), || std::fs::read_to_string(&runs)
            .is_ok_and(|r| r.contains("started"))),
        "{}",
        hosts[1].log()
    );
    hosts[1].kill();
    let lost =
        f.s.fake
            .wait_posts_containing("went away while running `slow`", secs(20))
            .unwrap_or_else(|| panic!("no report of the lost job\n{}", hosts[0].log()));
    assert!(lost.text.contains("*worker*"), "{}", lost.text);
    assert!(lost.thread_ts.is_some());
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        f.s.fake.posts_containing("went away").len(),
        1,
        "reported once"
    );
    assert_eq!(
        std::fs::read_to_string(&runs)
            .unwrap()
            .matches("started")
            .count(),
        1,
        "never run again"
    );
}

#[test]
fn the_fleet_answers_through_a_database_outage_and_then_delivers_what_waited() {
    let Some(f) = Fleet::new() else { return };
    let mut hosts = [f.host("a", &[], 2, "3s", ""), f.host("b", &[], 2, "3s", "")];
    for h in hosts.iter_mut() {
        f.start(h);
    }
    assert!(f.wait_members(2, secs(20)));
    assert!(f.s.fake.wait_live_connections(2, secs(15)).is_some());
    f.pg.stop();
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < secs(20) {
        let before = f.s.fake.posts_containing("pong").len();
        f.s.fake.send_mention("C1", "U1", "ping", None);
        assert!(
            wait_posts_with(&f.s.fake, "pong", before + 1, secs(5)),
            "ping {n} unanswered during the outage\n{}",
            hosts[0].log()
        );
        if n < 5 {
            let out = f.s.output(
                &hosts[n % 2].config,
                &["notify", "--channel", "C0WAIT", &format!("waited {n}")],
            );
            assert!(
                out.status.success(),
                "notify during the outage: {}",
                text_of(&out)
            );
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(700));
    }
    f.pg.restart();
    let arrived = f.s.fake.wait_for(secs(40), |snap| {
        (snap
            .posts
            .iter()
            .filter(|p| p.text.starts_with("waited "))
            .count()
            >= 5)
            .then_some(())
    });
    assert!(arrived.is_some(), "what waited arrived\n{}", hosts[0].log());
    std::thread::sleep(Duration::from_secs(2));
    let waited: Vec<String> =
        f.s.fake
            .posts_containing("waited ")
            .iter()
            .map(|p| p.text.clone())
            .collect();
    assert_eq!(waited.len(), 5, "once each: {waited:?}");
    // In order from each host.
    for host in 0..2 {
        let mine: Vec<&String> = waited
            .iter()
            .filter(|w| w.trim_start_matches("waited ").parse::<usize>().unwrap() % 2 == host)
            .collect();
        let mut sorted = mine.clone();
        sorted.sort();
        assert_eq!(mine, sorted, "in order");
    }
}

#[test]
fn status_help_and_metrics_show_the_fleet() {
    let Some(f) = Fleet::new() else { return };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut hosts = [
        f.host(
            "alpha",
            &["web"],
            1,
            "3s",
            &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        ),
        f.host(
            "beta",
            &["db"],
            1,
            "3s",
            "[[command]]\nname = \"backup\"\nrun = [\"/bin/echo\", \"saved\"]\n",
        ),
    ];
    for h in hosts.iter_mut() {
        f.start(h);
    }
    assert!(f.wait_members(2, secs(20)));
    assert!(f.s.fake.wait_live_connections(1, secs(10)).is_some());

    let out =
        f.s.output(&hosts[0].config, &["status", "--fleet", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text_of(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], 1);
    let names: Vec<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(v["hosts"][1]["tags"][0], "db");
    assert_eq!(v["hosts"][1]["commands"][0], "backup");
    let slots: i64 = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["slots"].as_i64().unwrap())
        .sum();
    assert_eq!(slots, 1, "one slot, held by one host");
    let text = text_of(&f.s.output(&hosts[1].config, &["status", "--fleet"]));
    assert!(
        text.contains("HOST") && text.contains("alpha") && text.contains("beta"),
        "{text}"
    );

    // In Slack: status has a line per host; help says where commands run,
    // and an unaddressed command defined elsewhere runs there.
    f.s.fake.send_mention("C1", "U1", "status", None);
    let st =
        f.s.fake
            .wait_posts_containing("fleet: this is", secs(10))
            .expect("status answered");
    assert!(
        st.text.contains("`alpha`") && st.text.contains("`beta` [db] live"),
        "{}",
        st.text
    );
    f.s.fake.send_mention("C1", "U1", "help", None);
    let help =
        f.s.fake
            .wait_posts_containing("address hosts", secs(10))
            .expect("help answered");
    assert!(help.text.contains("`backup` on beta"), "{}", help.text);
    let receiver =
        f.pg.query("SELECT host FROM sbd_slots WHERE lease_until > now() AND host IS NOT NULL")
            .unwrap_or_default();
    f.s.fake.send_mention("C1", "U1", "backup", None);
    let saved =
        f.s.fake
            .wait_posts_containing("saved", secs(10))
            .expect("run on beta");
    if receiver.trim() == "alpha" {
        assert!(
            saved.text.starts_with("*beta*: "),
            "sent to beta: {}",
            saved.text
        );
    } else {
        assert_eq!(saved.text.trim(), "saved", "run where it arrived");
    }

    // Metrics: the member's slots and the database's state.
    let scraped = wait_until(secs(10), || {
        std::process::Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{port}/metrics")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("slackbotd_fleet_database_up 1"))
            .unwrap_or(false)
    });
    assert!(scraped, "the fleet's figures are exported");
}
