//! The `message-peer` guest: runs scripts over every `theater:simple/message-server-host` function and logs every
//! `theater:simple/message-server-client` callback in its state, one line each (see ../README.md).
//!
//! Scripts run from `handle-script`, and from a `handle-send`, `handle-channel-message` or `handle-request` payload
//! that starts with `!` (so one actor can make another act later, through its mailbox). In a script run by a
//! channel callback, `$ch` is that channel's id.

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/message-peer-actor", generate_all });

use exports::theater::simple::actor::Guest as Actor;
use exports::theater::simple::message_server_client::Guest as Client;
use exports::theater::test::probe_handlers::Guest as ProbeHandlers;
use theater::simple::message_server_host as host;
use theater::simple::types::ChannelAccept;

use guest_support::append_line;
use guest_support::show as out; // `name=<value>`, `name` alone for an empty value, or `name!<error>`

struct Peer;

type State = Option<Vec<u8>>;

/// `msg` as text if it is UTF-8, else `0x<hex>`.
fn show(msg: &[u8]) -> String {
    match std::str::from_utf8(msg) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("0x{}", msg.iter().map(|b| format!("{b:02x}")).collect::<String>()),
    }
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn ok(_: ()) -> String {
    "ok".to_owned()
}

/// Runs one command (see ../README.md).
fn command(op: &str, arg: &str) -> String {
    let (a, b) = arg.split_once(',').unwrap_or((arg, ""));
    match op {
        "send" => out(op, host::send(a, b.as_bytes()), ok),
        "sendhex" => out(op, host::send(a, &unhex(b)), ok),
        "sendbig" => out(op, host::send(a, &vec![0; b.parse().unwrap_or(0)]), ok),
        "request" => out(op, host::request(a, b.as_bytes()), |r| show(&r)),
        "open" => out(op, host::open_channel(a, b.as_bytes()), |id| id),
        "chsend" => out(op, host::send_on_channel(a, b.as_bytes()), ok),
        "close" => out(op, host::close_channel(a), ok),
        "list" => format!("list={}", host::list_outstanding_requests().join(",")),
        "respond" => out(op, host::respond_to_request(a, b.as_bytes()), ok),
        "cancel" => out(op, host::cancel_request(a), ok),
        "respond-all" | "cancel-all" => {
            let ids = host::list_outstanding_requests();
            let done = ids
                .iter()
                .filter(|id| {
                    if op == "cancel-all" {
                        host::cancel_request(id).is_ok()
                    } else {
                        host::respond_to_request(id, arg.as_bytes()).is_ok()
                    }
                })
                .count();
            format!("{op}={done}")
        }
        other => format!("unknown!{other}"),
    }
}

/// Runs a `;`-separated script; one output line per command, joined by `|`.
fn run(script: &str) -> String {
    guest_support::script_lines(script, command).join("|")
}

/// The script in `msg` if it starts with `!`, with `$ch` replaced by `channel`.
fn script_in(msg: &[u8], channel: &str) -> Option<String> {
    std::str::from_utf8(msg).ok()?.strip_prefix('!').map(|s| s.replace("$ch", channel))
}

impl Actor for Peer {
    fn init(state: State, _params: (String,)) -> Result<(State,), String> {
        Ok((state,))
    }
}

impl Client for Peer {
    fn handle_send(state: State, params: (Vec<u8>,)) -> Result<(State,), String> {
        let mut state = append_line(state, &format!("send {}", show(&params.0)));
        if let Some(script) = script_in(&params.0, "") {
            state = append_line(state, &format!("ran {}", run(&script)));
        }
        Ok((state,))
    }

    /// Answers `re:<msg>`; defers a message starting with `defer`; fails one starting with `fail`; answers a
    /// `!script` with the script's output.
    fn handle_request(state: State, params: (String, Vec<u8>)) -> Result<(State, (Option<Vec<u8>>,)), String> {
        let (id, msg) = params;
        let text = show(&msg);
        let state = append_line(state, &format!("request {id} {text}"));
        if text.starts_with("defer") {
            return Ok((state, (None,)));
        }
        if text.starts_with("fail") {
            return Err(format!("refused {text}"));
        }
        let answer = match script_in(&msg, "") {
            Some(script) => run(&script),
            None => format!("re:{text}"),
        };
        Ok((state, (Some(answer.into_bytes()),)))
    }

    /// Rejects `reject` with the message `no thanks`; accepts `quiet` without a message; runs a `!script` then
    /// accepts; accepts anything else with the message `welcome`.
    fn handle_channel_open(state: State, params: (String, Vec<u8>)) -> Result<(State, (ChannelAccept,)), String> {
        let (id, msg) = params;
        let mut state = append_line(state, &format!("open {id} {}", show(&msg)));
        let accept = match &msg[..] {
            b"reject" => ChannelAccept { accepted: false, message: Some(b"no thanks".to_vec()) },
            b"quiet" => ChannelAccept { accepted: true, message: None },
            _ => ChannelAccept { accepted: true, message: Some(b"welcome".to_vec()) },
        };
        if let Some(script) = script_in(&msg, &id) {
            state = append_line(state, &format!("ran {}", run(&script)));
        }
        Ok((state, (accept,)))
    }

    fn handle_channel_message(state: State, params: (String, Vec<u8>)) -> Result<(State,), String> {
        let (id, msg) = params;
        let mut state = append_line(state, &format!("chmsg {id} {}", show(&msg)));
        if let Some(script) = script_in(&msg, &id) {
            state = append_line(state, &format!("ran {}", run(&script)));
        }
        Ok((state,))
    }

    fn handle_channel_close(state: State, params: (String,)) -> Result<(State,), String> {
        Ok((append_line(state, &format!("close {}", params.0)),))
    }
}

impl ProbeHandlers for Peer {
    guest_support::probe_fail_and_trap!();

    fn handle_add(_state: State, _params: (u64,)) -> Result<(State, (u64,)), String> {
        Err("message-peer: handle-add is not supported".to_owned())
    }

    fn handle_spin(_state: State, _params: (u32,)) -> Result<(State,), String> {
        Err("message-peer: handle-spin is not supported".to_owned())
    }

    /// Runs the script; the state (the callback log) is unchanged.
    fn handle_script(state: State, params: (String,)) -> Result<(State, (String,)), String> {
        Ok((state, (run(&params.0),)))
    }
}

export!(Peer);
