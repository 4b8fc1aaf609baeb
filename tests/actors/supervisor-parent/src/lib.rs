//! The supervisor tests' parent: runs scripts over every `theater:simple/supervisor` function (from
//! `handle-script`, or from `init` when the state is `run:<script>`), and appends each child notification it
//! hears to its state, one line each: `exit:<id>:<data>`, `error:<id>:<kind>:<data>`, `external-stop:<id>`.
//!
//! Besides one command per supervisor function, `spawn-ended:MANIFEST[,TEXT]` spawns as `spawn` and then waits, in
//! the same call, until the child is no longer listed (it ended): its notification cannot be delivered before the
//! call returns. The output is `spawn-ended=<id>`, or an error if the child is still listed after
//! [`ENDED_POLLS`] polls.

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/supervisor-parent", generate_all });

use exports::theater::simple::actor::Guest as Actor;
use exports::theater::simple::supervisor_handlers::Guest as SupervisorHandlers;
use exports::theater::test::probe_handlers::Guest as ProbeHandlers;
use theater::simple::supervisor;
use theater::simple::types::{WitActorError, WitErrorType};

use guest_support::append_line;

struct Parent;

/// Text of optional bytes on one line (`none` when absent).
fn text(bytes: Option<&[u8]>) -> String {
    bytes.map_or_else(|| "none".to_owned(), |b| String::from_utf8_lossy(b).replace('\n', " "))
}

/// `MANIFEST` or `MANIFEST,TEXT`: the manifest and the optional state bytes.
fn manifest_and_bytes(arg: &str) -> (&str, Option<&[u8]>) {
    match arg.split_once(',') {
        Some((manifest, bytes)) => (manifest, Some(bytes.as_bytes())),
        None => (arg, None),
    }
}

/// How often `spawn-ended` looks for its child in `list-children` before it gives up.
const ENDED_POLLS: u32 = 1_000;

/// `spawn-ended:MANIFEST[,TEXT]`: spawns, then waits in this call until the child is no longer listed.
fn spawn_ended(arg: &str) -> Result<String, String> {
    let (manifest, bytes) = manifest_and_bytes(arg);
    let id = supervisor::spawn(manifest, bytes)?;
    for _ in 0..ENDED_POLLS {
        if !supervisor::list_children().contains(&id) {
            return Ok(format!("spawn-ended={id}"));
        }
        // Guest work between the polls rather than host calls (each call is a chain event); the runtime lets the
        // child's task run at the epoch ticks while this call runs.
        for i in 0..250_000u32 {
            core::hint::black_box(i);
        }
    }
    Err(format!("child {id} still listed after {ENDED_POLLS} polls"))
}

/// Runs one script command: `<cmd>=<value>` or `<cmd>!<error>`.
fn command(op: &str, arg: &str) -> String {
    let line = match op {
        "spawn" => {
            let (manifest, bytes) = manifest_and_bytes(arg);
            supervisor::spawn(manifest, bytes).map(|id| format!("spawn={id}"))
        }
        "spawn-ended" => spawn_ended(arg),
        "resume" => {
            let (manifest, bytes) = manifest_and_bytes(arg);
            supervisor::resume(manifest, bytes).map(|id| format!("resume={id}"))
        }
        "list" => Ok(format!("list={}", supervisor::list_children().join(","))),
        "stop" => supervisor::stop_child(arg).map(|()| "stop".to_owned()),
        "restart" => supervisor::restart_child(arg).map(|()| "restart".to_owned()),
        "state" => supervisor::get_child_state(arg).map(|s| format!("state={}", text(s.as_deref()))),
        "events" => supervisor::get_child_events(arg).map(|events| {
            let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
            let linked = events.windows(2).all(|w| w[1].parent_hash.as_deref() == Some(&w[0].hash[..]));
            format!("events={}:{linked}:{}", events.len(), types.join(","))
        }),
        "fail" => Ok("fail".to_owned()),
        // Guest work without host calls: N million rounds of a loop the compiler keeps.
        "burn" => {
            let rounds = arg.parse::<u64>().unwrap_or(0) * 1_000_000;
            let mut x = 0u64;
            for i in 0..rounds {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            Ok(format!("burn={}", x % 2))
        }
        other => Err(format!("unknown command {other}")),
    };
    line.unwrap_or_else(|e| format!("{op}!{e}"))
}

impl Actor for Parent {
    /// With state `run:<script>`, runs the script; the state becomes `init=<outputs joined by |>` and a newline,
    /// unless the script says `fail`: then `init` fails.
    fn init(state: Option<Vec<u8>>, _params: (String,)) -> Result<(Option<Vec<u8>>,), String> {
        match guest_support::startup_script(state.as_deref())? {
            Some(script) => {
                let out = guest_support::script_lines(&script, command);
                if out.iter().any(|l| l == "fail") {
                    return Err(format!("init failed on request after {}", out.join("|")));
                }
                Ok((append_line(None, &format!("init={}", out.join("|"))),))
            }
            None => Ok((state,)),
        }
    }
}

impl SupervisorHandlers for Parent {
    fn handle_child_error(
        state: Option<Vec<u8>>,
        params: (String, WitActorError),
    ) -> Result<(Option<Vec<u8>>,), String> {
        let (id, error) = params;
        let kind = match error.error_type {
            WitErrorType::OperationTimeout => "operation-timeout".to_owned(),
            WitErrorType::Internal => "internal".to_owned(),
            other => format!("{other:?}"),
        };
        Ok((append_line(state, &format!("error:{id}:{kind}:{}", text(error.data.as_deref()))),))
    }

    fn handle_child_exit(state: Option<Vec<u8>>, params: (String, Option<Vec<u8>>)) -> Result<(Option<Vec<u8>>,), String> {
        Ok((append_line(state, &format!("exit:{}:{}", params.0, text(params.1.as_deref()))),))
    }

    fn handle_child_external_stop(state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>,), String> {
        Ok((append_line(state, &format!("external-stop:{}", params.0)),))
    }
}

impl ProbeHandlers for Parent {
    guest_support::probe_handlers!();

    /// Runs the script; the state (the notification log) is unchanged.
    fn handle_script(state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>, (String,)), String> {
        Ok((state, (guest_support::run_script(&params.0, command),)))
    }
}

export!(Parent);
