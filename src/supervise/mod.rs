//! Process supervision primitives: the single-instance lock on the pidfile
//! and the heartbeat file that tells others whether the bot is healthy.

pub mod heartbeat;
pub mod lock;
