//! The `local` guest: drives every `theater:simple/timing` and `theater:simple/environment` function from a
//! script (see ../README.md) run by `init` (state `run:<script>`) or by `handle-script`.

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/local-actor", generate_all });

use exports::theater::simple::actor::Guest as Actor;
use exports::theater::test::probe_handlers::Guest as ProbeHandlers;
use std::sync::Mutex;

use guest_support::show;
use theater::simple::store::{self, ContentRef};
use theater::simple::filesystem::{self, CommandResult};
use theater::simple::{environment, timing};

/// The store the `s*` commands use: set by `snew` or `suse:ID`.
static CURRENT: Mutex<String> = Mutex::new(String::new());

fn current() -> String {
    CURRENT.lock().map(|c| c.clone()).unwrap_or_default()
}

fn r(hash: &str) -> ContentRef {
    ContentRef { hash: hash.to_owned() }
}

fn command_result(r: CommandResult) -> String {
    match r {
        CommandResult::Success(s) => format!("ok:{}:{:?}:{:?}", s.exit_code, s.stdout, s.stderr),
        CommandResult::Error(e) => format!("error:{}", e.message),
    }
}

/// Filesystem commands (see ../README.md); `fexec` and `fnix` take `|`-separated fields.
fn filesystem_command(op: &str, arg: &str) -> String {
    let (a, b) = arg.split_once(',').unwrap_or((arg, ""));
    match op {
        "fread" => show(op, filesystem::read_file(arg), |b| String::from_utf8_lossy(&b).into_owned()),
        "fwrite" => show(op, filesystem::write_file(a, b), |()| String::new()),
        "flist" => show(op, filesystem::list_files(arg), |l| l.join(",")),
        "fdel" => show(op, filesystem::delete_file(arg), |()| String::new()),
        "fmkdir" => show(op, filesystem::create_dir(arg), |()| String::new()),
        "frmdir" => show(op, filesystem::delete_dir(arg), |()| String::new()),
        "fexists" => show(op, filesystem::path_exists(arg), |b| b.to_string()),
        "fexec" => {
            let mut fields = arg.split('|');
            let dir = fields.next().unwrap_or("");
            let command = fields.next().unwrap_or("");
            let args: Vec<String> = fields.map(str::to_owned).collect();
            show(op, filesystem::execute_command(dir, command, &args), command_result)
        }
        "fnix" => {
            let (dir, command) = arg.split_once('|').unwrap_or(("", arg));
            show(op, filesystem::execute_nix_command(dir, command), command_result)
        }
        other => format!("unknown!{other}"),
    }
}

/// Store commands (see ../README.md).
fn store_command(op: &str, arg: &str) -> String {
    let id = current();
    let (a, b) = arg.split_once(',').unwrap_or((arg, ""));
    match op {
        "snew" => show(op, store::new(), |id| {
            if let Ok(mut c) = CURRENT.lock() {
                c.clone_from(&id);
            }
            id
        }),
        "suse" => {
            if let Ok(mut c) = CURRENT.lock() {
                *c = arg.to_owned();
            }
            op.to_owned()
        }
        "sput" => show(op, store::store(&id, arg.as_bytes()), |c| c.hash),
        "sget" => show(op, store::get(&id, &r(arg)), |b| String::from_utf8_lossy(&b).into_owned()),
        "sexists" => show(op, store::exists(&id, &r(arg)), |b| b.to_string()),
        "slabel" => show(op, store::label(&id, a, &r(b)), |()| String::new()),
        "sgetl" => show(op, store::get_by_label(&id, arg), |c| c.map(|c| c.hash).unwrap_or_else(|| "none".into())),
        "srml" => show(op, store::remove_label(&id, arg), |()| String::new()),
        "srmfrom" => show(op, store::remove_from_label(&id, a, &r(b)), |()| String::new()),
        "sputl" => show(op, store::store_at_label(&id, a, b.as_bytes()), |c| c.hash),
        "sreplc" => show(op, store::replace_content_at_label(&id, a, b.as_bytes()), |c| c.hash),
        "srepl" => show(op, store::replace_at_label(&id, a, &r(b)), |()| String::new()),
        "slabels" => show(op, store::list_labels(&id), |l| l.join(",")),
        "sall" => show(op, store::list_all_content(&id), |l| l.into_iter().map(|c| c.hash).collect::<Vec<_>>().join(",")),
        "ssize" => show(op, store::calculate_total_size(&id), |n| n.to_string()),
        other => format!("unknown!{other}"),
    }
}

struct Local;

/// One script command (see ../README.md).
fn command(op: &str, arg: &str) -> String {
    match op {
        "now" => format!("now={}", timing::now()),
        "sleep" => match timing::sleep(arg.parse().unwrap_or(0)) {
            Ok(()) => format!("sleep={}", timing::now()),
            Err(e) => format!("sleep!{e}"),
        },
        "deadline" => match timing::deadline(arg.parse().unwrap_or(0)) {
            Ok(()) => format!("deadline={}", timing::now()),
            Err(e) => format!("deadline!{e}"),
        },
        "deadline-in" => {
            let at = timing::now().saturating_add(arg.parse().unwrap_or(0));
            match timing::deadline(at) {
                Ok(()) => format!("deadline-in={}", timing::now()),
                Err(e) => format!("deadline-in!{e}"),
            }
        }
        "get" => match environment::get_var(arg) {
            Some(v) => format!("get={v}"),
            None => "get=none".into(),
        },
        "exists" => format!("exists={}", environment::exists(arg)),
        "list" => {
            let vars: Vec<String> = environment::list_vars().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("list={}", vars.join(","))
        }
        other if other.starts_with('s') => store_command(other, arg),
        other if other.starts_with('f') => filesystem_command(other, arg),
        other => format!("unknown!{other}"),
    }
}

impl Actor for Local {
    fn init(state: Option<Vec<u8>>, _params: (String,)) -> Result<(Option<Vec<u8>>,), String> {
        match guest_support::startup_script(state.as_deref())? {
            Some(script) => Ok((Some(guest_support::run_script(&script, command).into_bytes()),)),
            None => Ok((state,)),
        }
    }
}

impl ProbeHandlers for Local {
    guest_support::probe_handlers!(spin_refused: "no spinning in local");

    fn handle_script(state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>, (String,)), String> {
        Ok((state, (guest_support::run_script(&params.0, command),)))
    }
}

export!(Local);
