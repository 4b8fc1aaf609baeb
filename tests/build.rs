//! Builds the guest actors in `tests/actors/` for `wasm32-wasip2` (as wasmtime builds its test programs) and
//! writes `$OUT_DIR/guests.rs` with one `pub const <NAME>: &str` path per guest.

#[path = "src/guest_cargo.rs"]
mod guest_cargo;

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let actors = manifest_dir.join("actors");
    let target_dir = actors.join("target");
    let crates = discover(&actors);
    let guests: Vec<&String> = crates.iter().filter(|c| is_guest(&actors, c)).collect();

    println!(
        "cargo:rerun-if-changed={}",
        actors.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        actors.join("Cargo.lock").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("wit").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../wit").display()
    );
    for member in &crates {
        println!(
            "cargo:rerun-if-changed={}",
            actors.join(member).join("Cargo.toml").display()
        );
        println!(
            "cargo:rerun-if-changed={}",
            actors.join(member).join("src").display()
        );
    }

    ensure_target();
    // The guests are a separate build: none of the outer cargo's settings apply to them.
    let mut cargo = guest_cargo::guest_cargo();
    cargo
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(actors.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    let output = cargo
        .output()
        .expect("running cargo to build the guest actors");
    if !output.status.success() {
        panic!(
            "building the guest actors in {} failed:\n{}",
            actors.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let mut consts = String::new();
    let mut all = Vec::new();
    for guest in &guests {
        let wasm = target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{}.wasm", guest.replace('-', "_")));
        check_component(&wasm);
        let name = guest.to_uppercase().replace('-', "_");
        consts.push_str(&format!(
            "/// The `{guest}` guest component (`tests/actors/{guest}`).\npub const {name}: &str = {:?};\n",
            wasm.display().to_string()
        ));
        all.push(format!("({guest:?}, {name})"));
    }
    consts.push_str(&format!(
        "/// Every guest: (crate name, component path).\npub const ALL: &[(&str, &str)] = &[{}];\n",
        all.join(", ")
    ));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("guests.rs");
    std::fs::write(&out, consts).expect("writing guests.rs");
}

/// The crates of `actors/`: every directory with a Cargo.toml, sorted.
fn discover(actors: &Path) -> Vec<String> {
    let mut crates: Vec<String> = std::fs::read_dir(actors)
        .expect("reading tests/actors")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    crates.sort();
    crates
}

/// Whether `actors/<name>` is a guest: a `cdylib` crate, built to a component. The others (`guest-support`) are
/// libraries the guests share.
fn is_guest(actors: &Path, name: &str) -> bool {
    let manifest = actors.join(name).join("Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    manifest.contains("\"cdylib\"")
}

/// Installs the wasm32-wasip2 target with rustup when it is missing.
fn ensure_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == TARGET) => {}
        Ok(_) => {
            let status = Command::new("rustup")
                .args(["target", "add", TARGET])
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "`rustup target add {TARGET}` failed"
            );
        }
        Err(e) => panic!(
            "the guest actors need the {TARGET} target; rustup is not available to install it ({e})"
        ),
    }
}

/// Panics unless `wasm` is a WebAssembly component (magic `\0asm`, version 0x0d, layer 1).
fn check_component(wasm: &Path) {
    let bytes = std::fs::read(wasm).unwrap_or_else(|e| panic!("{}: {e}", wasm.display()));
    assert!(
        bytes.len() > 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [0x0d, 0x00, 0x01, 0x00],
        "{} is not a WebAssembly component",
        wasm.display()
    );
}
