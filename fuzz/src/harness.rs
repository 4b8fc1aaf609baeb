//! What each fuzz target runs on one input, and the properties it asserts.
//!
//! This file is shared: the fuzz crate (`fuzz/src/lib.rs`) exports it to the targets in `fuzz/fuzz_targets/`, and
//! the stable replay test `tests/tests/fuzz_regressions.rs` includes it by path, so a reproducer replays through
//! exactly the code the fuzzer ran. It may therefore use only crates that both have: `theater_runtime`,
//! `theater_codegen`, `serde_json`, `base64` and `arbitrary` (serde through `theater_runtime::__private`, as
//! generated handler code does).
//!
//! A function returns normally for every input; a panic (a failed assertion included) is a finding.

use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use theater_runtime::__private::serde::{Deserialize, Serialize};
use theater_runtime::Chain;
use theater_runtime::chain::{Ending, file};
use theater_runtime::record::decode::from_recorded;
use theater_runtime::record::{RecordMode, Recorder, encode_call};

/// `chain_load`: bytes as a chain file → the tolerant reader [`file::read`] (behind [`Chain::open`]) and the
/// strict [`Chain::read_jsonl`] (behind [`Chain::load`]), then [`Chain::verify`]. Asserts that the two readers
/// agree (the strict one refuses exactly the files the tolerant one reads as cut mid-line), and that a chain read
/// from any file writes back ([`Chain::write_jsonl`]) to a closed file that reads as the same events with the
/// same verdict.
pub fn chain_load(data: &[u8]) {
    let strict = Chain::read_jsonl(data);
    let Ok(read) = file::read(data) else {
        assert!(
            strict.is_err(),
            "read_jsonl accepts a file that file::read refuses"
        );
        return;
    };
    match &strict {
        Ok(chain) => assert_eq!(chain.events(), read.chain.events(), "the readers disagree"),
        Err(e) => assert!(
            matches!(
                read.ending,
                Ending::Cut {
                    partial_line: Some(_)
                }
            ),
            "read_jsonl refuses ({e}) a file that file::read reads as {:?}",
            read.ending
        ),
    }
    let verdict = read.chain.verify().is_ok();
    let mut written = Vec::new();
    read.chain
        .write_jsonl(&mut written)
        .expect("writing a chain into a Vec cannot fail");
    let again = file::read(&written[..]).unwrap_or_else(|e| {
        panic!(
            "a written chain does not read back ({e}): {}",
            String::from_utf8_lossy(&written)
        )
    });
    assert_eq!(
        again.ending,
        Ending::Closed,
        "a written chain is not closed"
    );
    assert_eq!(
        again.chain.events(),
        read.chain.events(),
        "write → read changed the events"
    );
    assert_eq!(
        again.chain.verify().is_ok(),
        verdict,
        "write → read changed the verdict"
    );
}

/// `manifest_parse`: UTF-8 text → [`theater_runtime::Manifest::parse`] against the folder `/fuzz`; a manifest that
/// parses has absolute paths (the documented promise of [`theater_runtime::Manifest`]).
pub fn manifest_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(manifest) = theater_runtime::Manifest::parse(text, Path::new("/fuzz")) else {
        return;
    };
    assert!(manifest.component.is_absolute(), "{:?}", manifest.component);
    if let Some(state) = &manifest.init_state {
        assert!(state.is_absolute(), "{state:?}");
    }
}

/// `codegen_check`: UTF-8 text as one WIT file → what `theater-codegen check` does (`theater_codegen::check`:
/// `load::load` then `Model::build`), in memory: `load::load_source` (wit-parser's `Resolve::push_source`, the
/// in-memory `push_dir`, under the loader's panic guard; `render_error` on failure, the message `check` prints),
/// `Model::build` on success.
pub fn codegen_check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(loaded) = theater_codegen::load::load_source("fuzz.wit", text) {
        let _ = theater_codegen::model::Model::build(&loaded.resolve);
    }
}

/// Parameter names offered to [`encode_call`] (it takes `&'static str`). Distinct, as WIT parameter names are;
/// `result` and `params.0` collide with the names the recorder gives the result and callback parameters.
const NAMES: [&str; 8] = [
    "length", "result", "params.0", "params.1", "", "\"q\"\\", "ключ", "a\u{0}b",
];

/// How deep a [`Value`] may nest: deeper inputs are skipped, as serde_json's reader stops at 128 levels (each level
/// here is up to two JSON levels: `{"List":[...]}`).
const MAX_DEPTH: usize = 40;

/// A recording mode, chosen by the fuzzer.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Mode {
    Full,
    Digest,
    KeyedDigest,
}

impl From<Mode> for RecordMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Full => RecordMode::Full,
            Mode::Digest => RecordMode::Digest,
            Mode::KeyedDigest => RecordMode::KeyedDigest,
        }
    }
}

/// A value of the shapes wasmtime's bindgen types take, serialized by the same serde derive as generated
/// handler types: WIT variants and enums (external tagging), records (Rust field names), options, results,
/// tuples, `list<u8>` and `list<list<u8>>`, strings and chars of any code point.
#[derive(Arbitrary, Clone, Debug, Serialize, Deserialize)]
#[serde(crate = "theater_runtime::__private::serde")]
pub enum Value {
    Unit,
    Bool(bool),
    U8(u8),
    S32(i32),
    U64(u64),
    S64(i64),
    F32(f32),
    F64(f64),
    Char(char),
    String(String),
    Bytes(Vec<u8>),
    ByteLists(Vec<Vec<u8>>),
    Strings(Vec<String>),
    Option(Option<Box<Value>>),
    Result(Result<Box<Value>, Box<Value>>),
    ResultUnit(Result<(), String>),
    List(Vec<Value>),
    Tuple(Box<Value>, Box<Value>),
    Record(Record),
    #[serde(rename = "kebab-case-name")]
    Renamed {
        inner: Box<Value>,
    },
}

/// A WIT record, as bindgen generates it (fields keyed by their Rust names).
#[derive(Arbitrary, Clone, Debug, Serialize, Deserialize)]
#[serde(crate = "theater_runtime::__private::serde")]
pub struct Record {
    pub name: String,
    pub data: Vec<u8>,
    pub next: Option<Box<Value>>,
    pub flags: (bool, bool),
}

impl Value {
    fn depth(&self) -> usize {
        let boxed = |v: &Option<Box<Value>>| v.as_ref().map_or(0, |v| v.depth());
        1 + match self {
            Value::Option(v) => boxed(v),
            Value::Result(Ok(v) | Err(v)) | Value::Renamed { inner: v } => v.depth(),
            Value::List(vs) => vs.iter().map(Value::depth).max().unwrap_or(0),
            Value::Tuple(a, b) => a.depth().max(b.depth()),
            Value::Record(r) => boxed(&r.next),
            _ => 0,
        }
    }
}

/// The input of `record_encode`: a recorder (overrides, HMAC key), a function's payload defaults, its
/// parameters (at most four, named from [`NAMES`]) and its result.
#[derive(Arbitrary, Debug)]
pub struct RecordInput {
    pub event_type: String,
    /// The manifest's override for `event_type`, if any.
    pub override_mode: Option<Mode>,
    /// An override for some other function (makes the override table non-empty without naming this one).
    pub other_override: Option<(String, Mode)>,
    pub key: Vec<u8>,
    /// Payload defaults: (index into [`NAMES`], or `result` when out of range; mode).
    pub payload: Vec<(u8, Mode)>,
    /// Where the parameter names start in [`NAMES`].
    pub first_name: u8,
    pub params: Vec<Value>,
    pub result: Value,
}

/// `record_encode`: structured input → [`encode_call`]. Asserts the output is one JSON object
/// `{"params": {...}, "result": ...}`, that encoding twice gives the same bytes, that a value recorded in full
/// is its own JSON, and that a value recorded as a digest is exactly `{"sha1"|"hmac-sha1": <40 hex>, "len":
/// <its JSON length>}`, so nothing of the value leaks.
pub fn record_encode(data: &[u8]) {
    let Ok(input) = RecordInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    record_encode_input(&input);
}

/// [`record_encode`] on a decoded input.
pub fn record_encode_input(input: &RecordInput) {
    let params = &input.params[..input.params.len().min(4)];
    if params
        .iter()
        .chain([&input.result])
        .any(|v| v.depth() > MAX_DEPTH)
    {
        return;
    }
    let mut overrides = std::collections::HashMap::new();
    if let Some((function, mode)) = &input.other_override {
        overrides.insert(function.clone(), RecordMode::from(*mode));
    }
    if let Some(mode) = input.override_mode {
        overrides.insert(input.event_type.clone(), mode.into());
    }
    let recorder = Recorder::new(overrides, std::sync::Arc::from(&input.key[..]));
    let payload: Vec<(&'static str, RecordMode)> = input
        .payload
        .iter()
        .map(|(i, m)| (*NAMES.get(*i as usize).unwrap_or(&"result"), (*m).into()))
        .collect();
    let names: Vec<&'static str> = (0..params.len())
        .map(|i| NAMES[(input.first_name as usize + i) % NAMES.len()])
        .collect();
    let encode = || {
        let r = &input.result;
        let (e, p, n) = (&recorder, &payload[..], &names[..]);
        let t = input.event_type.as_str();
        match params {
            [] => encode_call(e, t, p, n, &(), r, None),
            [a] => encode_call(e, t, p, n, &(a,), r, None),
            [a, b] => encode_call(e, t, p, n, &(a, b), r, None),
            [a, b, c] => encode_call(e, t, p, n, &(a, b, c), r, None),
            [a, b, c, d, ..] => encode_call(e, t, p, n, &(a, b, c, d), r, None),
        }
    };
    let bytes = encode();
    assert_eq!(bytes, encode(), "encoding the same call twice differs");
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    let object = json.as_object().expect("the call is a JSON object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["params", "result"], "{json}");
    let recorded_params = object["params"].as_object().expect("params is an object");
    assert_eq!(recorded_params.len(), names.len(), "{json}");
    for (name, value) in names.iter().zip(params) {
        let mode = recorder.mode(&input.event_type, &payload, name);
        check_value(&recorded_params[*name], value, mode);
    }
    let mode = recorder.mode(&input.event_type, &payload, "result");
    check_value(&object["result"], &input.result, mode);
}

/// What a value's plain JSON becomes when recorded (docs/chain.md, "Data"): every non-empty `list<u8>` is one
/// base64 string. In a [`Value`]'s JSON, the only arrays of numbers are `Vec<u8>`s (`U8` is always inside an
/// object), so this model is independent of the serializer adapter that does it in the runtime.
fn as_recorded(json: serde_json::Value) -> serde_json::Value {
    use base64::Engine as _;
    use serde_json::Value as J;
    match json {
        J::Array(items) if !items.is_empty() && items.iter().all(J::is_u64) => {
            let bytes: Vec<u8> = items
                .iter()
                .map(|n| u8::try_from(n.as_u64().unwrap()).expect("a list<u8> element"))
                .collect();
            J::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        J::Array(items) => J::Array(items.into_iter().map(as_recorded).collect()),
        J::Object(map) => J::Object(map.into_iter().map(|(k, v)| (k, as_recorded(v))).collect()),
        other => other,
    }
}

/// One recorded value against the value and its mode.
fn check_value(recorded: &serde_json::Value, value: &Value, mode: RecordMode) {
    // The recorded form, whose bytes a digest covers.
    let own = theater_runtime::record::bytes::to_json(value).expect("a Value serializes");
    let key = match mode {
        RecordMode::Full => {
            // Through text and back, as the recorded value went (f32 and non-finite floats compare equal so).
            let plain = serde_json::to_vec(value).expect("a Value serializes");
            let want = as_recorded(serde_json::from_slice(&plain).expect("plain JSON reads back"));
            assert_eq!(
                recorded, &want,
                "a full value is not its JSON with base64 bytes"
            );
            return;
        }
        RecordMode::Digest => "sha1",
        RecordMode::KeyedDigest => "hmac-sha1",
    };
    let digest = recorded
        .as_object()
        .unwrap_or_else(|| panic!("{mode:?} value is not an object: {recorded}"));
    let mut keys: Vec<&str> = digest.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = [key, "len"];
    want.sort_unstable();
    assert_eq!(
        keys, want,
        "{mode:?} value leaks more than a digest: {recorded}"
    );
    let hex = digest[key].as_str().expect("digest is a string");
    assert!(
        hex.len() == 40
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{mode:?}: {hex:?} is not 40 lowercase hex digits"
    );
    assert_eq!(
        digest["len"].as_u64(),
        Some(own.len() as u64),
        "{mode:?}: len is not the length of the value's recorded JSON"
    );
}

/// The input of `record_decode`: a value of every shape (decoded back after it is recorded) and, apart, the rest
/// of the input as JSON text, whatever it holds.
#[derive(Arbitrary, Debug)]
pub struct DecodeInput {
    pub value: Value,
    pub text: String,
}

/// `record_decode`: the decoder replay feeds recorded values through ([`from_recorded`]). Asserts that a value
/// recorded in full decodes back to a value that records the same (`encode(decode(encode(v))) == encode(v)`:
/// floats that are not finite are recorded as `null` and come back as NaN, which records as `null` again), and
/// that any JSON, decoded as a [`Value`] and as the std types host functions return, gives a value or an error,
/// never a panic.
pub fn record_decode(data: &[u8]) {
    let Ok(input) = DecodeInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    record_decode_input(&input);
}

/// [`record_decode`] on a decoded input.
pub fn record_decode_input(input: &DecodeInput) {
    if input.value.depth() <= MAX_DEPTH {
        let recorded = recorded_json(&input.value);
        let decoded: Value = from_recorded(&recorded)
            .unwrap_or_else(|e| panic!("a recorded value does not decode ({e}): {recorded}"));
        let again = recorded_json(&decoded);
        assert!(
            same_json(&again, &recorded),
            "decoding changed the value: {recorded} became {again}"
        );
    }
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(&input.text) {
        let _ = from_recorded::<Value>(&json);
        let _ = from_recorded::<Result<Vec<u8>, String>>(&json);
        let _ = from_recorded::<Option<Vec<Vec<u8>>>>(&json);
        let _ = from_recorded::<(u64, String, f64)>(&json);
        let _ = from_recorded::<std::collections::HashMap<u32, Vec<u8>>>(&json);
    }
}

/// Whether two JSON values are the same, floats within a relative 1e-6: JSON text carries an `f32` as its shortest
/// decimal and serde_json reads some decimals a unit in the last place off, which is not the decoder's doing.
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= 1e-6 * x.abs().max(y.abs())
        }
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// `value` as the chain records it in full (`list<u8>` as base64), read back as JSON.
fn recorded_json(value: &Value) -> serde_json::Value {
    let bytes = theater_runtime::record::bytes::to_json(value).expect("a Value serializes");
    serde_json::from_slice(&bytes).expect("recorded JSON reads back")
}
