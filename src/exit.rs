//! Exit codes: sysexits(3) for every command, LSB codes for `status`.
//!
//! Every error type in the crate maps itself to one of these through
//! [`ExitCode`], so `main` never guesses.

/// A process exit status with a name a reader understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExitCode(pub u8);

impl ExitCode {
    /// EX_USAGE: the command line was wrong.
    pub(crate) const USAGE: ExitCode = ExitCode(64);
    /// EX_DATAERR: input data (a message, a state file) was malformed.
    pub(crate) const DATAERR: ExitCode = ExitCode(65);
    /// EX_NOINPUT: an input file did not exist or was not readable.
    pub(crate) const NOINPUT: ExitCode = ExitCode(66);
    /// EX_UNAVAILABLE: a service (Slack, systemd) could not be reached.
    pub(crate) const UNAVAILABLE: ExitCode = ExitCode(69);
    /// EX_SOFTWARE: an internal error.
    pub(crate) const SOFTWARE: ExitCode = ExitCode(70);
    /// EX_OSERR: an operating-system error (fork, exec).
    pub(crate) const OSERR: ExitCode = ExitCode(71);
    /// EX_CANTCREAT: a file could not be created.
    pub(crate) const CANTCREAT: ExitCode = ExitCode(73);
    /// EX_IOERR: an I/O error (a full disk, for instance).
    pub(crate) const IOERR: ExitCode = ExitCode(74);
    /// EX_TEMPFAIL: try again later (another instance holds the lock).
    pub(crate) const TEMPFAIL: ExitCode = ExitCode(75);
    /// EX_NOPERM: permission denied.
    pub(crate) const NOPERM: ExitCode = ExitCode(77);
    /// EX_CONFIG: bad configuration or credentials. The systemd unit sets
    /// `RestartPreventExitStatus=78`, so this never becomes a crash loop.
    pub(crate) const CONFIG: ExitCode = ExitCode(78);

    /// The numeric code.
    pub(crate) fn code(self) -> i32 {
        i32::from(self.0)
    }
}

/// Implemented by every error that can end the process.
pub(crate) trait HasExitCode {
    /// The sysexits code this error should end the process with.
    fn exit_code(&self) -> ExitCode;
}
