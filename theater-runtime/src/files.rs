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
/// error): its size is checked before anything is allocated, and the read stops one byte past the bound in case
/// the file grows meanwhile.
///
/// # Errors
/// `not a regular file`, `<n> bytes exceed <limit> (<max>)`, or the I/O error.
pub fn read_bounded(file: File, max: u64, limit: &str) -> Result<Vec<u8>, String> {
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    let too_big = |n: u64| format!("{n} bytes exceed {limit} ({max})");
    if meta.len() > max {
        return Err(too_big(meta.len()));
    }
    // Grown as it is read past 1 MiB (a file's length is a claim, and `max` may be large).
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len().min(1 << 20)).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}
