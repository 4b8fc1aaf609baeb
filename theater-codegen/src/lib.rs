//! # theater-codegen
//!
//! The generator behind `#[theater_handler]`: WIT in, Rust glue out. It sits between `wit/` and the handler
//! crates in Theater's data flow (`wit/` → **theater-codegen** → `theater-macros` → `handlers/*` →
//! `theater-runtime`) and does not depend on the runtime: the code it emits names `::theater_runtime` paths.
//!
//! Stages, one module each: [`load`] (wit-parser `Resolve` from a `.wit` file or a package folder, every file
//! read, interfaces found by name) → [`model`] (an owned model of the named interfaces and the types they reach) → [`check`](mod@check) (the user's `impl` against the model; every error at its span,
//! accumulated in [`diag::Diagnostics`]) → [`typemap`] (WIT type → Rust type) → [`emit`] (tokens).
//!
//! ```
//! # let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
//! let tokens = theater_codegen::generate(&wit, Some("theater:simple/random"), None).unwrap();
//! assert!(tokens.to_string().contains("random-bytes"));
//! ```

pub mod attr;
pub mod callbacks;
pub mod check;
pub mod diag;
pub mod emit;
pub mod load;
pub mod model;
#[cfg(feature = "cli")]
pub mod new_handler;
pub mod scaffold;
pub mod typemap;
pub mod with;

use std::path::{Path, PathBuf};

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::ItemImpl;

use crate::attr::{HandlerAttr, MethodAttr, Spanned};
use crate::diag::Diagnostics;
use crate::load::Loaded;
use crate::model::{Builder, IfaceName, Model};

pub use crate::diag::Diagnostics as Errors;

/// Expands `#[theater_handler(attr)] item`, with WIT paths relative to `manifest_dir`.
///
/// Always returns tokens: on error ([`try_expand_handler`]), the user's `impl` as written, the generated types when
/// the WIT loaded, a stub `Handler` impl, and one `compile_error!` per problem at its span.
pub fn expand_handler(attr: TokenStream, item: TokenStream, manifest_dir: &Path) -> TokenStream {
    try_expand_handler(attr, item, manifest_dir).unwrap_or_else(|failed| {
        let Failed { fallback, errors } = failed;
        let errors = errors.to_compile_errors();
        quote!(#fallback #errors)
    })
}

/// An expansion that found problems: what the macro emits besides the errors, so that they are the only errors
/// the user sees, and the errors themselves.
pub struct Failed {
    /// The user's `impl` as written (minus `#[theater]` attributes), the generated types if the WIT loaded, a stub
    /// `Handler` impl.
    pub fallback: TokenStream,
    /// Every problem, at its span.
    pub errors: Diagnostics,
}

/// As [`expand_handler`], with the problems as a value: what `generate` and the CLI consume.
///
/// # Errors
/// [`Failed`]: the item is not an `impl`, the attribute or the WIT is wrong, an interface cannot be served, or the
/// methods do not match the WIT.
pub fn try_expand_handler(
    attr: TokenStream,
    item: TokenStream,
    manifest_dir: &Path,
) -> Result<TokenStream, Failed> {
    let mut diag = Diagnostics::new();
    let mut item: ItemImpl = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(e) => {
            let msg = format!("#[theater_handler] goes on an `impl` block: {e}");
            diag.syn(syn::Error::new(e.span(), msg));
            return Err(Failed {
                fallback: item,
                errors: diag,
            });
        }
    };
    let attr = HandlerAttr::parse(attr, &mut diag);
    let loaded = attr
        .wit
        .as_ref()
        .and_then(|wit| load_wit(manifest_dir, wit, &mut diag));
    let Some(loaded) = loaded else {
        strip_theater_attrs(&mut item, &mut diag);
        return Err(Failed {
            fallback: emit::fallback(&item, TokenStream::new(), TokenStream::new()),
            errors: diag,
        });
    };
    let named = model_roots(
        &loaded,
        attr.import.as_ref(),
        attr.export.as_ref(),
        attr.types.as_ref(),
        &mut diag,
    );
    let model = &named.model;
    let with = match &attr.with {
        Some(lit) => with::With::parse(lit, model, &mut diag),
        None => with::With::default(),
    };
    let import = named.import.as_ref().and_then(|n| model.interface(n));
    let export = named.export.as_ref().and_then(|n| model.interface(n));
    let export =
        export
            .zip(attr.export.as_ref())
            .and_then(|(iface, s)| match callbacks::callbacks(iface) {
                Ok(cbs) => Some((iface, cbs)),
                Err(msg) => {
                    diag.error(s.span, msg);
                    None
                }
            });
    // An import that failed to load already has its error: checking the methods against nothing would only add
    // one "not a function" error per method.
    let plan = if attr.import.is_some() && import.is_none() {
        strip_theater_attrs(&mut item, &mut diag);
        check::Plan::default()
    } else {
        check::bind(model, import, &mut item, &mut diag)
    };
    if export.is_some() {
        check_callbacks_method(&item, &mut diag);
    }
    if diag.has_errors() {
        let types = if named.complete && (import.is_some() || export.is_some()) {
            emit::type_modules(
                model,
                export.as_ref(),
                &std::collections::BTreeMap::new(),
                &with,
                &emit::tree_module(&item.self_ty),
            )
        } else {
            TokenStream::new()
        };
        return Err(Failed {
            fallback: emit::fallback(&item, types, emit::include_files(&loaded.files)),
            errors: diag,
        });
    }
    let name = attr
        .name
        .as_ref()
        .map(|n| n.value.clone())
        .or_else(|| import.map(|i| i.name.name.clone()))
        .or_else(|| export.as_ref().map(|(i, _)| i.name.name.clone()))
        .unwrap_or_default();
    Ok(emit::handler(&emit::HandlerParts {
        model,
        item: &item,
        name,
        import,
        export,
        plan,
        with,
        files: &loaded.files,
    }))
}

/// What `#[theater_handler(wit = .., import = .., export = ..)]` expands to on the skeleton `impl` of
/// [`scaffold::skeleton_impl`] (the one `theater-codegen new-handler` writes): every generated item of an
/// interface pair, for review and snapshots. `wit` is a `.wit` file or a package folder (with its `deps/`), used
/// as given (relative to the current directory); `import` and `export` are `ns:pkg/iface`, with `@version` when
/// the WIT holds several versions of the package.
///
/// # Errors
/// The WIT fails to load; an interface is unknown, ambiguous, reaches a WIT construct the generator does not
/// serve, or (an export) breaks the callback convention.
pub fn generate(
    wit: &Path,
    import: Option<&str>,
    export: Option<&str>,
) -> Result<TokenStream, Diagnostics> {
    let base = std::env::current_dir().unwrap_or_default();
    let skeleton = skeleton(wit, import, export)?;
    let out = try_expand_handler(skeleton.attr, skeleton.item, &base).map_err(|failed| {
        let mut diag = Diagnostics::new();
        for message in failed.errors.messages() {
            diag.error(
                Span::call_site(),
                format!(
                    "internal error in theater-codegen: the skeleton does not expand: {message}"
                ),
            );
        }
        diag
    })?;
    let states = skeleton.states;
    Ok(quote!(#states #out))
}

/// The scaffold of a handler for an interface pair, as [`generate`] expands it and `new-handler` writes it.
pub struct Skeleton {
    /// The arguments of `#[theater_handler(...)]`: `wit` (absolute), `import`, `export`.
    pub attr: TokenStream,
    /// The skeleton `impl Handler` ([`scaffold::skeleton_impl`]; `impl Handler {}` without an import).
    pub item: TokenStream,
    /// A state type per resource its methods use ([`scaffold::resource_states`]).
    pub states: TokenStream,
}

impl Skeleton {
    /// The states, then the `impl` under `#[theater_handler(...)]`: a module's items, for a crate that compiles
    /// scaffolds (the WASI check, `tests/wasi-scaffold`).
    pub fn annotated(&self) -> TokenStream {
        let Self { attr, item, states } = self;
        quote! {
            #states
            #[::theater_macros::theater_handler(#attr)]
            #item
        }
    }
}

/// The scaffold of a handler named `Handler` for `import` and `export` in the WIT at `wit` (relative to the
/// current directory).
///
/// # Errors
/// As [`generate`].
pub fn skeleton(
    wit: &Path,
    import: Option<&str>,
    export: Option<&str>,
) -> Result<Skeleton, Diagnostics> {
    let mut diag = Diagnostics::new();
    let spanned = |s: &str| Spanned {
        value: s.to_owned(),
        span: Span::call_site(),
    };
    let base = std::env::current_dir().unwrap_or_default();
    let wit = std::path::absolute(base.join(wit)).unwrap_or_else(|_| wit.to_owned());
    let wit_str = wit.display().to_string();
    let Some(loaded) = load_wit(&base, &spanned(&wit_str), &mut diag) else {
        return Err(diag);
    };
    let (import_lit, export_lit) = (import.map(spanned), export.map(spanned));
    let named = model_roots(
        &loaded,
        import_lit.as_ref(),
        export_lit.as_ref(),
        None,
        &mut diag,
    );
    if let Some(Err(msg)) = named
        .export
        .as_ref()
        .and_then(|n| named.model.interface(n))
        .map(callbacks::callbacks)
    {
        diag.error(Span::call_site(), msg);
    }
    diag.finish()?;
    let self_ty = quote::format_ident!("Handler");
    let (states, item) = match named.import.as_ref().and_then(|n| named.model.interface(n)) {
        Some(iface) => (
            scaffold::resource_states(iface),
            scaffold::skeleton_impl(&self_ty, iface),
        ),
        None => (TokenStream::new(), quote!(impl Handler {})),
    };
    let mut attr = quote!(wit = #wit_str);
    if let Some(i) = import {
        attr.extend(quote!(, import = #i));
    }
    if let Some(e) = export {
        attr.extend(quote!(, export = #e));
    }
    Ok(Skeleton { attr, item, states })
}

/// Formats generated tokens as a Rust file (prettyplease), for the CLI and snapshots.
///
/// # Errors
/// The tokens do not parse as a file (a generator bug).
pub fn format(tokens: TokenStream) -> Result<String, syn::Error> {
    Ok(prettyplease::unparse(&syn::parse2::<syn::File>(tokens)?))
}

/// Loads and resolves the WIT at `wit` (a `.wit` file, or a package folder with its `deps/`); returns the files
/// read. Only wit-parser's checks run: whether an interface can be served is [`generate`]'s question.
///
/// # Errors
/// wit-parser's message, with `file:line:col` for syntax and name errors.
pub fn check(wit: &Path) -> Result<Vec<PathBuf>, Diagnostics> {
    let mut diag = Diagnostics::new();
    let base = std::env::current_dir().unwrap_or_default();
    let wit = Spanned {
        value: wit.display().to_string(),
        span: Span::call_site(),
    };
    match load_wit(&base, &wit, &mut diag) {
        Some(loaded) => Ok(loaded.files),
        None => Err(diag),
    }
}

/// Loads the WIT the `wit = ".."` literal names; an error goes to the literal.
fn load_wit(base: &Path, wit: &Spanned, diag: &mut Diagnostics) -> Option<Loaded> {
    load::load(base, Path::new(&wit.value))
        .map_err(|e| diag.error_at(wit.span, &e.message, e.location))
        .ok()
}

/// The model of the interfaces a handler names, and which of them it holds.
struct Named {
    model: Model,
    /// The import, if it was named, found and modelled without error.
    import: Option<IfaceName>,
    /// The export, likewise.
    export: Option<IfaceName>,
    /// Whether every interface named was modelled (the model's types may be emitted).
    complete: bool,
}

/// Finds and models the `import` and `export` interfaces, and those of `types` (every type of each, for other
/// crates' `with`); each one's errors go to its literal.
fn model_roots(
    loaded: &Loaded,
    import: Option<&Spanned>,
    export: Option<&Spanned>,
    types: Option<&Spanned>,
    diag: &mut Diagnostics,
) -> Named {
    let mut builder = Builder::new(&loaded.resolve);
    let mut complete = true;
    let mut root = |lit: &Spanned, diag: &mut Diagnostics| {
        let found = loaded
            .find_interface(&lit.value)
            .map_err(|msg| vec![msg])
            .and_then(|id| builder.add_root(id));
        match found {
            Ok(name) => Some(name),
            Err(messages) => {
                complete = false;
                messages.into_iter().for_each(|m| diag.error(lit.span, m));
                None
            }
        }
    };
    let import = import.and_then(|lit| root(lit, diag));
    let export = export.and_then(|lit| root(lit, diag));
    for lit in types.iter() {
        for name in lit
            .value
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let one = Spanned {
                value: name.to_owned(),
                span: lit.span,
            };
            root(&one, diag);
        }
    }
    Named {
        model: builder.finish(),
        import,
        export,
        complete,
    }
}

/// With an export, the generated `callbacks` method (the typed callers) is the handler's: a method of the `impl`
/// named so is an error at its name.
fn check_callbacks_method(item: &ItemImpl, diag: &mut Diagnostics) {
    for i in &item.items {
        if let syn::ImplItem::Fn(m) = i
            && model::unraw(&m.sig.ident.to_string()) == "callbacks"
        {
            diag.error(
                m.sig.ident.span(),
                "`callbacks` is the method #[theater_handler(export = ...)] generates (the typed callers): rename \
                 this one (a WIT function `callbacks` is served by a method of another name with \
                 #[theater(name = \"callbacks\")])",
            );
        }
    }
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
