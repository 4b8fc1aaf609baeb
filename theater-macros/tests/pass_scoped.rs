//! `#[theater_handler]` on an `impl` that is not alone at module level: in a function body (a `#[test] fn`), where
//! the generated types name each other and a resource's type declared in that body, and two handlers in one
//! module.
#![deny(warnings)]

use theater_runtime::Handler;

const SCOPED_FUNCTIONS: [&str; 5] = [
    "[constructor]counter",
    "[method]counter.add",
    "length",
    "tally-at",
    "[resource-drop]counter",
];

/// `#[theater_handler]` for `theater:simple/random` on `$handler`, with trivial methods, from a `macro_rules!`
/// expansion (with its own hygiene) where it is invoked: a function body, a module.
macro_rules! random_handler {
    ($handler:ident) => {
        #[theater_handler(wit = "../wit", import = "theater:simple/random")]
        impl $handler {
            fn random_bytes(&self, length: u32) -> Result<Vec<u8>, String> {
                Ok(vec![0; length as usize])
            }
            fn random_range(&self, min: u64, _max: u64) -> Result<u64, String> {
                Ok(min)
            }
            fn random_float(&self) -> Result<f64, String> {
                Ok(0.5)
            }
            fn generate_uuid(&self) -> Result<String, String> {
                Ok(String::new())
            }
        }
    };
}

/// `fixture:scoped/scoped` in a function body: `segment` has fields of type `point`, `tally` holds an
/// `own<counter>`, and the resource's type (`CounterState`) is declared in the body too (`pub`: the generated
/// `Tally`'s public component-model impls name it).
#[test]
fn handler_in_a_function_body() {
    use theater_macros::theater_handler;
    use theater_runtime::{HostCtx, HostResult, Resource};

    use fixture::scoped::scoped::{Point, Segment, Tally};

    pub struct CounterState(u64);

    #[derive(Clone, Default)]
    struct ScopedHandler;

    #[theater_handler(
        wit = "../theater-codegen/tests/fixtures/scoped",
        import = "fixture:scoped/scoped"
    )]
    impl ScopedHandler {
        fn counter_new(
            &self,
            ctx: &mut HostCtx<'_>,
            start: u64,
        ) -> HostResult<Resource<CounterState>> {
            Ok(ctx.table().push(CounterState(start))?)
        }

        fn counter_add(
            &self,
            ctx: &mut HostCtx<'_>,
            self_: Resource<CounterState>,
            n: u64,
        ) -> HostResult<u64> {
            let counter = ctx.table().get_mut(&self_)?;
            counter.0 += n;
            Ok(counter.0)
        }

        fn length(&self, s: Segment) -> u32 {
            (s.start.x - s.end.x).unsigned_abs() + (s.start.y - s.end.y).unsigned_abs()
        }

        fn tally_at(&self, c: Resource<CounterState>, at: Point) -> Tally {
            Tally { counter: c, at }
        }
    }

    let h = ScopedHandler;
    assert_eq!(h.name(), "scoped");
    assert_eq!(h.functions(), SCOPED_FUNCTIONS);
    let s = Segment {
        start: Point { x: 1, y: 2 },
        end: Point { x: -2, y: 6 },
    };
    assert_eq!(h.length(s), 7);
    // The generated resource type is the handler's.
    let c: Resource<fixture::scoped::scoped::Counter> = Resource::new_own(3);
    let tally = h.tally_at(c, Point { x: 0, y: 0 });
    let _: &Resource<CounterState> = &tally.counter;
}

/// Two handlers in one module, here a function body (`two_in_one_module` below at module level): one over
/// `fixture:scoped/timers`, whose resource's private type (`TimerState`) is declared in the body and whose `lap`
/// record has a field of another interface's type, and one over `theater:simple/random`.
#[test]
fn two_handlers_in_a_function_body() {
    use theater_macros::theater_handler;
    use theater_runtime::{HostCtx, HostResult, Resource};

    use fixture::scoped::scoped::{Point, Segment};
    use fixture::scoped::timers::Lap;

    struct TimerState(Point);

    #[derive(Clone, Default)]
    struct TimersHandler;

    #[theater_handler(
        wit = "../theater-codegen/tests/fixtures/scoped",
        import = "fixture:scoped/timers"
    )]
    impl TimersHandler {
        fn timer_new(&self, ctx: &mut HostCtx<'_>, at: Point) -> HostResult<Resource<TimerState>> {
            Ok(ctx.table().push(TimerState(at))?)
        }

        fn timer_elapsed(&self, _self_: Resource<TimerState>) -> u64 {
            0
        }

        fn lap_of(&self, ctx: &mut HostCtx<'_>, t: Resource<TimerState>) -> HostResult<Lap> {
            let start = ctx.table().get(&t)?.0.clone();
            Ok(Lap {
                path: Segment {
                    start,
                    end: Point { x: 0, y: 0 },
                },
                ticks: 1,
            })
        }
    }

    #[derive(Clone, Default)]
    struct RandomHandler;

    random_handler!(RandomHandler);

    assert_eq!(
        TimersHandler.functions(),
        [
            "[constructor]timer",
            "[method]timer.elapsed",
            "lap-of",
            "[resource-drop]timer"
        ]
    );
    assert_eq!(RandomHandler.name(), "random");
    // The resource's generated type is the handler's.
    let _: Option<fixture::scoped::timers::Timer> = None::<TimerState>;
}

/// Two handlers in one module at module level, whose WIT share the namespace `theater`.
mod two_in_one_module {
    use theater_macros::theater_handler;
    use theater_runtime::Handler;

    #[derive(Clone, Default)]
    pub struct RandomHere;

    random_handler!(RandomHere);

    #[derive(Clone, Default)]
    pub struct TimingHere;

    #[theater_handler(wit = "../wit", import = "theater:simple/timing")]
    impl TimingHere {
        fn now(&self) -> u64 {
            0
        }
        async fn sleep(&self, _duration: u64) -> Result<(), String> {
            Ok(())
        }
        async fn deadline(&self, _timestamp: u64) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn both_are_handlers() {
        assert_eq!(RandomHere.name(), "random");
        assert_eq!(TimingHere.name(), "timing");
    }
}
