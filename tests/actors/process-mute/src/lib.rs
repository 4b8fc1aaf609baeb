//! The `process-mute` guest: runs the process scripts of `process-actor` (see ../README.md) from
//! `handle-script`, but exports no `process-handlers`, so the handler has nowhere to deliver output and exits.

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/process-mute", generate_all });

use exports::theater::simple::actor::Guest as Actor;
use exports::theater::test::probe_handlers::Guest as ProbeHandlers;

#[path = "../../process-actor/src/script.rs"]
mod script;

struct ProcessMute;

impl Actor for ProcessMute {
    fn init(state: Option<Vec<u8>>, _params: (String,)) -> Result<(Option<Vec<u8>>,), String> {
        Ok((state,))
    }
}

impl ProbeHandlers for ProcessMute {
    fn handle_add(state: Option<Vec<u8>>, params: (u64,)) -> Result<(Option<Vec<u8>>, (u64,)), String> {
        Ok((state, (params.0,)))
    }

    fn handle_fail(_state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>,), String> {
        Err(params.0)
    }

    fn handle_trap(_state: Option<Vec<u8>>, _params: (u32,)) -> Result<(Option<Vec<u8>>,), String> {
        core::arch::wasm32::unreachable()
    }

    fn handle_spin(_state: Option<Vec<u8>>, _params: (u32,)) -> Result<(Option<Vec<u8>>,), String> {
        Err("no spinning in process-mute".into())
    }

    fn handle_script(state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>, (String,)), String> {
        let (out, _clear) = script::run(&params.0);
        Ok((state, (out.join("\n"),)))
    }
}

export!(ProcessMute);
