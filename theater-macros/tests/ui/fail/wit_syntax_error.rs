use theater_macros::theater_handler;

#[derive(Clone)]
struct H;

#[theater_handler(wit = "../../../../theater-macros/tests/ui/wit-bad", import = "bad:wit/broken")]
impl H {}

fn main() {}
