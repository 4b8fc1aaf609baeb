use theater_macros::theater_handler;

// Two handlers in one module compile, each with its generated types in a module of its own; but both re-export
// the namespace `theater` there, so naming it in that module is ambiguous (docs/handlers.md): such handlers go
// in modules of their own when their types are named.

#[derive(Clone)]
struct RandomHandler;

#[theater_handler(wit = "../../../../wit", import = "theater:simple/random")]
impl RandomHandler {
    fn random_bytes(&self, _length: u32) -> Result<Vec<u8>, String> { Ok(vec![]) }
    fn random_range(&self, _min: u64, _max: u64) -> Result<u64, String> { Ok(0) }
    fn random_float(&self) -> Result<f64, String> { Ok(0.0) }
    fn generate_uuid(&self) -> Result<String, String> { Ok(String::new()) }
}

#[derive(Clone)]
struct ActorCaller;

#[theater_handler(wit = "../../../../wit", export = "theater:simple/actor")]
impl ActorCaller {}

fn main() {
    let _ = theater::simple::actor::Callbacks::new;
}
