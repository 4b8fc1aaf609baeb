use theater_macros::theater_handler;

#[derive(Clone)]
struct H;

#[theater_handler(wit = "../../../../wit", import = "theater:simple/randomness")]
impl H {}

fn main() {}
