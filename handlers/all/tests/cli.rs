//! The `theater` command, run as a subprocess on the demo actor and on saved chains.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn theater(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_theater"))
        .args(args)
        .output()
        .expect("run theater")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn demo_manifest() -> PathBuf {
    // Ensures the guests are built (theater-tests' build script) before the manifest is used.
    assert!(Path::new(theater_tests::guests::DEMO).exists());
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/actors/demo/demo.toml")
}

#[test]
fn run_demo_prints_log_and_a_verified_chain_then_verify_and_show_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let chain = dir.path().join("demo.chain.jsonl");
    let data = dir.path().join("data");
    let out = theater(&[
        "run",
        demo_manifest().to_str().unwrap(),
        "--chain-out",
        chain.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("hello from the demo actor"), "{all}");
    assert!(all.contains("dice:"), "{all}");
    assert!(all.contains("chain verified:"), "{all}");
    assert!(all.contains("theater:simple/runtime/shutdown"), "{all}");

    let out = theater(&["chain", "verify", chain.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let events = std::fs::read_to_string(&chain).unwrap().lines().count();
    assert!(
        text(&out).contains(&format!("ok, {events} events")),
        "{}",
        text(&out)
    );

    let out = theater(&["chain", "show", chain.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        text(&out).contains("theater:simple/actor/init"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("\"msg\":\"hello from the demo actor"),
        "{}",
        text(&out)
    );
}

#[test]
fn chain_verify_rejects_one_changed_byte_and_names_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let chain = dir.path().join("demo.chain.jsonl");
    let out = theater(&[
        "run",
        demo_manifest().to_str().unwrap(),
        "--chain-out",
        chain.to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // Change one byte of the second event's timestamp (a digit), which its hash covers.
    let original = std::fs::read_to_string(&chain).unwrap();
    let mut lines: Vec<String> = original.lines().map(str::to_owned).collect();
    let at = lines[1].find("\"timestamp\":").unwrap() + "\"timestamp\":".len() + 3;
    let mut bytes = lines[1].clone().into_bytes();
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    lines[1] = String::from_utf8(bytes).unwrap();
    std::fs::write(&chain, lines.join("\n") + "\n").unwrap();

    let out = theater(&["chain", "verify", chain.to_str().unwrap()]);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(msg.contains("chain event 1 (line 2"), "{msg}");
}

#[test]
fn run_rejects_a_manifest_with_an_unknown_field_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("bad.toml");
    std::fs::write(
        &manifest,
        "name = \"x\"\ncomponent = \"x.wasm\"\ncolour = \"red\"\n",
    )
    .unwrap();
    let out = theater(&["run", manifest.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("colour"), "{}", text(&out));
}

#[test]
fn run_rejects_a_bad_handler_field_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("bad.toml");
    let demo = Path::new(theater_tests::guests::DEMO);
    std::fs::write(
        &manifest,
        format!(
            "name = \"x\"\ncomponent = {:?}\n[[handler]]\ntype = \"runtime\"\n[[handler]]\ntype = \"random\"\nsed = 4\n",
            demo
        ),
    )
    .unwrap();
    let out = theater(&["run", manifest.to_str().unwrap()]);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(msg.contains("sed") && msg.contains("random"), "{msg}");
}
