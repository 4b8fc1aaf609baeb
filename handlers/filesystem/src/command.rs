//! Running allow-listed commands in the actor's root: only `PATH` in the environment, each command in its own
//! process group, output read as it is written and bounded per stream.
//!
//! * **Program match** (`theater_runtime::children::allowed_program`, shared with the process handler): a program
//!   is allowed when it resolves to the same *path* as an `allowed_commands` entry; the directory part is
//!   canonicalized but not the file itself, so a symlinked multi-call binary (`/bin/ls` → `busybox`) keeps its
//!   name and allowing one applet does not allow the others.
//! * **Process group**: the command leads a new process group. The whole group is killed with SIGKILL when the
//!   command exits (so background jobs it started, `sleep 300 &`, do not outlive it), on `command_timeout_ms`,
//!   as soon as a stream passes `max_output_bytes`, when the actor begins to stop, and when the call is dropped
//!   (the actor was terminated). The command also leads a session of its own and is a child subreaper, and what
//!   it left in another group or session (`setsid sleep 300 &`) is killed once it has exited
//!   ([`theater_runtime::children`]).
//! * **Output**: stdout and stderr are read while the command runs; past `max_output_bytes` on either stream the
//!   group is killed and the call gives `command-result.error`, so host memory stays about `2 × max_output_bytes`.
//!   The output becomes strings with each invalid UTF-8 sequence replaced by U+FFFD, which takes 3 bytes (1 MiB of
//!   `0xFF` would become 3 MiB): the replaced length is worked out first and held to `max_output_bytes` as well.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;

/// How a command ended, before it becomes the WIT `command-result`.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It ran: output (lossy UTF-8) and exit code (the negative signal number when killed).
    Success {
        stdout: String,
        stderr: String,
        exit_code: i32,
    },
    /// It could not run to completion: it could not start, passed a limit, or the actor began to stop.
    Error(String),
}

/// The bounds of one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The command's group is killed after this long (`command_timeout_ms`).
    pub timeout: Duration,
    /// Largest stdout, and largest stderr, in bytes (`max_output_bytes`).
    pub max_output: u64,
}

/// Runs `program args` in `cwd` with only `PATH` set, in its own process group, within `limits`; gives up
/// (killing the group) when `stop` completes first.
pub async fn run(
    program: &Path,
    args: &[String],
    cwd: &Path,
    limits: Limits,
    stop: impl Future<Output = ()>,
) -> Outcome {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    theater_runtime::children::contain(&mut command);
    let mut child = match theater_runtime::children::spawn(|| command.spawn(), Child::id) {
        Ok(child) => child,
        Err(e) => return Outcome::Error(format!("cannot start {}: {e}", program.display())),
    };
    let os_pid = child.id();
    let group = Group::of(&child);
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Outcome::Error("the command's pipes are missing".to_owned());
    };
    let ended = tokio::select! {
        collected = collect(&mut child, &group, stdout, stderr, limits.max_output) => collected,
        () = tokio::time::sleep(limits.timeout) => Err(format!(
            "timed out after {} ms (command_timeout_ms); the command was killed",
            limits.timeout.as_millis()
        )),
        () = stop => Err("the actor is stopping; the command was killed".to_owned()),
    };
    let (status, stdout, stderr) = match ended {
        Ok(output) => {
            group.disarm();
            output
        }
        Err(message) => {
            drop(group);
            let _ = child.start_kill();
            let _ = child.wait().await;
            reaped(os_pid).await;
            return Outcome::Error(message);
        }
    };
    reaped(os_pid).await;
    let exit_code = status.code().unwrap_or_else(|| {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            -status.signal().unwrap_or(0)
        }
        #[cfg(not(unix))]
        {
            -1
        }
    });
    let text = lossy_bounded(stdout, "stdout", limits.max_output)
        .and_then(|stdout| Ok((stdout, lossy_bounded(stderr, "stderr", limits.max_output)?)));
    match text {
        Ok((stdout, stderr)) => Outcome::Success {
            stdout,
            stderr,
            exit_code,
        },
        Err(message) => Outcome::Error(message),
    }
}

/// `bytes` as UTF-8, each invalid sequence replaced by U+FFFD as `String::from_utf8_lossy` does, if that takes
/// at most `max` bytes; the length is counted before anything is allocated.
///
/// # Errors
/// `output exceeds max_output_bytes (<max>) on <name> once invalid UTF-8 is replaced`.
fn lossy_bounded(bytes: Vec<u8>, name: &str, max: u64) -> Result<String, String> {
    let replaced: u64 = bytes
        .utf8_chunks()
        .map(|chunk| {
            let replacement = if chunk.invalid().is_empty() { 0 } else { 3 };
            chunk.valid().len() as u64 + replacement
        })
        .sum();
    if replaced > max {
        return Err(format!(
            "output exceeds max_output_bytes ({max}) on {name} once invalid UTF-8 is replaced"
        ));
    }
    Ok(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// After the command is reaped: what it left in another group or session is killed and reaped.
async fn reaped(pid: Option<u32>) {
    let _ = tokio::task::spawn_blocking(move || theater_runtime::children::reaped(pid)).await;
}

/// Waits for the command while reading both streams; once it exits, kills what it left in its group so the
/// pipes close.
///
/// # Errors
/// A stream past `max_output` (at once, while the command still runs), or a failed wait or read.
async fn collect(
    child: &mut Child,
    group: &Group,
    stdout: impl AsyncRead + Unpin,
    stderr: impl AsyncRead + Unpin,
    max_output: u64,
) -> Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>), String> {
    let exited = async {
        let status = child
            .wait()
            .await
            .map_err(|e| format!("waiting for the command: {e}"));
        group.kill();
        status
    };
    tokio::try_join!(
        exited,
        read_bounded(stdout, "stdout", max_output),
        read_bounded(stderr, "stderr", max_output)
    )
}

/// The whole of `stream` if it holds at most `max` bytes; never buffers more than `max + 1`.
///
/// # Errors
/// `output exceeds max_output_bytes (<max>) on <name>; the command was killed`, or the read error.
async fn read_bounded(
    stream: impl AsyncRead + Unpin,
    name: &str,
    max: u64,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    stream
        .take(max.saturating_add(1))
        .read_to_end(&mut out)
        .await
        .map_err(|e| format!("reading the command's {name}: {e}"))?;
    if out.len() as u64 > max {
        return Err(format!(
            "output exceeds max_output_bytes ({max}) on {name}; the command was killed"
        ));
    }
    Ok(out)
}

/// The command's process group: SIGKILL to all of it when dropped, unless [disarmed](Group::disarm) after the
/// command exited and its leftovers were killed. The leader is not reaped before the group is killed on an
/// error path; after a normal exit the group is killed right after reaping, while anything still in it keeps the
/// group id from being reused.
struct Group {
    #[cfg(unix)]
    id: Option<rustix::process::Pid>,
}

impl Group {
    fn of(child: &Child) -> Self {
        #[cfg(unix)]
        {
            let id = child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .filter(|&raw| raw > 1)
                .and_then(rustix::process::Pid::from_raw);
            Self { id }
        }
        #[cfg(not(unix))]
        {
            let _ = child;
            Self {}
        }
    }

    /// SIGKILL to every process of the group (none left is not an error).
    fn kill(&self) {
        #[cfg(unix)]
        if let Some(id) = self.id {
            let _ = rustix::process::kill_process_group(id, rustix::process::Signal::KILL);
        }
    }

    /// Forgets the group without killing it again (it has been killed once the command exited).
    fn disarm(mut self) {
        #[cfg(unix)]
        {
            self.id = None;
        }
        drop(self);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    use theater_runtime::children::allowed_program as is_allowed;

    /// `name` on the host's `PATH`, as a command resolves.
    fn resolve_program(name: &str) -> Option<PathBuf> {
        theater_runtime::children::resolve_program(name, std::env::var_os("PATH").as_deref())
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["-c".into(), script.into()]
    }

    fn limits(timeout_ms: u64, max_output: u64) -> Limits {
        Limits {
            timeout: Duration::from_millis(timeout_ms),
            max_output,
        }
    }

    async fn shell(dir: &Path, script: &str, limits: Limits) -> Outcome {
        let shell = resolve_program("sh").unwrap();
        run(&shell, &sh(script), dir, limits, std::future::pending()).await
    }

    /// Whether process `pid` has ended (gone, or a zombie nobody has reaped yet), waiting up to 5 s for a
    /// SIGKILL to take effect.
    async fn ended(pid: u32) -> bool {
        for _ in 0..100 {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(stat) => {
                    let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
                    if matches!(state, Some('Z' | 'X')) {
                        return true;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn pid_in(text: &str) -> u32 {
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("a pid: {text:?}"))
    }

    #[tokio::test]
    async fn runs_reports_codes_signals_timeouts_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let echo = resolve_program("echo").unwrap();
        let out = run(
            &echo,
            &["hi".into()],
            dir.path(),
            limits(5000, 1024),
            std::future::pending(),
        )
        .await;
        assert_eq!(
            out,
            Outcome::Success {
                stdout: "hi\n".into(),
                stderr: String::new(),
                exit_code: 0
            }
        );
        let out = shell(dir.path(), "exit 3", limits(5000, 1024)).await;
        assert!(
            matches!(out, Outcome::Success { exit_code: 3, .. }),
            "{out:?}"
        );
        let out = shell(dir.path(), "kill -9 $$", limits(5000, 1024)).await;
        assert!(
            matches!(out, Outcome::Success { exit_code: -9, .. }),
            "{out:?}"
        );
        let out = shell(dir.path(), "sleep 5", limits(100, 1024)).await;
        assert_eq!(
            out,
            Outcome::Error(
                "timed out after 100 ms (command_timeout_ms); the command was killed".into()
            )
        );
        let out = shell(dir.path(), "head -c 2000 /dev/zero >&2", limits(5000, 1024)).await;
        assert_eq!(
            out,
            Outcome::Error(
                "output exceeds max_output_bytes (1024) on stderr; the command was killed".into()
            )
        );
        let out = shell(dir.path(), "head -c 1024 /dev/zero", limits(5000, 1024)).await;
        assert!(
            matches!(&out, Outcome::Success { stdout, .. } if stdout.len() == 1024),
            "exactly the limit is fine"
        );
    }

    /// Each invalid UTF-8 byte becomes U+FFFD (3 bytes): output within the bound as bytes but past it once
    /// replaced is an error, not a string three times the bound.
    #[tokio::test]
    async fn the_bound_holds_after_invalid_utf8_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let ff = |n: usize| format!("head -c {n} /dev/zero | tr '\\000' '\\377'");
        let out = shell(dir.path(), &ff(1000), limits(5000, 1024)).await;
        assert_eq!(
            out,
            Outcome::Error(
                "output exceeds max_output_bytes (1024) on stdout once invalid UTF-8 is replaced"
                    .into()
            )
        );
        let out = shell(dir.path(), &format!("{} >&2", ff(400)), limits(5000, 1024)).await;
        assert_eq!(
            out,
            Outcome::Error(
                "output exceeds max_output_bytes (1024) on stderr once invalid UTF-8 is replaced"
                    .into()
            )
        );
        let out = shell(dir.path(), &ff(341), limits(5000, 1024)).await;
        assert!(
            matches!(&out, Outcome::Success { stdout, .. } if *stdout == "\u{fffd}".repeat(341)),
            "1 023 bytes once replaced fit: {out:?}"
        );
        assert_eq!(
            lossy_bounded(b"ok \xff\xfe!".to_vec(), "stdout", 10).unwrap(),
            String::from_utf8_lossy(b"ok \xff\xfe!"),
            "counted as from_utf8_lossy replaces"
        );
        assert!(lossy_bounded(b"ok \xff\xfe!".to_vec(), "stdout", 9).is_err());
    }

    #[tokio::test]
    async fn output_past_the_limit_kills_the_command_at_once() {
        let dir = tempfile::tempdir().unwrap();
        // Writing 100 MB through a 64 KiB pipe needs a reader: killed at the limit, it never reaches `touch`.
        let out = shell(
            dir.path(),
            "head -c 100000000 /dev/zero; touch finished",
            limits(20_000, 4096),
        )
        .await;
        assert_eq!(
            out,
            Outcome::Error(
                "output exceeds max_output_bytes (4096) on stdout; the command was killed".into()
            )
        );
        assert!(
            !dir.path().join("finished").exists(),
            "the command was stopped at the limit, not read to its end"
        );
        // `yes` never ends by itself: the call returns at the limit, long before the timeout.
        let yes = resolve_program("yes").unwrap();
        let out = run(
            &yes,
            &[],
            dir.path(),
            limits(60_000, 4096),
            std::future::pending(),
        )
        .await;
        assert_eq!(
            out,
            Outcome::Error(
                "output exceeds max_output_bytes (4096) on stdout; the command was killed".into()
            )
        );
    }

    #[tokio::test]
    async fn nothing_the_command_started_outlives_it() {
        let dir = tempfile::tempdir().unwrap();
        // It exits at once, leaving a background job that does not hold the pipes.
        let Outcome::Success { stdout, .. } = shell(
            dir.path(),
            "sleep 300 >/dev/null 2>&1 & echo $!",
            limits(5000, 1024),
        )
        .await
        else {
            panic!("the command ran");
        };
        assert!(ended(pid_in(&stdout)).await, "left behind after exit");
        // A background job that holds stdout does not keep the call waiting.
        let Outcome::Success { stdout, .. } =
            shell(dir.path(), "sleep 300 & echo $!", limits(5000, 1024)).await
        else {
            panic!("the command ran");
        };
        assert!(ended(pid_in(&stdout)).await, "left behind holding stdout");
        // Timeout, output limit and stop each kill the group.
        let background = "sleep 300 >/dev/null 2>&1 & echo $! > pid;";
        let out = shell(
            dir.path(),
            &format!("{background} sleep 300"),
            limits(300, 1024),
        )
        .await;
        assert!(matches!(out, Outcome::Error(ref m) if m.starts_with("timed out")));
        let pid = pid_in(&std::fs::read_to_string(dir.path().join("pid")).unwrap());
        assert!(ended(pid).await, "left behind after the timeout");
        let out = shell(
            dir.path(),
            &format!("{background} exec yes"),
            limits(20_000, 1024),
        )
        .await;
        assert!(matches!(out, Outcome::Error(ref m) if m.starts_with("output exceeds")));
        let pid = pid_in(&std::fs::read_to_string(dir.path().join("pid")).unwrap());
        assert!(ended(pid).await, "left behind after the output limit");
        let shell_path = resolve_program("sh").unwrap();
        let stop = async {
            while !dir.path().join("pid").exists() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        std::fs::remove_file(dir.path().join("pid")).unwrap();
        let script = sh("sleep 300 >/dev/null 2>&1 & echo $! > pid.tmp; mv pid.tmp pid; sleep 300");
        let out = run(&shell_path, &script, dir.path(), limits(20_000, 1024), stop).await;
        assert_eq!(
            out,
            Outcome::Error("the actor is stopping; the command was killed".into())
        );
        let pid = pid_in(&std::fs::read_to_string(dir.path().join("pid")).unwrap());
        assert!(ended(pid).await, "left behind after the stop");
    }

    #[tokio::test]
    async fn a_dropped_call_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let shell_path = resolve_program("sh").unwrap();
        let script = sh("sleep 300 >/dev/null 2>&1 & echo $! > pid.tmp; mv pid.tmp pid; sleep 300");
        let call = run(
            &shell_path,
            &script,
            dir.path(),
            limits(20_000, 1024),
            std::future::pending(),
        );
        let started = async {
            while !dir.path().join("pid").exists() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            out = call => panic!("the command ended: {out:?}"),
            () = started => {}
        }
        let pid = pid_in(&std::fs::read_to_string(dir.path().join("pid")).unwrap());
        assert!(ended(pid).await, "left behind after the call was dropped");
    }

    #[test]
    fn allow_list_compares_resolved_programs() {
        let allowed = vec!["sh".to_string()];
        assert!(is_allowed("sh", &allowed).is_some());
        let sh = resolve_program("sh").unwrap();
        assert!(is_allowed(sh.to_str().unwrap(), &allowed).is_some());
        assert!(
            is_allowed("/bin/sh", &allowed).is_some(),
            "/bin and /usr/bin agree"
        );
        for denied in ["echo", "./sh", "", "bin/sh", "/nonexistent/sh"] {
            assert!(is_allowed(denied, &allowed).is_none(), "{denied}");
        }
        assert!(is_allowed("sh", &[]).is_none(), "an empty list denies all");
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_program_keeps_its_name() {
        // A multi-call binary (busybox): `mytool` and `other` are links to one program.
        let dir = tempfile::tempdir().unwrap();
        let sh = resolve_program("sh").unwrap();
        let mytool = dir.path().join("mytool");
        let other = dir.path().join("other");
        std::os::unix::fs::symlink(&sh, &mytool).unwrap();
        std::os::unix::fs::symlink(&sh, &other).unwrap();
        let allowed = vec![mytool.to_str().unwrap().to_owned()];
        assert_eq!(is_allowed(mytool.to_str().unwrap(), &allowed), Some(mytool));
        assert!(is_allowed(other.to_str().unwrap(), &allowed).is_none());
        assert!(is_allowed("sh", &allowed).is_none());
        assert!(is_allowed(other.to_str().unwrap(), &["sh".to_owned()]).is_none());
    }
}
