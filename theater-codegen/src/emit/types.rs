//! Generated Rust types for WIT type definitions, in a module tree that mirrors the package
//! (`theater::simple::http_types::HttpRequest`), as wasmtime's bindgen lays them out.

use std::collections::BTreeMap;

use heck::{ToSnakeCase, ToUpperCamelCase};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::docs;
use crate::model::{IfaceName, Interface, Model, TypeDef, TypeDefKind, rust_ident};
use crate::typemap::{Scope, rust_type, type_path};

/// The module tree for `ifaces`; `extra` adds items to an interface's module (e.g. its callers).
pub fn module_tree(
    model: &Model,
    ifaces: &[IfaceName],
    extra: &dyn Fn(&IfaceName) -> TokenStream,
) -> TokenStream {
    let mut tree: BTreeMap<(String, String), Vec<TokenStream>> = BTreeMap::new();
    for name in ifaces {
        let Some(iface) = model.interface(name) else {
            continue;
        };
        let [_, _, module] = name.module_path();
        let module = format_ident!("{}", rust_ident(&module));
        let doc = docs(&iface.docs);
        let full = format!("Types of the WIT interface `{}`.", name.full());
        let items = interface_items(iface);
        let extra = extra(name);
        tree.entry((name.namespace.clone(), name.package.clone()))
            .or_default()
            .push(quote! {
                #[doc = #full]
                #[doc = ""]
                #doc
                #[allow(dead_code, clippy::all, unused_imports)]
                pub mod #module {
                    #items
                    #extra
                }
            });
    }
    let mut namespaces: BTreeMap<String, Vec<TokenStream>> = BTreeMap::new();
    for ((ns, pkg), modules) in tree {
        let pkg_ident = format_ident!("{}", rust_ident(&pkg.to_snake_case()));
        let doc = format!("The WIT package `{ns}:{pkg}`.");
        namespaces.entry(ns).or_default().push(quote! {
            #[doc = #doc]
            pub mod #pkg_ident { #(#modules)* }
        });
    }
    namespaces
        .into_iter()
        .map(|(ns, pkgs)| {
            let ns_ident = format_ident!("{}", rust_ident(&ns.to_snake_case()));
            let doc = format!("Generated from the WIT namespace `{ns}` by `#[theater_handler]`.");
            quote! {
                #[doc = #doc]
                pub mod #ns_ident { #(#pkgs)* }
            }
        })
        .collect()
}

fn interface_items(iface: &Interface) -> TokenStream {
    iface.types.iter().map(type_def).collect()
}

fn derives() -> TokenStream {
    quote! {
        #[derive(
            ::theater_runtime::__private::wasmtime::component::ComponentType,
            ::theater_runtime::__private::wasmtime::component::Lift,
            ::theater_runtime::__private::wasmtime::component::Lower,
            ::core::fmt::Debug,
            ::core::clone::Clone,
            ::core::cmp::PartialEq,
            ::theater_runtime::__private::serde::Serialize,
            ::theater_runtime::__private::serde::Deserialize,
        )]
        #[component(wasmtime_crate = ::theater_runtime::__private::wasmtime)]
        #[serde(crate = "::theater_runtime::__private::serde")]
    }
}

/// One named type definition.
pub fn type_def(def: &TypeDef) -> TokenStream {
    let name = format_ident!("{}", def.name.to_upper_camel_case());
    let doc = docs(&def.docs);
    let wit = format!("WIT: `{}`", def.name);
    let derives = derives();
    match &def.kind {
        TypeDefKind::Record(fields) => {
            let fields = fields.iter().map(|f| {
                let ident = format_ident!("{}", rust_ident(&f.name.to_snake_case()));
                let ty = rust_type(&f.ty, Scope::Interface);
                let wit_name = &f.name;
                let doc = docs(&f.docs);
                quote! { #doc #[component(name = #wit_name)] pub #ident: #ty }
            });
            quote! {
                #[doc = #wit] #doc
                #derives
                #[component(record)]
                pub struct #name { #(#fields,)* }
            }
        }
        TypeDefKind::Variant(cases) => {
            let cases = cases.iter().map(|c| {
                let ident = format_ident!("{}", c.name.to_upper_camel_case());
                let wit_name = &c.name;
                let doc = docs(&c.docs);
                match &c.ty {
                    Some(t) => {
                        let ty = rust_type(t, Scope::Interface);
                        quote! { #doc #[component(name = #wit_name)] #ident(#ty) }
                    }
                    None => quote! { #doc #[component(name = #wit_name)] #ident },
                }
            });
            quote! {
                #[doc = #wit] #doc
                #derives
                #[component(variant)]
                pub enum #name { #(#cases,)* }
            }
        }
        TypeDefKind::Enum(cases) => {
            let repr = match cases.len() {
                0..=256 => quote!(u8),
                257..=65536 => quote!(u16),
                _ => quote!(u32),
            };
            let cases = cases.iter().map(|c| {
                let ident = format_ident!("{}", c.name.to_upper_camel_case());
                let wit_name = &c.name;
                let doc = docs(&c.docs);
                quote! { #doc #[component(name = #wit_name)] #ident }
            });
            quote! {
                #[doc = #wit] #doc
                #derives
                #[derive(::core::marker::Copy, ::core::cmp::Eq)]
                #[component(enum)]
                #[repr(#repr)]
                pub enum #name { #(#cases,)* }
            }
        }
        TypeDefKind::Flags(flags) => {
            let flags = flags.iter().map(|c| {
                let ident = format_ident!("{}", c.name.to_snake_case().to_uppercase());
                let wit_name = &c.name;
                quote! { #[component(name = #wit_name)] const #ident; }
            });
            quote! {
                ::theater_runtime::__private::wasmtime::component::flags! {
                    #name { #(#flags)* }
                }
            }
        }
        TypeDefKind::Alias(t) => {
            let ty = rust_type(t, Scope::Interface);
            quote! { #[doc = #wit] #doc pub type #name = #ty; }
        }
        TypeDefKind::Use(r) => {
            let path = type_path(r, Scope::Interface);
            if name == r.rust_name() {
                quote! { #[doc = #wit] pub use #path; }
            } else {
                quote! { #[doc = #wit] pub use #path as #name; }
            }
        }
    }
}
