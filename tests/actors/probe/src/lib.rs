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
        let old = state.as_deref().and_then(|s| <[u8; 8]>::try_from(s).ok()).map(u64::from_le_bytes).unwrap_or(0);
        let total = old + params.0;
        Ok((Some(total.to_le_bytes().to_vec()), (total,)))
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

    fn handle_script(_state: Option<Vec<u8>>, _params: (String,)) -> Result<(Option<Vec<u8>>, (String,)), String> {
        Err("no scripts in probe".into())
    }
}

export!(Probe);
