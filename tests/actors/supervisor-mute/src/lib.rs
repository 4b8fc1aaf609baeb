//! The supervisor tests' parent without the `supervisor-handlers` export: `handle-script` runs `spawn:MANIFEST`
//! and `list`, so a test can check that its children's notifications are dropped and the actor runs on.

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/supervisor-mute", generate_all });

use exports::theater::simple::actor::Guest as Actor;
use exports::theater::test::probe_handlers::Guest as ProbeHandlers;
use theater::simple::supervisor;

struct Mute;

impl Actor for Mute {
    fn init(state: Option<Vec<u8>>, _params: (String,)) -> Result<(Option<Vec<u8>>,), String> {
        Ok((state,))
    }
}

impl ProbeHandlers for Mute {
    guest_support::probe_handlers!();

    /// `spawn:MANIFEST` → `spawn=<id>` / `spawn!<error>`; `list` → `list=<ids>`.
    fn handle_script(state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>, (String,)), String> {
        let out = guest_support::run_script(&params.0, |op, arg| match op {
            "spawn" => match supervisor::spawn(arg, None) {
                Ok(id) => format!("spawn={id}"),
                Err(e) => format!("spawn!{e}"),
            },
            "list" => format!("list={}", supervisor::list_children().join(",")),
            other => format!("unknown!{other}"),
        });
        Ok((state, (out,)))
    }
}

export!(Mute);
