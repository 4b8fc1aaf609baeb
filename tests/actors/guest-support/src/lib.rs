//! What the guest actors in `tests/actors/` share (a plain library, not a guest component; `tests/build.rs`
//! builds only the `cdylib` crates as guests).
//!
//! * [`probe_handlers!`] and [`probe_fail_and_trap!`]: the usual bodies of the `theater:test/probe-handlers`
//!   callbacks, written inside a guest's `impl ProbeHandlers for X { ... }` block;
//! * [`spin_forever`]: the body of a `handle-spin` that loops until the epoch deadline stops it;
//! * [`script_lines`] and [`run_script`]: the loop of a `;`-separated script (see ../README.md), with the
//!   guest's own commands in a closure;
//! * [`startup_script`]: the script of an `init` state `run:<script>`;
//! * [`show`]: one output line, `<cmd>=<value>`, `<cmd>` or `<cmd>!<error>`;
//! * [`append_line`]: a state that is a log, with one more line;
//! * [`counter`]: the little-endian `u64` a state holds.
//!
//! Nothing here depends on wit-bindgen: the macros expand in the guest, against the trait its bindings
//! generated.

/// Expands, inside `impl ProbeHandlers for X { ... }`, to the usual `theater:test/probe-handlers` callbacks:
///
/// * `handle-add` returns `params.0` and keeps the state;
/// * `handle-fail` fails with `params.0` ([`probe_fail_and_trap!`]);
/// * `handle-trap` traps ([`probe_fail_and_trap!`]);
/// * `handle-spin` loops forever ([`spin_forever`]), or with `spin_refused: "<message>"` fails with that
///   message.
///
/// The guest still writes `handle-script` (and anything it does differently) itself.
///
/// ```ignore
/// impl ProbeHandlers for Child {
///     guest_support::probe_handlers!();
///
///     fn handle_script(state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>, (String,)), String> {
///         Ok((state, (guest_support::run_script(&params.0, command),)))
///     }
/// }
///
/// impl ProbeHandlers for Local {
///     guest_support::probe_handlers!(spin_refused: "no spinning in local");
///     // fn handle_script ...
/// }
/// ```
#[macro_export]
macro_rules! probe_handlers {
    () => {
        $crate::probe_handlers!(@spin { $crate::spin_forever() });
    };
    (spin_refused: $message:expr $(,)?) => {
        $crate::probe_handlers!(@spin { ::core::result::Result::Err(::std::string::String::from($message)) });
    };
    // Internal: the shared part, given the body of `handle-spin`.
    (@spin $spin:block) => {
        fn handle_add(
            state: ::core::option::Option<::std::vec::Vec<u8>>,
            params: (u64,),
        ) -> ::core::result::Result<(::core::option::Option<::std::vec::Vec<u8>>, (u64,)), ::std::string::String> {
            ::core::result::Result::Ok((state, (params.0,)))
        }

        $crate::probe_fail_and_trap!();

        fn handle_spin(
            _state: ::core::option::Option<::std::vec::Vec<u8>>,
            _params: (u32,),
        ) -> ::core::result::Result<(::core::option::Option<::std::vec::Vec<u8>>,), ::std::string::String> $spin
    };
}

/// Expands, inside `impl ProbeHandlers for X { ... }`, to the two `theater:test/probe-handlers` callbacks every
/// guest has in common: `handle-fail` fails with `params.0` (the state unchanged) and `handle-trap` executes
/// `unreachable`. For a guest that writes its own `handle-add` and `handle-spin`; [`probe_handlers!`] adds the
/// usual ones.
///
/// ```ignore
/// impl ProbeHandlers for Probe {
///     guest_support::probe_fail_and_trap!();
///     // fn handle_add ..., fn handle_spin ..., fn handle_script ...
/// }
/// ```
#[macro_export]
macro_rules! probe_fail_and_trap {
    () => {
        fn handle_fail(
            _state: ::core::option::Option<::std::vec::Vec<u8>>,
            params: (::std::string::String,),
        ) -> ::core::result::Result<(::core::option::Option<::std::vec::Vec<u8>>,), ::std::string::String> {
            ::core::result::Result::Err(params.0)
        }

        fn handle_trap(
            _state: ::core::option::Option<::std::vec::Vec<u8>>,
            _params: (u32,),
        ) -> ::core::result::Result<(::core::option::Option<::std::vec::Vec<u8>>,), ::std::string::String> {
            ::core::arch::wasm32::unreachable()
        }
    };
}

/// Loops forever without host calls, so only the runtime's epoch deadline stops it (`handle-spin`).
pub fn spin_forever() -> ! {
    let mut n = 0u64;
    loop {
        n = core::hint::black_box(n.wrapping_add(1));
    }
}

/// Runs a `;`-separated script: every non-empty command is split at its first `:` into `op` and `arg` (`arg`
/// is empty without a `:`) and passed to `command`, in order; returns the lines it made, one per command.
///
/// ```
/// let lines = guest_support::script_lines("a:1;;b;c:x:y", |op, arg| format!("{op}={arg}"));
/// assert_eq!(lines, ["a=1", "b=", "c=x:y"]);
/// ```
pub fn script_lines(script: &str, mut command: impl FnMut(&str, &str) -> String) -> Vec<String> {
    script
        .split(';')
        .filter(|c| !c.is_empty())
        .map(|c| {
            let (op, arg) = c.split_once(':').unwrap_or((c, ""));
            command(op, arg)
        })
        .collect()
}

/// [`script_lines`] joined by newlines: the output of a `handle-script`.
///
/// ```
/// assert_eq!(guest_support::run_script("a:1;b", |op, _| op.to_owned()), "a\nb");
/// assert_eq!(guest_support::run_script("", |op, _| op.to_owned()), "");
/// ```
pub fn run_script(script: &str, command: impl FnMut(&str, &str) -> String) -> String {
    script_lines(script, command).join("\n")
}

/// The output line of command `name` that returned `result`: `name=<f(value)>`, `name` alone if `f` gives an
/// empty string, or `name!<error>`.
///
/// ```
/// use guest_support::show;
/// assert_eq!(show("start", Ok::<u16, String>(8080), |p| p.to_string()), "start=8080");
/// assert_eq!(show("stop", Ok::<(), String>(()), |()| String::new()), "stop");
/// assert_eq!(show("stop", Err::<(), String>("no such server".into()), |()| String::new()), "stop!no such server");
/// ```
pub fn show<T>(name: &str, result: Result<T, String>, f: impl FnOnce(T) -> String) -> String {
    match result {
        Ok(v) => {
            let v = f(v);
            if v.is_empty() { name.to_owned() } else { format!("{name}={v}") }
        }
        Err(e) => format!("{name}!{e}"),
    }
}

/// The script `init` runs when its state is `run:<script>`: `Ok(None)` for any other state (or none), `Err` if
/// the script is not UTF-8.
///
/// ```
/// use guest_support::startup_script;
/// assert_eq!(startup_script(Some(&b"run:now;list"[..])), Ok(Some("now;list".to_owned())));
/// assert_eq!(startup_script(Some(&b"inits=1"[..])), Ok(None));
/// assert_eq!(startup_script(None), Ok(None));
/// assert!(startup_script(Some(&b"run:\xff"[..])).is_err());
/// ```
pub fn startup_script(state: Option<&[u8]>) -> Result<Option<String>, String> {
    match state.and_then(|s| s.strip_prefix(b"run:")) {
        Some(script) => String::from_utf8(script.to_vec()).map(Some).map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

/// `state` (a log, none = empty) with `line` and a newline appended.
///
/// ```
/// let state = guest_support::append_line(None, "exit:a:none");
/// assert_eq!(guest_support::append_line(state, "exit:b:none").as_deref(), Some(&b"exit:a:none\nexit:b:none\n"[..]));
/// ```
pub fn append_line(state: Option<Vec<u8>>, line: &str) -> Option<Vec<u8>> {
    let mut log = state.unwrap_or_default();
    log.extend_from_slice(line.as_bytes());
    log.push(b'\n');
    Some(log)
}

/// The `u64` counter a state keeps as 8 little-endian bytes; none or any other state is 0.
///
/// ```
/// assert_eq!(guest_support::counter(Some(&7u64.to_le_bytes()[..])), 7);
/// assert_eq!(guest_support::counter(Some(&b"short"[..])), 0);
/// assert_eq!(guest_support::counter(None), 0);
/// ```
pub fn counter(state: Option<&[u8]>) -> u64 {
    state.and_then(|s| <[u8; 8]>::try_from(s).ok()).map(u64::from_le_bytes).unwrap_or(0)
}
