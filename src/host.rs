//! This machine's name, as `status`, announcements and the fleet show it.

/// The machine's host name (`unknown-host` if it cannot be read).
pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".to_string())
}
