//! Emitters: one per output (types, the import side, the export side), over one checked model. Tokens are built
//! with `quote!`; nothing is formatted or parsed back here.

pub mod exports;
pub mod imports;
pub mod record;
pub mod types;

use std::path::PathBuf;

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ItemImpl;
use syn::spanned::Spanned as _;

use crate::attr::Mode;
use std::collections::BTreeMap;

use crate::check::{Plan, ResourceType};
use crate::model::{IfaceName, Interface, Model, TypeRef};

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

/// The module tree of every interface in the model (the ones the handler names and those whose types they
/// reach), with the callers in the export's module, and before it the aliases of the handler's resource types
/// (`resources`, from its methods' `Resource<T>`) that the tree's resource names refer to.
pub fn type_modules(
    model: &Model,
    export: Option<&(&Interface, Vec<exports::Callback<'_>>)>,
    resources: &BTreeMap<TypeRef, ResourceType>,
    with: &crate::with::With,
) -> TokenStream {
    let names: Vec<IfaceName> = model.interfaces.keys().cloned().collect();
    let extra = |name: &IfaceName| match export {
        Some((iface, cbs)) if &iface.name == name => exports::module_items(model, iface, cbs),
        _ => TokenStream::new(),
    };
    let mut aliases = BTreeMap::new();
    let mut alias_items = TokenStream::new();
    for (i, (resource, ty)) in resources.iter().enumerate() {
        let alias = quote::format_ident!("__TheaterResource{i}");
        let ty = &ty.ty;
        let doc = format!(
            " The handler's type for the WIT resource `{}` of `{}`.",
            resource.name,
            resource.iface.versioned()
        );
        alias_items.extend(quote! {
            #[doc = #doc]
            #[doc(hidden)]
            type #alias = #ty;
        });
        aliases.insert(resource.clone(), alias);
    }
    let tree = types::module_tree(model, &names, &extra, &aliases, with);
    quote!(#alias_items #tree)
}

/// The full expansion.
pub fn handler(parts: &HandlerParts<'_>) -> TokenStream {
    let item = parts.item;
    let self_ty = &item.self_ty;
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
            let calls = exports::resolve_calls(iface, cbs);
            quote! { #calls ::core::result::Result::Ok(()) }
        }
        None => quote! { let _ = exports; ::core::result::Result::Ok(()) },
    };
    let create = match &parts.plan.create_instance {
        Some(hook) => {
            let m = &hook.method;
            if hook.is_async {
                quote!(self.#m(actor).await?)
            } else {
                quote!(self.#m(actor)?)
            }
        }
        None => {
            quote_spanned!(self_ty.span()=> { let _ = actor; ::core::clone::Clone::clone(self) })
        }
    };
    let start = match &parts.plan.start {
        Some(hook) => {
            let m = &hook.method;
            quote!(::core::option::Option::Some(::std::boxed::Box::pin(Self::#m(self, actor, shutdown))))
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
                pub fn callbacks<'a>(&self, actor: &'a ::theater_runtime::ActorHandle) -> #ns::#pkg::#module::Callbacks<'a> {
                    #ns::#pkg::#module::Callbacks::new(actor)
                }
            }
        }
    });
    let types = type_modules(
        parts.model,
        parts.export.as_ref(),
        &parts.plan.resources,
        &parts.with,
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
