//! The fleet's members, as `sbd_hosts` lists them: each host's row is
//! rewritten by its agent every tick, and a host whose lease ran out is
//! gone until it writes again. `status --fleet`, the `status` and `help`
//! built-ins and the router's addressing read these.

use postgres::Client;
use serde::Serialize;

/// One member of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Member {
    /// Its name.
    pub(crate) name: String,
    /// Its tags.
    pub(crate) tags: Vec<String>,
    /// Its slackbotd version.
    pub(crate) version: String,
    /// The operator commands it defines.
    pub(crate) commands: Vec<String>,
    /// Seconds since it last wrote its row.
    pub(crate) seen_s: f64,
    /// Whether its lease holds: a live member.
    pub(crate) live: bool,
    /// Socket Mode connection slots it holds.
    pub(crate) slots: i64,
    /// Jobs it is running.
    pub(crate) jobs_running: i64,
    /// Notifications waiting in its own outbox (for the database).
    pub(crate) outbox_depth: i64,
}

/// Every member, live or not, by name.
pub(crate) fn list(c: &mut Client) -> Result<Vec<Member>, postgres::Error> {
    let rows = c.query(
        "SELECT h.name, h.tags, h.version, h.commands,
                EXTRACT(EPOCH FROM (now() - h.seen_at))::float8,
                h.lease_until > now(),
                (SELECT COUNT(*) FROM sbd_slots s WHERE s.host = h.name AND s.lease_until > now()),
                h.jobs_running::bigint, h.outbox_depth
         FROM sbd_hosts h ORDER BY h.name",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| Member {
            name: r.get(0),
            tags: r.get(1),
            version: r.get(2),
            commands: r.get(3),
            seen_s: r.get(4),
            live: r.get(5),
            slots: r.get(6),
            jobs_running: r.get(7),
            outbox_depth: r.get(8),
        })
        .collect())
}

/// Who `target` names among `members`: a live host by name, the live hosts
/// with a tag, or every live host for `all`.
pub(crate) fn resolve<'a>(members: &'a [Member], target: &str) -> Resolved<'a> {
    let live: Vec<&Member> = members.iter().filter(|m| m.live).collect();
    if target == "all" {
        return Resolved::Hosts(live);
    }
    if let Some(m) = members.iter().find(|m| m.name == target) {
        return if m.live {
            Resolved::Hosts(vec![m])
        } else {
            Resolved::Gone(m)
        };
    }
    let tagged: Vec<&Member> = live
        .into_iter()
        .filter(|m| m.tags.iter().any(|t| t == target))
        .collect();
    if tagged.is_empty() {
        Resolved::Unknown
    } else {
        Resolved::Hosts(tagged)
    }
}

/// What an address names.
#[derive(Debug, PartialEq)]
pub(crate) enum Resolved<'a> {
    /// These live hosts.
    Hosts(Vec<&'a Member>),
    /// A host the fleet knows, whose lease ran out.
    Gone(&'a Member),
    /// No host or tag of that name.
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, tags: &[&str], live: bool) -> Member {
        Member {
            name: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            version: "0.1.0".into(),
            commands: vec![],
            seen_s: 1.0,
            live,
            slots: 0,
            jobs_running: 0,
            outbox_depth: 0,
        }
    }

    #[test]
    fn names_tags_all_and_the_gone() {
        let ms = [
            m("db-1", &["db"], true),
            m("web-1", &["web"], true),
            m("web-2", &["web"], false),
        ];
        let names = |r: Resolved<'_>| match r {
            Resolved::Hosts(h) => h.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(names(resolve(&ms, "web-1")), ["web-1"]);
        assert_eq!(names(resolve(&ms, "web")), ["web-1"], "only live ones");
        assert_eq!(names(resolve(&ms, "all")), ["db-1", "web-1"]);
        assert_eq!(resolve(&ms, "web-2"), Resolved::Gone(&ms[2]));
        assert_eq!(resolve(&ms, "mail"), Resolved::Unknown);
    }
}
