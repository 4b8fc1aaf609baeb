use theater_macros::theater_handler;

#[derive(Clone)]
struct H;

#[theater_handler(wit = "no/such/wit", import = "theater:simple/random")]
impl H {}

fn main() {}
