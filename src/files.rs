//! Writing small state files safely where other users may have a say: the
//! temporary file is created fresh (`O_CREAT|O_EXCL|O_NOFOLLOW`, so a symlink
//! or a file planted under its name is never followed or reused), written,
//! and renamed over the target, so readers see the old or the new content,
//! never half of it.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The temporary name for `path`: beside it, unique to this process and call.
fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp.{}.{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    path.with_file_name(name)
}

/// Replaces `path` with `bytes`, created with `mode` (before the umask).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = temp_name(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Replaces `path` with `value` as JSON (mode 0644: state for `status`).
pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    write_atomic(path, &bytes, 0o644)
}

/// An I/O error in words, without Rust's "(os error N)".
pub(crate) fn plain_io(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

/// `f`, opened from `path`, if it is a regular file: a FIFO or a device
/// planted under a state file's name is refused.
pub(crate) fn regular(f: std::fs::File, path: &Path) -> std::io::Result<std::fs::File> {
    if f.metadata()?.is_file() {
        Ok(f)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not a regular file", path.display()),
        ))
    }
}

/// Reads a small state file that another user may have planted: never
/// through a symlink, never a FIFO or device (which could block or never
/// end), and never more than `cap` bytes.
pub(crate) fn read_small(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = regular(
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)?,
        path,
    )?;
    let mut bytes = Vec::new();
    f.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is larger than {cap} bytes", path.display()),
        ));
    }
    Ok(bytes)
}

/// The JSON value in `path` (at most 1 MiB, read as [`read_small`] does);
/// `None` if there is none or it does not parse.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&read_small(path, 1 << 20).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_never_follows_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("state.json");
        write_atomic(&target, b"one", 0o644).unwrap();
        write_atomic(&target, b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
        // A link where the file is: the link itself is replaced, its target untouched.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::fs::remove_file(&target).unwrap();
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        write_atomic(&target, b"three", 0o644).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&target).unwrap(), b"three");
        assert!(!std::fs::symlink_metadata(&target)
            .unwrap()
            .file_type()
            .is_symlink());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "no temporary file left behind");
    }

    #[test]
    fn a_planted_fifo_link_or_huge_file_is_refused_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Opening a FIFO for reading would block until a writer came.
        assert!(read_small(&fifo, 100).is_err());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(read_small(&link, 100).is_err());
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 101]).unwrap();
        assert!(read_small(&big, 100).is_err());
        std::fs::write(&big, b"{\"a\":1}").unwrap();
        assert_eq!(read_small(&big, 100).unwrap(), b"{\"a\":1}");
        assert_eq!(read_json::<serde_json::Value>(&big).unwrap()["a"], 1);
    }
}
