//! The `process-actor` guest: drives every `theater:simple/process` function from a script (see ../README.md)
//! run by `init` (state `run:<script>`) or `handle-script`, and appends every `process-handlers` callback it
//! receives to its state, one line each: `stdout:<pid>:<data>`, `stderr:<pid>:<data>` (data as a quoted,
//! escaped string) and `exit:<pid>:<code> status=<running>,<exit-code>` (what `os-status` says inside
//! `handle-exit`).

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/process-actor", generate_all });

use exports::theater::simple::actor::Guest as Actor;
use exports::theater::simple::process_handlers::Guest as ProcessHandlers;
use exports::theater::test::probe_handlers::Guest as ProbeHandlers;
use theater::simple::process;

mod script;
use script::run;

struct ProcessActor;

/// `state` with `line` appended.
fn append(state: Option<Vec<u8>>, line: &str) -> Option<Vec<u8>> {
    let mut log = state.unwrap_or_default();
    if !log.is_empty() {
        log.push(b'\n');
    }
    log.extend_from_slice(line.as_bytes());
    Some(log)
}

impl Actor for ProcessActor {
    fn init(state: Option<Vec<u8>>, _params: (String,)) -> Result<(Option<Vec<u8>>,), String> {
        match guest_support::startup_script(state.as_deref())? {
            Some(script) => Ok((Some(run(&script).0.join("\n").into_bytes()),)),
            None => Ok((state,)),
        }
    }
}

impl ProcessHandlers for ProcessActor {
    fn handle_stdout(state: Option<Vec<u8>>, params: (u64, Vec<u8>)) -> Result<(Option<Vec<u8>>,), String> {
        let line = format!("stdout:{}:{:?}", params.0, String::from_utf8_lossy(&params.1));
        Ok((append(state, &line),))
    }

    fn handle_stderr(state: Option<Vec<u8>>, params: (u64, Vec<u8>)) -> Result<(Option<Vec<u8>>,), String> {
        let line = format!("stderr:{}:{:?}", params.0, String::from_utf8_lossy(&params.1));
        Ok((append(state, &line),))
    }

    fn handle_exit(state: Option<Vec<u8>>, params: (u64, i32)) -> Result<(Option<Vec<u8>>,), String> {
        let status = match process::os_status(params.0) {
            Ok(s) => format!("{},{}", s.running, s.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "none".into())),
            Err(e) => format!("!{e}"),
        };
        let line = format!("exit:{}:{} status={status}", params.0, params.1);
        Ok((append(state, &line),))
    }
}

impl ProbeHandlers for ProcessActor {
    guest_support::probe_handlers!(spin_refused: "no spinning in process-actor");

    fn handle_script(state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>, (String,)), String> {
        let (out, clear) = run(&params.0);
        let state = if clear { None } else { state };
        Ok((state, (out.join("\n"),)))
    }
}

export!(ProcessActor);
