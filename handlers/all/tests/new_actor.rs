//! `theater new actor`: the scaffolded crate builds for `wasm32-wasip2` as its README says and runs with
//! `theater run`.

use std::path::Path;
use std::process::Command;

#[test]
fn a_scaffolded_actor_builds_and_runs() {
    // The guests' build (theater-tests' build script) has compiled wit-bindgen for wasm32-wasip2 into
    // tests/actors/target: the new crate builds there, with the guests' Cargo.lock, and reuses it.
    assert!(Path::new(theater_tests::guests::DEMO).exists());
    let actors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/actors");
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = dir.path().join("greeter");

    let out = Command::new(env!("CARGO_BIN_EXE_theater"))
        .args([
            "new",
            "actor",
            "greeter",
            "--handlers",
            "runtime,random,message-server",
        ])
        .arg("--dir")
        .arg(&crate_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "greeter.toml",
        "README.md",
        "wit/world.wit",
        "wit/deps/simple/actor.wit",
    ] {
        assert!(crate_dir.join(file).exists(), "{file}");
    }
    let readme = std::fs::read_to_string(crate_dir.join("README.md")).unwrap();
    assert!(
        readme.contains("cargo build --release --target wasm32-wasip2"),
        "{readme}"
    );
    assert!(readme.contains("theater run greeter.toml"), "{readme}");

    // The README's build command, in the shared target folder.
    std::fs::copy(actors.join("Cargo.lock"), crate_dir.join("Cargo.lock")).unwrap();
    let target = actors.join("target");
    // A build of its own: none of the outer cargo's settings apply.
    let mut cargo = theater_tests::guest_cargo::guest_cargo();
    cargo
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(&crate_dir);
    let out = cargo.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Where the manifest expects it, as a build with the default target folder leaves it.
    let release = crate_dir.join("target/wasm32-wasip2/release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::copy(
        target.join("wasm32-wasip2/release/greeter.wasm"),
        release.join("greeter.wasm"),
    )
    .unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_theater"))
        .arg("run")
        .arg(crate_dir.join("greeter.toml"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(all.contains("hello from greeter"), "{all}");
    assert!(all.contains("chain: 2 events"), "{all}");
    assert!(all.contains("chain head "), "{all}");
    assert!(all.contains("actor greeter stopped"), "{all}");
}
