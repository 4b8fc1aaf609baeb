//! Loading a WIT package directory into a `wit_parser::Resolve`, remembering every file read.

use std::path::{Path, PathBuf};

use wit_parser::{PackageId, Resolve};

/// A resolved WIT package and the files it was read from.
pub struct Loaded {
    /// Every package found (the main one and its `deps/`).
    pub resolve: Resolve,
    /// The main package.
    pub package: PackageId,
    /// Absolute paths of every WIT file read, for `include_bytes!` (so editing WIT rebuilds the crate).
    pub files: Vec<PathBuf>,
}

/// Loads the WIT package in `dir` (relative paths resolve against `base`).
///
/// # Errors
/// The directory is missing, or a file fails to parse or resolve: the message is wit-parser's, which carries
/// `file:line:col` for syntax and name errors.
pub fn load(base: &Path, dir: &Path) -> Result<Loaded, String> {
    let path = if dir.is_absolute() {
        dir.to_owned()
    } else {
        base.join(dir)
    };
    if !path.is_dir() {
        return Err(format!(
            "WIT directory `{}` does not exist (relative to {})",
            dir.display(),
            if dir.is_absolute() {
                "nothing: it is absolute"
            } else {
                "the crate's Cargo.toml"
            }
        ));
    }
    let mut resolve = Resolve::default();
    // `render_error` gives wit-parser's `--> file:line:col` and a source snippet; paths are shown as the user
    // wrote them, relative to `base`.
    let (package, sources) = resolve.push_dir(&path).map_err(|e| {
        let message = resolve.render_error(&e);
        let prefix = format!("{}{}", base.display(), std::path::MAIN_SEPARATOR);
        if dir.is_absolute() {
            message
        } else {
            message.replace(&prefix, "")
        }
    })?;
    // Sorted: wit-parser lists files in directory order, which differs between file systems, and the
    // expansion must not.
    let mut files: Vec<PathBuf> = sources
        .paths()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned()))
        .collect();
    files.sort();
    files.dedup();
    Ok(Loaded {
        resolve,
        package,
        files,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn syntax_error_message_has_file_line_col() {
        let dir = std::env::temp_dir().join(format!("theater-codegen-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("that.wit"),
            "package a:b;\ninterface x {\n  f: func(a: u32) -> ;\n}\n",
        )
        .unwrap();
        let Err(msg) = super::load(&dir, &dir) else {
            panic!("loaded a bad package")
        };
        std::fs::remove_dir_all(&dir).ok();
        assert!(msg.contains("that.wit:3:"), "{msg}");
    }
}

#[cfg(test)]
mod relative_tests {
    #[test]
    fn messages_show_paths_as_written() {
        let base = std::env::temp_dir().join(format!("theater-codegen-rel-{}", std::process::id()));
        let bad = base.join("wit-bad");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(
            bad.join("b.wit"),
            "package a:b;\ninterface x {\n  f: func() -> ;\n}\n",
        )
        .unwrap();
        let Err(msg) = super::load(&base, std::path::Path::new("wit-bad")) else {
            panic!()
        };
        std::fs::remove_dir_all(&base).ok();
        assert!(!msg.contains(&base.display().to_string()), "{msg}");
        assert!(msg.contains("wit-bad/b.wit:3:"), "{msg}");
    }
}
