//! # theater-macros
//!
//! `#[theater_handler]`: turns an annotated `impl` block into a Theater handler. A thin shell over
//! [`theater_codegen`], which does all the work (as wasmtime's `component-macro` is over its `wit-bindgen`).
//!
//! ```ignore
//! use theater_macros::theater_handler;
//!
//! #[derive(Clone)]
//! pub struct RandomHandler { /* ... */ }
//!
//! #[theater_handler(wit = "../../wit", import = "theater:simple/random")]
//! impl RandomHandler {
//!     /// WIT: `random-bytes: func(length: u32) -> result<list<u8>, string>`
//!     fn random_bytes(&self, length: u32) -> Result<Vec<u8>, String> { /* ... */ }
//!     // ... one method per WIT function: `fn` → func_wrap, `async fn` → func_wrap_async
//! }
//! ```
//!
//! # Attribute keys
//! * `wit = "path"`: a `.wit` file, or a WIT package folder whose `deps/` folder holds its dependencies (as
//!   wit-parser's `Resolve::push_path` reads them), relative to the crate's `CARGO_MANIFEST_DIR`. Editing a WIT
//!   file rebuilds the crate.
//! * `import = "ns:pkg/iface"`: the interface whose host functions the methods implement; `ns:pkg/iface@1.2.3`
//!   when the WIT holds several versions of the package.
//! * `export = "ns:pkg/iface"`: a callback interface; generates `self.callbacks(&actor)` typed callers.
//! * `name = "..."`: the manifest `type` (default: the import interface's name).
//!
//! Only what the named interfaces reach is generated, in a module `__theater_<Self>` beside the `impl` whose
//! namespaces are re-exported there (`theater::simple::types::Chain`), so the `impl` may be in a function body and
//! several may share a module. Methods are named after their WIT function through heck
//! (`get-HTTP-status` → `get_http_status`); a Rust keyword becomes a raw identifier (`type` → `r#type`), and
//! `self`, `super`, `crate` and `Self` take a trailing underscore (`self_`).
//!
//! On methods, `#[theater(...)]`: `name = "wit-name"` binds a differently named WIT function;
//! `record(value = "full" | "digest" | "keyed-digest")` declares payload values and how the chain records them;
//! `create_instance` marks the per-actor constructor (default: `Clone`); `start` marks background work.
//!
//! Every mismatch between the WIT and the methods is a compile error at the offending tokens; all are reported
//! at once.

use proc_macro::TokenStream;

/// Generates a Theater `Handler` from an `impl` block whose methods implement a WIT interface. See the crate
/// docs for the keys.
#[proc_macro_attribute]
pub fn theater_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    theater_codegen::expand_handler(attr.into(), item.into(), &manifest_dir).into()
}
