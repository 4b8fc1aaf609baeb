use theater_macros::theater_handler;

#[derive(Clone)]
struct RandomHandler;

#[theater_handler(wit = "../../../../wit", import = "theater:simple/random")]
impl RandomHandler {
    fn random_bytes(&self, _length: u32) -> Result<Vec<u8>, String> { Ok(vec![]) }
    fn random_range(&self, _min: u64, _max: u64) -> Result<u64, String> { Ok(0) }
    fn random_flot(&self) -> Result<f64, String> { Ok(0.0) }
    fn generate_uuid(&self) -> Result<String, String> { Ok(String::new()) }
}

fn main() {}
