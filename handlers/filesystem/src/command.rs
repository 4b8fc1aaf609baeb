//! Running allow-listed commands in the actor's root: only `PATH` in the environment, killed on timeout, output
//! bounded per stream.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// How a command ended, before it becomes the WIT `command-result`.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It ran: output (lossy UTF-8) and exit code (the negative signal number when killed).
    Success {
        stdout: String,
        stderr: String,
        exit_code: i32,
    },
    /// It could not run to completion.
    Error(String),
}

/// The program `name` resolves to: an absolute path as is, a bare name on the host `PATH`.
pub fn resolve_program(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    if path.is_absolute() {
        return path.is_file().then(|| path.to_owned());
    }
    if name.contains('/') {
        return None;
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether `program` is one of `allowed` (both resolved, so `sh` and `/bin/sh` agree).
pub fn is_allowed(program: &str, allowed: &[String]) -> Option<PathBuf> {
    let resolved = resolve_program(program)?;
    let canonical = resolved.canonicalize().ok()?;
    allowed
        .iter()
        .filter_map(|a| resolve_program(a)?.canonicalize().ok())
        .any(|a| a == canonical)
        .then_some(resolved)
}

/// Runs `program args` in `cwd` with only `PATH` set.
pub async fn run(
    program: &Path,
    args: &[String],
    cwd: &Path,
    timeout: Duration,
    max_output: u64,
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
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return Outcome::Error(format!("cannot start {}: {e}", program.display())),
    };
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => return Outcome::Error("timed out".to_owned()),
        Ok(Err(e)) => return Outcome::Error(format!("waiting for {}: {e}", program.display())),
        Ok(Ok(output)) => output,
    };
    if output.stdout.len() as u64 > max_output || output.stderr.len() as u64 > max_output {
        return Outcome::Error("output exceeds max_output_bytes".to_owned());
    }
    let exit_code = output.status.code().unwrap_or_else(|| {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            -output.status.signal().unwrap_or(0)
        }
        #[cfg(not(unix))]
        {
            -1
        }
    });
    Outcome::Success {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        exit_code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["-c".into(), script.into()]
    }

    #[tokio::test]
    async fn runs_reports_codes_signals_timeouts_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let echo = resolve_program("echo").unwrap();
        let out = run(
            &echo,
            &["hi".into()],
            dir.path(),
            Duration::from_secs(5),
            1024,
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
        let shell = resolve_program("sh").unwrap();
        let out = run(
            &shell,
            &sh("exit 3"),
            dir.path(),
            Duration::from_secs(5),
            1024,
        )
        .await;
        assert!(
            matches!(out, Outcome::Success { exit_code: 3, .. }),
            "{out:?}"
        );
        let out = run(
            &shell,
            &sh("kill -9 $$"),
            dir.path(),
            Duration::from_secs(5),
            1024,
        )
        .await;
        assert!(
            matches!(out, Outcome::Success { exit_code: -9, .. }),
            "{out:?}"
        );
        let out = run(
            &shell,
            &sh("sleep 5"),
            dir.path(),
            Duration::from_millis(100),
            1024,
        )
        .await;
        assert_eq!(out, Outcome::Error("timed out".into()));
        let out = run(
            &shell,
            &sh("head -c 2000 /dev/zero"),
            dir.path(),
            Duration::from_secs(5),
            1024,
        )
        .await;
        assert_eq!(
            out,
            Outcome::Error("output exceeds max_output_bytes".into())
        );
    }

    #[test]
    fn allow_list_compares_resolved_programs() {
        let allowed = vec!["sh".to_string()];
        assert!(is_allowed("sh", &allowed).is_some());
        let sh = resolve_program("sh").unwrap();
        assert!(is_allowed(sh.to_str().unwrap(), &allowed).is_some());
        assert!(is_allowed("echo", &allowed).is_none());
        assert!(is_allowed("./sh", &allowed).is_none());
    }
}
