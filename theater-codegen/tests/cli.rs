//! The `theater-codegen` command: generate is the macro's expansion; check reports file:line:col; new-handler
//! writes a crate that parses, joins the workspace and is never overwritten.

use std::path::{Path, PathBuf};
use std::process::Command;

use quote::quote;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_theater-codegen"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn generate_is_token_for_token_the_macro_expansion_of_the_scaffold() {
    let wit = workspace().join("wit");
    let model_wit = theater_codegen::load::load(&workspace(), Path::new("wit")).unwrap();
    let mut builder = theater_codegen::model::Builder::new(&model_wit.resolve);
    let process = model_wit.find_interface("theater:simple/process").unwrap();
    let name = builder.add_root(process).unwrap();
    let model = builder.finish();
    let iface = model.interface(&name).unwrap();
    let skeleton =
        theater_codegen::scaffold::skeleton_impl(&quote::format_ident!("Handler"), iface);
    let wit_str = wit.display().to_string();
    let attr = quote!(wit = #wit_str, import = "theater:simple/process", export = "theater:simple/process-handlers");
    let by_macro = theater_codegen::expand_handler(attr, skeleton, &workspace());
    let by_cli = theater_codegen::generate(
        &wit,
        Some("theater:simple/process"),
        Some("theater:simple/process-handlers"),
    )
    .unwrap();
    assert_eq!(by_cli.to_string(), by_macro.to_string());

    let out = cli(
        &workspace(),
        &[
            "generate",
            "--wit",
            "wit",
            "--import",
            "theater:simple/random",
        ],
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    syn::parse_file(&text).unwrap();
    assert!(
        text.contains("::theater_runtime::host::define::<Self>(&mut inst)"),
        "{text}"
    );
}

#[test]
fn check_prints_file_line_col_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("that.wit"),
        "package a:b;\ninterface x {\n  f: func(a: u32) -> ;\n}\n",
    )
    .unwrap();
    let out = cli(dir.path(), &["check", "--wit", "."]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.lines().next().unwrap().contains("that.wit:3:22: "),
        "{err}"
    );

    let out = cli(&workspace(), &["check", "--wit", "wit"]);
    assert_eq!(out.status.code(), Some(0));
    let out = cli(&workspace(), &["generate", "--wit", "wit"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

/// wit-parser 0.254 panics on an empty block comment (found by the `codegen_check` fuzz target): the loader
/// reports it as an error naming the file, exit 1, instead of crashing.
#[test]
fn a_wit_parser_panic_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let wit = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions/codegen_check/wit-parser-empty-block-comment-min.wit");
    std::fs::copy(&wit, dir.path().join("empty-comment.wit")).unwrap();
    let out = cli(dir.path(), &["check", "--wit", "empty-comment.wit"]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("wit-parser panicked while reading `empty-comment.wit`"),
        "{err}"
    );
}

#[test]
fn new_handler_writes_a_crate_and_joins_the_workspace() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[workspace]\n# members\nmembers = [\"a\"]\n",
    )
    .unwrap();
    let wit = workspace().join("wit");
    let args = [
        "new-handler",
        "clock",
        "--wit",
        wit.to_str().unwrap(),
        "--import",
        "theater:simple/timing",
    ];
    let out = cli(dir.path(), &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let krate = dir.path().join("handlers/clock");
    for file in ["Cargo.toml", "src/lib.rs", "README.md", "tests/handler.rs"] {
        assert!(krate.join(file).is_file(), "{file}");
    }
    let lib = std::fs::read_to_string(krate.join("src/lib.rs")).unwrap();
    syn::parse_file(&lib).unwrap();
    assert!(
        lib.contains("/// WIT: `sleep: func(duration: u64) -> result<_, string>`"),
        "{lib}"
    );
    assert!(lib.contains("not implemented: theater:simple/timing/sleep"));
    assert!(lib.contains("name = \"clock\""));
    let manifest = std::fs::read_to_string(dir.path().join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("# members") && manifest.contains("\"handlers/clock\""),
        "{manifest}"
    );
    // Never overwrites.
    let again = cli(dir.path(), &args);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn wit_may_be_a_file_or_a_folder_with_deps() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    // A single `.wit` file.
    let file = fixtures.join("names/names.wit");
    let file = file.to_str().unwrap();
    let out = cli(
        &workspace(),
        &["generate", "--wit", file, "--import", "fixture:names/names"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    syn::parse_file(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let out = cli(&workspace(), &["check", "--wit", file]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok, 1 WIT files"));

    // A folder whose `deps/` holds two versions of one package: a versioned name picks one.
    let dir = fixtures.join("versioned");
    let dir = dir.to_str().unwrap();
    let out = cli(
        &workspace(),
        &["generate", "--wit", dir, "--import", "dep:shared/api@0.2.0"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("pub label:"), "0.2.0's `thing`: {text}");
    // Unversioned, it is ambiguous: exit 1, naming both candidates.
    let out = cli(
        &workspace(),
        &["generate", "--wit", dir, "--import", "dep:shared/api"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("dep:shared/api@0.1.0") && err.contains("dep:shared/api@0.2.0"),
        "{err}"
    );
}

/// A temporary folder holding a workspace root (`ws/Cargo.toml` with a `members` array) beside nothing else.
fn workspace_in_tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
    (dir, ws)
}

fn new_handler(dir: &Path, name: &str, extra: &[&str]) -> std::process::Output {
    let wit = workspace().join("wit");
    let mut args = vec![
        "new-handler",
        "--wit",
        wit.to_str().unwrap(),
        "--import",
        "theater:simple/timing",
    ];
    args.extend(extra);
    // After `--`, a name such as `---` is the name, not an option.
    args.extend(["--", name]);
    cli(dir, &args)
}

#[test]
fn new_handler_refuses_a_name_that_makes_no_crate_or_type() {
    let (_tmp, ws) = workspace_in_tempdir();
    for bad in ["2fa", "", "---", "a b", "ü", "-x"] {
        let out = new_handler(&ws, bad, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {err}");
        assert!(!err.contains("panicked"), "{bad:?}: {err}");
        assert!(
            err.contains(&format!("`{bad}` is not a handler name")),
            "{bad:?}: {err}"
        );
    }
    assert!(!ws.join("handlers").exists());
    // Letters, digits, `-` and `_` after a first letter.
    let out = new_handler(&ws, "two_FA-2", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ws.join("handlers/two-fa-2/src/lib.rs").is_file());
}

#[test]
fn new_handler_outside_a_workspace_root_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
    let out = new_handler(dir.path(), "clock", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no [workspace] members array"), "{err}");
    assert!(!dir.path().join("handlers").exists(), "a half-made crate");
    // No Cargo.toml at all.
    let dir = tempfile::tempdir().unwrap();
    let out = new_handler(dir.path(), "clock", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path().join("handlers").exists(), "a half-made crate");
}

#[test]
fn new_handler_out_of_the_root_points_at_the_wit() {
    let (tmp, ws) = workspace_in_tempdir();
    std::fs::write(
        ws.join("x.wit"),
        "package a:b;\ninterface i { f: func() -> u32; }\n",
    )
    .unwrap();
    let out = cli(
        &ws,
        &[
            "new-handler",
            "clock",
            "--wit",
            "x.wit",
            "--import",
            "a:b/i",
            "--out",
            "../sib/clock",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let krate = tmp.path().join("sib/clock");
    let lib = std::fs::read_to_string(krate.join("src/lib.rs")).unwrap();
    let wit = lib
        .split("wit = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    assert_eq!(wit, "../../ws/x.wit");
    let manifest = std::fs::read_to_string(ws.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("\"../sib/clock\""), "{manifest}");
}

#[test]
fn new_handler_gives_functions_of_one_rust_name_distinct_methods() {
    let (_tmp, ws) = workspace_in_tempdir();
    std::fs::write(
        ws.join("x.wit"),
        "package a:b;
        interface i {
            resource counter { constructor(); new: static func() -> counter; }
        }",
    )
    .unwrap();
    let out = cli(
        &ws,
        &[
            "new-handler",
            "counters",
            "--wit",
            "x.wit",
            "--import",
            "a:b/i",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lib = std::fs::read_to_string(ws.join("handlers/counters/src/lib.rs")).unwrap();
    let file = syn::parse_file(&lib).unwrap();
    let mut names = Vec::new();
    for item in &file.items {
        if let syn::Item::Impl(i) = item {
            for m in &i.items {
                if let syn::ImplItem::Fn(f) = m {
                    names.push(f.sig.ident.to_string());
                }
            }
        }
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(names.len(), unique.len(), "{names:?}\n{lib}");
    assert!(
        lib.contains("#[theater(name = \"[static]counter.new\")]"),
        "{lib}"
    );
}
