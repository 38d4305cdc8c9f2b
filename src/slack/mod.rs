//! Everything that speaks to Slack: the Web API (`web`), the Socket Mode
//! frames (`envelope`), one Socket Mode connection (`socket`), the set of
//! connections the bot holds (`pool`), the way from a socket to the bot
//! (`handoff`: record, ack, queue), and TLS for both (`tls`).

pub(crate) mod envelope;
pub(crate) mod handoff;
pub(crate) mod pool;
pub(crate) mod socket;
pub(crate) mod web;
