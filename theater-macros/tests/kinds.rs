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
