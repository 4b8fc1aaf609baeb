//! Writes `$OUT_DIR/scaffolds.rs`: for every interface with functions in the WASI 0.2 WIT of the wasmtime-wasi
//! this workspace depends on (`src/p2/wit`) and in each input of wasmtime's own `bindgen!` tests
//! (wasmtime-internal-component-macro's `tests/codegen/*.wit`), both found with `cargo metadata`, a module holding
//! the scaffold that `theater-codegen new-handler` would write (`#[theater_handler]` on a skeleton `impl`), and
//! the interfaces the generator refused with its message.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let wasi = package_dir("wasmtime-wasi").join("src/p2/wit");
    let codegen = package_dir("wasmtime-internal-component-macro").join("tests/codegen");
    let mut sources = vec![("wasi".to_owned(), wasi)];
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&codegen)
        .expect("bindgen!'s test inputs")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wit"))
        .collect();
    inputs.sort();
    for input in inputs {
        let stem = input.file_stem().unwrap().to_string_lossy().into_owned();
        sources.push((format!("codegen_{stem}"), input));
    }
    let mut modules = String::new();
    let mut served = Vec::new();
    let mut refused = Vec::new();
    for (prefix, wit) in &sources {
        println!("cargo:rerun-if-changed={}", wit.display());
        let base = if wit.is_dir() {
            wit.clone()
        } else {
            wit.parent().unwrap().to_owned()
        };
        let loaded = theater_codegen::load::load(&base, wit).expect("the WIT loads");
        let mut names: Vec<String> = loaded
            .resolve
            .interfaces
            .iter()
            .filter(|(_, i)| !i.functions.is_empty())
            .filter_map(|(_, i)| {
                let pkg = &loaded.resolve.packages[i.package?].name;
                let version = pkg
                    .version
                    .as_ref()
                    .map(|v| format!("@{v}"))
                    .unwrap_or_default();
                Some(format!(
                    "{}:{}/{}{version}",
                    pkg.namespace,
                    pkg.name,
                    i.name.as_ref()?
                ))
            })
            .collect();
        names.sort();
        for name in &names {
            let label = format!("{prefix} {name}");
            match theater_codegen::skeleton(wit, Some(name), None) {
                Ok(skeleton) => {
                    let module: String =
                        format!("{prefix}_{}", name.split('@').next().unwrap_or(name))
                            .chars()
                            .map(|c| {
                                if c.is_ascii_alphanumeric() {
                                    c.to_ascii_lowercase()
                                } else {
                                    '_'
                                }
                            })
                            .collect();
                    modules.push_str(&format!(
                        "/// The scaffold of `{name}` ({prefix}).\npub mod {module} {{\n    \
                         /// The handler.\n    #[derive(Clone, Debug, Default)]\n    pub struct Handler;\n    {}\n}}\n",
                        skeleton.annotated()
                    ));
                    served.push(format!(
                        "({label:?}, ::std::sync::Arc::new({module}::Handler) as ::std::sync::Arc<dyn ::theater_runtime::Handler>)"
                    ));
                }
                Err(e) => refused.push(format!("({label:?}, {:?})", e.to_string())),
            }
        }
    }
    let out = format!(
        "{modules}\n\
         /// Every interface served by a scaffold (`<source> <interface>`), with its handler.\n\
         pub fn served() -> ::std::vec::Vec<(&'static str, ::std::sync::Arc<dyn ::theater_runtime::Handler>)> {{\n    vec![{}]\n}}\n\
         /// The interfaces the generator refused (`<source> <interface>`), with its message.\n\
         pub const REFUSED: &[(&str, &str)] = &[{}];\n",
        served.join(", "),
        refused.join(", ")
    );
    let path = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("scaffolds.rs");
    std::fs::write(path, out).unwrap();
}

/// The folder of the dependency `package` of this workspace (`cargo metadata` for the host platform only:
/// its source is already there, since the workspace builds it, so nothing is downloaded).
fn package_dir(package: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let host = std::env::var("HOST").expect("cargo sets HOST for build scripts");
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &host,
        ])
        .arg("--manifest-path")
        .arg(manifest)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let manifest = meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == package))
        .and_then(|p| p["manifest_path"].as_str())
        .unwrap_or_else(|| panic!("{package} is a dependency of the workspace"));
    PathBuf::from(manifest).parent().unwrap().to_owned()
}
