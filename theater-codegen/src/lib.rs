//! # theater-codegen
//!
//! The generator behind `#[theater_handler]`: WIT in, Rust glue out. It sits between `wit/` and the handler
//! crates in Theater's data flow (`wit/` → **theater-codegen** → `theater-macros` → `handlers/*` →
//! `theater-runtime`) and does not depend on the runtime: the code it emits names `::theater_runtime` paths.
//!
//! Stages, one module each: [`load`] (wit-parser `Resolve`, every file read) → [`model`] (an owned model of
//! interfaces, functions and types) → [`check`](mod@check) (the user's `impl` against the model; every error at its span,
//! accumulated in [`diag::Diagnostics`]) → [`typemap`] (WIT type → Rust type) → [`emit`] (tokens).
//!
//! ```
//! # let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
//! let tokens = theater_codegen::generate(&wit, Some("theater:simple/random"), None).unwrap();
//! assert!(tokens.to_string().contains("random-bytes"));
//! ```

pub mod attr;
pub mod check;
pub mod diag;
pub mod emit;
pub mod load;
pub mod model;
pub mod new_handler;
pub mod scaffold;
pub mod typemap;

use std::path::{Path, PathBuf};

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::ItemImpl;

use crate::attr::{HandlerAttr, MethodAttr, Spanned};
use crate::diag::Diagnostics;
use crate::model::{IfaceName, Interface, Model};

pub use crate::diag::Diagnostics as Errors;

/// Expands `#[theater_handler(attr)] item`, with WIT paths relative to `manifest_dir`.
///
/// Always returns tokens: on error, the user's `impl` as written, the generated types when the WIT loaded, a stub
/// `Handler` impl, and one `compile_error!` per problem at its span.
pub fn expand_handler(attr: TokenStream, item: TokenStream, manifest_dir: &Path) -> TokenStream {
    let mut diag = Diagnostics::new();
    let mut item: ItemImpl = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(e) => {
            let msg = format!("#[theater_handler] goes on an `impl` block: {e}");
            let err = syn::Error::new(e.span(), msg).to_compile_error();
            return quote!(#item #err);
        }
    };
    let attr = HandlerAttr::parse(attr, &mut diag);
    let loaded = attr
        .wit
        .as_ref()
        .and_then(|wit| load_model(manifest_dir, wit, &mut diag));
    let Some((model, files)) = loaded else {
        strip_theater_attrs(&mut item, &mut diag);
        let errors = diag.to_compile_errors();
        let fallback = emit::fallback(&item, TokenStream::new(), TokenStream::new());
        return quote!(#fallback #errors);
    };
    let import = attr
        .import
        .as_ref()
        .and_then(|s| find_interface(&model, s, &mut diag));
    let export = attr.export.as_ref().and_then(|s| {
        let iface = find_interface(&model, s, &mut diag)?;
        match emit::exports::callbacks(iface) {
            Ok(cbs) => Some((iface, cbs)),
            Err(msg) => {
                diag.error(s.span, msg);
                None
            }
        }
    });
    let plan = check::bind(&model, import, &mut item, &mut diag);
    if diag.has_errors() {
        let types = if import.is_some() || export.is_some() {
            emit::type_modules(&model, import, export.as_ref())
        } else {
            TokenStream::new()
        };
        let fallback = emit::fallback(&item, types, emit::include_files(&files));
        let errors = diag.to_compile_errors();
        return quote!(#fallback #errors);
    }
    let name = attr
        .name
        .as_ref()
        .map(|n| n.value.clone())
        .or_else(|| import.map(|i| i.name.name.clone()))
        .or_else(|| export.as_ref().map(|(i, _)| i.name.name.clone()))
        .unwrap_or_default();
    emit::handler(&emit::HandlerParts {
        model: &model,
        item: &item,
        name,
        import,
        export,
        plan,
        files: &files,
    })
}

/// What `#[theater_handler(wit = .., import = .., export = ..)]` expands to on the skeleton `impl` of
/// [`scaffold::skeleton_impl`] (the one `theater-codegen new-handler` writes): every generated item of an
/// interface pair, for review and snapshots. `wit_dir` is used as given (relative to the current directory).
///
/// # Errors
/// The WIT fails to load, an interface is unknown or breaks the callback convention.
pub fn generate(
    wit_dir: &Path,
    import: Option<&str>,
    export: Option<&str>,
) -> Result<TokenStream, Diagnostics> {
    let mut diag = Diagnostics::new();
    let spanned = |s: &str| Spanned {
        value: s.to_owned(),
        span: Span::call_site(),
    };
    let base = std::env::current_dir().unwrap_or_default();
    let wit = std::path::absolute(base.join(wit_dir)).unwrap_or_else(|_| wit_dir.to_owned());
    let Some((model, _)) = load_model(&base, &spanned(&wit.display().to_string()), &mut diag)
    else {
        return Err(diag);
    };
    let iface = import.and_then(|s| find_interface(&model, &spanned(s), &mut diag));
    if let Some(e) = export {
        find_interface(&model, &spanned(e), &mut diag);
    }
    diag.finish()?;
    let self_ty = quote::format_ident!("Handler");
    let item = match iface {
        Some(iface) => scaffold::skeleton_impl(&self_ty, iface),
        None => quote!(impl Handler {}),
    };
    let wit_str = wit.display().to_string();
    let mut attr = quote!(wit = #wit_str);
    if let Some(i) = import {
        attr.extend(quote!(, import = #i));
    }
    if let Some(e) = export {
        attr.extend(quote!(, export = #e));
    }
    let out = expand_handler(attr, item, &base);
    if out.to_string().contains("compile_error") {
        let mut diag = Diagnostics::new();
        diag.error(
            Span::call_site(),
            format!("internal error in theater-codegen: the skeleton does not expand: {out}"),
        );
        return Err(diag);
    }
    Ok(out)
}

/// Formats generated tokens as a Rust file (prettyplease), for the CLI and snapshots.
///
/// # Errors
/// The tokens do not parse as a file (a generator bug).
pub fn format(tokens: TokenStream) -> Result<String, syn::Error> {
    Ok(prettyplease::unparse(&syn::parse2::<syn::File>(tokens)?))
}

/// Loads and resolves the WIT package in `wit_dir`; returns the files read.
///
/// # Errors
/// wit-parser's message, with `file:line:col` for syntax and name errors.
pub fn check(wit_dir: &Path) -> Result<Vec<PathBuf>, Diagnostics> {
    let mut diag = Diagnostics::new();
    let base = std::env::current_dir().unwrap_or_default();
    let wit = Spanned {
        value: wit_dir.display().to_string(),
        span: Span::call_site(),
    };
    match load_model(&base, &wit, &mut diag) {
        Some((_, files)) => Ok(files),
        None => Err(diag),
    }
}

fn load_model(base: &Path, wit: &Spanned, diag: &mut Diagnostics) -> Option<(Model, Vec<PathBuf>)> {
    let loaded = match load::load(base, Path::new(&wit.value)) {
        Ok(loaded) => loaded,
        Err(msg) => {
            diag.error(wit.span, msg);
            return None;
        }
    };
    match Model::build(&loaded.resolve) {
        Ok(model) => Some((model, loaded.files)),
        Err(errors) => {
            errors.into_iter().for_each(|e| diag.error(wit.span, e));
            None
        }
    }
}

fn find_interface<'m>(
    model: &'m Model,
    name: &Spanned,
    diag: &mut Diagnostics,
) -> Option<&'m Interface> {
    let found = IfaceName::parse(&name.value).and_then(|n| model.interface(&n));
    if found.is_none() {
        let known: Vec<String> = model.interfaces.keys().map(IfaceName::full).collect();
        diag.error(
            name.span,
            format!(
                "unknown interface `{}`: the WIT package has {}",
                name.value,
                known.join(", ")
            ),
        );
    }
    found
}

fn strip_theater_attrs(item: &mut ItemImpl, diag: &mut Diagnostics) {
    for i in &mut item.items {
        if let syn::ImplItem::Fn(m) = i {
            MethodAttr::take(&mut m.attrs, diag);
        }
    }
}

#[cfg(test)]
mod tests;
