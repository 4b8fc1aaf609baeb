use theater_macros::theater_handler;

#[derive(Clone)]
struct RandomHandler;

// With an export, `callbacks` is the generated method that gives the typed callers: a method of that name would
// clash with it.
#[theater_handler(wit = "../../../../wit", import = "theater:simple/random", export = "theater:simple/process-handlers")]
impl RandomHandler {
    #[theater(name = "random-bytes")]
    fn callbacks(&self, _length: u32) -> Result<Vec<u8>, String> { Ok(vec![]) }
    fn random_range(&self, _min: u64, _max: u64) -> Result<u64, String> { Ok(0) }
    fn random_float(&self) -> Result<f64, String> { Ok(0.0) }
    fn generate_uuid(&self) -> Result<String, String> { Ok(String::new()) }
}

fn main() {}
