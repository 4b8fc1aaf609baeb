//! Comparing a replayed event's data with the recorded one: the first differing place, as a path and the two values
//! there, shortened for a report.

use serde_json::Value;

/// Values longer than this many characters (as JSON text) are shortened in reports.
const SHORT: usize = 120;

/// Where a replayed value first differs from the recorded one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The path to it: `.result.Ok[2]`, `.params.length`; `.` for the whole value. Object keys are written as
    /// they are (`.params.params.0` is the key `params.0` under `params`).
    pub path: String,
    /// The recorded value there, as JSON, shortened.
    pub recorded: String,
    /// The replayed value there, as JSON, shortened.
    pub replayed: String,
}

/// The first place, in document order, where `replayed` differs from `recorded`; `None` when they agree.
///
/// A keyed digest (`{"hmac-sha1": …, "len": n}`) is made under the recording runtime's key, which a replay in
/// another runtime does not have: two keyed digests agree when their lengths do.
pub fn first_difference(recorded: &Value, replayed: &Value) -> Option<Difference> {
    let mut path = String::new();
    differ(recorded, replayed, &mut path).map(|(a, b)| Difference {
        path: if path.is_empty() {
            ".".to_owned()
        } else {
            path
        },
        recorded: short(a),
        replayed: short(b),
    })
}

/// The first differing pair of values under `a` and `b`; on return `path` leads to it.
fn differ<'a>(a: &'a Value, b: &'a Value, path: &mut String) -> Option<(&'a Value, &'a Value)> {
    if a == b || keyed_digests_agree(a, b) {
        return None;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) if x.keys().eq(y.keys()) => x
            .iter()
            .zip(y.values())
            .find_map(|((key, va), vb)| step(path, format_args!(".{key}"), va, vb)),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (va, vb))| step(path, format_args!("[{i}]"), va, vb)),
        _ => Some((a, b)),
    }
}

/// [`differ`] one level down, `label` (`.key` or `[i]`) added to `path` while it looks.
fn step<'a>(
    path: &mut String,
    label: std::fmt::Arguments<'_>,
    a: &'a Value,
    b: &'a Value,
) -> Option<(&'a Value, &'a Value)> {
    let len = path.len();
    std::fmt::Write::write_fmt(path, label).expect("writing to a String");
    let found = differ(a, b, path);
    if found.is_none() {
        path.truncate(len);
    }
    found
}

/// Two keyed digests of values of the same encoded length.
fn keyed_digests_agree(a: &Value, b: &Value) -> bool {
    let len = |v: &Value| {
        v.as_object()
            .filter(|o| o.len() == 2 && o.contains_key("hmac-sha1"))
            .and_then(|o| o.get("len").cloned())
    };
    matches!((len(a), len(b)), (Some(x), Some(y)) if x == y)
}

/// `value` as JSON text, at most [`SHORT`] characters (then ending in `…`).
pub fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(SHORT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_values_have_no_difference() {
        let v = json!({"params": {"length": 16}, "result": {"Ok": "AAEC"}});
        assert_eq!(first_difference(&v, &v.clone()), None);
    }

    #[test]
    fn the_first_difference_is_named_by_its_path() {
        let a = json!({"params": {"params.0": "x", "n": [1, 2, 3]}, "result": null});
        let b = json!({"params": {"params.0": "x", "n": [1, 5, 3]}, "result": 1});
        let d = first_difference(&a, &b).unwrap();
        assert_eq!(d.path, ".params.n[1]");
        assert_eq!((d.recorded.as_str(), d.replayed.as_str()), ("2", "5"));
    }

    #[test]
    fn different_shapes_differ_at_the_shape() {
        let d = first_difference(
            &json!({"result": {"Ok": 1}}),
            &json!({"result": {"Trap": "x"}}),
        )
        .unwrap();
        assert_eq!(d.path, ".result");
        assert_eq!(d.replayed, r#"{"Trap":"x"}"#);
    }

    #[test]
    fn keyed_digests_agree_by_length_only() {
        let a = json!({"result": {"hmac-sha1": "aa", "len": 4}});
        let b = json!({"result": {"hmac-sha1": "bb", "len": 4}});
        let c = json!({"result": {"hmac-sha1": "bb", "len": 5}});
        assert_eq!(first_difference(&a, &b), None);
        assert_eq!(first_difference(&a, &c).unwrap().path, ".result.hmac-sha1");
        // A plain digest is compared in full.
        let d = json!({"result": {"sha1": "aa", "len": 4}});
        let e = json!({"result": {"sha1": "bb", "len": 4}});
        assert_eq!(first_difference(&d, &e).unwrap().path, ".result.sha1");
    }

    #[test]
    fn long_values_are_shortened() {
        let long = Value::String("é".repeat(500));
        let s = short(&long);
        assert_eq!(s.chars().count(), SHORT + 1);
        assert!(s.ends_with('…'));
    }
}
