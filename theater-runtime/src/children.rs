//! Child processes of the host: what keeps a process that an actor started (through the `process` handler or the
//! `filesystem` handler's `execute-command`) from outliving it (docs/security.md, "Processes").
//!
//! On Linux, three mechanisms together:
//! * **Each process is a session leader and a child subreaper** ([`prepare_child`], run between `fork` and
//!   `exec`): `setsid` puts it and what it starts in a session of their own, so nothing it starts can join the
//!   host's process group or session, and `PR_SET_CHILD_SUBREAPER` makes it the parent of any of its descendants
//!   whose own parent exits (`sh -c 'setsid sleep 300 &'`), so while it runs its whole tree stays below it.
//!   `PR_SET_PDEATHSIG` = `SIGKILL` kills it if the host dies first (`kill -9` of `theater`).
//! * **The host is a child subreaper** ([`spawn`] sets it once): when such a process exits (or is killed with
//!   its process group), what it left running in another group or session is re-parented to the host, not to
//!   init.
//! * **The sweep** ([`sweep`], after each reaped process): every child of the host that is not a process the
//!   host spawned itself ([`spawn`] registers them, [`reaped`] forgets them) and that is not in the host's own
//!   session is such a leftover: it gets `SIGKILL` and is reaped. A child an embedding application spawns on
//!   its own stays in the host's session (unless it calls `setsid`), so the sweep leaves it alone; an application
//!   that starts its own children in new sessions should start them through [`spawn`].
//!
//! What this does not cover: when the host dies, the processes it spawned die with it, but what *they* started
//! outside their process group is re-parented to init and survives; run `theater` in a cgroup of its own (a
//! systemd unit with `KillMode=control-group`, a container) for that. Elsewhere than Linux, [`spawn`] only spawns
//! and the rest does nothing.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The pids of the processes the host spawned through [`spawn`] and has not reaped yet.
static SPAWNED: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

fn spawned() -> MutexGuard<'static, Option<HashSet<u32>>> {
    SPAWNED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Spawns a child with `spawn` (e.g. `|| command.spawn()`) and registers its pid (`pid_of`), so that [`sweep`]
/// knows it for the host's own. The registry is held across the spawn: a sweep never sees the new child
/// unregistered. Makes the host a child subreaper the first time (Linux).
///
/// Give the command [`prepare_child`] as a `pre_exec` hook as well.
///
/// # Errors
/// What `spawn` returns.
pub fn spawn<T>(
    spawn: impl FnOnce() -> io::Result<T>,
    pid_of: impl FnOnce(&T) -> Option<u32>,
) -> io::Result<T> {
    become_subreaper();
    let mut registry = spawned();
    let child = spawn()?;
    if let Some(pid) = pid_of(&child) {
        registry.get_or_insert_default().insert(pid);
    }
    Ok(child)
}

/// Forgets `pid`, a process spawned through [`spawn`] that has been reaped (its exit status collected), and
/// sweeps up what it left behind (see [`sweep`]). Blocking: call it from a blocking task.
pub fn reaped(pid: Option<u32>) -> usize {
    if let Some(pid) = pid
        && let Some(registry) = spawned().as_mut()
    {
        registry.remove(&pid);
    }
    sweep()
}

/// The path `name` runs as: an absolute path as given, a bare name looked up on `path` (the host's `PATH`);
/// `None` for relative paths (`./x`, `a/b`), empty names and programs that are not files. The directory part is
/// canonicalized but not the file itself, so a symlinked multi-call binary (`/bin/ls` → `busybox`) keeps its
/// name and allowing one applet does not allow the others. What the process handler's `os-spawn` and the
/// filesystem handler's `execute-command` both check programs with.
///
/// Touches the file system: call it from a blocking task.
pub fn resolve_program(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    let given = Path::new(name);
    let found = if given.is_absolute() {
        given.to_owned()
    } else if name.is_empty() || name.contains('/') {
        return None;
    } else {
        std::env::split_paths(path?)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())?
    };
    if !found.is_file() {
        return None;
    }
    let dir = found.parent()?.canonicalize().ok()?;
    Some(dir.join(found.file_name()?))
}

/// The path `name` runs as, if it resolves ([`resolve_program`], on the host's `PATH`) to the same path as an
/// entry of `allowed` (bare names or absolute paths, resolved alike: `sh` and `/bin/sh` agree, a link to `sh`
/// under another name does not). `None` otherwise, and for an empty `allowed`.
///
/// Touches the file system: call it from a blocking task.
pub fn allowed_program(name: &str, allowed: &[String]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH");
    let resolved = resolve_program(name, path.as_deref())?;
    allowed
        .iter()
        .filter_map(|a| resolve_program(a, path.as_deref()))
        .any(|a| a == resolved)
        .then_some(resolved)
}

/// Makes `command`'s child a session (and process group) leader that nothing it starts outlives: on Linux,
/// [`prepare_child`] as its `pre_exec` hook; on other Unixes, a process group of its own. Spawn it with
/// [`spawn`].
pub fn contain(command: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: `prepare_child` makes only async-signal-safe system calls (setsid, prctl, getpid, getppid)
        // and does not allocate.
        unsafe {
            command.pre_exec(move || prepare_child(parent));
        }
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    command.process_group(0);
    #[cfg(not(unix))]
    let _ = command;
}

/// Run in the child between `fork` and `exec` (a `pre_exec` hook; only async-signal-safe system calls): a new
/// session, the child subreaper attribute, and `SIGKILL` when the parent dies. `parent` is the host's pid, read
/// before the fork: if the host died before the death signal was armed, the child exits at once.
///
/// # Errors
/// A failed `setsid` or `prctl`, which fails the spawn.
#[cfg(target_os = "linux")]
pub fn prepare_child(parent: u32) -> io::Result<()> {
    use rustix::process;
    process::setsid()?;
    process::set_child_subreaper(Some(process::getpid()))?;
    process::set_parent_process_death_signal(Some(process::Signal::KILL))?;
    if process::getppid().map(|p| p.as_raw_nonzero().get()) != i32::try_from(parent).ok() {
        return Err(io::Error::other("the host exited during the spawn"));
    }
    Ok(())
}

/// Elsewhere than Linux: nothing.
///
/// # Errors
/// Never.
#[cfg(not(target_os = "linux"))]
pub fn prepare_child(_parent: u32) -> io::Result<()> {
    Ok(())
}

/// Makes the host a child subreaper (Linux, once; a failure is logged and leaves leftovers to init).
fn become_subreaper() {
    #[cfg(target_os = "linux")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
                tracing::warn!(
                    "children: PR_SET_CHILD_SUBREAPER failed ({e}): leftovers go to init"
                );
            }
        });
    }
}

/// Kills (`SIGKILL`) and reaps every child of the host that it did not spawn through [`spawn`] and that is not
/// in its session: the processes re-parented to the host because their parent exited. Returns how many.
/// Blocking (it waits for each to be reaped): call it from a blocking task.
#[cfg(target_os = "linux")]
pub fn sweep() -> usize {
    use rustix::process::{self, Pid, Signal, WaitOptions};
    let me = process::getpid();
    // Not `getsid`: in a PID namespace whose session leader is outside it (a container), the session is 0,
    // which rustix's `getsid` cannot represent (it panics).
    let Some(own) = stat_of("self") else {
        return 0;
    };
    let leftovers: Vec<Pid> = {
        let mut registry = spawned();
        let registry = registry.get_or_insert_default();
        let children = children_of(me.as_raw_nonzero().get());
        // A registered process that is no child any more was reaped without `reaped` (its task was dropped).
        registry.retain(|pid| children.iter().any(|c| c.pid == *pid));
        children
            .into_iter()
            .filter(|c| c.session != own.session && !registry.contains(&c.pid))
            .filter_map(|c| i32::try_from(c.pid).ok().and_then(Pid::from_raw))
            .collect()
    };
    for &pid in &leftovers {
        // Our child, not reaped yet: its pid cannot have been reused.
        let _ = process::kill_process(pid, Signal::KILL);
    }
    for &pid in &leftovers {
        let _ = process::waitpid(Some(pid), WaitOptions::empty());
    }
    if !leftovers.is_empty() {
        tracing::debug!(
            count = leftovers.len(),
            "children: killed leftover processes"
        );
    }
    leftovers.len()
}

/// Elsewhere than Linux: nothing.
#[cfg(not(target_os = "linux"))]
pub fn sweep() -> usize {
    0
}

/// One process of `/proc`, as far as the sweep cares.
#[cfg(target_os = "linux")]
struct ProcStat {
    pid: u32,
    ppid: i32,
    /// 0 when the session's leader is outside the PID namespace (a container).
    session: i32,
}

/// The processes whose parent is `parent`.
#[cfg(target_os = "linux")]
fn children_of(parent: i32) -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let name = name.to_str()?;
            name.parse::<u32>().ok()?;
            stat_of(name)
        })
        .filter(|stat| stat.ppid == parent)
        .collect()
}

/// The process `/proc/<name>` (a pid, or `self`), from its `stat`: `pid (comm) state ppid pgrp session ...`;
/// `comm` may hold spaces and parentheses, so fields are counted after its last `)`. `None` when it has exited.
#[cfg(target_os = "linux")]
fn stat_of(name: &str) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{name}/stat")).ok()?;
    let (head, tail) = stat.rsplit_once(')')?;
    let pid = head.split_once(' ')?.0.parse().ok()?;
    let mut fields = tail.split_ascii_whitespace();
    let ppid = fields.nth(1)?.parse().ok()?;
    let session = fields.nth(1)?.parse().ok()?;
    Some(ProcStat { pid, ppid, session })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn children_of_finds_a_child_with_its_session() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = rustix::process::getpid().as_raw_nonzero().get();
        let own = stat_of("self").unwrap();
        assert_eq!(own.pid, std::process::id());
        assert_eq!(
            own.ppid,
            rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())
        );
        let session = own.session;
        let found = children_of(me);
        assert!(
            found
                .iter()
                .any(|c| c.pid == child.id() && c.session == session),
            "child {} not among {:?}",
            child.id(),
            found.iter().map(|c| c.pid).collect::<Vec<_>>()
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
