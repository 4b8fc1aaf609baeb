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
    guest_support::probe_handlers!(spin_refused: "no spinning in process-mute");

    fn handle_script(state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>, (String,)), String> {
        let (out, _clear) = script::run(&params.0);
        Ok((state, (out.join("\n"),)))
    }
}

export!(ProcessMute);
