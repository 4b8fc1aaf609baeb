//! Reading whole files that others control (a manifest a peer names, content under a folder a guest may reach, a
//! file a guest's sandbox holds), bounded: `/dev/zero` would be read until the host ran out of memory, a FIFO
//! would block the reading thread for good, and a sparse file can claim terabytes.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Reads the file at `path` whole, as [`read_bounded`] does, opening it without blocking (a FIFO's open waits for
/// its other end).
///
/// # Errors
/// As [`read_bounded`], or the error of the open.
pub fn read_file_bounded(path: &Path, max: u64, limit: &str) -> Result<Vec<u8>, String> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, nonblocking_flag());
    let file = options.open(path).map_err(|e| e.to_string())?;
    read_bounded(file, max, limit)
}

/// The `O_NONBLOCK` flag, for opening a file that may be a FIFO (as `custom_flags` of an `OpenOptions`).
#[cfg(unix)]
pub fn nonblocking_flag() -> i32 {
    rustix::fs::OFlags::NONBLOCK.bits() as i32
}

/// Reads the open `file` whole, if it is a regular file of at most `max` bytes (`limit` names the bound in the
/// error): its size is checked before anything is allocated, and the file is read up to that size (a file that
/// grows meanwhile, a log being written, gives what it held when it was opened). A file of size 0 that yields
/// bytes is refused: the files of `/proc` are regular files of size 0 whose reads produce the host's own state
/// (`/proc/self/environ`: its environment, secrets included) or gigabytes (`/proc/self/pagemap`).
///
/// # Errors
/// `not a regular file`, `<n> bytes exceed <limit> (<max>)`, `yields bytes but its size is 0`, or the I/O error.
pub fn read_bounded(file: File, max: u64, limit: &str) -> Result<Vec<u8>, String> {
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    let size = meta.len();
    if size > max {
        return Err(format!("{size} bytes exceed {limit} ({max})"));
    }
    // Grown as it is read past 1 MiB (a file's length is a claim).
    let mut bytes = Vec::with_capacity(usize::try_from(size.min(1 << 20)).unwrap_or(0));
    file.take(size.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if size == 0 && !bytes.is_empty() {
        return Err(
            "yields bytes but its size is 0: not a file of stored contents (a /proc file?)"
                .to_owned(),
        );
    }
    bytes.truncate(usize::try_from(size).unwrap_or(usize::MAX));
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_size_0_that_yield_bytes_are_refused() {
        // Size 0, contents the process's environment.
        let err = read_file_bounded(Path::new("/proc/self/environ"), 1 << 20, "MAX").unwrap_err();
        assert!(err.starts_with("yields bytes but its size is 0"), "{err}");
        // A regular file is read whole, up to its bound.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_file_bounded(&path, 5, "MAX").unwrap(), b"12345");
        let err = read_file_bounded(&path, 4, "MAX").unwrap_err();
        assert_eq!(err, "5 bytes exceed MAX (4)");
    }
}
