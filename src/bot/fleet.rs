//! Requests in a fleet, on the host that received them: `@bot on HOST CMD`,
//! `on TAG CMD` and `on all CMD` become one job per host (run there, each
//! answering in the thread), and a fan-out is summed up once every host
//! answered or the command's timeout passed. An unaddressed command runs
//! here when this host defines it, and otherwise on one live host that does.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::event::{Origin, Request};
use super::router::Reply;
use crate::config::Config;
use crate::fleet::hosts::{self, Member, Resolved};
use crate::fleet::jobs::{self, NewJob};
use crate::fleet::pool::Pool;

/// How long a members list read from the database is reused.
const MEMBERS_TTL: Duration = Duration::from_secs(1);
/// How long past a command's timeout a fan-out waits for its answers.
const GRACE: Duration = Duration::from_secs(5);

/// The fleet, as the bot's request handling sees it.
#[derive(Debug)]
pub(crate) struct FleetCtx {
    /// Connections for the bot's fleet queries.
    pub(crate) pool: Pool,
    /// This host's name.
    pub(crate) host: String,
    /// The members, read at most once a second.
    members: Mutex<Option<(Instant, Vec<Member>)>>,
}

/// What a request becomes in a fleet.
#[derive(Debug, PartialEq)]
pub(crate) enum Plan {
    /// Handled here, as on a lone host.
    Local,
    /// Answered at once (an address naming nobody).
    Answer(String),
    /// Jobs for hosts.
    Jobs(Jobs),
}

/// Jobs to hand out.
#[derive(Debug, PartialEq)]
pub(crate) struct Jobs {
    /// The hosts.
    pub(crate) targets: Vec<String>,
    /// The command's name.
    pub(crate) command: String,
    /// The command line, without the address.
    pub(crate) text: String,
    /// Addressed to several (a tag or `all`): sum them up.
    pub(crate) fan_out: bool,
}

/// `on TARGET rest…` split off `text`: the target, and the rest as typed.
pub(crate) fn address(text: &str) -> Option<(&str, &str)> {
    let t = text.trim_start();
    let rest = t.strip_prefix("on ").or_else(|| t.strip_prefix("on\t"))?;
    let rest = rest.trim_start();
    let end = rest.find(char::is_whitespace)?;
    let (target, cmd) = rest.split_at(end);
    let cmd = cmd.trim();
    (!cmd.is_empty()).then_some((target, cmd))
}

/// The plan for `text` from `user` in `channel` under `config`, given the
/// fleet's `members`.
pub(crate) fn plan(
    text: &str,
    (user, channel): (&str, &str),
    config: &Config,
    members: &[Member],
    me: &str,
) -> Plan {
    let first = |s: &str| s.split_whitespace().next().unwrap_or("").to_lowercase();
    if let Some((target, cmd)) = address(text) {
        let command = first(cmd);
        // This host's own access list, where it defines the command too; the
        // hosts that run it check theirs.
        if let Some(c) = config.command(&command) {
            if super::access::check(c, user, channel) != super::access::Verdict::Allowed {
                tracing::info!(command = %command, user, channel, "refused on the receiving host: its access list");
                return Plan::Answer(format!(
                    ":no_entry: You may not run `{command}` here (its `allow_users`/`allow_channels`)."
                ));
            }
        }
        return match hosts::resolve(members, target) {
            Resolved::Hosts(h) if h.is_empty() => {
                Plan::Answer("No host of the fleet is live right now.".into())
            }
            Resolved::Hosts(h) => Plan::Jobs(Jobs {
                fan_out: target == "all" || !h.iter().any(|m| m.name == target),
                targets: h.iter().map(|m| m.name.clone()).collect(),
                command,
                text: cmd.to_string(),
            }),
            Resolved::Gone(m) => Plan::Answer(format!(
                "*{}* has not been seen for {}; it is not taking commands now.",
                m.name,
                crate::clock::human(Duration::from_secs_f64(m.seen_s.max(0.0)))
            )),
            Resolved::Unknown => {
                let live: Vec<&str> = members
                    .iter()
                    .filter(|m| m.live)
                    .map(|m| m.name.as_str())
                    .collect();
                let mut tags: Vec<&str> = members
                    .iter()
                    .filter(|m| m.live)
                    .flat_map(|m| m.tags.iter().map(String::as_str))
                    .collect();
                tags.sort_unstable();
                tags.dedup();
                Plan::Answer(format!(
                    "There is no host or tag `{target}` in the fleet. Hosts: {}; tags: {}; or `all`.",
                    if live.is_empty() { "none live".to_string() } else { live.join(", ") },
                    if tags.is_empty() { "none".to_string() } else { tags.join(", ") }
                ))
            }
        };
    }
    let command = first(text);
    let here = crate::config::BUILTIN_COMMANDS.contains(&command.as_str())
        || config.command(&command).is_some()
        || command.is_empty();
    if here {
        return Plan::Local;
    }
    // Defined elsewhere: the live host that defines it and is least busy.
    match members
        .iter()
        .filter(|m| m.live && m.name != me && m.commands.contains(&command))
        .min_by_key(|m| (m.jobs_running, m.name.clone()))
    {
        Some(m) => Plan::Jobs(Jobs {
            targets: vec![m.name.clone()],
            command,
            text: text.trim().to_string(),
            fan_out: false,
        }),
        None => Plan::Local,
    }
}

impl FleetCtx {
    /// The fleet as host `host` sees it through `pool`.
    pub(crate) fn new(pool: Pool, host: String) -> FleetCtx {
        FleetCtx {
            pool,
            host,
            members: Mutex::new(None),
        }
    }

    /// The members, from the database at most once a second.
    pub(crate) async fn members(&self) -> Result<Vec<Member>, crate::fleet::FleetError> {
        if let Some((at, m)) = &*self.members.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < MEMBERS_TTL {
                return Ok(m.clone());
            }
        }
        let m = self.pool.run(hosts::list).await?;
        *self.members.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), m.clone()));
        Ok(m)
    }

    /// What `req` becomes; a database that is away makes everything local.
    pub(crate) async fn plan(&self, req: &Request, config: &Config) -> Plan {
        if matches!(req.origin, Origin::Console) {
            return Plan::Local;
        }
        let text = super::words::unescape(&req.text);
        let addressed = address(&text).is_some();
        let members = match self.members().await {
            Ok(m) => m,
            Err(e) if addressed => {
                return Plan::Answer(format!(
                    "I cannot reach the fleet's database ({e}), so I cannot address other hosts now; commands of this host still work."
                ))
            }
            Err(_) => return Plan::Local,
        };
        plan(
            &text,
            (&req.user, &req.channel),
            config,
            &members,
            &self.host,
        )
    }

    /// Writes the jobs of a plan for `req`; for a fan-out, waits for them
    /// and returns the summary. `request` names the request (its event).
    pub(crate) async fn dispatch(
        &self,
        req: &Request,
        request: String,
        jobs: Jobs,
        timeout: Duration,
    ) -> Option<Reply> {
        let Jobs {
            targets,
            command,
            text,
            fan_out,
        } = jobs;
        let thread_ts = req.thread_ts.clone().or_else(|| req.ts.clone());
        let new: Vec<NewJob> = targets
            .iter()
            .map(|t| NewJob {
                request: request.clone(),
                target: t.clone(),
                command: command.clone(),
                text: text.clone(),
                user_id: req.user.clone(),
                channel: req.channel.clone(),
                team: req.team.clone(),
                thread_ts: thread_ts.clone(),
                event_json: req.raw.to_string(),
                origin: self.host.clone(),
                deadline: timeout,
            })
            .collect();
        tracing::info!(command = %command, user = %req.user, channel = %req.channel, "addressed to {}", targets.join(", "));
        if let Err(e) = self.pool.run(move |c| jobs::create(c, &new)).await {
            return Some(Reply {
                text: format!(
                    ":x: I could not hand `{command}` to {}: {e}",
                    targets.join(", ")
                ),
                threaded: true,
            });
        }
        if !fan_out {
            return None;
        }
        let end = Instant::now() + timeout + GRACE;
        let states = loop {
            let r = request.clone();
            let s = self
                .pool
                .run(move |c| jobs::states(c, &r))
                .await
                .unwrap_or_default();
            let open = s.iter().any(|(_, st, _)| st == "queued" || st == "running");
            if !open || Instant::now() >= end {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let r = request.clone();
        let _ = self.pool.run(move |c| jobs::expire(c, &r)).await;
        Some(Reply {
            text: summary(&command, &states, timeout),
            threaded: true,
        })
    }
}

/// One line summing up a fan-out: who answered, who failed, who went away,
/// who did not answer in time.
pub(crate) fn summary(
    command: &str,
    states: &[(String, String, Option<String>)],
    timeout: Duration,
) -> String {
    let pick = |f: &dyn Fn(&str, Option<&str>) -> bool| -> Vec<String> {
        states
            .iter()
            .filter(|(_, s, o)| f(s, o.as_deref()))
            .map(|(h, _, _)| h.clone())
            .collect()
    };
    let answered = pick(&|s, o| s == "done" && o == Some("ok"));
    let failed = pick(&|s, o| s == "done" && o != Some("ok"));
    let lost = pick(&|s, _| s == "lost");
    let silent = pick(&|s, _| s == "queued" || s == "running" || s == "expired");
    let mut parts = Vec::new();
    if !answered.is_empty() {
        parts.push(format!("answered: {}", answered.join(", ")));
    }
    if !failed.is_empty() {
        parts.push(format!("failed: {}", failed.join(", ")));
    }
    if !lost.is_empty() {
        parts.push(format!("went away: {}", lost.join(", ")));
    }
    if !silent.is_empty() {
        parts.push(format!(
            "no answer within {}: {}",
            crate::clock::human(timeout),
            silent.join(", ")
        ));
    }
    format!(
        "`{command}` on {}: {}.",
        crate::text::count(states.len() as u64, "host", "hosts"),
        parts.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, tags: &[&str], commands: &[&str], live: bool) -> Member {
        Member {
            name: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            version: "0.1.0".into(),
            commands: commands.iter().map(|c| c.to_string()).collect(),
            seen_s: 200.0,
            live,
            slots: 0,
            jobs_running: 0,
            outbox_depth: 0,
        }
    }

    #[test]
    fn addresses_are_read_off_the_front() {
        assert_eq!(address("on web-2 disk /var"), Some(("web-2", "disk /var")));
        assert_eq!(address("  on all   uptime"), Some(("all", "uptime")));
        assert_eq!(address("on web-2"), None);
        assert_eq!(address("onward"), None);
        assert_eq!(address("disk on web-2"), None);
    }

    #[test]
    fn a_plan_per_kind_of_request() {
        let config: Config =
            toml::from_str("[[command]]\nname = \"disk\"\nrun = [\"/bin/df\"]\n").unwrap();
        let ms = [
            m("db-1", &["db"], &["backup"], true),
            m("web-1", &["web"], &["disk"], true),
            m("web-2", &["web"], &["disk"], false),
        ];
        let jobs = |p: Plan| match p {
            Plan::Jobs(Jobs {
                targets, fan_out, ..
            }) => (targets, fan_out),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            jobs(plan(
                "on web-1 disk /var",
                ("U1", "C1"),
                &config,
                &ms,
                "db-1"
            )),
            (vec!["web-1".to_string()], false)
        );
        assert_eq!(
            jobs(plan("on web uptime", ("U1", "C1"), &config, &ms, "db-1")),
            (vec!["web-1".to_string()], true)
        );
        assert!(jobs(plan("on all uptime", ("U1", "C1"), &config, &ms, "db-1")).1);
        assert!(
            matches!(plan("on web-2 disk", ("U1", "C1"), &config, &ms, "db-1"), Plan::Answer(a) if a.contains("has not been seen"))
        );
        assert!(
            matches!(plan("on mail disk", ("U1", "C1"), &config, &ms, "db-1"), Plan::Answer(a) if a.contains("no host or tag `mail`") && a.contains("db-1, web-1"))
        );
        // Unaddressed: here when defined here, else where it is defined.
        assert_eq!(
            plan("disk /var", ("U1", "C1"), &config, &ms, "web-1"),
            Plan::Local
        );
        assert_eq!(
            plan("ping", ("U1", "C1"), &config, &ms, "web-1"),
            Plan::Local
        );
        assert_eq!(
            jobs(plan("backup now", ("U1", "C1"), &config, &ms, "web-1")),
            (vec!["db-1".to_string()], false)
        );
        assert_eq!(
            plan("nothing", ("U1", "C1"), &config, &ms, "web-1"),
            Plan::Local
        );
    }

    #[test]
    fn the_receiving_host_checks_its_own_access_list_first() {
        let config: Config = toml::from_str(
            "[[command]]\nname = \"disk\"\nrun = [\"/bin/df\"]\nallow_users = [\"U9\"]\n",
        )
        .unwrap();
        let ms = [m("web-1", &["web"], &["disk"], true)];
        assert!(matches!(
            plan("on web-1 disk", ("U1", "C1"), &config, &ms, "db-1"),
            Plan::Answer(a) if a.contains("may not run `disk`")
        ));
        assert!(matches!(
            plan("on web-1 disk", ("U9", "C1"), &config, &ms, "db-1"),
            Plan::Jobs(_)
        ));
    }

    #[test]
    fn a_fan_out_is_summed_up() {
        let s = |h: &str, st: &str, o: Option<&str>| {
            (h.to_string(), st.to_string(), o.map(str::to_string))
        };
        let text = summary(
            "uptime",
            &[
                s("a", "done", Some("ok")),
                s("b", "done", Some("failed")),
                s("c", "lost", None),
                s("d", "expired", None),
            ],
            Duration::from_secs(30),
        );
        assert_eq!(
            text,
            "`uptime` on 4 hosts: answered: a; failed: b; went away: c; no answer within 30s: d."
        );
    }
}
