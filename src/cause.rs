//! An error's cause in a person's words: the operating system's reason
//! ("connection refused") or a failed name look-up, dug out of a chain of
//! library errors whose own messages are often written for programmers.

/// The cause of a failed connection in a few words: the operating system's
/// reason when there is one ("connection refused"), a failed name look-up,
/// or else the innermost error's message.
pub(crate) fn plain_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut innermost = e.to_string();
    let mut dns = false;
    while let Some(c) = cur {
        let text = c.to_string();
        dns |= text.contains("dns error") || text.contains("failed to lookup address");
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            let said = match io.kind() {
                K::ConnectionRefused => Some("connection refused"),
                K::ConnectionReset => Some("connection reset"),
                K::ConnectionAborted => Some("connection aborted"),
                K::TimedOut => Some("connection timed out"),
                K::HostUnreachable => Some("host unreachable"),
                K::NetworkUnreachable => Some("network unreachable"),
                K::AddrNotAvailable => Some("address not available"),
                _ => None,
            };
            if let Some(s) = said {
                return s.to_string();
            }
        }
        if !text.is_empty() {
            innermost = text;
        }
        cur = c.source();
    }
    if dns {
        return format!("cannot resolve the host name: {innermost}");
    }
    innermost
}

/// An error and each cause below it that says something new, joined by ": ".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        cur = c.source();
    }
    s
}
