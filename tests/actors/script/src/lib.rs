//! The `script` guest: drives every `theater:simple/random` and `theater:simple/runtime` function from a small
//! script language (see ../README.md), so tests can check results, state and the chain from outside.

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/script-actor", generate_all });

use exports::theater::simple::actor::Guest as Actor;
use exports::theater::test::probe_handlers::Guest as ProbeHandlers;
use theater::simple::{random, runtime};

struct Script;

thread_local! {
    /// Handles on WASI stdout kept across calls (`stdouts:N`).
    static STDOUTS: std::cell::RefCell<Vec<wasip2::cli::stdout::OutputStream>> = const {
        std::cell::RefCell::new(Vec::new())
    };
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `script`; returns the output lines and the new state if the script set one.
fn run(script: &str) -> (Vec<String>, Option<Vec<u8>>) {
    let mut out = Vec::new();
    let mut new_state = None;
    for command in script.split(';').filter(|c| !c.is_empty()) {
        let (op, arg) = command.split_once(':').unwrap_or((command, ""));
        match op {
            "bytes" => out.push(match random::random_bytes(arg.parse().unwrap_or(0)) {
                Ok(b) => format!("bytes={}", hex(&b)),
                Err(e) => format!("bytes!{e}"),
            }),
            "range" => {
                let (range, times) = arg.split_once('x').unwrap_or((arg, "1"));
                let (min, max) = range.split_once(',').unwrap_or(("0", "0"));
                let (min, max) = (min.parse().unwrap_or(0), max.parse().unwrap_or(0));
                for _ in 0..times.parse::<u32>().unwrap_or(1) {
                    out.push(match random::random_range(min, max) {
                        Ok(v) => format!("range={v}"),
                        Err(e) => format!("range!{e}"),
                    });
                }
            }
            "float" => out.push(match random::random_float() {
                Ok(v) => format!("float={v:?}"),
                Err(e) => format!("float!{e}"),
            }),
            "uuid" => out.push(match random::generate_uuid() {
                Ok(v) => format!("uuid={v}"),
                Err(e) => format!("uuid!{e}"),
            }),
            "log" => {
                runtime::log(arg);
                out.push("log".into());
            }
            "state" => out.push(match runtime::get_state() {
                Some(s) => format!("state={}", hex(&s)),
                None => "state=none".into(),
            }),
            "chain" => {
                let chain = runtime::get_chain();
                let head = chain.events.last().map(|e| hex(&e.hash)).unwrap_or_else(|| "none".into());
                let types: Vec<&str> = chain.events.iter().map(|e| e.event_type.as_str()).collect();
                out.push(format!("chain={}:{head}:{}", chain.events.len(), types.join(",")));
            }
            "shutdown" => {
                let data = (!arg.is_empty() || command.contains(':')).then(|| arg.as_bytes().to_vec());
                out.push(match runtime::shutdown(data.as_deref()) {
                    Ok(()) => "shutdown=ok".into(),
                    Err(e) => format!("shutdown!{e}"),
                });
            }
            "set" => {
                new_state = Some(arg.as_bytes().to_vec());
                out.push("set".into());
            }
            "trap" => panic!("trap requested by the script"),
            // std's own nondeterminism, read through WASI: `HashMap`'s keys, `SystemTime`, `Instant`.
            "hashmap" => {
                let map: std::collections::HashMap<u32, ()> = (0..arg.parse().unwrap_or(8)).map(|k| (k, ())).collect();
                let order: Vec<String> = map.keys().map(u32::to_string).collect();
                out.push(format!("hashmap={}", order.join(",")));
            }
            "clock" => {
                let start = std::time::Instant::now();
                let wall = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                out.push(format!("clock={wall}:{}", start.elapsed().as_nanos()));
            }
            // A sleep through WASI (`subscribe-duration` and `pollable.block`), not a host call of Theater's.
            "wsleep" => {
                std::thread::sleep(std::time::Duration::from_millis(arg.parse().unwrap_or(0)));
                out.push("wsleep".to_owned());
            }
            // Opens N more handles on WASI stdout (`get-stdout`) and keeps them all; writes a line through the last.
            "stdouts" => STDOUTS.with_borrow_mut(|kept| {
                for _ in 0..arg.parse().unwrap_or(0) {
                    kept.push(wasip2::cli::stdout::get_stdout());
                }
                if let Some(last) = kept.last() {
                    let line = format!("kept {} handles\n", kept.len());
                    let _ = last.blocking_write_and_flush(line.as_bytes());
                }
                out.push(format!("stdouts={}", kept.len()));
            }),
            other => out.push(format!("unknown!{other}")),
        }
    }
    (out, new_state)
}

impl Actor for Script {
    fn init(state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>,), String> {
        match guest_support::startup_script(state.as_deref())? {
            Some(script) => {
                let (lines, _) = run(&script);
                let text = format!("id={}\n{}", params.0, lines.join("\n"));
                Ok((Some(text.into_bytes()),))
            }
            None => Ok((state,)),
        }
    }
}

impl ProbeHandlers for Script {
    fn handle_add(state: Option<Vec<u8>>, params: (u64,)) -> Result<(Option<Vec<u8>>, (u64,)), String> {
        let total = guest_support::counter(state.as_deref()) + params.0;
        Ok((Some(total.to_le_bytes().to_vec()), (total,)))
    }

    guest_support::probe_fail_and_trap!();

    fn handle_spin(_state: Option<Vec<u8>>, _params: (u32,)) -> Result<(Option<Vec<u8>>,), String> {
        guest_support::spin_forever()
    }

    fn handle_script(state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>, (String,)), String> {
        let (lines, new_state) = run(&params.0);
        Ok((new_state.or(state), (lines.join("\n"),)))
    }
}

export!(Script);
