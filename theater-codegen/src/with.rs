//! `with = "ns:pkg/iface = path::to::module, ..."`: interfaces whose types are generated elsewhere (another
//! handler crate's module tree), as wasmtime's `bindgen!` `with`. The named interface's module then re-exports
//! that module (`pub use path::to::module::*;`) instead of generating the types again, so a type is generated once
//! and values pass between the crates without conversion.

use std::collections::BTreeMap;

use crate::attr::Spanned;
use crate::diag::Diagnostics;
use crate::model::{IfaceName, Model};

/// The interfaces of a `with` and the module each one's types come from.
#[derive(Default)]
pub struct With(pub BTreeMap<IfaceName, syn::Path>);

impl With {
    /// Parses `lit` against the interfaces `model` holds; each problem is an error at the literal.
    pub fn parse(lit: &Spanned, model: &Model, diag: &mut Diagnostics) -> Self {
        let mut with = BTreeMap::new();
        for entry in lit
            .value
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let Some((name, path)) = entry.split_once('=') else {
                diag.error(
                    lit.span,
                    format!("`with`: `{entry}` is not `ns:pkg/iface = path::to::module`"),
                );
                continue;
            };
            let name = name.trim();
            let found = model
                .interfaces
                .keys()
                .find(|i| i.full() == name || i.versioned() == name);
            let Some(iface) = found else {
                let reached: Vec<String> =
                    model.interfaces.keys().map(IfaceName::versioned).collect();
                diag.error(
                    lit.span,
                    format!(
                        "`with`: `{name}` is not an interface this handler reaches (it reaches: {})",
                        reached.join(", ")
                    ),
                );
                continue;
            };
            match syn::parse_str::<syn::Path>(path.trim()) {
                Ok(path) => {
                    with.insert(iface.clone(), path);
                }
                Err(e) => diag.error(
                    lit.span,
                    format!("`with`: `{}` is not a Rust path: {e}", path.trim()),
                ),
            }
        }
        Self(with)
    }
}
