//! The bot's life story: each run (started, ended cleanly or not) and each
//! unclean exit with its cause, so the first connection after a crash can
//! say in Slack what happened, and how often.

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};

/// An unclean exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub id: i64,
    pub at_ms: i64,
    pub mode: String,
    pub cause: String,
}

/// What `begin_run` learned about the run before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStart {
    /// This run's row.
    pub run_id: i64,
}

impl Store {
    /// Records an exit (from the daemon's supervisor, or systemd's ExecStopPost).
    pub fn record_exit(
        &mut self,
        at_ms: i64,
        mode: &str,
        cause: &str,
        clean: bool,
    ) -> Result<(), StoreError> {
        self.run(|c| {
            c.execute(
                "INSERT INTO exits(at_ms, mode, cause, clean, announced) VALUES(?1, ?2, ?3, ?4, ?4)",
                params![at_ms, mode, cause, clean],
            )
            .map(|_| ())
        })
    }

    /// A run starts. If the previous run never ended cleanly and nobody
    /// recorded why, an exit of unknown cause is recorded for it.
    pub fn begin_run(&mut self, pid: u32, mode: &str, now_ms: i64) -> Result<RunStart, StoreError> {
        self.run(|c| {
            let tx = c.transaction()?;
            let prev: Option<(i64, Option<i64>, i64)> = tx
                .query_row("SELECT started_ms, ended_ms, pid FROM runs ORDER BY id DESC LIMIT 1", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            if let Some((started, None, pid)) = prev {
                let explained: i64 = tx.query_row("SELECT COUNT(*) FROM exits WHERE at_ms >= ?1", [started], |r| r.get(0))?;
                if explained == 0 {
                    tx.execute(
                        "INSERT INTO exits(at_ms, mode, cause, clean, announced) VALUES(?1, ?2, ?3, 0, 0)",
                        params![now_ms, mode, format!("the previous bot (pid {pid}) stopped without a clean shutdown; its cause was not recorded")],
                    )?;
                }
            }
            tx.execute("INSERT INTO runs(pid, mode, started_ms) VALUES(?1, ?2, ?3)", params![pid, mode, now_ms])?;
            let run_id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(RunStart { run_id })
        })
    }

    /// A run ends; `clean` when by request.
    pub fn end_run(&mut self, run_id: i64, clean: bool, now_ms: i64) -> Result<(), StoreError> {
        self.run(|c| {
            c.execute(
                "UPDATE runs SET ended_ms = ?2, clean = ?3 WHERE id = ?1",
                params![run_id, now_ms, clean],
            )
            .map(|_| ())
        })
    }

    /// Unclean exits not yet reported in Slack, oldest first.
    pub fn unannounced_exits(&mut self) -> Result<Vec<Exit>, StoreError> {
        self.run(|c| {
            let mut stmt = c.prepare("SELECT id, at_ms, mode, cause FROM exits WHERE clean = 0 AND announced = 0 ORDER BY id")?;
            let rows = stmt.query_map([], |r| {
                Ok(Exit {
                    id: r.get(0)?,
                    at_ms: r.get(1)?,
                    mode: r.get(2)?,
                    cause: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Marks exits up to `last_id` as reported.
    pub fn mark_announced(&mut self, last_id: i64) -> Result<(), StoreError> {
        self.run(|c| {
            c.execute("UPDATE exits SET announced = 1 WHERE id <= ?1", [last_id])
                .map(|_| ())
        })
    }

    /// Unclean exits since `since_ms`.
    pub fn unclean_exits_since(&mut self, since_ms: i64) -> Result<i64, StoreError> {
        self.run(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM exits WHERE clean = 0 AND at_ms >= ?1",
                [since_ms],
                |r| r.get(0),
            )
        })
    }

    /// The most recent unclean exit.
    pub fn last_unclean_exit(&mut self) -> Result<Option<Exit>, StoreError> {
        self.run(|c| {
            c.query_row(
                "SELECT id, at_ms, mode, cause FROM exits WHERE clean = 0 ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(Exit {
                        id: r.get(0)?,
                        at_ms: r.get(1)?,
                        mode: r.get(2)?,
                        cause: r.get(3)?,
                    })
                },
            )
            .optional()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::tests::temp_store;

    #[test]
    fn an_unexplained_end_is_recorded_once() {
        let (_d, mut s) = temp_store();
        let r1 = s.begin_run(10, "run", 1000).unwrap();
        s.end_run(r1.run_id, true, 2000).unwrap();
        s.begin_run(11, "run", 3000).unwrap();
        assert!(
            s.unannounced_exits().unwrap().is_empty(),
            "a clean end is no exit"
        );
        // pid 11 dies without a word; pid 12 starts.
        s.begin_run(12, "run", 5000).unwrap();
        let e = s.unannounced_exits().unwrap();
        assert_eq!(e.len(), 1);
        assert!(e[0].cause.contains("pid 11"), "{}", e[0].cause);
        s.mark_announced(e[0].id).unwrap();
        assert!(s.unannounced_exits().unwrap().is_empty());
    }

    #[test]
    fn a_recorded_cause_wins() {
        let (_d, mut s) = temp_store();
        s.begin_run(11, "run", 1000).unwrap();
        s.record_exit(2000, "run", "killed by signal KILL", false)
            .unwrap();
        s.begin_run(12, "run", 3000).unwrap();
        let e = s.unannounced_exits().unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].cause, "killed by signal KILL");
        assert_eq!(s.unclean_exits_since(0).unwrap(), 1);
        s.record_exit(4000, "run", "stopped", true).unwrap();
        assert_eq!(
            s.unclean_exits_since(0).unwrap(),
            1,
            "clean exits do not count"
        );
    }
}
