//! The `http-mute` guest: `init` creates and starts a server with the route `GET /`, and returns the bound port
//! as its state; it exports no `http-handlers`, so the handler has nothing to call for a request.

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/http-mute-actor", generate_all });

use exports::theater::simple::actor::Guest as Actor;
use theater::simple::http_framework as hf;
use theater::simple::http_types::ServerConfig;

struct HttpMute;

impl Actor for HttpMute {
    fn init(_state: Option<Vec<u8>>, _params: (String,)) -> Result<(Option<Vec<u8>>,), String> {
        let server = hf::create_server(&ServerConfig { port: None, host: None, tls_config: None })?;
        let handler = hf::register_handler("unserved")?;
        hf::add_route(server, "/", "GET", handler)?;
        let port = hf::start_server(server)?;
        Ok((Some(port.to_string().into_bytes()),))
    }
}

export!(HttpMute);
