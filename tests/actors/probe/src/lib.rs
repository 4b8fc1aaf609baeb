//! The `probe` guest: imports only `theater:test/probe`, so it runs with no `theater:simple` handler; its
//! callbacks test typed callers, guest errors, traps and deadlines.

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/probe-actor", generate_all });

use exports::theater::simple::actor::Guest as Actor;
use exports::theater::test::probe_handlers::Guest as ProbeHandlers;
use theater::test::probe::{note, work};

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

    /// `work:<ms>x<times>`: calls `work(ms)` `times` times (host work, with next to no guest work between).
    fn handle_script(_state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>, (String,)), String> {
        let Some((ms, times)) = params.0.strip_prefix("work:").and_then(|w| w.split_once('x')) else {
            return Err("the probe's only script is work:<ms>x<times>".into());
        };
        let (ms, times) = (ms.parse().unwrap_or(0), times.parse().unwrap_or(0));
        for _ in 0..times {
            work(ms);
        }
        Ok((None, (format!("worked {times}"),)))
    }
}

export!(Probe);
