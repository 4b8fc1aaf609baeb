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
        let mut n = 0u64;
        loop {
            n = core::hint::black_box(n.wrapping_add(1));
        }
    }

    /// `spawn:MANIFEST` → `spawn=<id>` / `spawn!<error>`; `list` → `list=<ids>`.
    fn handle_script(state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>, (String,)), String> {
        let mut out = Vec::new();
        for command in params.0.split(';').filter(|c| !c.is_empty()) {
            let (op, arg) = command.split_once(':').unwrap_or((command, ""));
            out.push(match op {
                "spawn" => match supervisor::spawn(arg, None) {
                    Ok(id) => format!("spawn={id}"),
                    Err(e) => format!("spawn!{e}"),
                },
                "list" => format!("list={}", supervisor::list_children().join(",")),
                other => format!("unknown!{other}"),
            });
        }
        Ok((state, (out.join("\n"),)))
    }
}

export!(Mute);
