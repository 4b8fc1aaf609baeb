//! How a call's parameters and result become a chain event's `data`.
//!
//! `data` is a JSON object (UTF-8):
//!
//! ```json
//! {"params": {"length": 16}, "result": {"Ok": [1, 2, 3]}}
//! ```
//!
//! * `params` maps each WIT parameter name to its value; a callback's parameters are the tuple elements, named
//!   `params.0`, `params.1`, … (the actor's `state` is never recorded).
//! * `result` is the returned value; `result<T, E>` is `{"Ok": T}` or `{"Err": E}`, `option<T>` is `null` or the
//!   value, records objects keyed by their Rust field names. `list<u8>`, wherever it is nested, is a base64 string
//!   (standard, padded), except an empty one, which is `[]` ([`bytes`]).
//! * A *payload value* (handlers.md §1.1) recorded as [`RecordMode::Digest`] is `{"sha1": hex, "len": n}`: SHA-1
//!   over the value's JSON encoding and that encoding's length in bytes; as [`RecordMode::KeyedDigest`] it is
//!   `{"hmac-sha1": hex, "len": n}`, an HMAC-SHA1 under a per-runtime key kept outside the chain, so a short secret
//!   cannot be found by trying values.

pub mod bytes;
pub mod decode;
pub mod size;

use std::collections::HashMap;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::ser::{Serialize, SerializeMap, Serializer};
use sha1::Sha1;

/// How a payload value is recorded in the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordMode {
    /// The value itself.
    Full,
    /// SHA-1 and length of the value's JSON encoding.
    Digest,
    /// HMAC-SHA1 (key kept by the runtime, outside the chain) and length of the value's JSON encoding.
    KeyedDigest,
}

impl RecordMode {
    /// Parses a manifest value: `"full"`, `"digest"` or `"keyed-digest"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Self::Full),
            "digest" => Some(Self::Digest),
            "keyed-digest" => Some(Self::KeyedDigest),
            _ => None,
        }
    }
}

/// The recording settings of one actor: the manifest's per-function overrides and the runtime's HMAC key.
#[derive(Clone, Debug)]
pub struct Recorder {
    /// Event type (`<interface>/<function>`) → mode, for that function's payload values (handlers.md §1.1).
    pub(crate) overrides: HashMap<String, RecordMode>,
    /// Key of [`RecordMode::KeyedDigest`].
    pub(crate) key: Arc<[u8]>,
    /// Whether calls are recorded at all (see `SpawnOptions::recording`).
    pub(crate) enabled: bool,
}

/// Bytes of one chain event's `data` (its JSON) at most: 128 MiB, checked while encoding the values of an event
/// that counted more than `chain::MAX_PENDING_BYTES` (smaller ones cannot encode this large). A call whose values
/// would encode larger is
/// recorded as `{"error":"cannot encode …: chain event data would pass 134217728 bytes (MAX_EVENT_DATA_BYTES)"}`
/// instead, its parameters and its result each on their own (a callback's). JSON escapes a control character to
/// six bytes, so a 255 MB string a guest logs would otherwise make a 1.5 GB line, held whole in memory while it is
/// sealed and longer than a chain file's lines may be (`chain::file::MAX_LINE_BYTES`, 256 MiB). The largest value
/// a default limit lets through, a 64 MiB `read-file`, takes 86 MiB as base64.
pub const MAX_EVENT_DATA_BYTES: usize = 128 * 1024 * 1024;

impl Default for Recorder {
    /// Records everything, with an empty HMAC key and no overrides.
    fn default() -> Self {
        Self::new(HashMap::new(), Arc::from(&[][..]))
    }
}

impl Recorder {
    /// A recorder with the given override table and HMAC key.
    pub fn new(overrides: HashMap<String, RecordMode>, key: Arc<[u8]>) -> Self {
        Self {
            overrides,
            key,
            enabled: true,
        }
    }

    /// Whether calls are recorded.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The mode of value `value` (a parameter's WIT name, `result`, or `params.N`) of the function whose chain
    /// events are `event_type`.
    pub fn mode(
        &self,
        event_type: &str,
        payload: &[(&'static str, RecordMode)],
        value: &str,
    ) -> RecordMode {
        match payload.iter().find(|(name, _)| *name == value) {
            None => RecordMode::Full,
            Some((_, default)) => {
                if self.overrides.is_empty() {
                    *default
                } else {
                    self.overrides.get(event_type).copied().unwrap_or(*default)
                }
            }
        }
    }
}

impl Recorder {
    /// The mode of value `value` (`params.N` or `result`) of the callback whose chain events are `event_type` and
    /// whose payload values are `payload`: in full, unless the manifest overrides the callback's payload values.
    pub fn callback_mode(&self, event_type: &str, payload: &[&str], value: &str) -> RecordMode {
        if payload.contains(&value) {
            self.overrides
                .get(event_type)
                .copied()
                .unwrap_or(RecordMode::Full)
        } else {
            RecordMode::Full
        }
    }
}

/// A value recorded under a [`RecordMode`].
pub struct Recorded<'a, T: ?Sized> {
    value: &'a T,
    mode: RecordMode,
    key: &'a [u8],
}

impl<'a, T: ?Sized + Serialize> Recorded<'a, T> {
    /// Wraps `value` to be serialized under `mode`.
    pub fn new(value: &'a T, mode: RecordMode, recorder: &'a Recorder) -> Self {
        Self {
            value,
            mode,
            key: &recorder.key,
        }
    }
}

impl<T: ?Sized + Serialize> Serialize for Recorded<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.mode {
            RecordMode::Full => self.value.serialize(serializer),
            RecordMode::Digest => digest(self.value, "sha1", Sha1::default(), serializer),
            RecordMode::KeyedDigest => {
                let mac =
                    Hmac::<Sha1>::new_from_slice(self.key).map_err(serde::ser::Error::custom)?;
                digest(self.value, "hmac-sha1", mac, serializer)
            }
        }
    }
}

/// `{<name>: <hex of `hash` over the value's JSON>, "len": <the JSON's length>}`. The JSON is hashed as it is made,
/// never held whole: a digest of a large value (a whole chain) costs no memory of its size.
fn digest<T, D, S>(value: &T, name: &str, hash: D, serializer: S) -> Result<S::Ok, S::Error>
where
    T: Serialize + ?Sized,
    D: sha1::digest::Update + sha1::digest::FixedOutput,
    S: Serializer,
{
    let mut hashing = Hashing(hash, 0);
    bytes::to_json_writer(value, &mut hashing).map_err(serde::ser::Error::custom)?;
    let mut map = serializer.serialize_map(Some(2))?;
    map.serialize_entry(name, &hex::encode(hashing.0.finalize_fixed()))?;
    map.serialize_entry("len", &hashing.1)?;
    map.end()
}

/// An `io::Write` that feeds what is written to a hash (`Sha1` or an HMAC) and counts the bytes.
struct Hashing<D>(D, usize);

impl<D: sha1::digest::Update> std::io::Write for Hashing<D> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        self.1 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A list of parameter values that can be recorded under their names: implemented for tuples of up to 16
/// `Serialize` values (references are fine).
pub trait RecordParams {
    /// Writes each element as an entry `names[i] → value` of `map`, under the mode `mode(names[i])`.
    fn write_entries<M: SerializeMap>(
        &self,
        names: &[&'static str],
        mode: &dyn Fn(&str) -> RecordMode,
        recorder: &Recorder,
        map: &mut M,
    ) -> Result<(), M::Error>;

    /// About how many bytes the values take ([`size::approx_size`]), or more than `cap` when they take more.
    fn approx_size(&self, cap: usize) -> usize;
}

macro_rules! impl_record_params {
    ($(($($t:ident $i:tt),*))*) => {$(
        impl<$($t: Serialize),*> RecordParams for ($($t,)*) {
            #[allow(unused_variables)]
            fn write_entries<M: SerializeMap>(
                &self,
                names: &[&'static str],
                mode: &dyn Fn(&str) -> RecordMode,
                recorder: &Recorder,
                map: &mut M,
            ) -> Result<(), M::Error> {
                $(
                    let name = names.get($i).copied().unwrap_or("?");
                    map.serialize_entry(name, &Recorded::new(&self.$i, mode(name), recorder))?;
                )*
                Ok(())
            }

            #[allow(unused_mut, unused_variables)]
            fn approx_size(&self, cap: usize) -> usize {
                let mut total = 0usize;
                $(
                    total += size::approx_size(&self.$i, cap.saturating_sub(total));
                    if total > cap {
                        return total;
                    }
                )*
                total
            }
        }
    )*};
}

impl_record_params! {
    ()
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, N 12)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, N 12, O 13)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, N 12, O 13, P 14)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, N 12, O 13, P 14, Q 15)
}

/// Encodes one call as chain-event `data`: `{"params": {...}, "result": ...}`.
///
/// `event_type` and `payload` select the modes (see [`Recorder::mode`]); `names` are the parameter names in order.
/// The data is at most `cap` bytes (`None`: no bound, for values known to encode small): past it, it is
/// `{"error":"cannot encode call: chain event data would pass <cap> bytes (MAX_EVENT_DATA_BYTES)"}`.
pub fn encode_call<P: RecordParams + ?Sized, R: Serialize + ?Sized>(
    recorder: &Recorder,
    event_type: &str,
    payload: &[(&'static str, RecordMode)],
    names: &[&'static str],
    params: &P,
    result: &R,
    cap: Option<usize>,
) -> Vec<u8> {
    struct Params<'a, P: ?Sized> {
        recorder: &'a Recorder,
        function: &'a str,
        payload: &'a [(&'static str, RecordMode)],
        names: &'a [&'static str],
        params: &'a P,
    }
    impl<P: RecordParams + ?Sized> Serialize for Params<'_, P> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(self.names.len()))?;
            let mode = |name: &str| self.recorder.mode(self.function, self.payload, name);
            self.params
                .write_entries(self.names, &mode, self.recorder, &mut map)?;
            map.end()
        }
    }
    struct Call<'a, P: ?Sized, R: ?Sized> {
        params: Params<'a, P>,
        result: Recorded<'a, R>,
    }
    impl<P: RecordParams + ?Sized, R: Serialize + ?Sized> Serialize for Call<'_, P, R> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(2))?;
            map.serialize_entry("params", &self.params)?;
            map.serialize_entry("result", &self.result)?;
            map.end()
        }
    }
    let call = Call {
        params: Params {
            recorder,
            function: event_type,
            payload,
            names,
            params,
        },
        result: Recorded::new(
            result,
            recorder.mode(event_type, payload, "result"),
            recorder,
        ),
    };
    // Serializing plain data into a Vec fails only past `cap`; that, and a custom `Serialize` that fails, is
    // recorded as such.
    let mut data = Vec::with_capacity(128);
    match bytes::json_into(&mut data, cap, &call) {
        Ok(()) => data,
        Err(e) => format!("{{\"error\":{:?}}}", format!("cannot encode call: {e}")).into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::Digest;

    #[test]
    fn full_call_is_params_object_and_result() {
        let r = Recorder::default();
        let data = encode_call(
            &r,
            "f",
            &[],
            &["length"],
            &(16u32,),
            &Ok::<_, String>(vec![1u8, 2]),
            None,
        );
        assert_eq!(
            std::str::from_utf8(&data).unwrap(),
            r#"{"params":{"length":16},"result":{"Ok":"AQI="}}"#
        );
    }

    #[test]
    fn digest_hides_payload_and_override_wins() {
        let r = Recorder::default();
        let payload = [("result", RecordMode::Digest)];
        let data = encode_call(&r, "get", &payload, &[], &(), &"secret", None);
        let text = String::from_utf8(data).unwrap();
        assert!(!text.contains("secret"), "{text}");
        // sha1 of "\"secret\"" (the JSON encoding)
        let want = hex::encode(Sha1::digest(b"\"secret\""));
        assert!(text.contains(&want), "{text}");

        let r = Recorder::new(
            [("get".to_string(), RecordMode::Full)].into(),
            Arc::from(&b"k"[..]),
        );
        let text =
            String::from_utf8(encode_call(&r, "get", &payload, &[], &(), &"secret", None)).unwrap();
        assert!(text.contains("\"secret\""), "{text}");
    }

    #[test]
    fn keyed_digest_depends_on_key() {
        let a = Recorder::new(Default::default(), Arc::from(&b"key-a"[..]));
        let b = Recorder::new(Default::default(), Arc::from(&b"key-b"[..]));
        let payload = [("result", RecordMode::KeyedDigest)];
        let encode = |r| {
            encode_call(
                r,
                "get-var",
                &payload,
                &["name"],
                &("HOME",),
                &Some("x"),
                None,
            )
        };
        let (da, db) = (encode(&a), encode(&b));
        assert_ne!(da, db);
        assert!(String::from_utf8(da).unwrap().contains("\"name\":\"HOME\""));
    }

    /// One event's data is bounded: a call whose JSON would pass it (here a string of control characters, six
    /// bytes each escaped) is recorded as an error naming the bound, never built whole. A callback bounds its
    /// parameters and its result each on their own, so the part that fits is kept.
    #[test]
    fn a_call_past_the_event_bound_is_recorded_as_an_error_naming_it() {
        let r = Recorder::default();
        let cap = Some(1000);
        let small = encode_call(&r, "f", &[], &["s"], &("\u{1}".repeat(100),), &1u32, cap);
        let small: serde_json::Value = serde_json::from_slice(&small).unwrap();
        assert_eq!(small["params"]["s"], "\u{1}".repeat(100));
        let big = encode_call(&r, "f", &[], &["s"], &("\u{1}".repeat(200),), &1u32, cap);
        assert!(big.len() < 1000, "{} bytes", big.len());
        let big: serde_json::Value = serde_json::from_slice(&big).unwrap();
        let error = big["error"].as_str().unwrap();
        assert!(error.contains("MAX_EVENT_DATA_BYTES"), "{error}");

        let big = crate::host::encode_callback(
            &r,
            "f",
            &[],
            &["params.0"],
            &(7u32,),
            &"\u{1}".repeat(200),
            cap,
        );
        assert!(big.len() < 1000, "{} bytes", big.len());
        let big: serde_json::Value = serde_json::from_slice(&big).unwrap();
        assert_eq!(big["params"]["params.0"], 7);
        let error = big["result"].as_str().unwrap();
        assert!(
            error.contains("cannot encode result") && error.contains("MAX_EVENT_DATA_BYTES"),
            "{error}"
        );
    }
}
