//! Process supervision: the single-instance lock on the pidfile, the
//! heartbeat file that tells others whether the bot is healthy, the double
//! fork, and the daemon's supervisor with its restart record.

pub mod daemonize;
pub mod heartbeat;
pub mod lock;
pub mod record;
pub mod supervisor;
