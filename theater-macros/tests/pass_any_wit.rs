//! `#[theater_handler]` over WIT that is not `theater:simple`: a single `.wit` file whose names are Rust keywords
//! and odd kebab-case, a versioned interface from a `deps/` folder that holds two versions of its package, a
//! plain interface beside an unsupported (resource) one, and WIT names whose Rust names collide.
#![deny(warnings)]

use theater_runtime::Handler;

/// `fixture:names/names`, read from its single file: WIT names map to Rust names through heck, keywords become
/// raw identifiers (`r#type`), and the four that cannot be raw take a trailing underscore (`self_`, `Self_`).
mod names {
    use theater_macros::theater_handler;

    use self::fixture::names::names::{Enum, Flags, Record, Self_, Type};
    use self::fixture::names::self_::Id;

    #[derive(Clone, Default)]
    pub struct NamesHandler;

    #[theater_handler(
        wit = "../theater-codegen/tests/fixtures/names/names.wit",
        import = "fixture:names/names"
    )]
    impl NamesHandler {
        fn r#impl(&self, self_: u32, r#type: Type) -> Type {
            let mut t = r#type;
            t.push(self_ as u8);
            t
        }

        fn super_(&self, r#match: Record) -> Self_ {
            match (
                r#match.r#type,
                r#match.self_.len(),
                r#match.r#match,
                r#match.kebab_case_field,
            ) {
                (0, ..) => Self_::Type,
                (_, 0, ..) => Self_::Super,
                (n, ..) => Self_::Self_(n),
            }
        }

        async fn r#match(&self, r#fn: Enum, super_: Flags) -> bool {
            matches!(r#fn, Enum::Self_ | Enum::Crate | Enum::Fn | Enum::PlainCase)
                && super_.contains(Flags::SELF | Flags::TYPE)
        }

        fn r#fn(&self) {}

        fn kebab_case(&self, store: u32, call: String, this: bool, result: u8) -> u64 {
            u64::from(store) + call.len() as u64 + u64::from(this) + u64::from(result)
        }

        fn get_http_status(&self, with_id: Id) -> u16 {
            with_id as u16
        }

        async fn r#async(&self, r#await: u32) -> u32 {
            r#await
        }

        fn crate_(&self, super_: String) {
            let _ = super_;
        }
    }
}

/// `dep:shared/api@0.2.0`: the versioned name picks one of the two versions in `deps/`.
mod versioned {
    use theater_macros::theater_handler;

    use self::dep::shared::types::Thing;

    #[derive(Clone, Default)]
    pub struct ApiHandler;

    #[theater_handler(
        wit = "../theater-codegen/tests/fixtures/versioned",
        import = "dep:shared/api@0.2.0"
    )]
    impl ApiHandler {
        fn ping(&self, n: u32) -> Thing {
            Thing {
                n,
                label: n.to_string(),
            }
        }
    }
}

/// `fixture:reachable/reachable`: a resource in another interface of the package is not an error.
mod reachable {
    use theater_macros::theater_handler;

    use self::fixture::reachable::shared::Point;

    #[derive(Clone, Default)]
    pub struct ReachableHandler;

    #[theater_handler(
        wit = "../theater-codegen/tests/fixtures/reachable",
        import = "fixture:reachable/reachable"
    )]
    impl ReachableHandler {
        fn move_by(&self, p: Point, dx: i32) -> Point {
            Point { x: p.x + dx, ..p }
        }
    }
}

/// `fixture:collisions/collisions`: WIT functions that share a Rust name, each bound by its WIT name where needed
/// (`#[theater(name = "...")]`); an async `clone`, which is the handler's, not its `Arc`'s; two flags types whose
/// snake_case names are one; and parameters named like the glue's locals (`ticks`, `waited`).
mod collisions {
    use theater_macros::theater_handler;
    use theater_runtime::{HostCtx, HostResult, Resource};

    use self::fixture::collisions::collisions::{XY, Xy};

    /// The value of a `timer` handle.
    pub struct Timer;

    #[derive(Clone, Default)]
    pub struct CollisionsHandler;

    #[theater_handler(
        wit = "../theater-codegen/tests/fixtures/collisions",
        import = "fixture:collisions/collisions"
    )]
    impl CollisionsHandler {
        fn timer_new(&self, ctx: &mut HostCtx<'_>) -> HostResult<Resource<Timer>> {
            Ok(ctx.table().push(Timer)?)
        }

        #[theater(name = "[static]timer.new")]
        fn timer_make(&self, ctx: &mut HostCtx<'_>) -> HostResult<Resource<Timer>> {
            Ok(ctx.table().push(Timer)?)
        }

        #[theater(name = "[method]timer.drop")]
        fn timer_stop(&self, self_: Resource<Timer>) {
            let _ = self_;
        }

        /// The destructor: `timer_drop` is free once `[method]timer.drop` is bound by its WIT name.
        fn timer_drop(&self, ctx: &mut HostCtx<'_>, self_: Resource<Timer>) -> HostResult<()> {
            ctx.table().delete(self_)?;
            Ok(())
        }

        async fn sleep(&self, t: Resource<Timer>, ticks: u64, waited: u64) -> u64 {
            let _ = t;
            ticks + waited
        }

        fn get_http(&self) -> u32 {
            1
        }

        #[theater(name = "get-HTTP")]
        fn get_http_upper(&self) -> u32 {
            2
        }

        async fn clone(&self) -> u32 {
            3
        }

        fn both(&self, p: XY, q: Xy) -> u32 {
            u32::from(p.contains(XY::A)) + u32::from(q.contains(Xy::B))
        }
    }
}

#[test]
fn colliding_names_are_each_bound_once() {
    let handler: &dyn Handler = &collisions::CollisionsHandler;
    assert_eq!(
        handler.functions(),
        [
            "[constructor]timer",
            "[static]timer.new",
            "[method]timer.drop",
            "sleep",
            "get-http",
            "get-HTTP",
            "clone",
            "both",
            "[resource-drop]timer"
        ]
    );
}

#[test]
fn odd_names_keep_their_wit_names() {
    let handler: &dyn Handler = &names::NamesHandler;
    assert_eq!(handler.imports(), Some("fixture:names/names"));
    assert_eq!(
        handler.functions(),
        [
            "impl",
            "super",
            "match",
            "fn",
            "kebab-case",
            "get-HTTP-status",
            "async",
            "crate"
        ]
    );
}

#[test]
fn versioned_and_reachable_handlers_describe_their_interfaces() {
    let api: &dyn Handler = &versioned::ApiHandler;
    assert_eq!(api.name(), "api");
    // Unversioned: the runtime matches a component's imports without their `@version`.
    assert_eq!(api.imports(), Some("dep:shared/api"));
    assert_eq!(api.functions(), ["ping"]);
    let reachable: &dyn Handler = &reachable::ReachableHandler;
    assert_eq!(reachable.functions(), ["move-by"]);
}
