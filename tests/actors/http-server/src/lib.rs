//! The `http-server` guest: runs every `theater:simple/http-framework` function from a script (see
//! ../README.md) and serves every `theater:simple/http-handlers` callback. What a callback does is chosen by the
//! name its handler id was registered with (`register-handler`): `hello` (or `bench`, unlogged), `echo`, `fail`,
//! `bad-status`, `many-headers`, `slow`, `mw-tag`, `mw-reject`, `ws-connect`, `ws-echo`, `ws-disconnect`.
//! Callbacks note what they saw in a log that the `events` command returns.

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/http-server-actor", generate_all });

use std::collections::BTreeMap;
use std::sync::Mutex;

use exports::theater::simple::actor::Guest as Actor;
use exports::theater::simple::http_handlers::Guest as HttpHandlers;
use exports::theater::test::probe_handlers::Guest as ProbeHandlers;
use theater::simple::http_framework as hf;
use theater::simple::http_types::{
    HttpRequest, HttpResponse, MiddlewareResult, ServerConfig, TlsConfig,
};
use theater::simple::timing;
use theater::simple::websocket_types::{MessageType, WebsocketMessage};

use guest_support::show;

/// Handler id → the name it was registered with.
static NAMES: Mutex<BTreeMap<u64, String>> = Mutex::new(BTreeMap::new());
/// What the callbacks saw, oldest first, until `events` takes it.
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// The server the `ws-echo` handler pushes to (the last one created).
static SERVER: Mutex<u64> = Mutex::new(0);

fn name_of(id: u64) -> String {
    NAMES
        .lock()
        .map(|n| n.get(&id).cloned().unwrap_or_default())
        .unwrap_or_default()
}

fn note(line: String) {
    if let Ok(mut log) = LOG.lock() {
        log.push(line);
    }
}

fn num(s: &str) -> u64 {
    s.trim().parse().unwrap_or(0)
}

/// `-` or empty is `none`.
fn opt_id(s: &str) -> Option<u64> {
    match s.trim() {
        "" | "-" => None,
        s => Some(num(s)),
    }
}

fn text(s: &str) -> WebsocketMessage {
    WebsocketMessage {
        ty: MessageType::Text,
        data: None,
        text: Some(s.to_owned()),
    }
}

fn command(op: &str, arg: &str) -> String {
    let f: Vec<&str> = arg.split(',').collect();
    let field = |i: usize| f.get(i).copied().unwrap_or("");
    match op {
        "create" => {
            let tls = (!field(2).is_empty()).then(|| TlsConfig {
                cert_path: field(2).to_owned(),
                key_path: field(3).to_owned(),
            });
            let config = ServerConfig {
                host: (!field(0).is_empty()).then(|| field(0).to_owned()),
                port: (!field(1).is_empty()).then(|| num(field(1)) as u16),
                tls_config: tls,
            };
            show(op, hf::create_server(&config), |id| {
                if let Ok(mut s) = SERVER.lock() {
                    *s = id;
                }
                id.to_string()
            })
        }
        "info" => show(op, hf::get_server_info(num(arg)), |i| {
            format!(
                "id:{},port:{},host:{},running:{},routes:{},mw:{},ws:{}",
                i.id,
                i.port,
                i.host,
                i.running,
                i.routes_count,
                i.middleware_count,
                i.websocket_enabled
            )
        }),
        "start" => show(op, hf::start_server(num(arg)), |p| p.to_string()),
        "stop" => show(op, hf::stop_server(num(arg)), |()| String::new()),
        "destroy" => show(op, hf::destroy_server(num(arg)), |()| String::new()),
        "handler" => show(op, hf::register_handler(arg), |id| {
            if let Ok(mut n) = NAMES.lock() {
                n.insert(id, arg.to_owned());
            }
            id.to_string()
        }),
        "route" => show(
            op,
            hf::add_route(num(field(0)), field(1), field(2), num(field(3))),
            |id| id.to_string(),
        ),
        "unroute" => show(op, hf::remove_route(num(arg)), |()| String::new()),
        "mw" => show(
            op,
            hf::add_middleware(num(field(0)), field(1), num(field(2))),
            |id| id.to_string(),
        ),
        "unmw" => show(op, hf::remove_middleware(num(arg)), |()| String::new()),
        "ws" => show(
            op,
            hf::enable_websocket(
                num(field(0)),
                field(1),
                opt_id(field(2)),
                num(field(3)),
                opt_id(field(4)),
            ),
            |()| String::new(),
        ),
        "unws" => show(op, hf::disable_websocket(num(field(0)), field(1)), |()| {
            String::new()
        }),
        "wssend" => show(
            op,
            hf::send_websocket_message(num(field(0)), num(field(1)), &text(field(2))),
            |()| String::new(),
        ),
        "wsclose" => show(
            op,
            hf::close_websocket(num(field(0)), num(field(1))),
            |()| String::new(),
        ),
        "events" => {
            let log = LOG
                .lock()
                .map(|mut l| std::mem::take(&mut *l))
                .unwrap_or_default();
            format!("events={}", log.join("|"))
        }
        other => format!("unknown!{other}"),
    }
}

fn run(script: &str) -> Vec<String> {
    script
        .split(';')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            let (op, arg) = c.trim().split_once(':').unwrap_or((c.trim(), ""));
            command(op, arg)
        })
        .collect()
}

struct HttpServer;

impl Actor for HttpServer {
    fn init(state: Option<Vec<u8>>, _params: (String,)) -> Result<(Option<Vec<u8>>,), String> {
        match guest_support::startup_script(state.as_deref())? {
            Some(script) => Ok((Some(run(&script).join("\n").into_bytes()),)),
            None => Ok((state,)),
        }
    }
}

impl HttpHandlers for HttpServer {
    fn handle_request(
        state: Option<Vec<u8>>,
        params: (u64, HttpRequest),
    ) -> Result<(Option<Vec<u8>>, (HttpResponse,)), String> {
        let (id, req) = params;
        let name = name_of(id);
        // `bench` answers as `hello` does without noting the request: the HTTP benchmarks' route, whose log would
        // otherwise grow by a line per request for the whole run.
        if name != "bench" {
            note(format!("request:{name}:{} {}", req.method, req.uri));
        }
        let response = match name.as_str() {
            "hello" | "bench" => HttpResponse {
                status: 200,
                headers: vec![
                    ("content-type".into(), "text/plain".into()),
                    ("x-multi".into(), "a".into()),
                    ("x-multi".into(), "b".into()),
                ],
                body: Some(format!("hello from {id}").into_bytes()),
            },
            "echo" => {
                let mut headers = vec![
                    ("x-method".to_owned(), req.method.clone()),
                    ("x-uri".to_owned(), req.uri.clone()),
                ];
                headers.push((
                    "x-body".to_owned(),
                    if req.body.is_none() { "none" } else { "some" }.to_owned(),
                ));
                for (k, v) in &req.headers {
                    let k = k.to_ascii_lowercase();
                    if k.starts_with("x-route-param-")
                        || k.starts_with("x-mw")
                        || k.starts_with("x-test")
                    {
                        headers.push((format!("x-saw-{k}"), v.clone()));
                    }
                }
                HttpResponse {
                    status: 201,
                    headers,
                    body: req.body,
                }
            }
            "fail" => return Err("the handler failed on purpose".into()),
            "bad-status" => HttpResponse {
                status: 1000,
                headers: vec![],
                body: None,
            },
            // As many distinct header names as an `http::HeaderMap` holds (24,576): one more (hyper's own
            // `Connection`) would overflow it.
            "many-headers" => HttpResponse {
                status: 200,
                headers: (0..24_576).map(|i| (format!("x-h{i}"), "v".into())).collect(),
                body: None,
            },
            "slow" => {
                let _ = timing::sleep(1500);
                HttpResponse {
                    status: 200,
                    headers: vec![],
                    body: Some(b"late".to_vec()),
                }
            }
            other => HttpResponse {
                status: 500,
                headers: vec![],
                body: Some(format!("no behaviour {other:?} for handler {id}").into_bytes()),
            },
        };
        Ok((state, (response,)))
    }

    fn handle_middleware(
        state: Option<Vec<u8>>,
        params: (u64, HttpRequest),
    ) -> Result<(Option<Vec<u8>>, (MiddlewareResult,)), String> {
        let (id, mut req) = params;
        let name = name_of(id);
        note(format!("middleware:{name}:{}", req.uri));
        let proceed = match name.as_str() {
            "mw-reject" => false,
            _ => {
                req.headers.push(("x-mw".into(), format!("tagged-by-{id}")));
                true
            }
        };
        Ok((
            state,
            (MiddlewareResult {
                proceed,
                request: req,
            },),
        ))
    }

    fn handle_websocket_connect(
        state: Option<Vec<u8>>,
        params: (u64, u64, String, Option<String>),
    ) -> Result<(Option<Vec<u8>>,), String> {
        let (id, conn, path, query) = params;
        note(format!(
            "connect:{}:{conn}:{path}:{}",
            name_of(id),
            query.as_deref().unwrap_or("-")
        ));
        Ok((state,))
    }

    fn handle_websocket_message(
        state: Option<Vec<u8>>,
        params: (u64, u64, WebsocketMessage),
    ) -> Result<(Option<Vec<u8>>, (Vec<WebsocketMessage>,)), String> {
        let (_id, conn, msg) = params;
        let server = SERVER.lock().map(|s| *s).unwrap_or(0);
        let replies = match (&msg.ty, msg.text.as_deref()) {
            (MessageType::Text, Some("push")) => {
                let pushed = hf::send_websocket_message(server, conn, &text("pushed"));
                note(format!("message:{conn}:push:{}", pushed.is_ok()));
                vec![]
            }
            (MessageType::Text, Some("close")) => {
                let closed = hf::close_websocket(server, conn);
                note(format!("message:{conn}:close:{}", closed.is_ok()));
                vec![]
            }
            (MessageType::Text, Some(t)) => {
                note(format!("message:{conn}:text:{t}"));
                vec![text(&format!("echo:{t}")), text(&format!("again:{t}"))]
            }
            (MessageType::Binary, _) => {
                let mut data = msg.data.clone().unwrap_or_default();
                note(format!("message:{conn}:binary:{}", data.len()));
                data.reverse();
                vec![WebsocketMessage {
                    ty: MessageType::Binary,
                    data: Some(data),
                    text: None,
                }]
            }
            _ => {
                note(format!("message:{conn}:other"));
                vec![]
            }
        };
        Ok((state, (replies,)))
    }

    fn handle_websocket_disconnect(
        state: Option<Vec<u8>>,
        params: (u64, u64),
    ) -> Result<(Option<Vec<u8>>,), String> {
        note(format!("disconnect:{}:{}", name_of(params.0), params.1));
        Ok((state,))
    }
}

impl ProbeHandlers for HttpServer {
    guest_support::probe_handlers!(spin_refused: "no spinning in http-server");

    fn handle_script(
        state: Option<Vec<u8>>,
        params: (String,),
    ) -> Result<(Option<Vec<u8>>, (String,)), String> {
        Ok((state, (run(&params.0).join("\n"),)))
    }
}

export!(HttpServer);
