//! The demo actor of the README: logs, rolls dice with the seeded generator, reads its own chain, and asks to
//! stop.

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/demo-actor", generate_all });

use exports::theater::simple::actor::Guest as Actor;
use theater::simple::{random, runtime};

struct Demo;

impl Actor for Demo {
    fn init(_state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>,), String> {
        runtime::log(&format!("hello from the demo actor {}", params.0));
        let dice = (0..3).map(|_| random::random_range(1, 7)).collect::<Result<Vec<u64>, String>>()?;
        let dice: Vec<String> = dice.iter().map(u64::to_string).collect();
        runtime::log(&format!("dice: {}", dice.join(" ")));
        runtime::log(&format!("uuid: {}", random::generate_uuid()?));
        let chain = runtime::get_chain();
        let linked = chain
            .events
            .windows(2)
            .all(|w| w[1].parent_hash.as_deref() == Some(w[0].hash.as_slice()));
        runtime::log(&format!("chain so far: {} events, hashes link: {linked}", chain.events.len()));
        runtime::shutdown(Some(b"demo finished"))?;
        Ok((Some(format!("rolled: {}", dice.join(" ")).into_bytes()),))
    }
}

export!(Demo);
