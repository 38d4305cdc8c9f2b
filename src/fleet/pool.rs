//! A small pool of connections for the bot's own fleet queries (the
//! members, jobs to create and watch), run off the event loop on tokio's
//! blocking threads. Connections are kept for reuse, at most a few.

use std::sync::{Arc, Mutex};

use postgres::Client;

use super::db::{Db, FleetError};

/// Connections kept idle at most.
const KEEP: usize = 3;

/// The pool; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    db: Db,
    idle: Arc<Mutex<Vec<ClientBox>>>,
}

/// A client, which prints as nothing.
struct ClientBox(Client);

impl std::fmt::Debug for ClientBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Client")
    }
}

impl Pool {
    /// A pool of connections to `db`.
    pub(crate) fn new(db: Db) -> Pool {
        Pool {
            db,
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Runs `f` with a connection on a blocking thread.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, FleetError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || pool.run_blocking(f))
            .await
            .unwrap_or_else(|e| {
                Err(FleetError::Query {
                    target: self.db.target().to_string(),
                    why: format!("a query's thread ended: {e}"),
                })
            })
    }

    /// Runs `f` with a connection on this thread.
    pub(crate) fn run_blocking<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, FleetError> {
        let taken = self
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .filter(|c| !c.0.is_closed());
        let mut client = match taken {
            Some(c) => c.0,
            None => self.db.connect_within(std::time::Duration::from_secs(2))?,
        };
        match f(&mut client) {
            Ok(v) => {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                if idle.len() < KEEP {
                    idle.push(ClientBox(client));
                }
                Ok(v)
            }
            Err(e) => Err(self.db.classify(&e)),
        }
    }
}
