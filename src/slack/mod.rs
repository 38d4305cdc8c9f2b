//! Everything that speaks to Slack: the Web API (`web`), the Socket Mode
//! frames (`envelope`), one Socket Mode connection (`socket`), the set of
//! connections the bot holds (`pool`), and reconnect timing (`backoff`).

pub mod backoff;
pub mod envelope;
pub mod pool;
pub mod socket;
pub mod tls;
pub mod web;
