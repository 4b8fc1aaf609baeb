//! The `process-actor` guest: drives every `theater:simple/process` function from a script (see ../README.md)
//! run by `init` (state `run:<script>`) or `handle-script`, and appends every `process-handlers` callback it
//! receives to its state, one line each: `stdout:<pid>:<data>`, `stderr:<pid>:<data>` (data as a quoted,
//! escaped string) and `exit:<pid>:<code> status=<running>,<exit-code>` (what `os-status` says inside
//! `handle-exit`).

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/process-actor", generate_all });

use exports::theater::simple::actor::Guest as Actor;
use exports::theater::simple::process_handlers::Guest as ProcessHandlers;
use exports::theater::test::probe_handlers::Guest as ProbeHandlers;
use theater::simple::process::{self, OutputMode, ProcessConfig};

struct ProcessActor;

fn show<T>(name: &str, result: Result<T, String>, f: impl FnOnce(T) -> String) -> String {
    match result {
        Ok(v) => {
            let v = f(v);
            if v.is_empty() { name.to_owned() } else { format!("{name}={v}") }
        }
        Err(e) => format!("{name}!{e}"),
    }
}

fn mode(name: &str) -> OutputMode {
    match name {
        "raw" => OutputMode::Raw,
        "json" => OutputMode::Json,
        "chunked" => OutputMode::Chunked,
        _ => OutputMode::LineByLine,
    }
}

/// `PROGRAM|ARG|…|@key=value…` (see ../README.md) as a `process-config`.
fn config(spec: &str) -> ProcessConfig {
    let mut fields = spec.split('|');
    let mut config = ProcessConfig {
        program: fields.next().unwrap_or("").to_owned(),
        args: Vec::new(),
        cwd: None,
        env: Vec::new(),
        buffer_size: 0,
        stdout_mode: OutputMode::LineByLine,
        stderr_mode: OutputMode::LineByLine,
        chunk_size: None,
        execution_timeout: None,
    };
    for field in fields {
        let Some(option) = field.strip_prefix('@') else {
            config.args.push(unescape(field));
            continue;
        };
        let (key, value) = option.split_once('=').unwrap_or((option, ""));
        match key {
            "cwd" => config.cwd = Some(value.to_owned()),
            "env" => {
                let (k, v) = value.split_once('=').unwrap_or((value, ""));
                config.env.push((k.to_owned(), v.to_owned()));
            }
            "buf" => config.buffer_size = value.parse().unwrap_or(0),
            "out" => config.stdout_mode = mode(value),
            "err" => config.stderr_mode = mode(value),
            "chunk" => config.chunk_size = value.parse().ok(),
            "timeout" => config.execution_timeout = value.parse().ok(),
            _ => config.args.push(field.to_owned()),
        }
    }
    config
}

/// `\n` in script text is a newline.
fn unescape(text: &str) -> String {
    text.replace("\\n", "\n")
}

fn pid(arg: &str) -> u64 {
    arg.trim().parse().unwrap_or(0)
}

/// Runs `script` (one command per line); returns the output lines and whether it asked to clear the log.
fn run(script: &str) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    let mut clear = false;
    for command in script.lines().map(str::trim).filter(|c| !c.is_empty()) {
        let (op, arg) = command.split_once(':').unwrap_or((command, ""));
        let (a, b) = arg.split_once(',').unwrap_or((arg, ""));
        let line = match op {
            "spawn" => show(op, process::os_spawn(&config(arg)), |p| p.to_string()),
            "write" => show(op, process::os_write_stdin(pid(a), unescape(b).as_bytes()), |n| n.to_string()),
            "close" => show(op, process::os_write_stdin(pid(arg), &[]), |n| n.to_string()),
            "status" => show(op, process::os_status(pid(arg)), |s| {
                let code = s.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "none".into());
                format!("{},{},{code},{}", s.pid, s.running, s.start_time)
            }),
            "signal" => show(op, process::os_signal(pid(a), b.trim().parse().unwrap_or(0)), |()| String::new()),
            "kill" => show(op, process::os_kill(pid(arg)), |()| String::new()),
            "clear" => {
                clear = true;
                op.to_owned()
            }
            other => format!("unknown!{other}"),
        };
        out.push(line);
    }
    (out, clear)
}

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
        match state.as_deref().and_then(|s| s.strip_prefix(b"run:")) {
            Some(script) => {
                let script = String::from_utf8(script.to_vec()).map_err(|e| e.to_string())?;
                Ok((Some(run(&script).0.join("\n").into_bytes()),))
            }
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
        Err("no spinning in process-actor".into())
    }

    fn handle_script(state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>, (String,)), String> {
        let (out, clear) = run(&params.0);
        let state = if clear { None } else { state };
        Ok((state, (out.join("\n"),)))
    }
}

export!(ProcessActor);
