//! Replays the fuzz inputs on stable: every committed seed (`fuzz/seeds/<target>/`) and every reproducer of a
//! crash found by fuzzing (`fuzz/regressions/<target>/`) goes through the function its target runs
//! (`fuzz/src/harness.rs`, included here by path), which must return without panicking. See docs/fuzzing.md.

use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/harness.rs"]
#[allow(dead_code)]
mod harness;

/// The files of `fuzz/<kind>/<target>/`, sorted (an absent folder is empty).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.expect("read fuzz input folder").path())
            .filter(|p| p.is_file())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    files.sort();
    files
}

/// Runs `run` on every seed and reproducer of `target`; a panic names the file. Returns how many seeds there were.
fn replay(target: &str, run: fn(&[u8])) -> usize {
    let seeds = inputs("seeds", target);
    for path in seeds.iter().chain(&inputs("regressions", target)) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("{target} panics on {}: {message}", path.display());
        }
    }
    seeds.len()
}

#[test]
fn chain_load_inputs() {
    assert!(replay("chain_load", harness::chain_load) > 0, "no seeds");
}

#[test]
fn manifest_parse_inputs() {
    assert!(
        replay("manifest_parse", harness::manifest_parse) > 0,
        "no seeds"
    );
}

#[test]
fn codegen_check_inputs() {
    assert!(
        replay("codegen_check", harness::codegen_check) > 0,
        "no seeds"
    );
}

#[test]
fn record_encode_inputs() {
    assert!(
        replay("record_encode", harness::record_encode) > 0,
        "no seeds"
    );
}

#[test]
fn record_decode_inputs() {
    assert!(
        replay("record_decode", harness::record_decode) > 0,
        "no seeds"
    );
}

/// The seeds are not all rejected early: a valid chain loads and verifies, a manifest parses, WIT resolves,
/// and structured input reaches the encoder (so the replays above test something).
#[test]
fn seeds_reach_the_code_under_test() {
    let read = |target: &str, name: &str| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fuzz/seeds")
                .join(target)
                .join(name),
        )
        .unwrap()
    };
    let chain =
        theater_runtime::Chain::read_jsonl(&read("chain_load", "v1-valid-4.jsonl")[..]).unwrap();
    assert_eq!(chain.len(), 4);
    chain.verify().unwrap();
    let text = String::from_utf8(read("manifest_parse", "full.toml")).unwrap();
    theater_runtime::Manifest::parse(&text, Path::new("/fuzz")).unwrap();
    let text = String::from_utf8(read("codegen_check", "whole-package.wit")).unwrap();
    let loaded = theater_codegen::load::load_source("whole-package.wit", &text).unwrap();
    theater_codegen::model::Model::build(&loaded.resolve).unwrap();
    let mut u = arbitrary::Unstructured::new(&[7; 64]);
    let input: harness::RecordInput = arbitrary::Arbitrary::arbitrary(&mut u).unwrap();
    harness::record_encode_input(&input);
    let mut u = arbitrary::Unstructured::new(&[9; 64]);
    let input: harness::DecodeInput = arbitrary::Arbitrary::arbitrary(&mut u).unwrap();
    harness::record_decode_input(&input);
}
