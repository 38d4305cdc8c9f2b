//! The bot's life story, and the one place it is kept: each run (started,
//! ended cleanly or not) and each exit with its cause, so the first
//! connection after a crash can say in Slack what happened and how often, and
//! `status` can show the last crash.

use rusqlite::{params, OptionalExtension, Row};

use super::{ms, sql_ms, Store, StoreError};

/// How a bot process ended, as its supervisor (or systemd) saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NewExit {
    /// When it ended.
    pub(crate) at_ms: u64,
    /// `run` or `daemon`.
    pub(crate) mode: String,
    /// In words: "killed by signal 9 (SIGKILL)", "exit code 3", "hung: …".
    pub(crate) cause: String,
    /// Whether it was asked to end: clean exits are never announced.
    pub(crate) clean: bool,
    /// Its exit code, if it exited.
    pub(crate) code: Option<i32>,
    /// The signal that ended it, if one did.
    pub(crate) signal: Option<i32>,
    /// Whether its supervisor ended it for not sending heartbeats.
    pub(crate) hang: bool,
    /// How long it had run, when known.
    pub(crate) lifetime_ms: Option<u64>,
}

/// A recorded exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exit {
    /// Its row.
    pub(crate) id: i64,
    /// When it ended.
    pub(crate) at_ms: u64,
    /// In words.
    pub(crate) cause: String,
    /// Its exit code, if it exited.
    pub(crate) code: Option<i32>,
    /// The signal that ended it, if one did.
    pub(crate) signal: Option<i32>,
    /// Whether its supervisor ended it for not sending heartbeats.
    pub(crate) hang: bool,
    /// From its end to the next bot's hello, once known.
    pub(crate) downtime_ms: Option<u64>,
}

fn exit(r: &Row) -> rusqlite::Result<Exit> {
    Ok(Exit {
        id: r.get("id")?,
        at_ms: ms(r.get("at_ms")?),
        cause: r.get("cause")?,
        code: r.get("code")?,
        signal: r.get("signal")?,
        hang: r.get("hang")?,
        downtime_ms: r.get::<_, Option<i64>>("downtime_ms")?.map(ms),
    })
}

impl Store {
    /// Records an exit; returns its row.
    pub(crate) fn record_exit(&mut self, e: &NewExit) -> Result<i64, StoreError> {
        self.run(|c| {
            c.execute(
                "INSERT INTO exits(at_ms, mode, cause, clean, announced, code, signal, hang, lifetime_ms)
                 VALUES(?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7, ?8)",
                params![
                    sql_ms(e.at_ms),
                    e.mode,
                    e.cause,
                    e.clean,
                    e.code,
                    e.signal,
                    e.hang,
                    e.lifetime_ms.map(sql_ms)
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// The bot is back: how long it was down after exit `id`.
    pub(crate) fn set_downtime(&mut self, id: i64, downtime_ms: u64) -> Result<(), StoreError> {
        self.run(|c| {
            c.execute(
                "UPDATE exits SET downtime_ms = ?2 WHERE id = ?1",
                params![id, sql_ms(downtime_ms)],
            )
            .map(|_| ())
        })
    }

    /// A run starts; returns its row. If the previous run never ended cleanly
    /// and nobody recorded why, an exit of unknown cause is recorded for it.
    pub(crate) fn begin_run(
        &mut self,
        pid: u32,
        mode: &str,
        now_ms: u64,
    ) -> Result<i64, StoreError> {
        self.run(|c| {
            let tx = c.transaction()?;
            let prev: Option<(i64, Option<bool>, i64)> = tx
                .query_row("SELECT started_ms, clean, pid FROM runs ORDER BY id DESC LIMIT 1", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            // Never ended (killed), or ended knowing it was not clean (orphaned).
            if let Some((started, None | Some(false), pid)) = prev {
                let explained: i64 = tx.query_row("SELECT COUNT(*) FROM exits WHERE at_ms > ?1", [started], |r| r.get(0))?;
                if explained == 0 {
                    tx.execute(
                        "INSERT INTO exits(at_ms, mode, cause, clean, announced) VALUES(?1, ?2, ?3, 0, 0)",
                        params![sql_ms(now_ms), mode, format!("the previous bot (pid {pid}) stopped without a clean shutdown; its cause was not recorded")],
                    )?;
                }
            }
            tx.execute("INSERT INTO runs(pid, mode, started_ms) VALUES(?1, ?2, ?3)", params![pid, mode, sql_ms(now_ms)])?;
            let run_id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(run_id)
        })
    }

    /// A run ends; `clean` when by request.
    pub(crate) fn end_run(
        &mut self,
        run_id: i64,
        clean: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.run(|c| {
            c.execute(
                "UPDATE runs SET ended_ms = ?2, clean = ?3 WHERE id = ?1",
                params![run_id, sql_ms(now_ms), clean],
            )
            .map(|_| ())
        })
    }

    /// Unclean exits not yet reported in Slack, oldest first.
    pub(crate) fn unannounced_exits(&mut self) -> Result<Vec<Exit>, StoreError> {
        self.run(|c| {
            let mut stmt =
                c.prepare("SELECT * FROM exits WHERE clean = 0 AND announced = 0 ORDER BY id")?;
            let rows = stmt.query_map([], exit)?;
            rows.collect()
        })
    }

    /// Marks exits up to `last_id` as reported.
    pub(crate) fn mark_announced(&mut self, last_id: i64) -> Result<(), StoreError> {
        self.run(|c| {
            c.execute("UPDATE exits SET announced = 1 WHERE id <= ?1", [last_id])
                .map(|_| ())
        })
    }

    /// Unclean exits since `since_ms`.
    pub(crate) fn unclean_exits_since(&mut self, since_ms: u64) -> Result<u64, StoreError> {
        self.run(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM exits WHERE clean = 0 AND at_ms >= ?1",
                [sql_ms(since_ms)],
                |r| r.get(0),
            )
        })
    }

    /// Unclean exits ever recorded, by kind of cause (`hang`, `watchdog`,
    /// `signal`, `exit_code`, `unknown`), for the restart counters.
    pub(crate) fn unclean_exits_by_cause(&mut self) -> Result<Vec<(String, u64)>, StoreError> {
        self.run(|c| {
            let mut q = c.prepare(
                "SELECT CASE
                     WHEN hang <> 0 THEN 'hang'
                     WHEN cause LIKE '%watchdog%' THEN 'watchdog'
                     WHEN signal IS NOT NULL THEN 'signal'
                     WHEN code IS NOT NULL THEN 'exit_code'
                     ELSE 'unknown' END AS kind, COUNT(*)
                 FROM exits WHERE clean = 0 GROUP BY kind ORDER BY kind",
            )?;
            let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// The most recent unclean exit.
    pub(crate) fn last_unclean_exit(&mut self) -> Result<Option<Exit>, StoreError> {
        self.run(|c| {
            c.query_row(
                "SELECT * FROM exits WHERE clean = 0 ORDER BY id DESC LIMIT 1",
                [],
                exit,
            )
            .optional()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_store;

    #[test]
    fn an_unexplained_end_is_recorded_once() {
        let (_d, mut s) = temp_store();
        let r1 = s.begin_run(10, "run", 1000).unwrap();
        s.end_run(r1, true, 2000).unwrap();
        s.begin_run(11, "run", 3000).unwrap();
        assert!(
            s.unannounced_exits().unwrap().is_empty(),
            "a clean end is no exit"
        );
        // pid 11 dies without a word; pid 12 starts.
        let r12 = s.begin_run(12, "run", 5000).unwrap();
        let e = s.unannounced_exits().unwrap();
        assert_eq!(e.len(), 1);
        assert!(e[0].cause.contains("pid 11"), "{}", e[0].cause);
        s.mark_announced(e[0].id).unwrap();
        assert!(s.unannounced_exits().unwrap().is_empty());
        // pid 12 knows its end is not clean (its supervisor died): it counts too.
        s.end_run(r12, false, 6000).unwrap();
        s.begin_run(13, "run", 7000).unwrap();
        let e = s.unannounced_exits().unwrap();
        assert!(e.len() == 1 && e[0].cause.contains("pid 12"), "{e:?}");
    }

    #[test]
    fn a_recorded_cause_wins_and_keeps_its_details() {
        let (_d, mut s) = temp_store();
        s.begin_run(11, "run", 1000).unwrap();
        let id = s
            .record_exit(&NewExit {
                at_ms: 2000,
                mode: "run".into(),
                cause: "killed by signal KILL".into(),
                signal: Some(9),
                lifetime_ms: Some(1000),
                ..NewExit::default()
            })
            .unwrap();
        s.set_downtime(id, 7).unwrap();
        s.begin_run(12, "run", 3000).unwrap();
        let e = s.unannounced_exits().unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].cause.as_str(), e[0].signal, e[0].downtime_ms),
            ("killed by signal KILL", Some(9), Some(7))
        );
        assert_eq!(s.unclean_exits_since(0).unwrap(), 1);
        s.record_exit(&NewExit {
            at_ms: 4000,
            mode: "run".into(),
            cause: "stopped".into(),
            clean: true,
            ..NewExit::default()
        })
        .unwrap();
        assert_eq!(
            s.unclean_exits_since(0).unwrap(),
            1,
            "clean exits do not count"
        );
        assert_eq!(s.last_unclean_exit().unwrap().unwrap().id, id);
    }
}
