//! The `message-bench` guest, for `handlers/message-server/benches`: counts the one-way messages it receives (a
//! little-endian u64 state), echoes requests at once, and sends or requests in bulk from `handle-script`:
//!
//! * `sendn:ID,N`: `N` sends of 16 bytes to `ID`, then one `request` to `ID`, which returns once `ID` has handled
//!   every send before it (its mailbox is delivered in order); output `sendn=N`, or `sendn!<i>:<error>`;
//! * `requestn:ID,N`: `N` requests of 16 bytes, one after another; output `requestn=N` or `requestn!<i>:<error>`;
//! * `count`: `count=<messages received>`.

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/message-bench-actor", generate_all });

use exports::theater::simple::message_server_client::Guest as Client;
use exports::theater::test::probe_handlers::Guest as ProbeHandlers;
use theater::simple::message_server_host as host;
use theater::simple::types::ChannelAccept;

use guest_support::counter;

struct Bench;

type State = Option<Vec<u8>>;

const PAYLOAD: &[u8; 16] = b"0123456789abcdef";

/// Runs `f` `n` times, stopping at the first error.
fn repeat(name: &str, n: u32, mut f: impl FnMut() -> Result<(), String>) -> String {
    for i in 0..n {
        if let Err(e) = f() {
            return format!("{name}!{i}:{e}");
        }
    }
    format!("{name}={n}")
}

impl Client for Bench {
    fn handle_send(state: State, _params: (Vec<u8>,)) -> Result<(State,), String> {
        Ok((Some((counter(state.as_deref()) + 1).to_le_bytes().to_vec()),))
    }

    fn handle_request(state: State, params: (String, Vec<u8>)) -> Result<(State, (Option<Vec<u8>>,)), String> {
        Ok((state, (Some(params.1),)))
    }

    fn handle_channel_open(state: State, _params: (String, Vec<u8>)) -> Result<(State, (ChannelAccept,)), String> {
        Ok((state, (ChannelAccept { accepted: true, message: None },)))
    }

    fn handle_channel_message(state: State, _params: (String, Vec<u8>)) -> Result<(State,), String> {
        Ok((state,))
    }

    fn handle_channel_close(state: State, _params: (String,)) -> Result<(State,), String> {
        Ok((state,))
    }
}

impl ProbeHandlers for Bench {
    guest_support::probe_fail_and_trap!();

    fn handle_add(_state: State, _params: (u64,)) -> Result<(State, (u64,)), String> {
        Err("message-bench: handle-add is not supported".to_owned())
    }

    fn handle_spin(_state: State, _params: (u32,)) -> Result<(State,), String> {
        Err("message-bench: handle-spin is not supported".to_owned())
    }

    fn handle_script(state: State, params: (String,)) -> Result<(State, (String,)), String> {
        let (op, arg) = params.0.split_once(':').unwrap_or((&params.0, ""));
        let (to, n) = arg.split_once(',').unwrap_or((arg, ""));
        let n: u32 = n.parse().unwrap_or(0);
        let output = match op {
            "sendn" => {
                let sent = repeat(op, n, || host::send(to, PAYLOAD));
                match host::request(to, PAYLOAD) {
                    Ok(_) => sent,
                    Err(e) => format!("{op}!sync:{e}"),
                }
            }
            "requestn" => repeat(op, n, || host::request(to, PAYLOAD).map(drop)),
            "count" => format!("count={}", counter(state.as_deref())),
            other => format!("unknown!{other}"),
        };
        Ok((state, (output,)))
    }
}

export!(Bench);
