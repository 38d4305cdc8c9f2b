//! Process supervision: the single-instance lock on the pidfile, the
//! heartbeat file and the hang rule, the double fork, and the supervisor
//! (its event loop in `supervisor`, its decisions in `policy`), with its
//! record of the current state, the one TERM-then-KILL escalation, and the
//! mark a deliberate stop leaves.

pub(crate) mod daemonize;
pub(crate) mod escalate;
pub(crate) mod heartbeat;
pub(crate) mod instance;
pub(crate) mod lock;
pub(crate) mod policy;
pub(crate) mod procfs;
pub(crate) mod record;
pub(crate) mod stopped;
pub(crate) mod supervisor;
