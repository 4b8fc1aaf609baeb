//! `theater new actor NAME [--handlers runtime,random,...]`: writes a guest crate from `templates/actor/`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

const CARGO_TOML: &str = include_str!("../../../../../templates/actor/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("../../../../../templates/actor/lib.rs.tmpl");
const MESSAGE_SERVER_RS: &str =
    include_str!("../../../../../templates/actor/message-server.rs.tmpl");
const MANIFEST: &str = include_str!("../../../../../templates/actor/manifest.toml.tmpl");
const README: &str = include_str!("../../../../../templates/actor/README.md.tmpl");
const WORLD: &str = include_str!("../../../../../templates/actor/world.wit.tmpl");

/// The `theater:simple` package (Theater's `wit/`), copied into each new actor's `wit/deps/simple/`.
const SIMPLE_WIT: &[(&str, &str)] = &[
    ("actor.wit", include_str!("../../../../../wit/actor.wit")),
    (
        "environment.wit",
        include_str!("../../../../../wit/environment.wit"),
    ),
    (
        "filesystem.wit",
        include_str!("../../../../../wit/filesystem.wit"),
    ),
    (
        "http-client.wit",
        include_str!("../../../../../wit/http-client.wit"),
    ),
    (
        "http-framework.wit",
        include_str!("../../../../../wit/http-framework.wit"),
    ),
    (
        "http-handlers.wit",
        include_str!("../../../../../wit/http-handlers.wit"),
    ),
    (
        "http-types.wit",
        include_str!("../../../../../wit/http-types.wit"),
    ),
    (
        "message-server-client.wit",
        include_str!("../../../../../wit/message-server-client.wit"),
    ),
    (
        "message-server-host.wit",
        include_str!("../../../../../wit/message-server-host.wit"),
    ),
    (
        "process-handlers.wit",
        include_str!("../../../../../wit/process-handlers.wit"),
    ),
    (
        "process.wit",
        include_str!("../../../../../wit/process.wit"),
    ),
    ("random.wit", include_str!("../../../../../wit/random.wit")),
    (
        "runtime.wit",
        include_str!("../../../../../wit/runtime.wit"),
    ),
    ("store.wit", include_str!("../../../../../wit/store.wit")),
    (
        "supervisor-handlers.wit",
        include_str!("../../../../../wit/supervisor-handlers.wit"),
    ),
    (
        "supervisor.wit",
        include_str!("../../../../../wit/supervisor.wit"),
    ),
    ("timing.wit", include_str!("../../../../../wit/timing.wit")),
    ("types.wit", include_str!("../../../../../wit/types.wit")),
    (
        "websocket-types.wit",
        include_str!("../../../../../wit/websocket-types.wit"),
    ),
];

/// The handlers an actor can be granted: manifest `type`, the interface it imports, the callback interface a
/// template implements for it (if any).
const HANDLERS: &[(&str, &str, Option<&str>)] = &[
    ("runtime", "runtime", None),
    ("random", "random", None),
    ("timing", "timing", None),
    ("environment", "environment", None),
    ("store", "store", None),
    ("filesystem", "filesystem", None),
    ("http-client", "http-client", None),
    ("http-framework", "http-framework", None),
    ("process", "process", None),
    ("supervisor", "supervisor", None),
    (
        "message-server",
        "message-server-host",
        Some("message-server-client"),
    ),
];

/// The handlers `theater new actor` grants unless told otherwise.
pub const DEFAULT_HANDLERS: &str = "runtime";

/// Writes the crate `name` into `dir` (default `./<name>`), granting `handlers` (manifest `type`s); its path.
///
/// # Errors
/// A bad name (lowercase letters, digits and `-`, starting with a letter), an unknown or repeated handler, the
/// folder exists (nothing is overwritten), or a file cannot be written.
pub fn new_actor(name: &str, handlers: &[String], dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!("actor name {name:?}: use lowercase letters, digits and `-`, starting with a letter");
    }
    let mut granted = Vec::new();
    for handler in handlers {
        let Some(entry) = HANDLERS.iter().find(|(t, _, _)| t == handler) else {
            let known: Vec<&str> = HANDLERS.iter().map(|(t, _, _)| *t).collect();
            bail!("unknown handler {handler:?} (known: {})", known.join(", "));
        };
        if granted.contains(&entry) {
            bail!("handler {handler:?} is listed twice");
        }
        granted.push(entry);
    }
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        bail!("{} already exists; not overwriting it", dir.display());
    }
    let types: Vec<&str> = granted.iter().map(|(t, _, _)| *t).collect();
    let has = |t: &str| types.contains(&t);
    let imports: String = granted
        .iter()
        .map(|(_, import, _)| format!("    import theater:simple/{import};\n"))
        .collect();
    let exports: String = granted
        .iter()
        .filter_map(|(_, _, export)| export.map(|e| format!("    export theater:simple/{e};\n")))
        .collect();
    let init = if has("runtime") {
        "        theater::simple::runtime::log(&format!(\"hello from {{name}} {id}\"));\n"
    } else {
        "        let _ = id;\n"
    };
    let callbacks = if has("message-server") {
        MESSAGE_SERVER_RS
    } else {
        ""
    };
    let handler_tables: String = types
        .iter()
        .map(|t| format!("\n[[handler]]\ntype = \"{t}\"\n"))
        .collect();
    let handlers_flag = match types.join(",") {
        list if list == DEFAULT_HANDLERS => String::new(),
        list => format!(" --handlers {list}"),
    };
    let callbacks_doc = if has("message-server") {
        " and the `message-server-client` callbacks"
    } else {
        ""
    };
    let fill = |template: &str| {
        template
            .replace("{{imports}}", &imports)
            .replace("{{exports}}", &exports)
            .replace("{{uses}}", "")
            .replace("{{init}}", init)
            .replace("{{callbacks}}", callbacks)
            .replace("{{callbacks_doc}}", callbacks_doc)
            .replace("{{handler_tables}}", &handler_tables)
            .replace("{{handlers_flag}}", &handlers_flag)
            .replace("{{handlers}}", &types.join(", "))
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{name}}", name)
    };
    let files = [
        ("Cargo.toml".to_owned(), fill(CARGO_TOML)),
        ("src/lib.rs".to_owned(), fill(LIB_RS)),
        (format!("{name}.toml"), fill(MANIFEST)),
        ("README.md".to_owned(), fill(README)),
        ("wit/world.wit".to_owned(), fill(WORLD)),
    ];
    let wit = SIMPLE_WIT
        .iter()
        .map(|(file, text)| (format!("wit/deps/simple/{file}"), (*text).to_owned()));
    for (path, text) in files.into_iter().chain(wit) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_wit_is_all_of_the_workspace_wit() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
        let mut on_disk: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wit"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        on_disk.sort();
        let embedded: Vec<(String, String)> = SIMPLE_WIT
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect();
        assert_eq!(embedded, on_disk, "add the new wit/ file to SIMPLE_WIT");
    }

    #[test]
    fn bad_names_and_handlers_are_refused_and_nothing_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let at = |n: &str| Some(dir.path().join(n));
        let runtime = ["runtime".to_owned()];
        assert!(new_actor("Bad", &runtime, at("a").as_deref()).is_err());
        assert!(new_actor("9x", &runtime, at("b").as_deref()).is_err());
        let e = new_actor("ok", &["radnom".to_owned()], at("c").as_deref()).unwrap_err();
        assert!(e.to_string().contains("unknown handler \"radnom\""), "{e}");
        new_actor("ok", &runtime, at("d").as_deref()).unwrap();
        let e = new_actor("ok", &runtime, at("d").as_deref()).unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
    }
}
