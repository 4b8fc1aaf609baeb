use theater_macros::theater_handler;

#[derive(Clone)]
struct H;

#[theater_handler(wit = "../../../../wit", import = "theater:simple/timing")]
impl H {
    fn now(&mut self) -> u64 { 0 }
    async fn sleep(&self, _duration: u64) -> Result<(), String> { Ok(()) }
    async fn deadline(&self, _timestamp: u64) -> Result<(), String> { Ok(()) }
}

fn main() {}
