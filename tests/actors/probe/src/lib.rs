//! The `probe` guest: imports only `theater:test/probe`, so it runs with no `theater:simple` handler; its
//! callbacks test typed callers, guest errors, traps and deadlines.

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/probe-actor", generate_all });

use exports::theater::simple::actor::Guest as Actor;
use exports::theater::test::probe_handlers::Guest as ProbeHandlers;
use theater::test::probe::note;

struct Probe;

impl Actor for Probe {
    fn init(state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>,), String> {
        let len = state.as_ref().map(|s| s.len().to_string()).unwrap_or_else(|| "none".into());
        note(&format!("init {} {len}", params.0));
        Ok((state,))
    }
}

impl ProbeHandlers for Probe {
    fn handle_add(state: Option<Vec<u8>>, params: (u64,)) -> Result<(Option<Vec<u8>>, (u64,)), String> {
        note(&format!("add {}", params.0));
        let total = guest_support::counter(state.as_deref()) + params.0;
        Ok((Some(total.to_le_bytes().to_vec()), (total,)))
    }

    guest_support::probe_fail_and_trap!();

    fn handle_spin(_state: Option<Vec<u8>>, _params: (u32,)) -> Result<(Option<Vec<u8>>,), String> {
        guest_support::spin_forever()
    }

    fn handle_script(_state: Option<Vec<u8>>, _params: (String,)) -> Result<(Option<Vec<u8>>, (String,)), String> {
        Err("no scripts in probe".into())
    }
}

export!(Probe);
