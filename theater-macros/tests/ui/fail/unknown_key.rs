use theater_macros::theater_handler;

#[derive(Clone)]
struct H;

#[theater_handler(wit = "../../../../wit", imports = "theater:simple/timing")]
impl H {}

fn main() {}
