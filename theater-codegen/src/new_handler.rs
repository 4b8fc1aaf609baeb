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
/// The folder exists (nothing is overwritten), the WIT does not load, an interface is unknown, ambiguous or
/// unsupported, or a file cannot be written.
pub fn run(
    name: &str,
    wit: &Path,
    import: &str,
    export: Option<&str>,
    out: Option<&Path>,
) -> Result<PathBuf, Error> {
    let name = name.to_kebab_case();
    let root = std::env::current_dir().map_err(|e| err(e.to_string()))?;
    let dir = root.join(
        out.map(Path::to_path_buf)
            .unwrap_or_else(|| Path::new("handlers").join(&name)),
    );
    if dir.exists() {
        return Err(err(format!(
            "{} already exists; not overwriting it",
            dir.display()
        )));
    }
    let wit_abs = std::path::absolute(root.join(wit)).map_err(|e| err(e.to_string()))?;
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
    write("Cargo.toml", fill(CARGO_TOML))?;
    write("src/lib.rs", fill(LIB_RS))?;
    write("README.md", fill(README))?;
    write("tests/handler.rs", fill(TEST_RS))?;
    add_member(&root.join("Cargo.toml"), &relative(&dir, &root))?;
    Ok(dir)
}

/// Adds `member` to `[workspace] members` of `manifest`, keeping the file's formatting.
fn add_member(manifest: &Path, member: &Path) -> Result<(), Error> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| err(format!("{}: {e}", manifest.display())))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| err(format!("{}: {e}", manifest.display())))?;
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

/// `target` relative to `base` (both absolute).
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
