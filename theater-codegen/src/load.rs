//! Loading WIT into a `wit_parser::Resolve` (a `.wit` file, or a package folder with its `deps/`), remembering
//! every file read, and finding an interface in it by name.

use std::path::{Path, PathBuf};

use wit_parser::{InterfaceId, PackageId, Resolve};

use crate::model::{IfaceName, iface_name};

/// Why WIT did not load: wit-parser's rendered message (with its `--> file:line:col` and a snippet, when it
/// located the problem), and that location on its own, for tools that print `file:line:col: message`.
#[derive(Debug)]
pub struct LoadError {
    /// The whole message.
    pub message: String,
    /// `file:line:col` of the problem (1-based), when wit-parser gave a span.
    pub location: Option<String>,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for LoadError {
    fn from(message: String) -> Self {
        Self {
            message,
            location: None,
        }
    }
}

/// The error of a `push_*` of `resolve`, rendered, with the location of its first typed layer (wit-parser's
/// `ParseError` or `ResolveError`); `strip` is removed from paths (they are shown as the user wrote them).
fn load_error(resolve: &Resolve, e: &anyhow::Error, strip: Option<&str>) -> LoadError {
    let span = e.chain().find_map(|layer| {
        layer
            .downcast_ref::<wit_parser::ParseError>()
            .map(|p| p.kind().span())
            .or_else(|| {
                layer
                    .downcast_ref::<wit_parser::ResolveError>()
                    .map(|r| r.kind().span())
            })
    });
    let relative = |s: String| match strip {
        Some(prefix) => s.replace(prefix, ""),
        None => s,
    };
    LoadError {
        message: relative(resolve.render_error(e)),
        location: span.map(|span| relative(resolve.render_location(span))),
    }
}

/// A resolved WIT package and the files it was read from.
pub struct Loaded {
    /// Every package found (the main one and its `deps/`).
    pub resolve: Resolve,
    /// The main package.
    pub package: PackageId,
    /// Absolute paths of every WIT file read, for `include_bytes!` (so editing WIT rebuilds the crate).
    pub files: Vec<PathBuf>,
}

/// Loads the WIT at `path` (relative paths resolve against `base`), as wit-parser's `Resolve::push_path` does:
/// a folder is a package whose `deps/` folder holds its dependencies (folders, `.wit` files or encoded
/// packages); a file is a single-file package.
///
/// Every `@unstable` item is kept (`all_features`), so that one a handler reaches is reported as unsupported
/// rather than silently left out.
///
/// # Errors
/// The path is missing, or a file fails to parse or resolve: the message is wit-parser's, which carries
/// `file:line:col` for syntax and name errors. A panic inside wit-parser (a bug of its own, e.g. 0.254 on an
/// empty block comment `/**/`) is an error too, naming the path ([`guarded`]).
pub fn load(base: &Path, path: &Path) -> Result<Loaded, LoadError> {
    let full = if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    };
    if !full.exists() {
        return Err(format!(
            "WIT file or folder `{}` does not exist (relative to {})",
            path.display(),
            if path.is_absolute() {
                "nothing: it is absolute"
            } else {
                "the crate's Cargo.toml"
            }
        )
        .into());
    }
    let mut resolve = new_resolve();
    // `render_error` gives wit-parser's `--> file:line:col` and a source snippet; paths are shown as the user
    // wrote them, relative to `base`. Folders and files are pushed as `push_path` would, without the context
    // line it adds.
    let pushed = guarded(&path.display().to_string(), || {
        if full.is_dir() {
            resolve
                .push_dir(&full)
                .map(|(id, sources)| (id, sources.paths().map(Path::to_owned).collect()))
        } else {
            resolve.push_file(&full).map(|id| (id, vec![full.clone()]))
        }
    })?;
    let prefix = format!("{}{}", base.display(), std::path::MAIN_SEPARATOR);
    let strip = (!path.is_absolute()).then_some(prefix.as_str());
    let (package, paths): (PackageId, Vec<PathBuf>) =
        pushed.map_err(|e| load_error(&resolve, &e, strip))?;
    // Sorted: wit-parser lists files in directory order, which differs between file systems, and the
    // expansion must not.
    let mut files: Vec<PathBuf> = paths
        .iter()
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

/// Loads one WIT file held in memory, `text` named `name` in messages: what [`load`] does for a file, without the
/// file system (`Loaded::files` is empty).
///
/// # Errors
/// As [`load`]: wit-parser's rendered error, or its panic.
pub fn load_source(name: &str, text: &str) -> Result<Loaded, LoadError> {
    let mut resolve = new_resolve();
    let package = guarded(name, || resolve.push_source(name, text))?
        .map_err(|e| load_error(&resolve, &e, None))?;
    Ok(Loaded {
        resolve,
        package,
        files: Vec::new(),
    })
}

/// A `Resolve` that keeps every `@unstable` item (see [`load`]).
fn new_resolve() -> Resolve {
    Resolve {
        all_features: true,
        ..Resolve::default()
    }
}

/// Runs a wit-parser step over the WIT `what`, turning a panic in it into an error: a bug of wit-parser's must
/// not take down `theater-codegen` or, through the macro, the compiler's proc-macro call. The `Resolve` the step
/// used is not used again afterwards (its caller returns the error).
///
/// # Errors
/// ``"wit-parser panicked while reading `WHAT`: MESSAGE (a wit-parser bug; …)"``.
pub fn guarded<T>(what: &str, step: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        format!(
            "wit-parser panicked while reading `{what}`: {message} (a wit-parser bug; the WIT may still be \
             invalid: check it with `wasm-tools component wit`)"
        )
    })
}

impl Loaded {
    /// Every named interface, as `ns:pkg/name@version`, sorted.
    pub fn interface_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .resolve
            .interfaces
            .iter()
            .filter_map(|(id, _)| iface_name(&self.resolve, id).map(|n| n.versioned()))
            .collect();
        names.sort();
        names
    }

    /// The interface `name` names: `ns:pkg/iface@version`, or `ns:pkg/iface` when only one version of the
    /// package is loaded.
    ///
    /// # Errors
    /// No such interface (the message lists the loaded ones), or several versions of it and no version named
    /// (the message lists them).
    pub fn find_interface(&self, name: &str) -> Result<InterfaceId, String> {
        let wanted = IfaceName::parse(name);
        let candidates: Vec<(InterfaceId, String)> = self
            .resolve
            .interfaces
            .iter()
            .filter_map(|(id, _)| {
                let wanted = wanted.as_ref()?;
                let found = iface_name(&self.resolve, id)?;
                let matches = found.namespace == wanted.namespace
                    && found.package == wanted.package
                    && found.name == wanted.name
                    && (wanted.version.is_none() || found.version == wanted.version);
                matches.then(|| (id, found.versioned()))
            })
            .collect();
        match candidates.as_slice() {
            [(id, _)] => Ok(*id),
            [] => Err(format!(
                "unknown interface `{name}`: the WIT package has {}",
                self.interface_names().join(", ")
            )),
            several => {
                let mut names: Vec<&str> = several.iter().map(|(_, n)| n.as_str()).collect();
                names.sort();
                Err(format!(
                    "interface `{name}` is ambiguous: the WIT has {}; name one with its version",
                    names.join(", ")
                ))
            }
        }
    }
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
        let Err(e) = super::load(&dir, &dir) else {
            panic!("loaded a bad package")
        };
        std::fs::remove_dir_all(&dir).ok();
        assert!(e.message.contains("that.wit:3:"), "{e}");
        // The location on its own, from wit-parser's typed error, not from its text.
        let location = e.location.expect("a syntax error has a location");
        assert!(location.ends_with("that.wit:3:22"), "{location}");
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
        let Err(e) = super::load(&base, std::path::Path::new("wit-bad")) else {
            panic!()
        };
        std::fs::remove_dir_all(&base).ok();
        let msg = e.message;
        assert!(!msg.contains(&base.display().to_string()), "{msg}");
        assert!(msg.contains("wit-bad/b.wit:3:"), "{msg}");
        assert_eq!(e.location.as_deref(), Some("wit-bad/b.wit:3:16"));
    }
}
