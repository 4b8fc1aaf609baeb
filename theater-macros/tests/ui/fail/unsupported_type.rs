use theater_macros::theater_handler;

#[derive(Clone)]
struct H;

// `stream`, `future` and `error-context` are errors at the `import` literal, naming each function.
#[theater_handler(wit = "../../../../theater-codegen/tests/wit-unsupported", import = "bad:unsupported/async-types")]
impl H {
    fn plain(&self) -> u32 {
        0
    }
}

fn main() {}
