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

use tracing::Level;
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

/// The number of a facility name, if it is one.
pub fn facility(name: &str) -> Option<u8> {
    FACILITIES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Every facility name, for error messages.
pub fn facility_names() -> String {
    FACILITIES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A shared connection to syslog.
#[derive(Debug, Clone)]
pub struct Syslog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    facility: u8,
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
    pub fn new(path: &Path, facility: u8, tag: &str) -> Syslog {
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
    pub fn available(path: &Path) -> bool {
        UnixDatagram::unbound()
            .and_then(|s| s.connect(path))
            .is_ok()
    }

    /// Lines dropped because syslog was unreachable.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Sends one message at `severity` (0 emergency … 7 debug).
    pub fn send(&self, severity: u8, msg: &str) {
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
                            4,
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
pub fn format_line(facility: u8, severity: u8, tag: &str, pid: u32, msg: &str) -> String {
    let pri = u16::from(facility) * 8 + u16::from(severity.min(7));
    let stamp = crate::clock::rfc3164(crate::clock::now_ms() / 1000);
    let msg = msg.trim_end_matches('\n');
    format!("<{pri}>{stamp} {tag}[{pid}]: {msg}")
}

/// One log line being formatted; sent when dropped.
pub struct LineWriter {
    syslog: Syslog,
    severity: u8,
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
            severity: 6,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter {
        LineWriter {
            syslog: self.clone(),
            severity: crate::logging::severity(meta.level()),
            buf: Vec::new(),
        }
    }
}

/// The severity for a level, re-exported for callers that log by hand.
pub fn severity(level: Level) -> u8 {
    crate::logging::severity(&level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let l = format_line(3, 6, "slackbotd", 42, "hello\n");
        assert!(l.starts_with("<30>"), "{l}");
        assert!(l.ends_with(" slackbotd[42]: hello"), "{l}");
        assert_eq!(facility("local3"), Some(19));
        assert_eq!(facility("nope"), None);
    }

    #[test]
    fn a_stalled_syslog_never_blocks_the_caller() {
        let dir =
            std::env::temp_dir().join(format!("slackbotd-syslog-stall-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let _listener_that_never_reads = UnixDatagram::bind(&path).unwrap();
        let log = Syslog::new(&path, 3, "t");
        let t = Instant::now();
        for i in 0..20_000 {
            log.send(6, &format!("line {i} {}", "x".repeat(200)));
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
        let log = Syslog::new(&path, 3, "t");
        log.send(6, "lost: nobody listens");
        assert_eq!(log.dropped(), 1);
        let l = UnixDatagram::bind(&path).unwrap();
        l.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        std::thread::sleep(RETRY_EVERY);
        log.send(6, "first");
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
        log.send(6, "second");
        let n = l2.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("second"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
