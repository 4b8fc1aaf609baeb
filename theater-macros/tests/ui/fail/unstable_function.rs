use theater_macros::theater_handler;

#[derive(Clone)]
struct H;

// An `@unstable` function is an error at the `import` literal, not silently left out.
#[theater_handler(wit = "../../../../theater-codegen/tests/wit-unstable", import = "bad:unstable/unstable")]
impl H {
    fn stable(&self) {}
}

fn main() {}
