//! Generated Rust types for WIT type definitions, in a module tree that mirrors the package
//! (`theater::simple::http_types::HttpRequest`), as wasmtime's bindgen lays them out.

use std::collections::BTreeMap;

use heck::ToShoutySnakeCase;
use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use super::{docs, record};
use crate::model::{
    Case, IfaceName, Interface, Model, TypeDef, TypeDefKind, TypeRef, camel_name, snake_name,
};
use crate::typemap::{Scope, rust_type, type_path};

/// The module tree for `ifaces`; `extra` adds items to an interface's module (e.g. its callers). `aliases` names,
/// for each resource whose Rust type the handler chose, the associated type of `__TheaterResources` that is that
/// type, in the module that holds the tree ([`super::type_modules`]): the resource's generated name is an alias
/// of it; other resources get a marker type.
pub fn module_tree(
    model: &Model,
    ifaces: &[IfaceName],
    extra: &dyn Fn(&IfaceName) -> TokenStream,
    aliases: &BTreeMap<TypeRef, Ident>,
    with: &crate::with::With,
) -> TokenStream {
    let mut tree: BTreeMap<(String, String, Option<String>), Vec<TokenStream>> = BTreeMap::new();
    for name in ifaces {
        let Some(iface) = model.interface(name) else {
            continue;
        };
        let [_, _, module] = name.module_path();
        let module = format_ident!("{}", module);
        let doc = docs(&iface.docs);
        let full = format!(" Types of the WIT interface `{}`.", name.versioned());
        // `with`: the types are generated elsewhere; this module re-exports them.
        let items = match with.0.get(name) {
            Some(path) => quote!(pub use #path::*;),
            None => interface_items(model, iface, aliases),
        };
        let extra = extra(name);
        // One version of a package per model (the builder refuses two), so the version rides along.
        tree.entry((
            name.namespace.clone(),
            name.package.clone(),
            name.version.clone(),
        ))
        .or_default()
        .push(quote! {
            #[doc = #full]
            #[doc = ""]
            #doc
            #[allow(dead_code, clippy::all, unused_imports, private_interfaces)]
            pub mod #module {
                #items
                #extra
            }
        });
    }
    let mut namespaces: BTreeMap<String, Vec<TokenStream>> = BTreeMap::new();
    for ((ns, pkg, version), modules) in tree {
        let pkg_ident = format_ident!("{}", snake_name(&pkg));
        let version = version.map(|v| format!("@{v}")).unwrap_or_default();
        let doc = format!(" The WIT package `{ns}:{pkg}{version}`.");
        namespaces.entry(ns).or_default().push(quote! {
            #[doc = #doc]
            pub mod #pkg_ident { #(#modules)* }
        });
    }
    namespaces
        .into_iter()
        .map(|(ns, pkgs)| {
            let ns_ident = format_ident!("{}", snake_name(&ns));
            let doc = format!(" Generated from the WIT namespace `{ns}` by `#[theater_handler]`.");
            quote! {
                #[doc = #doc]
                pub mod #ns_ident { #(#pkgs)* }
            }
        })
        .collect()
}

fn interface_items(
    model: &Model,
    iface: &Interface,
    aliases: &BTreeMap<TypeRef, Ident>,
) -> TokenStream {
    iface
        .types
        .iter()
        .map(|def| {
            let resource = TypeRef {
                iface: iface.name.clone(),
                name: def.name.clone(),
            };
            type_def(model, def, aliases.get(&resource))
        })
        .collect()
}

/// The derives of a generated type. One that holds resource handles derives only the component-model traits and
/// `Debug` (handles are neither `Clone` nor `Serialize`) and gets a `Serialize` impl of its own
/// ([`record::serialize_impl`]).
fn derives(holds_handles: bool) -> TokenStream {
    let component = quote! {
        ::theater_runtime::__private::wasmtime::component::ComponentType,
        ::theater_runtime::__private::wasmtime::component::Lift,
        ::theater_runtime::__private::wasmtime::component::Lower,
        ::core::fmt::Debug,
    };
    if holds_handles {
        return quote! {
            #[derive(#component)]
            #[component(wasmtime_crate = ::theater_runtime::__private::wasmtime)]
        };
    }
    quote! {
        #[derive(
            #component
            ::core::clone::Clone,
            ::core::cmp::PartialEq,
            ::theater_runtime::__private::serde::Serialize,
            ::theater_runtime::__private::serde::Deserialize,
        )]
        #[component(wasmtime_crate = ::theater_runtime::__private::wasmtime)]
        #[serde(crate = "::theater_runtime::__private::serde")]
    }
}

/// One named type definition; `alias` is the associated type of `__TheaterResources` that is the handler's type
/// for it, if it is a resource the handler names.
pub fn type_def(model: &Model, def: &TypeDef, alias: Option<&Ident>) -> TokenStream {
    let name = format_ident!("{}", camel_name(&def.name));
    let doc = docs(&def.docs);
    let wit = match &def.kind {
        TypeDefKind::Record(_) => format!(" WIT: `record {}`", def.name),
        TypeDefKind::Variant(_) => format!(" WIT: `variant {}`", def.name),
        TypeDefKind::Enum(_) => format!(" WIT: `enum {}`", def.name),
        TypeDefKind::Flags(_) => format!(" WIT: `flags {}`", def.name),
        TypeDefKind::Alias(t) => format!(" WIT: `type {} = {}`", def.name, t.wit()),
        TypeDefKind::Use(r) => format!(" WIT: `use {}.{{{}}}`", r.iface.full(), r.name),
        TypeDefKind::Resource => String::new(),
    };
    let head = match &def.docs {
        Some(_) => quote!(#[doc = #wit] #[doc = ""] #doc),
        None => quote!(#[doc = #wit]),
    };
    let holds_handles = model.def_holds_handles(def);
    let derives = derives(holds_handles);
    let serialize = if holds_handles {
        record::serialize_impl(model, def, &name)
    } else {
        TokenStream::new()
    };
    match &def.kind {
        TypeDefKind::Record(fields) => {
            let fields = fields.iter().map(|f| {
                let ident = format_ident!("{}", snake_name(&f.name));
                let ty = rust_type(&f.ty, Scope::Interface);
                let wit_name = &f.name;
                let doc = docs(&f.docs);
                quote! { #doc #[component(name = #wit_name)] pub #ident: #ty }
            });
            quote! {
                #head
                #derives
                #[component(record)]
                pub struct #name { #(#fields,)* }
                #serialize
            }
        }
        TypeDefKind::Variant(cases) => {
            let cases = cases.iter().map(|c| {
                let ident = format_ident!("{}", camel_name(&c.name));
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
                #head
                #derives
                #[component(variant)]
                pub enum #name { #(#cases,)* }
                #serialize
            }
        }
        TypeDefKind::Enum(cases) => {
            let repr = match cases.len() {
                0..=256 => quote!(u8),
                257..=65536 => quote!(u16),
                _ => quote!(u32),
            };
            let cases = cases.iter().map(|c| {
                let ident = format_ident!("{}", camel_name(&c.name));
                let wit_name = &c.name;
                let doc = docs(&c.docs);
                quote! { #doc #[component(name = #wit_name)] #ident }
            });
            quote! {
                #head
                #derives
                #[derive(::core::marker::Copy, ::core::cmp::Eq)]
                #[component(enum)]
                #[repr(#repr)]
                pub enum #name { #(#cases,)* }
            }
        }
        TypeDefKind::Flags(flags) => flags_def(&name, &def.name, &head, flags),
        TypeDefKind::Alias(t) => {
            let ty = rust_type(t, Scope::Interface);
            quote! { #head pub type #name = #ty; }
        }
        TypeDefKind::Use(r) => {
            let path = type_path(r, Scope::Interface);
            if name == r.rust_name() {
                quote! { #[doc = #wit] pub use #path; }
            } else {
                quote! { #[doc = #wit] pub use #path as #name; }
            }
        }
        TypeDefKind::Resource => {
            let doc = format!(
                " WIT: `resource {}`: a handle is `Resource<{name}>`, its value in the actor's resource table.",
                def.name
            );
            match alias {
                Some(alias) => quote! {
                    #[doc = #doc]
                    #[doc = ""]
                    #[doc = " The handler's type for it (the `T` of its methods' `Resource<T>`)."]
                    pub type #name = <super::super::super::__TheaterHandler as super::super::super::__TheaterResources>::#alias;
                },
                None => quote! {
                    #[doc = #doc]
                    #[doc = ""]
                    #[doc = " No method of the handler names its type: an uninhabited marker, as `bindgen!` makes"]
                    #[doc = " (convert with `Resource::new_own(handle.rep())`)."]
                    #[derive(Debug)]
                    pub enum #name {}
                },
            }
        }
    }
}

/// A flags type through wasmtime's `flags!` (which names `wasmtime::` at its call site, so it is invoked in a
/// private module where that name is the runtime's re-export), with serde as the list of set flags' WIT names.
/// The module is named after the WIT name with `-` as `_` (`__flags_x_y` for `x-y`): WIT names are letters,
/// digits and `-`, so two flags types of one interface never share it, as they could a snake_case name (`x-y`
/// and `xy` are both `xy`).
fn flags_def(name: &Ident, wit_name: &str, head: &TokenStream, flags: &[Case]) -> TokenStream {
    let module = format_ident!("__flags_{}", wit_name.replace('-', "_"));
    let consts: Vec<Ident> = flags
        .iter()
        .map(|c| format_ident!("{}", c.name.to_shouty_snake_case()))
        .collect();
    let wit_names: Vec<&str> = flags.iter().map(|c| c.name.as_str()).collect();
    let count = flags.len();
    let serde = quote!(::theater_runtime::__private::serde);
    quote! {
        #[doc(hidden)]
        #[allow(non_snake_case)]
        mod #module {
            use ::theater_runtime::__private::wasmtime;

            wasmtime::component::flags! {
                #name { #(#[component(name = #wit_names)] const #consts;)* }
            }

            const NAMES: [(#name, &str); #count] = [#((#name::#consts, #wit_names)),*];

            impl #serde::Serialize for #name {
                fn serialize<S: #serde::Serializer>(
                    &self,
                    serializer: S,
                ) -> ::core::result::Result<S::Ok, S::Error> {
                    #serde::Serializer::collect_seq(
                        serializer,
                        NAMES.iter().filter(|(flag, _)| self.contains(*flag)).map(|(_, wit)| *wit),
                    )
                }
            }

            impl<'de> #serde::Deserialize<'de> for #name {
                fn deserialize<D: #serde::Deserializer<'de>>(
                    deserializer: D,
                ) -> ::core::result::Result<Self, D::Error> {
                    let set = <::std::vec::Vec<::std::string::String> as #serde::Deserialize>::deserialize(deserializer)?;
                    let mut flags = Self::empty();
                    for wit in &set {
                        match NAMES.iter().find(|(_, n)| *n == wit.as_str()) {
                            ::core::option::Option::Some((flag, _)) => flags |= *flag,
                            ::core::option::Option::None => {
                                return ::core::result::Result::Err(
                                    <D::Error as #serde::de::Error>::unknown_variant(wit, &[#(#wit_names),*]),
                                );
                            }
                        }
                    }
                    ::core::result::Result::Ok(flags)
                }
            }
        }

        #head
        pub use self::#module::#name;
    }
}
