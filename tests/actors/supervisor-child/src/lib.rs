//! The supervisor tests' child: `init` counts its calls in a state of the form `inits=N` (other states are kept
//! as they are, `fail-init` makes `init` fail, `spin-in-init` makes it spin until its deadline, and `shutdown-in-init[:TEXT]` calls `runtime.shutdown(none /
//! some(TEXT))` from `init`, so the child ends as soon as it has started); `handle-script` shuts down or sets the
//! state, and the other probe callbacks trap or spin on request.

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/supervisor-child", generate_all });

use exports::theater::simple::actor::Guest as Actor;
use exports::theater::test::probe_handlers::Guest as ProbeHandlers;
use theater::simple::runtime;

struct Child;

impl Actor for Child {
    fn init(state: Option<Vec<u8>>, _params: (String,)) -> Result<(Option<Vec<u8>>,), String> {
        match state.as_deref() {
            Some(b"fail-init") => Err("init refused".into()),
            Some(b"spin-in-init") => guest_support::spin_forever(),
            Some(s) if s.starts_with(b"shutdown-in-init") => {
                runtime::shutdown(s.strip_prefix(b"shutdown-in-init:"))?;
                Ok((state,))
            }
            Some(s) => match std::str::from_utf8(s).ok().and_then(|s| s.strip_prefix("inits=")) {
                Some(n) => {
                    let n: u64 = n.parse().map_err(|_| format!("bad count {n}"))?;
                    Ok((Some(format!("inits={}", n + 1).into_bytes()),))
                }
                None => Ok((state,)),
            },
            None => Ok((None,)),
        }
    }
}

impl ProbeHandlers for Child {
    guest_support::probe_handlers!();

    /// `shutdown` / `shutdown:TEXT` call `runtime.shutdown(none / some(TEXT))`; `set:TEXT` sets the state.
    fn handle_script(state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>, (String,)), String> {
        let mut out = Vec::new();
        let mut state = state;
        for command in params.0.split(';').filter(|c| !c.is_empty()) {
            let (op, arg) = command.split_once(':').map_or((command, None), |(o, a)| (o, Some(a)));
            match op {
                "shutdown" => out.push(match runtime::shutdown(arg.map(str::as_bytes)) {
                    Ok(()) => "shutdown=ok".to_owned(),
                    Err(e) => format!("shutdown!{e}"),
                }),
                "set" => {
                    state = Some(arg.unwrap_or_default().as_bytes().to_vec());
                    out.push("set".into());
                }
                other => out.push(format!("unknown!{other}")),
            }
        }
        Ok((state, (out.join("\n"),)))
    }
}

export!(Child);
