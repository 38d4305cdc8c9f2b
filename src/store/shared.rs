//! The store on a thread of its own. SQLite calls block (a commit waits for
//! the disk, a busy database for its `busy_timeout`), so the bot's tasks never
//! make them on the event loop: they send a closure over a bounded queue and
//! await its answer. When the queue is full, callers wait their turn, which
//! slows only the work that needs the store, never the acks.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Backend, StoreError};

/// How many store jobs may wait at once.
const QUEUE: usize = 256;

type Job = Box<dyn FnOnce(&mut dyn Backend) + Send>;

/// A handle to the store thread; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct SharedStore {
    /// The bounded queue to the store thread.
    jobs: mpsc::Sender<Job>,
    /// The database file, for messages.
    path: Arc<std::path::Path>,
}

impl SharedStore {
    /// Moves `store` (named `path` in messages) onto a new thread and
    /// returns the handle to it. The thread ends when the last handle is
    /// dropped.
    pub(crate) fn spawn(
        mut store: Box<dyn Backend>,
        path: &std::path::Path,
    ) -> std::io::Result<SharedStore> {
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
        let path: Arc<std::path::Path> = Arc::from(path);
        std::thread::Builder::new()
            .name("slackbotd-store".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    job(store.as_mut());
                }
            })?;
        Ok(SharedStore { jobs: tx, path })
    }

    /// Runs `f` on the store thread and returns what it returned.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Backend) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |s| {
            let _ = tx.send(f(s));
        });
        let gone = || StoreError::Sql {
            path: self.path.to_path_buf(),
            detail: "the store thread has stopped".into(),
        };
        self.jobs.send(job).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_run_in_order_off_the_caller() {
        let (_dir, store) = crate::store::tests::temp_store();
        let path = store.path.clone();
        let shared = SharedStore::spawn(Box::new(store), &path).unwrap();
        let me = std::thread::current().id();
        let there = shared
            .call(|_| Ok(std::thread::current().id()))
            .await
            .unwrap();
        assert_ne!(me, there, "the query ran on the store thread");
        let first = shared
            .call(|s| s.claim_event("Ev1", None, 1))
            .await
            .unwrap();
        let again = shared
            .call(|s| s.claim_event("Ev1", None, 2))
            .await
            .unwrap();
        use crate::store::dedup::Claim;
        assert_eq!((first, again), (Claim::New, Claim::Taken));
    }
}
