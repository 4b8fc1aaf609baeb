//! `theater-codegen new-handler`: renders `templates/handler/` into a new crate `theater-handler-<name>` whose
//! `impl` has one method per WIT function, and adds it to the workspace.

use std::path::{Component, Path, PathBuf};

use heck::{ToKebabCase, ToSnakeCase, ToUpperCamelCase};
use quote::{format_ident, quote};

use crate::model::Builder;

const CARGO_TOML: &str = include_str!("../../templates/handler/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("../../templates/handler/lib.rs.tmpl");
const README: &str = include_str!("../../templates/handler/README.md.tmpl");
const TEST_RS: &str = include_str!("../../templates/handler/tests/handler.rs.tmpl");

/// Why scaffolding failed.
#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn err(message: impl Into<String>) -> Error {
    Error(message.into())
}

/// Creates the crate `theater-handler-<name>` in `out` (default `handlers/<name>`, relative to the current
/// directory, which must be the workspace root) and adds it to the workspace's `members`.
///
/// # Errors
/// The name is not an ASCII letter followed by letters, digits, `-` and `_`; the current directory's
/// `Cargo.toml` has no `[workspace] members`; the folder exists (nothing is overwritten); the WIT does not load;
/// an interface is unknown, ambiguous or unsupported; or a file cannot be written. Nothing is left behind: the
/// checks come before the first write, and a failed write removes the folder.
pub fn run(
    name: &str,
    wit: &Path,
    import: &str,
    export: Option<&str>,
    out: Option<&Path>,
) -> Result<PathBuf, Error> {
    check_name(name)?;
    let name = name.to_kebab_case();
    let root = std::env::current_dir().map_err(|e| err(e.to_string()))?;
    let manifest = root.join("Cargo.toml");
    // Checked before anything is written; `add_member` edits it after.
    workspace_manifest(&manifest)?;
    let dir = normalize(
        &root.join(
            out.map(Path::to_path_buf)
                .unwrap_or_else(|| Path::new("handlers").join(&name)),
        ),
    );
    if dir.exists() {
        return Err(err(format!(
            "{} already exists; not overwriting it",
            dir.display()
        )));
    }
    let wit_abs = normalize(&root.join(wit));
    let loaded = crate::load::load(&root, &wit_abs).map_err(|e| err(e.message))?;
    let mut builder = Builder::new(&loaded.resolve);
    let mut root_of = |name: &str| {
        loaded
            .find_interface(name)
            .map_err(|m| vec![m])
            .and_then(|id| builder.add_root(id))
            .map_err(|e| err(e.join("\n")))
    };
    let import_name = root_of(import)?;
    if let Some(e) = export {
        root_of(e)?;
    }
    let model = builder.finish();
    let iface = model.interface(&import_name).ok_or_else(|| {
        err(format!(
            "internal error in theater-codegen: `{import}` was not modelled"
        ))
    })?;

    let crate_name = format!("theater-handler-{name}");
    let struct_name = format!("{}Handler", name.to_upper_camel_case());
    let config = format!("{}Config", name.to_upper_camel_case());
    let wit_rel = relative(&wit_abs, &dir);
    let skeleton = crate::scaffold::skeleton_impl(&format_ident!("{}", struct_name), iface);
    let states = crate::scaffold::resource_states(iface);
    let wit_rel_str = wit_rel.display().to_string();
    let export_attr = export.map(|e| quote!(, export = #e));
    let file: syn::File = syn::parse2(quote! {
        #states
        #[theater_handler(wit = #wit_rel_str, import = #import #export_attr, name = #name)]
        #skeleton
    })
    .map_err(|e| err(format!("internal error in theater-codegen: {e}")))?;
    let impl_text = prettyplease::unparse(&file);
    let functions = iface
        .functions
        .iter()
        .map(|f| format!("{:?}", f.name))
        .collect::<Vec<_>>()
        .join(", ");
    let fill = |t: &str| {
        t.replace("{{crate_name}}", &crate_name)
            .replace("{{crate_ident}}", &crate_name.to_snake_case())
            .replace("{{struct}}", &struct_name)
            .replace("{{config}}", &config)
            .replace("{{name}}", &name)
            .replace("{{import}}", import)
            .replace(
                "{{export_doc}}",
                &export
                    .map(|e| format!(" and calls the `{e}` callbacks"))
                    .unwrap_or_default(),
            )
            .replace(
                "{{exports_expr}}",
                &export
                    .map(|e| format!("Some({e:?})"))
                    .unwrap_or_else(|| "None".into()),
            )
            .replace("{{functions}}", &functions)
            .replace("{{impl}}", impl_text.trim_end())
    };
    let write = |rel: &str, text: String| {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| err(format!("{}: {e}", parent.display())))?;
        }
        std::fs::write(&path, text).map_err(|e| err(format!("{}: {e}", path.display())))
    };
    let made = write("Cargo.toml", fill(CARGO_TOML))
        .and_then(|()| write("src/lib.rs", fill(LIB_RS)))
        .and_then(|()| write("README.md", fill(README)))
        .and_then(|()| write("tests/handler.rs", fill(TEST_RS)))
        .and_then(|()| add_member(&manifest, &relative(&dir, &root)));
    if let Err(e) = made {
        // The folder did not exist: all of it is this run's.
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok(dir)
}

/// A handler name is an ASCII letter, then ASCII letters, digits, `-` and `_`: what makes a crate name
/// (`theater-handler-<name>` in kebab-case) and a type name (`<Name>Handler`).
fn check_name(name: &str) -> Result<(), Error> {
    let mut chars = name.chars();
    let first_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if first_letter && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        Ok(())
    } else {
        Err(err(format!(
            "`{name}` is not a handler name: it must start with an ASCII letter, followed by ASCII letters, \
             digits, `-` and `_` (e.g. `clock`, `http-cache`)"
        )))
    }
}

/// The workspace manifest, parsed, when it has a `[workspace] members` array.
fn workspace_manifest(manifest: &Path) -> Result<toml_edit::DocumentMut, Error> {
    let text = std::fs::read_to_string(manifest).map_err(|e| {
        err(format!(
            "{}: {e} (run new-handler at the workspace root)",
            manifest.display()
        ))
    })?;
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| err(format!("{}: {e}", manifest.display())))?;
    if doc
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .is_none()
    {
        return Err(err(format!(
            "{}: no [workspace] members array (run new-handler at the workspace root)",
            manifest.display()
        )));
    }
    Ok(doc)
}

/// Adds `member` to `[workspace] members` of `manifest`, keeping the file's formatting.
fn add_member(manifest: &Path, member: &Path) -> Result<(), Error> {
    let mut doc = workspace_manifest(manifest)?;
    let members = doc
        .get_mut("workspace")
        .and_then(|w| w.get_mut("members"))
        .and_then(|m| m.as_array_mut())
        .ok_or_else(|| {
            err(format!(
                "{}: no [workspace] members array",
                manifest.display()
            ))
        })?;
    let member = member.to_string_lossy().replace('\\', "/");
    if !members.iter().any(|m| m.as_str() == Some(&member)) {
        members.push(member);
    }
    std::fs::write(manifest, doc.to_string())
        .map_err(|e| err(format!("{}: {e}", manifest.display())))
}

/// `path` (absolute) with its `.` and `..` components resolved lexically (`/w/../sib` → `/sib`), as
/// [`relative`] needs; symbolic links are not followed, as the user's `../sib` means the sibling of the folder
/// they are in.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `target` relative to `base` (both absolute and normalized).
fn relative(target: &Path, base: &Path) -> PathBuf {
    let t: Vec<Component> = target.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = t.iter().zip(&b).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_paths() {
        assert_eq!(
            normalize(Path::new("/w/ws/../sib/./clock")),
            Path::new("/w/sib/clock")
        );
        assert_eq!(normalize(Path::new("/../a")), Path::new("/a"));
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/w/wit"), Path::new("/w/handlers/clock")),
            Path::new("../../wit")
        );
        assert_eq!(
            relative(Path::new("/w/handlers/clock"), Path::new("/w")),
            Path::new("handlers/clock")
        );
    }
}
