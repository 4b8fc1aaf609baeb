use theater_macros::theater_handler;

#[derive(Clone)]
struct H;

// An export interface must follow the state convention; timing's functions do not.
#[theater_handler(wit = "../../../../wit", export = "theater:simple/timing")]
impl H {}

fn main() {}
