//! The sandbox: guest paths checked against the path rules before anything is touched, then every access made
//! through a `cap_std::fs::Dir` opened on the root, so the OS refuses any resolution that leaves it (symlinks
//! included), with no gap between check and use — as wasmtime-wasi does for preopened directories.

use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};

/// One actor's root directory.
#[derive(Clone, Debug)]
pub struct Sandbox {
    root: Arc<Dir>,
    host_root: PathBuf,
}

/// Longest guest path, in bytes (Linux's `PATH_MAX`). Checked before anything else, so a longer path is refused
/// without being read, and the error does not repeat it.
pub const MAX_PATH_BYTES: usize = 4096;

/// Most components (`a/b/c` has three) in a guest path. cap-std's `create_dir_all` recurses once per missing
/// component and `remove_dir_all` once per level of the tree; where `openat2` is unavailable (older kernels,
/// seccomp) cap-std also resolves paths itself. A bounded depth keeps all of these far from the end of a
/// blocking thread's stack, and since every guest path starts at the root, the guest's file functions cannot
/// build a tree deeper than this.
pub const MAX_PATH_COMPONENTS: usize = 256;

/// A guest path relative to the root: `""` and `"."` are the root; absolute paths (`/x`, `\x`, `C:`), `..`
/// components and NUL bytes are errors, and so are paths longer than [`MAX_PATH_BYTES`] or with more than
/// [`MAX_PATH_COMPONENTS`] components (`.` not counted).
///
/// # Errors
/// `invalid path: more than 4096 bytes`, `invalid path: more than 256 components`, or
/// `invalid path "<path>": <reason>`.
pub fn check_path(path: &str) -> Result<PathBuf, String> {
    if path.len() > MAX_PATH_BYTES {
        return Err(format!("invalid path: more than {MAX_PATH_BYTES} bytes"));
    }
    if path.contains('\0') {
        return Err(format!("invalid path {path:?}: NUL byte"));
    }
    let bytes = path.as_bytes();
    if path.starts_with('/') || path.starts_with('\\') || (bytes.len() >= 2 && bytes[1] == b':') {
        return Err(format!(
            "invalid path {path:?}: absolute paths are not allowed"
        ));
    }
    let mut out = PathBuf::new();
    let mut components = 0;
    for component in Path::new(path).components() {
        match component {
            Component::Normal(c) => {
                components += 1;
                if components > MAX_PATH_COMPONENTS {
                    return Err(format!(
                        "invalid path: more than {MAX_PATH_COMPONENTS} components"
                    ));
                }
                out.push(c);
            }
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!("invalid path {path:?}: `..` is not allowed"));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "invalid path {path:?}: absolute paths are not allowed"
                ));
            }
        }
    }
    Ok(if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    })
}

fn io(what: &str, path: &Path) -> impl Fn(std::io::Error) -> String {
    let what = format!("{what} {}", path.display());
    move |e| format!("{what}: {e}")
}

impl Sandbox {
    /// Opens `root`, which must be an existing directory.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        let dir = Dir::open_ambient_dir(root, ambient_authority())?;
        Ok(Self {
            root: Arc::new(dir),
            host_root: root.canonicalize()?,
        })
    }

    /// The root on the host.
    pub fn host_root(&self) -> &Path {
        &self.host_root
    }

    /// The whole file, if it has at most `max` bytes. Its size is checked before anything is allocated (a sparse
    /// file can claim terabytes), and the read stops one byte past `max` in case the file grows meanwhile.
    ///
    /// # Errors
    /// `read <path>: <n> bytes exceed max_read_bytes (<max>)`, or the I/O error.
    pub fn read(&self, path: &Path, max: u64) -> Result<Vec<u8>, String> {
        let file = self.open_regular(path, OpenOptions::new().read(true), "read")?;
        theater_runtime::files::read_bounded(file.into_std(), max, "max_read_bytes")
            .map_err(|e| format!("read {}: {e}", path.display()))
    }

    /// Creates or truncates the file (its parent must exist).
    ///
    /// # Errors
    /// `write <path>: not a regular file` for a FIFO, a device or a socket there, or the I/O error.
    pub fn write(&self, path: &Path, content: &[u8]) -> Result<(), String> {
        let options = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .clone();
        let mut file = self.open_regular(path, &options, "write")?;
        std::io::Write::write_all(&mut file, content).map_err(io("write", path))
    }

    /// Opens `path` with `options`, non-blocking, and refuses anything but a regular file (`what` names the
    /// function in the error). A FIFO a command made in the root (or a device a `path` root holds) would block the
    /// open or the read of a blocking thread for good, beyond the actor's stop: a thread the host never gets back.
    fn open_regular(
        &self,
        path: &Path,
        options: &OpenOptions,
        what: &str,
    ) -> Result<cap_std::fs::File, String> {
        let mut options = options.clone();
        // The open itself does not wait for a FIFO's other end; reads and writes of a regular file ignore the flag.
        cap_std::fs::OpenOptionsExt::custom_flags(
            &mut options,
            theater_runtime::files::nonblocking_flag(),
        );
        let not_regular = || format!("{what} {}: not a regular file", path.display());
        let file = match self.root.open_with(path, &options) {
            Ok(file) => file,
            // A non-blocking open for writing of a FIFO nobody reads (or of a device without its driver).
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) => {
                return Err(not_regular());
            }
            Err(e) => return Err(io(what, path)(e)),
        };
        if !file.metadata().map_err(io(what, path))?.is_file() {
            return Err(not_regular());
        }
        Ok(file)
    }

    /// Entry names, sorted, if there are at most `max`. The directory is read one entry past `max` and no
    /// further, so a directory of millions of entries costs no more than one of `max + 1`.
    ///
    /// # Errors
    /// `list <path>: more than <max> entries (max_list_entries)`, or the I/O error.
    pub fn list(&self, path: &Path, max: usize) -> Result<Vec<String>, String> {
        let mut names = Vec::new();
        for entry in self.root.read_dir(path).map_err(io("list", path))? {
            let entry = entry.map_err(io("list", path))?;
            if names.len() == max {
                return Err(format!(
                    "list {}: more than {max} entries (max_list_entries)",
                    path.display()
                ));
            }
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// Deletes a file; refuses directories.
    pub fn delete_file(&self, path: &Path) -> Result<(), String> {
        let meta = self
            .root
            .symlink_metadata(path)
            .map_err(io("delete", path))?;
        if meta.is_dir() {
            return Err(format!(
                "delete {}: is a directory (use delete-dir)",
                path.display()
            ));
        }
        self.root.remove_file(path).map_err(io("delete", path))
    }

    /// Creates a directory and its parents; an existing one is fine.
    pub fn create_dir(&self, path: &Path) -> Result<(), String> {
        self.root.create_dir_all(path).map_err(io("create", path))
    }

    /// Deletes a directory recursively, never following symlinks, however deep the tree (a command the actor
    /// ran may have built it deeper than any path: [`theater_runtime::remove_tree`]); refuses the root.
    pub fn delete_dir(&self, path: &Path) -> Result<(), String> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err("delete-dir: refusing to delete the root".to_owned());
        };
        let opened;
        let parent = if parent.as_os_str().is_empty() {
            &*self.root
        } else {
            opened = self.root.open_dir(parent).map_err(io("delete", path))?;
            &opened
        };
        theater_runtime::remove_tree::remove_dir_all_at(parent.as_fd(), Path::new(name))
            .map_err(io("delete", path))
    }

    /// Whether the path exists (`Ok(false)` when missing).
    pub fn exists(&self, path: &Path) -> Result<bool, String> {
        self.root.try_exists(path).map_err(io("path-exists", path))
    }

    /// The host path of a directory inside the root, for a command's working directory; refuses one that
    /// resolves outside the root (through a symlink).
    pub fn host_dir(&self, path: &Path) -> Result<PathBuf, String> {
        self.root.open_dir(path).map_err(io("open", path))?;
        let host = self
            .host_root
            .join(path)
            .canonicalize()
            .map_err(io("open", path))?;
        if !host.starts_with(&self.host_root) {
            return Err(format!(
                "permission denied: {} leads outside the root",
                path.display()
            ));
        }
        Ok(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rules() {
        assert_eq!(check_path("").unwrap(), Path::new("."));
        assert_eq!(check_path(".").unwrap(), Path::new("."));
        assert_eq!(check_path("a/./b").unwrap(), Path::new("a/b"));
        for bad in [
            "../x",
            "a/../../x",
            "a/..",
            "/etc/passwd",
            "\\x",
            "C:x",
            "a\0b",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }

    /// A path's bytes and its components are bounded (cap-std recurses once per component in
    /// `create_dir_all`); exactly the bound passes, and the error names it without repeating the path.
    #[test]
    fn path_length_and_depth_are_bounded() {
        let deepest = "a/".repeat(MAX_PATH_COMPONENTS);
        assert_eq!(
            check_path(&deepest).unwrap().components().count(),
            MAX_PATH_COMPONENTS
        );
        assert_eq!(
            check_path(&format!("{deepest}a")).unwrap_err(),
            "invalid path: more than 256 components"
        );
        assert_eq!(
            check_path(&"a/".repeat(20_000)).unwrap_err(),
            "invalid path: more than 4096 bytes"
        );
        assert!(
            check_path(&"./".repeat(1000)).is_ok(),
            "`.` is not a component"
        );
        let longest = "x".repeat(MAX_PATH_BYTES);
        assert!(check_path(&longest).is_ok());
        assert_eq!(
            check_path(&format!("{longest}x")).unwrap_err(),
            "invalid path: more than 4096 bytes"
        );
    }

    /// A listing stops one entry past `max`: a directory of `max + 1` entries is an error naming the limit.
    #[test]
    fn listings_are_bounded() {
        let root = tempfile::tempdir().unwrap();
        let sb = Sandbox::open(root.path()).unwrap();
        for name in ["a", "b", "c"] {
            sb.write(Path::new(name), b"").unwrap();
        }
        assert_eq!(sb.list(Path::new("."), 3).unwrap(), ["a", "b", "c"]);
        assert_eq!(
            sb.list(Path::new("."), 2).unwrap_err(),
            "list .: more than 2 entries (max_list_entries)"
        );
        assert_eq!(
            sb.list(Path::new("."), 0).unwrap_err(),
            "list .: more than 0 entries (max_list_entries)"
        );
    }

    #[test]
    fn operations_stay_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"outside").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("link"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("linkdir")).unwrap();
        let sb = Sandbox::open(root.path()).unwrap();
        assert!(sb.read(Path::new("link"), 1024).is_err());
        assert!(sb.write(Path::new("link"), b"x").is_err());
        assert!(sb.host_dir(Path::new("linkdir")).is_err());
        assert_eq!(
            std::fs::read(outside.path().join("secret")).unwrap(),
            b"outside"
        );

        sb.create_dir(Path::new("a/b")).unwrap();
        sb.write(Path::new("a/b/f"), b"hi").unwrap();
        assert_eq!(sb.read(Path::new("a/b/f"), 1024).unwrap(), b"hi");
        assert_eq!(
            sb.list(Path::new("."), 10).unwrap(),
            ["a", "link", "linkdir"]
        );
        assert!(sb.delete_file(Path::new("a")).is_err());
        assert!(sb.exists(Path::new("a/b/f")).unwrap());
        assert!(!sb.exists(Path::new("missing")).unwrap());
        sb.delete_dir(Path::new("a")).unwrap();
        assert!(!sb.exists(Path::new("a")).unwrap());
        assert!(sb.delete_dir(Path::new(".")).is_err());
    }
}
