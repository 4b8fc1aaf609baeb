//! Every WIT kind of `theater-codegen/tests/fixtures/kinds` compiles as a sync handler and as an async one, and
//! the generated `Handler` describes the interface.

use theater_runtime::Handler;

macro_rules! kinds_handler {
    ($module:ident, $($async:ident)?) => {
        mod $module {
            use theater_macros::theater_handler;

            use self::fixture::kinds::kinds::{Color, Id, Perms, Point, Points, Prims, Shape};

            #[derive(Clone, Default)]
            pub struct KindsHandler;

            #[theater_handler(wit = "../theater-codegen/tests/fixtures/kinds", import = "fixture:kinds/kinds")]
            impl KindsHandler {
                $($async)? fn records(&self, p: Point, _q: Prims) -> Point { p }
                $($async)? fn variants(&self, s: Shape) -> Shape { s }
                $($async)? fn enums(&self, c: Color) -> Color { c }
                $($async)? fn permissions(&self, p: Perms) -> Perms { p | Perms::READ }
                $($async)? fn options(&self, o: Option<Option<u32>>) -> Option<String> { o.flatten().map(|v| v.to_string()) }
                $($async)? fn results(
                    &self,
                    r: Result<u32, String>,
                    _s: Result<(), String>,
                    _t: Result<String, ()>,
                    _u: Result<(), ()>,
                ) -> Result<Vec<u8>, String> {
                    r.map(|v| v.to_le_bytes().to_vec())
                }
                $($async)? fn tuples(&self, t: (u8, String, (bool,))) -> (u64, u64) { (t.0 as u64, t.1.len() as u64) }
                $($async)? fn lists(&self, l: Vec<Vec<u8>>) -> Vec<String> { l.iter().map(|b| b.len().to_string()).collect() }
                $($async)? fn aliases(&self, i: Id, _p: Points) -> Id { i }
                $($async)? fn nothing(&self) {}
            }
        }
    };
}

kinds_handler!(sync_kinds,);
kinds_handler!(async_kinds, async);

#[test]
fn generated_handlers_describe_the_interface() {
    for handler in [
        &sync_kinds::KindsHandler as &dyn Handler,
        &async_kinds::KindsHandler,
    ] {
        assert_eq!(handler.name(), "kinds");
        assert_eq!(handler.imports(), Some("fixture:kinds/kinds"));
        assert_eq!(handler.exports(), None);
        assert_eq!(
            handler.functions(),
            [
                "records",
                "variants",
                "enums",
                "permissions",
                "options",
                "results",
                "tuples",
                "lists",
                "aliases",
                "nothing"
            ]
        );
    }
}

#[test]
fn generated_types_round_trip_through_serde() {
    use sync_kinds::fixture::kinds::kinds::{Point, Shape};
    let shape = Shape::Rect(Point {
        x: 1,
        y: -2,
        r#type: Some("t".into()),
        tags: vec![("a".into(), 7)],
    });
    let json = serde_json::to_string(&shape).unwrap();
    assert_eq!(serde_json::from_str::<Shape>(&json).unwrap(), shape);
}

#[test]
fn flags_serialize_as_the_names_of_the_set_flags() {
    use sync_kinds::fixture::kinds::kinds::Perms;
    let perms = Perms::READ | Perms::EXEC_ABLE;
    let json = serde_json::to_string(&perms).unwrap();
    assert_eq!(json, r#"["read","exec-able"]"#);
    assert_eq!(serde_json::from_str::<Perms>(&json).unwrap(), perms);
    assert!(serde_json::from_str::<Perms>(r#"["nope"]"#).is_err());
}

/// Encodes `value` as the chain records it (`record::bytes`: `list<u8>` as base64) and decodes it back as replay
/// does (`record::decode`).
fn recorded_round_trip<T>(value: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let recorded = serde_json::to_value(theater_runtime::record::bytes::Wrap(value)).unwrap();
    theater_runtime::record::decode::from_recorded(&recorded)
        .unwrap_or_else(|e| panic!("{recorded}: {e}"))
}

#[test]
fn every_kind_decodes_from_its_recorded_form() {
    use sync_kinds::fixture::kinds::kinds::{Color, Perms, Point, Prims, Shape};
    let point = |x| Point {
        x,
        y: -x,
        r#type: (x % 2 == 0).then(|| format!("t{x}")),
        tags: vec![("a".into(), 7), ("b".into(), u64::MAX)],
    };
    let prims = Prims {
        a: true,
        b: i8::MIN,
        c: u8::MAX,
        d: i16::MIN,
        e: u16::MAX,
        f: i32::MIN,
        g: u32::MAX,
        h: i64::MIN,
        i: u64::MAX,
        j: 1.5,
        k: -2.25e300,
        l: 'é',
        m: "text \"quoted\" \u{1F600}".into(),
    };
    // Records, a record of every primitive, lists of records (an alias).
    assert_eq!(recorded_round_trip(&point(2)), point(2));
    assert_eq!(recorded_round_trip(&prims), prims);
    let points = vec![point(1), point(2)];
    assert_eq!(recorded_round_trip(&points), points);
    // Variants with and without payloads; enums; flags.
    for shape in [Shape::Circle(0.5), Shape::Rect(point(3)), Shape::Empty] {
        assert_eq!(recorded_round_trip(&shape), shape);
    }
    for color in [Color::Red, Color::Green, Color::BlueIsh] {
        assert_eq!(recorded_round_trip(&color), color);
    }
    for perms in [Perms::empty(), Perms::READ, Perms::READ | Perms::EXEC_ABLE] {
        assert_eq!(recorded_round_trip(&perms), perms);
    }
    // Options; `option<option<T>>`'s `some(none)` is recorded as `null` and comes back as `none`.
    for o in [None, Some(Some(3u32))] {
        assert_eq!(recorded_round_trip(&o), o);
    }
    assert_eq!(recorded_round_trip(&Some(None::<u32>)), None);
    // Results of every shape, a result of bytes, as host functions return them.
    type Results = (
        Result<u32, String>,
        Result<(), String>,
        Result<String, ()>,
        Result<(), ()>,
    );
    let results: Results = (Err("no".into()), Ok(()), Ok("s".into()), Err(()));
    assert_eq!(recorded_round_trip(&results), results);
    for r in [Ok(vec![0u8, 1, 255]), Ok(vec![]), Err("e".to_owned())] {
        assert_eq!(recorded_round_trip(&r), r);
    }
    // Tuples, nested; lists of lists of bytes, empty ones included.
    let tuple = (7u8, "x".to_owned(), (true,));
    assert_eq!(recorded_round_trip(&tuple), tuple);
    let lists = vec![vec![1u8, 2, 3], vec![], vec![0u8; 100]];
    assert_eq!(recorded_round_trip(&lists), lists);
    let strings = vec!["a".to_owned(), String::new()];
    assert_eq!(recorded_round_trip(&strings), strings);
}
