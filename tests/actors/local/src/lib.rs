//! The `local` guest: drives every `theater:simple/timing` and `theater:simple/environment` function from a
//! script (see ../README.md) run by `init` (state `run:<script>`) or by `handle-script`.

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/local-actor", generate_all });

use exports::theater::simple::actor::Guest as Actor;
use exports::theater::test::probe_handlers::Guest as ProbeHandlers;
use theater::simple::{environment, timing};

struct Local;

fn run(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    for command in script.split(';').filter(|c| !c.is_empty()) {
        let (op, arg) = command.split_once(':').unwrap_or((command, ""));
        let line = match op {
            "now" => format!("now={}", timing::now()),
            "sleep" => match timing::sleep(arg.parse().unwrap_or(0)) {
                Ok(()) => format!("sleep={}", timing::now()),
                Err(e) => format!("sleep!{e}"),
            },
            "deadline" => match timing::deadline(arg.parse().unwrap_or(0)) {
                Ok(()) => format!("deadline={}", timing::now()),
                Err(e) => format!("deadline!{e}"),
            },
            "deadline-in" => {
                let at = timing::now().saturating_add(arg.parse().unwrap_or(0));
                match timing::deadline(at) {
                    Ok(()) => format!("deadline-in={}", timing::now()),
                    Err(e) => format!("deadline-in!{e}"),
                }
            }
            "get" => match environment::get_var(arg) {
                Some(v) => format!("get={v}"),
                None => "get=none".into(),
            },
            "exists" => format!("exists={}", environment::exists(arg)),
            "list" => {
                let vars: Vec<String> = environment::list_vars().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("list={}", vars.join(","))
            }
            other => format!("unknown!{other}"),
        };
        out.push(line);
    }
    out
}

impl Actor for Local {
    fn init(state: Option<Vec<u8>>, _params: (String,)) -> Result<(Option<Vec<u8>>,), String> {
        match state.as_deref().and_then(|s| s.strip_prefix(b"run:")) {
            Some(script) => {
                let script = String::from_utf8(script.to_vec()).map_err(|e| e.to_string())?;
                Ok((Some(run(&script).join("\n").into_bytes()),))
            }
            None => Ok((state,)),
        }
    }
}

impl ProbeHandlers for Local {
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
        Err("no spinning in local".into())
    }

    fn handle_script(state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>, (String,)), String> {
        Ok((state, (run(&params.0).join("\n"),)))
    }
}

export!(Local);
