use theater_macros::theater_handler;

#[derive(Clone)]
struct H;

// `deps/` holds dep:shared@0.1.0 and dep:shared@0.2.0: the name needs its version.
#[theater_handler(wit = "../../../../theater-codegen/tests/fixtures/versioned", import = "dep:shared/api")]
impl H {
    fn ping(&self) -> u32 {
        0
    }
}

fn main() {}
