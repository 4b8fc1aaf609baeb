//! The process script language (see ../../README.md), shared by the `process-actor` and `process-mute` guests:
//! one command per line, each a call to `theater:simple/process`.

use crate::theater::simple::process::{self, OutputMode, ProcessConfig};
use guest_support::show;

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

/// Calls `os-status(pid)` every 5 ms (a WASI sleep) until the process is no longer running, within the current
/// call; gives up after 10 s. Returns its exit code.
fn wait(pid: u64) -> Result<i32, String> {
    for _ in 0..2000 {
        let status = process::os_status(pid)?;
        if !status.running {
            return Ok(status.exit_code.unwrap_or(i32::MIN));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Err(format!("process {pid} still runs after 10 s"))
}

/// Runs `script` (one command per line); returns the output lines and whether it asked to clear the log.
pub fn run(script: &str) -> (Vec<String>, bool) {
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
            "wait" => show(op, wait(pid(arg)), |code| code.to_string()),
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
