//! Removing a directory tree that an actor's processes may have built, however deep: without recursion, with a
//! bounded number of open directories.
//!
//! `std::fs::remove_dir_all` recurses once per level of the tree, and cap-std's `Dir::remove_dir_all` holds a
//! directory open per level. A path is limited (`PATH_MAX`), a tree is not: a process an actor runs can build one
//! tens of thousands of levels deep (`mkdir a && cd a` in a loop). Measured here: removing a 30,000-level tree
//! overflows the 2 MiB stack of the thread that runs `std::fs::remove_dir_all`, which aborts the whole process
//! (every actor of the runtime with it), and cap-std's fails with "Too many open files".
//!
//! [`remove_dir_all`] and [`remove_dir_all_at`] keep their own stack of at most [`MAX_OPEN_DIRS`] open
//! directories. A directory found deeper than that is moved up into the tree's top directory under a fresh
//! name ([`MOVED_PREFIX`]) and removed from there later, so stack, memory and descriptors stay bounded whatever
//! the depth, and the work stays proportional to the tree's size. Symbolic links are removed, never followed
//! (every directory is opened with `O_NOFOLLOW`).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

/// Directories held open at once while removing a tree, the top one not counted: 64. Deeper directories are
/// moved up (see the [module docs](self)).
pub const MAX_OPEN_DIRS: usize = 64;

/// The name a directory moved up into the tree's top directory takes, followed by a number.
pub const MOVED_PREFIX: &str = ".theater-removing-";

/// Removes the directory at `path` and everything in it, never following symbolic links; a symbolic link at
/// `path` itself is removed, not what it points to (as `std::fs::remove_dir_all` does).
///
/// # Errors
/// The first error of the removal (what was removed before it stays removed); `NotADirectory` when `path` is a
/// file; `InvalidInput` when `path` has no last component to remove (`/`, `..`).
pub fn remove_dir_all(path: &Path) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: no directory name to remove", path.display()),
        )
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    remove_dir_all_at(parent.as_fd(), Path::new(name))
}

/// Removes the directory `name` in the directory `parent` (one component) and everything in it, as
/// [`remove_dir_all`] does.
///
/// # Errors
/// As [`remove_dir_all`].
pub fn remove_dir_all_at(parent: BorrowedFd<'_>, name: &Path) -> io::Result<()> {
    let stat = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory => {}
        FileType::Symlink => return Ok(rustix::fs::unlinkat(parent, name, AtFlags::empty())?),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{}: not a directory", name.display()),
            ));
        }
    }
    let top = open_dir(parent, name)?;
    remove_contents(top.as_fd())?;
    drop(top);
    Ok(rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?)
}

/// Removes everything in `top`, depth first, holding at most [`MAX_OPEN_DIRS`] directories below it open (and
/// one more while a directory is listed).
fn remove_contents(top: BorrowedFd<'_>) -> io::Result<()> {
    // The directories below `top` being emptied, each with its name in the one before it (or in `top`).
    let mut stack: Vec<(OwnedFd, CString)> = Vec::new();
    let mut moved: u64 = 0;
    loop {
        let depth = stack.len();
        let current = stack.last().map_or(top, |(fd, _)| fd.as_fd());
        match first_subdir(current)? {
            Some(sub) if depth < MAX_OPEN_DIRS => {
                let dir = open_dir(current, &sub)?;
                stack.push((dir, sub));
            }
            Some(sub) => move_up(current, &sub, top, &mut moved)?,
            None => {
                let Some((dir, name)) = stack.pop() else {
                    return Ok(());
                };
                drop(dir);
                let parent = stack.last().map_or(top, |(fd, _)| fd.as_fd());
                ignore_missing(rustix::fs::unlinkat(parent, &name, AtFlags::REMOVEDIR))?;
            }
        }
    }
}

/// Removes the entries of directory `dir` that are not directories until it finds one, and returns its name;
/// `None` once no entry is left but directories already removed.
fn first_subdir(dir: BorrowedFd<'_>) -> io::Result<Option<CString>> {
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let kind = match entry.file_type() {
            FileType::Unknown => match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => FileType::from_raw_mode(stat.st_mode),
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            },
            kind => kind,
        };
        if kind == FileType::Directory {
            return Ok(Some(name.to_owned()));
        }
        ignore_missing(rustix::fs::unlinkat(dir, name, AtFlags::empty()))?;
    }
    Ok(None)
}

/// Moves directory `name` of `from` into `top` under a fresh [`MOVED_PREFIX`] name.
fn move_up(
    from: BorrowedFd<'_>,
    name: &CStr,
    top: BorrowedFd<'_>,
    moved: &mut u64,
) -> io::Result<()> {
    // A name already taken by a file or a non-empty directory is refused; try the next (an empty directory there
    // is replaced, and it was to be removed anyway).
    for _ in 0..1000 {
        *moved += 1;
        let fresh = format!("{MOVED_PREFIX}{moved}");
        match rustix::fs::renameat(from, name, top, fresh.as_str()) {
            Ok(()) => return Ok(()),
            Err(
                rustix::io::Errno::EXIST | rustix::io::Errno::NOTEMPTY | rustix::io::Errno::NOTDIR,
            ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other(
        "cannot move a deep directory up: 1,000 names taken",
    ))
}

/// Opens directory `name` of `parent`, not following a symbolic link.
fn open_dir(parent: BorrowedFd<'_>, name: impl rustix::path::Arg) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// `result`, with "not found" (removed meanwhile by someone else) as success.
fn ignore_missing(result: rustix::io::Result<()>) -> io::Result<()> {
    match result {
        Err(rustix::io::Errno::NOENT) => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a chain of `depth` directories `a/a/a/…` under `root`, each holding a file, through descriptors
    /// (the path of the deepest is far longer than `PATH_MAX`).
    fn deep_chain(root: &Path, depth: usize) {
        let mut dir =
            rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for _ in 0..depth {
            rustix::fs::mkdirat(&dir, "a", Mode::RWXU).unwrap();
            let file = rustix::fs::openat(
                &dir,
                "f",
                OFlags::CREATE | OFlags::WRONLY,
                Mode::RUSR | Mode::WUSR,
            );
            drop(file.unwrap());
            dir = rustix::fs::openat(&dir, "a", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                .unwrap();
        }
    }

    /// Open descriptors of this process.
    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    /// A tree 20,000 levels deep is removed on a thread with a 256 KiB stack (a recursive removal overflows it
    /// and aborts the test process), holding few descriptors.
    #[test]
    fn a_tree_deeper_than_any_stack_is_removed_with_bounded_descriptors() {
        let root = tempfile::tempdir().unwrap();
        deep_chain(root.path(), 20_000);
        let tree = root.path().join("a");
        let before = open_fds();
        let removed = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn({
                let tree = tree.clone();
                move || {
                    // What the removal holds open at most, sampled while it runs, from a thread of its own.
                    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let most = std::thread::spawn({
                        let done = done.clone();
                        move || {
                            let mut most = 0;
                            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                                most = most.max(open_fds());
                            }
                            most
                        }
                    });
                    let result = remove_dir_all(&tree);
                    done.store(true, std::sync::atomic::Ordering::Relaxed);
                    (result, most.join().unwrap())
                }
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        let (result, most) = removed;
        result.unwrap();
        assert!(!tree.exists());
        // The sampler's own `read_dir` and the parent's descriptor are counted too.
        assert!(
            most <= before + MAX_OPEN_DIRS + 4,
            "{most} descriptors open, {before} before"
        );
    }

    /// Files, nested directories and symbolic links are removed; what a link points to, outside the tree or inside
    /// it, is never followed out of it; a link given as the tree is removed itself, and a file is refused.
    #[test]
    fn links_are_removed_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"x").unwrap();
        let tree = root.path().join("tree");
        std::fs::create_dir_all(tree.join("b/c/d")).unwrap();
        std::fs::write(tree.join("b/c/d/file"), b"y").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("b/to-outside")).unwrap();
        std::os::unix::fs::symlink("..", tree.join("b/c/loop")).unwrap();
        std::os::unix::fs::symlink(&outside, root.path().join("link")).unwrap();
        std::fs::write(root.path().join("plain"), b"z").unwrap();

        remove_dir_all(&tree).unwrap();
        assert!(!tree.exists());
        assert!(outside.join("keep").exists(), "the link's target is kept");

        remove_dir_all(&root.path().join("link")).unwrap();
        assert!(!root.path().join("link").exists());
        assert!(outside.join("keep").exists());

        let refused = remove_dir_all(&root.path().join("plain")).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::NotADirectory, "{refused}");
        assert!(root.path().join("plain").exists());
    }

    /// A tree wider and deeper than [`MAX_OPEN_DIRS`] in several branches, with a file already taking the first
    /// name a moved directory would take: everything is removed.
    #[test]
    fn branches_deeper_than_the_open_bound_are_moved_up_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let tree = root.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join(format!("{MOVED_PREFIX}1")), b"taken").unwrap();
        for branch in ["x", "y", "z"] {
            std::fs::create_dir(tree.join(branch)).unwrap();
            deep_chain(&tree.join(branch), 3 * MAX_OPEN_DIRS + 5);
        }
        remove_dir_all(&tree).unwrap();
        assert!(!tree.exists());
    }
}
