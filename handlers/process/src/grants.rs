//! What an actor may run: the program, working-directory and environment checks of `os-spawn`, each failing
//! closed with `permission denied: <what> (<field>)`.
//!
//! These functions touch the file system (`PATH` lookup, canonicalization); call them from a blocking task.

use std::path::{Path, PathBuf};

use theater_runtime::children;

/// The program `name` may run as, if it resolves to the same path as an entry of `allowed` (bare names or
/// absolute paths, resolved alike: [`children::allowed_program`]).
///
/// # Errors
/// `permission denied: run <name> (allowed_programs)`.
pub fn program(name: &str, allowed: &[String]) -> Result<PathBuf, String> {
    children::allowed_program(name, allowed)
        .ok_or_else(|| format!("permission denied: run {name} (allowed_programs)"))
}

/// `cwd` canonicalized, if it is absolute and lies inside one of `allowed` (canonical directories). A path
/// that does not resolve is denied alike, so nothing about the host outside `allowed` can be learnt.
///
/// # Errors
/// `permission denied: cwd <cwd> (allowed_paths)`.
pub fn cwd(cwd: &str, allowed: &[PathBuf]) -> Result<PathBuf, String> {
    let denied = || format!("permission denied: cwd {cwd} (allowed_paths)");
    let given = Path::new(cwd);
    if !given.is_absolute() {
        return Err(denied());
    }
    let canonical = given.canonicalize().map_err(|_| denied())?;
    if !canonical.is_dir() || !allowed.iter().any(|a| canonical.starts_with(a)) {
        return Err(denied());
    }
    Ok(canonical)
}

/// Checks that every variable the guest sets is named in `allowed` (exact, case-sensitive names).
///
/// # Errors
/// `permission denied: env <name> (allowed_env)`.
pub fn env(vars: &[(String, String)], allowed: &[String]) -> Result<(), String> {
    match vars.iter().find(|(name, _)| !allowed.contains(name)) {
        Some((name, _)) => Err(format!("permission denied: env {name} (allowed_env)")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_match_by_resolved_path() {
        let allowed = vec!["sh".to_owned()];
        let sh = program("sh", &allowed).unwrap();
        assert!(sh.is_absolute());
        assert_eq!(program(sh.to_str().unwrap(), &allowed).unwrap(), sh);
        assert!(
            program("/bin/sh", &allowed).is_ok(),
            "/bin and /usr/bin agree"
        );
        for denied in ["cat", "./sh", "", "bin/sh", "/nonexistent/sh"] {
            assert_eq!(
                program(denied, &allowed).unwrap_err(),
                format!("permission denied: run {denied} (allowed_programs)")
            );
        }
        assert!(program("sh", &[]).is_err(), "an empty list denies all");
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_program_keeps_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let sh = children::resolve_program("sh", std::env::var_os("PATH").as_deref()).unwrap();
        let link = dir.path().join("applet");
        std::os::unix::fs::symlink(&sh, &link).unwrap();
        let link = link.to_str().unwrap().to_owned();
        assert!(program(&link, std::slice::from_ref(&link)).is_ok());
        assert!(
            program(&link, &["sh".to_owned()]).is_err(),
            "allowing sh does not allow a link to it under another name"
        );
    }

    #[test]
    fn cwd_must_lie_inside_an_allowed_path() {
        let root = tempfile::tempdir().unwrap();
        let allowed = vec![root.path().canonicalize().unwrap()];
        std::fs::create_dir(root.path().join("sub")).unwrap();
        let sub = root.path().join("sub");
        assert_eq!(
            cwd(sub.to_str().unwrap(), &allowed).unwrap(),
            sub.canonicalize().unwrap()
        );
        let outside = tempfile::tempdir().unwrap();
        let missing = root.path().join("missing");
        let relative = "sub".to_owned();
        for denied in [
            outside.path().to_str().unwrap(),
            missing.to_str().unwrap(),
            &relative,
        ] {
            assert_eq!(
                cwd(denied, &allowed).unwrap_err(),
                format!("permission denied: cwd {denied} (allowed_paths)")
            );
        }
        #[cfg(unix)]
        {
            let link = root.path().join("escape");
            std::os::unix::fs::symlink(outside.path(), &link).unwrap();
            assert!(
                cwd(link.to_str().unwrap(), &allowed).is_err(),
                "a symlink out is denied"
            );
        }
        assert!(cwd(sub.to_str().unwrap(), &[]).is_err());
    }

    #[test]
    fn env_names_must_be_allowed() {
        let allowed = vec!["GREETING".to_owned()];
        assert!(env(&[("GREETING".into(), "hi".into())], &allowed).is_ok());
        assert_eq!(
            env(&[("LD_PRELOAD".into(), "x".into())], &allowed).unwrap_err(),
            "permission denied: env LD_PRELOAD (allowed_env)"
        );
        assert!(env(&[], &[]).is_ok());
    }
}
