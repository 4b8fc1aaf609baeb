//! The `cluster-demo` guest of the README's "Run a cluster": two `theater run` processes joined over NATS, a
//! `ping` actor on one host requesting from a `pong` actor on the other (see ../../wit/message.wit).

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/cluster-demo-actor", generate_all });

use exports::theater::simple::actor::Guest as Actor;
use exports::theater::simple::message_server_client::Guest as Client;
use theater::simple::message_server_host as host;
use theater::simple::types::ChannelAccept;
use theater::simple::{environment, runtime};

struct Demo;

type State = Option<Vec<u8>>;

impl Actor for Demo {
    fn init(state: State, params: (String,)) -> Result<(State,), String> {
        let Some(peer) = environment::get_var("PEER") else {
            runtime::log(&format!("pong {} waiting for requests", params.0));
            return Ok((state,));
        };
        runtime::log(&format!("ping {} asking {peer}", params.0));
        for i in 1..=3 {
            let answer = host::request(&peer, format!("ping {i}").as_bytes())?;
            runtime::log(&format!("{peer} answered: {}", String::from_utf8_lossy(&answer)));
        }
        host::send(&peer, b"bye")?;
        runtime::shutdown(Some(b"ping finished"))?;
        Ok((state,))
    }
}

impl Client for Demo {
    fn handle_send(state: State, params: (Vec<u8>,)) -> Result<(State,), String> {
        runtime::log(&format!("send: {}", String::from_utf8_lossy(&params.0)));
        if params.0 == b"bye" {
            runtime::shutdown(Some(b"pong finished"))?;
        }
        Ok((state,))
    }

    fn handle_request(state: State, params: (String, Vec<u8>)) -> Result<(State, (Option<Vec<u8>>,)), String> {
        let msg = String::from_utf8_lossy(&params.1).into_owned();
        runtime::log(&format!("request: {msg}"));
        if msg.starts_with("defer") {
            return Ok((state, (None,)));
        }
        Ok((state, (Some(format!("pong: {msg}").into_bytes()),)))
    }

    fn handle_channel_open(state: State, _params: (String, Vec<u8>)) -> Result<(State, (ChannelAccept,)), String> {
        Ok((state, (ChannelAccept { accepted: false, message: None },)))
    }

    fn handle_channel_message(state: State, _params: (String, Vec<u8>)) -> Result<(State,), String> {
        Ok((state,))
    }

    fn handle_channel_close(state: State, _params: (String,)) -> Result<(State,), String> {
        Ok((state,))
    }
}

export!(Demo);
