use theater_macros::theater_handler;
use theater_runtime::ActorContext;

#[derive(Clone)]
struct RandomHandler;

// Only one method may build the per-actor instance.
#[theater_handler(wit = "../../../../wit", import = "theater:simple/random")]
impl RandomHandler {
    #[theater(create_instance)]
    fn for_actor(&self, _actor: &ActorContext) -> anyhow::Result<Self> { Ok(Self) }
    #[theater(create_instance)]
    fn another(&self, _actor: &ActorContext) -> anyhow::Result<Self> { Ok(Self) }
    fn random_bytes(&self, _length: u32) -> Result<Vec<u8>, String> { Ok(vec![]) }
    fn random_range(&self, _min: u64, _max: u64) -> Result<u64, String> { Ok(0) }
    fn random_float(&self) -> Result<f64, String> { Ok(0.0) }
    fn generate_uuid(&self) -> Result<String, String> { Ok(String::new()) }
}

fn main() {}
