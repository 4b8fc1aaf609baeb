//! Emitters: one per output (types, the import side, the export side), over one checked model. Tokens are built
//! with `quote!`; nothing is formatted or parsed back here.

pub mod exports;
pub mod imports;
pub mod record;
pub mod types;

use std::path::PathBuf;

use proc_macro2::{Ident, Span, TokenStream};
use quote::{ToTokens as _, format_ident, quote, quote_spanned};
use syn::ItemImpl;
use syn::spanned::Spanned as _;

use crate::attr::Mode;
use std::collections::BTreeMap;

use crate::check::{Plan, ResourceType};
use crate::model::{IfaceName, Interface, Model, TypeDefKind, TypeRef};

/// `#[doc = "..."]` lines of a WIT doc comment.
pub fn docs(docs: &Option<String>) -> TokenStream {
    match docs {
        Some(d) => d
            .lines()
            .map(|l| {
                let l = format!(" {}", l.trim_end());
                quote!(#[doc = #l])
            })
            .collect(),
        None => TokenStream::new(),
    }
}

/// The runtime's `RecordMode` for a mode.
pub fn mode_tokens(mode: Mode) -> TokenStream {
    match mode {
        Mode::Full => quote!(::theater_runtime::RecordMode::Full),
        Mode::Digest => quote!(::theater_runtime::RecordMode::Digest),
        Mode::KeyedDigest => quote!(::theater_runtime::RecordMode::KeyedDigest),
    }
}

/// One `const _: &[u8] = include_bytes!(...)` per WIT file, so that editing WIT rebuilds the crate.
pub fn include_files(files: &[PathBuf]) -> TokenStream {
    files
        .iter()
        .map(|f| {
            let path = f.display().to_string();
            quote!(
                const _: &[u8] = ::core::include_bytes!(#path);
            )
        })
        .collect()
}

/// Everything one annotated `impl` expands to, besides the `impl` itself.
pub struct HandlerParts<'a> {
    pub model: &'a Model,
    pub item: &'a ItemImpl,
    pub name: String,
    pub import: Option<&'a Interface>,
    pub export: Option<(&'a Interface, Vec<exports::Callback<'a>>)>,
    pub plan: Plan<'a>,
    /// Interfaces whose types come from elsewhere.
    pub with: crate::with::With,
    pub files: &'a [PathBuf],
}

/// The name of the module that holds a handler's generated tree: `__theater_` and the identifiers of its `impl`'s
/// self type (`__theater_RandomHandler`, `__theater_a_Handler_T` for `a::Handler<T>`), as written. Two handlers
/// in one scope have different self types, so their modules never share a name there, which is all that matters:
/// each module is named only from the scope of its `impl`.
pub fn tree_module(self_ty: &syn::Type) -> Ident {
    fn idents(tokens: TokenStream, out: &mut Vec<String>) {
        for t in tokens {
            match t {
                proc_macro2::TokenTree::Ident(i) => {
                    out.push(crate::model::unraw(&i.to_string()).to_owned())
                }
                proc_macro2::TokenTree::Group(g) => idents(g.stream(), out),
                _ => {}
            }
        }
    }
    let mut names = Vec::new();
    idents(self_ty.to_token_stream(), &mut names);
    if names.is_empty() {
        names.push("handler".into());
    }
    format_ident!("__theater_{}", names.join("_"))
}

/// The module tree of every interface in the model (the ones the handler names and those whose types they
/// reach), with the callers in the export's module, inside one module named `tree` ([`tree_module`]) whose
/// items (the namespaces' modules) are re-exported where the `impl` is, so that users name
/// `theater::simple::types::Chain` as if the tree were there.
///
/// The tree is in a module of its own so that its paths between interfaces (`super::super::super::ns::..`) stay
/// inside it, whatever holds the `impl`: `super` skips block scopes, so a tree in a function body could not name
/// its own modules, and two handlers in one module would each define the namespaces' modules there.
///
/// A resource whose Rust type the handler chose (`resources`, from its methods' `Resource<T>`) is named in the
/// tree as an associated type (`<tree::__TheaterHandler as tree::__TheaterResources>::R0`), set by an `impl`
/// beside the tree: that is where the user's type is written, and a path from inside a module cannot name an
/// item declared in a block. The trait and its type are visible to the scope of the `impl` only (`pub(super)`),
/// so that the user's type may be private, unless a generated record or variant holds a handle of such a
/// resource: its component-model impls (public traits) then name them, which rustc allows only of public items
/// (E0446), and the user's type must be public too, as it must be for any public impl to name it.
pub fn type_modules(
    model: &Model,
    export: Option<&(&Interface, Vec<exports::Callback<'_>>)>,
    resources: &BTreeMap<TypeRef, ResourceType>,
    with: &crate::with::With,
    tree_name: &Ident,
) -> TokenStream {
    let names: Vec<IfaceName> = model.interfaces.keys().cloned().collect();
    let extra = |name: &IfaceName| match export {
        Some((iface, cbs)) if &iface.name == name => exports::module_items(model, iface, cbs),
        _ => TokenStream::new(),
    };
    let mut aliases = BTreeMap::new();
    let mut assoc = TokenStream::new();
    let mut chosen = TokenStream::new();
    for (i, (resource, ty)) in resources.iter().enumerate() {
        let alias = format_ident!("R{i}");
        let ty = &ty.ty;
        let doc = format!(
            " The handler's type for the WIT resource `{}` of `{}`.",
            resource.name,
            resource.iface.versioned()
        );
        assoc.extend(quote! {
            #[doc = #doc]
            type #alias;
        });
        // At the user's type, which rustc names if it may not be named here (E0446: a private type, where a
        // generated record holds a handle of the resource).
        chosen.extend(quote_spanned!(ty.span()=> type #alias = #ty;));
        aliases.insert(resource.clone(), alias);
    }
    let (holder, set) = if resources.is_empty() {
        (TokenStream::new(), TokenStream::new())
    } else {
        let chosen_handle = |r: &TypeRef| resources.contains_key(r);
        let in_public_impls = model
            .interfaces
            .values()
            .filter(|i| !with.0.contains_key(&i.name))
            .flat_map(|i| &i.types)
            .any(|d| {
                matches!(d.kind, TypeDefKind::Record(_) | TypeDefKind::Variant(_))
                    && model.def_holds_handles_of(d, &chosen_handle)
            });
        let vis = if in_public_impls {
            quote!(pub)
        } else {
            quote!(pub(super))
        };
        (
            quote! {
                /// The handler's types for the WIT resources its methods name (the `T` of their `Resource<T>`).
                #[doc(hidden)]
                #vis trait __TheaterResources { #assoc }
                /// What [`__TheaterResources`] is implemented for.
                #[doc(hidden)]
                #vis enum __TheaterHandler {}
            },
            quote! {
                #[automatically_derived]
                impl #tree_name::__TheaterResources for #tree_name::__TheaterHandler { #chosen }
            },
        )
    };
    let tree = types::module_tree(model, &names, &extra, &aliases, with);
    quote! {
        #[doc(hidden)]
        #[allow(non_snake_case)]
        mod #tree_name {
            #holder
            #tree
        }
        #[allow(unused_imports, ambiguous_glob_reexports)]
        pub use #tree_name::*;
        #set
    }
}

/// The full expansion.
pub fn handler(parts: &HandlerParts<'_>) -> TokenStream {
    let item = parts.item;
    let self_ty = &item.self_ty;
    let tree = tree_module(self_ty);
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let name = &parts.name;
    let imports = match parts.import {
        Some(i) => {
            let n = i.name.full();
            quote!(::core::option::Option::Some(#n))
        }
        None => quote!(::core::option::Option::None),
    };
    let exports_name = match &parts.export {
        Some((i, _)) => {
            let n = i.name.full();
            quote!(::core::option::Option::Some(#n))
        }
        None => quote!(::core::option::Option::None),
    };
    let functions = parts
        .import
        .map(|i| {
            i.functions
                .iter()
                .map(|f| f.name.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let callback_functions: Vec<String> = parts
        .export
        .iter()
        .flat_map(|(_, cbs)| cbs.iter().map(|cb| cb.function.name.clone()))
        .collect();
    let specs = parts
        .import
        .map(|i| imports::call_specs(i, &parts.plan.bound))
        .unwrap_or_default();
    let linker = match parts.import {
        Some(iface) => {
            let functions = imports::linker_functions(
                parts.model,
                iface,
                &parts.plan.bound,
                &parts.plan.resources,
                &tree,
            );
            quote! {
                let mut inst = linker.instance(interface)?;
                #functions
                ::core::result::Result::Ok(())
            }
        }
        None => quote! {
            let _ = (linker, interface);
            ::core::result::Result::Ok(())
        },
    };
    let resolve = match &parts.export {
        Some((iface, cbs)) => {
            let calls = exports::resolve_calls(iface, cbs, &tree);
            quote! { #calls ::core::result::Result::Ok(()) }
        }
        None => quote! { let _ = exports; ::core::result::Result::Ok(()) },
    };
    // The hooks' calls are spanned at the method's name, so that what the signature checks let through (an
    // error type that does not convert, a future that is not `Send`) is reported at the user's method; resolved
    // at the call site, as the generated function's parameters (`actor`, `self`) are, so that they are found
    // however the user's tokens came (from a `macro_rules!` expansion, with its own hygiene).
    let at = |span: Span| span.resolved_at(Span::call_site());
    let create = match &parts.plan.create_instance {
        Some(hook) => {
            let m = &hook.method;
            if hook.is_async {
                quote_spanned!(at(m.span())=> self.#m(actor).await?)
            } else {
                quote_spanned!(at(m.span())=> self.#m(actor)?)
            }
        }
        None => {
            quote_spanned!(at(self_ty.span())=> { let _ = actor; ::core::clone::Clone::clone(self) })
        }
    };
    let start = match &parts.plan.start {
        Some(hook) => {
            let m = &hook.method;
            quote_spanned!(at(m.span())=> ::core::option::Option::Some(::std::boxed::Box::pin(Self::#m(self, actor, shutdown))))
        }
        None => quote! {
            let _ = (actor, shutdown);
            ::core::option::Option::None
        },
    };
    let callers = parts.export.as_ref().map(|(iface, _)| {
        let [ns, pkg, module] = iface.name.module_path().map(|s| quote::format_ident!("{}", s));
        let doc = format!(" Typed callers of the `{}` callbacks that `actor` exports.", iface.name.full());
        quote! {
            impl #impl_generics #self_ty #where_clause {
                #[doc = #doc]
                pub fn callbacks<'a>(&self, actor: &'a ::theater_runtime::ActorHandle) -> #tree::#ns::#pkg::#module::Callbacks<'a> {
                    #tree::#ns::#pkg::#module::Callbacks::new(actor)
                }
            }
        }
    });
    let types = type_modules(
        parts.model,
        parts.export.as_ref(),
        &parts.plan.resources,
        &parts.with,
        &tree,
    );
    let includes = include_files(parts.files);
    quote! {
        #item

        #types

        const _: () = {
            #includes
            #specs

            #[automatically_derived]
            impl #impl_generics ::theater_runtime::Handler for #self_ty #where_clause {
                fn name(&self) -> &'static str { #name }

                fn imports(&self) -> ::core::option::Option<&'static str> { #imports }

                fn exports(&self) -> ::core::option::Option<&'static str> { #exports_name }

                fn functions(&self) -> &'static [&'static str] { &[#(#functions),*] }

                fn callback_functions(&self) -> &'static [&'static str] { &[#(#callback_functions),*] }

                fn create_instance<'a>(
                    &'a self,
                    actor: &'a ::theater_runtime::ActorContext,
                ) -> ::theater_runtime::__private::BoxFuture<
                    'a,
                    ::theater_runtime::__private::anyhow::Result<::std::sync::Arc<dyn ::theater_runtime::Handler>>,
                > {
                    ::std::boxed::Box::pin(async move {
                        let instance: Self = #create;
                        ::core::result::Result::Ok(
                            ::std::sync::Arc::new(instance) as ::std::sync::Arc<dyn ::theater_runtime::Handler>
                        )
                    })
                }

                fn add_to_linker(
                    &self,
                    linker: &mut ::theater_runtime::__private::wasmtime::component::Linker<::theater_runtime::ActorStore>,
                    interface: &str,
                ) -> ::theater_runtime::__private::anyhow::Result<()> {
                    #linker
                }

                fn add_export_functions(
                    &self,
                    exports: &mut ::theater_runtime::ExportResolver<'_>,
                ) -> ::theater_runtime::__private::anyhow::Result<()> {
                    #resolve
                }

                fn start(
                    self: ::std::sync::Arc<Self>,
                    actor: ::theater_runtime::ActorHandle,
                    shutdown: ::theater_runtime::ShutdownSignal,
                ) -> ::core::option::Option<
                    ::theater_runtime::__private::BoxFuture<'static, ::theater_runtime::__private::anyhow::Result<()>>,
                > {
                    #start
                }

                fn as_any(self: ::std::sync::Arc<Self>) -> ::std::sync::Arc<dyn ::core::any::Any + ::core::marker::Send + ::core::marker::Sync> {
                    self
                }
            }
        };

        #callers
    }
}

/// What is emitted when the input has errors: the user's `impl` as written (minus `#[theater]` attributes), the
/// generated types if the WIT loaded, and a stub `Handler` impl, so that the only errors are the real ones.
pub fn fallback(item: &ItemImpl, types: TokenStream, includes: TokenStream) -> TokenStream {
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    quote! {
        #item
        #types
        const _: () = {
            #includes
            #[automatically_derived]
            impl #impl_generics ::theater_runtime::Handler for #self_ty #where_clause {
                fn name(&self) -> &'static str { ::core::unreachable!() }
                fn imports(&self) -> ::core::option::Option<&'static str> { ::core::unreachable!() }
                fn exports(&self) -> ::core::option::Option<&'static str> { ::core::unreachable!() }
                fn functions(&self) -> &'static [&'static str] { ::core::unreachable!() }
                fn create_instance<'a>(&'a self, _: &'a ::theater_runtime::ActorContext)
                    -> ::theater_runtime::__private::BoxFuture<'a, ::theater_runtime::__private::anyhow::Result<::std::sync::Arc<dyn ::theater_runtime::Handler>>>
                { ::core::unreachable!() }
                fn add_to_linker(&self, _: &mut ::theater_runtime::__private::wasmtime::component::Linker<::theater_runtime::ActorStore>, _: &str)
                    -> ::theater_runtime::__private::anyhow::Result<()> { ::core::unreachable!() }
                fn add_export_functions(&self, _: &mut ::theater_runtime::ExportResolver<'_>)
                    -> ::theater_runtime::__private::anyhow::Result<()> { ::core::unreachable!() }
                fn start(self: ::std::sync::Arc<Self>, _: ::theater_runtime::ActorHandle, _: ::theater_runtime::ShutdownSignal)
                    -> ::core::option::Option<::theater_runtime::__private::BoxFuture<'static, ::theater_runtime::__private::anyhow::Result<()>>>
                { ::core::unreachable!() }
                fn as_any(self: ::std::sync::Arc<Self>) -> ::std::sync::Arc<dyn ::core::any::Any + ::core::marker::Send + ::core::marker::Sync> { self }
            }
        };
    }
}
