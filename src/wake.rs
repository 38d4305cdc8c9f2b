//! The wake socket: `slackbotd notify` pokes the running bot the moment a
//! message is queued, so the outbox goes out at once instead of at the next
//! poll. A datagram socket beside the pidfile; its path is worked out here
//! and nowhere else.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Notify;

/// The wake socket that belongs to a pidfile: same directory, `.wake`.
pub(crate) fn path_for(pidfile: &Path) -> PathBuf {
    pidfile.with_extension("wake")
}

/// Wakes `wake` whenever a datagram arrives at `path`; false (logged) when
/// the socket cannot be bound: the outbox is then polled only.
pub(crate) fn listen(path: &Path, wake: Arc<Notify>) -> bool {
    let _ = std::fs::remove_file(path);
    match tokio::net::UnixDatagram::bind(path) {
        Ok(sock) => {
            tokio::spawn(async move {
                let mut buf = [0u8; 16];
                while sock.recv(&mut buf).await.is_ok() {
                    wake.notify_one();
                }
            });
            true
        }
        Err(e) => {
            tracing::warn!(
                "cannot listen on {} ({e}); the outbox is checked every 2s instead",
                path.display()
            );
            false
        }
    }
}

/// Pokes the running bot behind `pidfile`; harmless when none runs.
pub(crate) fn poke(pidfile: &Path) {
    if let Ok(s) = std::os::unix::net::UnixDatagram::unbound() {
        let _ = s.send_to(b"!", path_for(pidfile));
    }
}
