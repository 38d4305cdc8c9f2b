//! A syslog client for daemon mode: RFC 3164 datagrams on a Unix socket
//! (`/dev/log` by default), each stamped with the sending process's own pid.
//!
//! Written here rather than taken from the `syslog` crate, which captures the
//! pid when its formatter is built and never reconnects: this one reads the
//! pid per line and reconnects after syslogd restarts (at most once a second
//! while the socket is gone, dropping and counting lines meanwhile, so logging
//! can never block the bot).

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// Facility names and their numbers (RFC 3164).
const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// A syslog facility (RFC 3164), parsed once from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facility(u8);

impl Facility {
    /// `daemon`, the default for a system service.
    pub(crate) const DAEMON: Facility = Facility(3);

    /// The facility with this name (`daemon`, `local3`, …).
    pub(crate) fn from_name(name: &str) -> Result<Facility, String> {
        FACILITIES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| Facility(*v))
            .ok_or_else(|| {
                let names: Vec<&str> = FACILITIES.iter().map(|(n, _)| *n).collect();
                format!(
                    "{name:?} is not a syslog facility; use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// A syslog severity (RFC 5424 numbers: 3 error … 7 debug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Severity(u8);

impl Severity {
    /// `err`.
    pub(crate) const ERROR: Severity = Severity(3);
    /// `warning`.
    pub(crate) const WARNING: Severity = Severity(4);
    /// `info`.
    pub(crate) const INFO: Severity = Severity(6);
    /// `debug`.
    pub(crate) const DEBUG: Severity = Severity(7);

    /// The number, as journald's `<N>` prefix and the syslog priority use it.
    pub(crate) fn number(self) -> u8 {
        self.0
    }
}

impl From<&tracing::Level> for Severity {
    fn from(level: &tracing::Level) -> Severity {
        match *level {
            tracing::Level::ERROR => Severity::ERROR,
            tracing::Level::WARN => Severity::WARNING,
            tracing::Level::INFO => Severity::INFO,
            _ => Severity::DEBUG,
        }
    }
}

/// A shared connection to syslog.
#[derive(Debug, Clone)]
pub(crate) struct Syslog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    facility: Facility,
    tag: String,
    sock: Mutex<Conn>,
    dropped: AtomicU64,
}

#[derive(Debug)]
struct Conn {
    sock: Option<UnixDatagram>,
    last_attempt: Option<Instant>,
}

const RETRY_EVERY: Duration = Duration::from_secs(1);

impl Syslog {
    /// A client for the socket at `path`; connects lazily.
    pub(crate) fn new(path: &Path, facility: Facility, tag: &str) -> Syslog {
        Syslog {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                facility,
                tag: tag.to_string(),
                sock: Mutex::new(Conn {
                    sock: None,
                    last_attempt: None,
                }),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Whether a syslog socket exists at the path now.
    pub(crate) fn available(path: &Path) -> bool {
        UnixDatagram::unbound()
            .and_then(|s| s.connect(path))
            .is_ok()
    }

    /// Lines dropped because syslog was unreachable.
    #[cfg(test)]
    fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Sends one message at `severity`.
    pub(crate) fn send(&self, severity: Severity, msg: &str) {
        let line = format_line(
            self.inner.facility,
            severity,
            &self.inner.tag,
            std::process::id(),
            msg,
        );
        let mut c = self.inner.sock.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 0..2 {
            if c.sock.is_none() {
                let due = c.last_attempt.is_none_or(|t| t.elapsed() >= RETRY_EVERY) || attempt == 1;
                if !due {
                    break;
                }
                c.last_attempt = Some(Instant::now());
                // Non-blocking: a stalled syslogd makes lines drop (counted),
                // never the bot or the supervisor wait.
                c.sock = UnixDatagram::unbound()
                    .and_then(|s| s.connect(&self.inner.path).map(|_| s))
                    .and_then(|s| s.set_nonblocking(true).map(|_| s))
                    .ok();
                if c.sock.is_some() {
                    let lost = self.inner.dropped.swap(0, Ordering::Relaxed);
                    if lost > 0 {
                        let note = format_line(
                            self.inner.facility,
                            Severity::WARNING,
                            &self.inner.tag,
                            std::process::id(),
                            &format!("syslog was unreachable; {lost} log lines were lost"),
                        );
                        let _ = c.sock.as_ref().map(|s| s.send(note.as_bytes()));
                    }
                }
            }
            let Some(s) = &c.sock else { break };
            match s.send(line.as_bytes()) {
                Ok(_) => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => c.sock = None, // syslogd restarted: reconnect once
            }
            if attempt == 1 {
                break;
            }
        }
        self.inner.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// `<PRI>Mmm dd hh:mm:ss tag[pid]: msg` (RFC 3164, the time in UTC).
fn format_line(facility: Facility, severity: Severity, tag: &str, pid: u32, msg: &str) -> String {
    let pri = u16::from(facility.0) * 8 + u16::from(severity.0.min(7));
    let stamp = crate::clock::rfc3164(crate::clock::now_ms() / 1000);
    let msg = msg.trim_end_matches('\n');
    format!("<{pri}>{stamp} {tag}[{pid}]: {msg}")
}

/// One log line being formatted; sent when dropped.
pub(crate) struct LineWriter {
    syslog: Syslog,
    severity: Severity,
    buf: Vec<u8>,
}

impl io::Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.syslog
                .send(self.severity, &String::from_utf8_lossy(&self.buf));
        }
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            syslog: self.clone(),
            severity: Severity::INFO,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter {
        LineWriter {
            syslog: self.clone(),
            severity: Severity::from(meta.level()),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let l = format_line(Facility::DAEMON, Severity::INFO, "slackbotd", 42, "hello\n");
        assert!(l.starts_with("<30>"), "{l}");
        assert!(l.ends_with(" slackbotd[42]: hello"), "{l}");
        assert_eq!(Facility::from_name("local3"), Ok(Facility(19)));
        assert!(Facility::from_name("nope").unwrap_err().contains("local7"));
    }

    #[test]
    fn a_stalled_syslog_never_blocks_the_caller() {
        let dir =
            std::env::temp_dir().join(format!("slackbotd-syslog-stall-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let _listener_that_never_reads = UnixDatagram::bind(&path).unwrap();
        let log = Syslog::new(&path, Facility::DAEMON, "t");
        let t = Instant::now();
        for i in 0..20_000 {
            log.send(Severity::INFO, &format!("line {i} {}", "x".repeat(200)));
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t.elapsed()
        );
        assert!(
            log.dropped() > 0,
            "a full queue drops (and counts) instead of blocking"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reconnects_after_the_listener_comes_back() {
        let dir = std::env::temp_dir().join(format!("slackbotd-syslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let log = Syslog::new(&path, Facility::DAEMON, "t");
        log.send(Severity::INFO, "lost: nobody listens");
        assert_eq!(log.dropped(), 1);
        let l = UnixDatagram::bind(&path).unwrap();
        l.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        std::thread::sleep(RETRY_EVERY);
        log.send(Severity::INFO, "first");
        let mut buf = [0u8; 512];
        let n = l.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("1 log lines were lost"));
        let n = l.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("first"));
        // syslogd restarts: a new socket at the same path.
        drop(l);
        std::fs::remove_file(&path).unwrap();
        let l2 = UnixDatagram::bind(&path).unwrap();
        l2.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        log.send(Severity::INFO, "second");
        let n = l2.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("second"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
