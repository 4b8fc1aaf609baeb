//! The skeleton `impl` of a handler: one method per WIT function, in WIT order, whose first doc line is the WIT
//! signature and whose body says it is not implemented. `theater-codegen generate` expands it; `new-handler`
//! writes it into a new crate.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use std::collections::BTreeSet;

use crate::model::{Function, Interface, Type, TypeRef, unraw};
use crate::typemap::{Scope, resource_state_name, rust_type};

/// Whether a skeleton method returns `HostResult<T>`: every one with a result, except those whose WIT result is
/// `result<_, string>`, which can fail as the guest sees.
fn traps(f: &Function) -> bool {
    match &f.result {
        Some(Type::Result { err: Some(e), .. }) => **e != Type::String,
        Some(_) => true,
        None => false,
    }
}

/// The body of a method that is not implemented yet: an `Err("not implemented: <iface>/<fn>")` when the WIT
/// function can fail with a string, otherwise a trap ([`theater_runtime::host::not_implemented`]), so that no
/// made-up value reaches the guest; nothing for a function without a result.
fn body(iface: &Interface, f: &Function) -> TokenStream {
    let msg = format!("not implemented: {}/{}", iface.name.full(), f.name);
    match &f.result {
        _ if traps(f) => quote!(Err(theater_runtime::host::not_implemented(#msg))),
        Some(_) => quote!(Err(#msg.to_owned())),
        None => quote!(let _ = #msg;),
    }
}

/// The resources whose handles `iface`'s functions take or return.
fn resources(iface: &Interface) -> BTreeSet<&TypeRef> {
    iface
        .functions
        .iter()
        .flat_map(|f| f.params.iter().map(|p| &p.ty).chain(&f.result))
        .flat_map(Type::handles)
        .collect()
}

/// One state type per resource the skeleton's methods use (`CounterState` for `counter`): the value of a handle
/// in the actor's `ResourceTable`, which the handler author fills in.
pub fn resource_states(iface: &Interface) -> TokenStream {
    resources(iface)
        .into_iter()
        .map(|r| {
            let name = format_ident!("{}", resource_state_name(r));
            let doc = format!(
                " The value of a `{}` handle (WIT resource of `{}`) in the actor's resource table.",
                r.name,
                r.iface.versioned()
            );
            quote! {
                #[doc = #doc]
                #[derive(Debug, Default)]
                pub struct #name {}
            }
        })
        .collect()
}

/// Names the skeleton's methods never take: the scaffold's own `new` and `config`, and `callbacks`, which
/// `#[theater_handler(export = ...)]` generates.
const RESERVED: &[&str] = &["new", "config", "callbacks"];

/// The method name of each function of `iface` in the skeleton, and whether it binds by WIT name. A function is
/// bound by WIT name (`#[theater(name = "...")]`) when its Rust name is reserved (`wit_new`) or shared with
/// another function, the destructor included (`counter_new_1` and `counter_new_2` for `constructor` and
/// `new: static func`), so that every method name is distinct and binds one function.
fn method_names(iface: &Interface) -> Vec<(String, bool)> {
    let rust: Vec<String> = iface.functions.iter().map(Function::rust_name).collect();
    let mut taken: BTreeSet<String> = rust
        .iter()
        .map(|n| unraw(n).to_owned())
        .chain(RESERVED.iter().map(|&r| r.to_owned()))
        .collect();
    let mut names = Vec::new();
    for name in &rust {
        let plain = unraw(name);
        let shared = rust.iter().filter(|n| *n == name).count() > 1;
        if !shared && !RESERVED.contains(&plain) {
            names.push((name.clone(), false));
            continue;
        }
        let base = if shared {
            plain.to_owned()
        } else {
            format!("wit_{plain}")
        };
        let mut candidate = if shared {
            format!("{base}_1")
        } else {
            base.clone()
        };
        let mut k = 1;
        while taken.contains(&candidate) {
            k += 1;
            candidate = format!("{base}_{k}");
        }
        taken.insert(candidate.clone());
        names.push((candidate, true));
    }
    names
}

/// The skeleton `impl` of `self_ty` for `iface` (without the attribute).
pub fn skeleton_impl(self_ty: &Ident, iface: &Interface) -> TokenStream {
    let names = method_names(iface);
    // A resource's destructor has a default (the value is deleted from the table).
    let methods = iface
        .functions
        .iter()
        .zip(names)
        .filter(|(f, _)| !f.optional())
        .map(|(f, (name, by_wit_name))| {
            let name = format_ident!("{}", name);
            let bind = by_wit_name.then(|| {
                let wit_name = &f.name;
                quote!(#[theater(name = #wit_name)])
            });
            let sig = format!(" WIT: `{}`", f.wit_signature());
            let docs = f
                .docs
                .iter()
                .flat_map(|d| d.lines())
                .map(|l| format!(" {l}"));
            let params = f.params.iter().map(|p| {
                let n = format_ident!("_{}", p.rust_name().trim_start_matches("r#"));
                let t = rust_type(&p.ty, Scope::User);
                quote!(#n: #t)
            });
            let ret = f.result.as_ref().map(|t| {
                let t = rust_type(t, Scope::User);
                if traps(f) {
                    quote!(-> theater_runtime::HostResult<#t>)
                } else {
                    quote!(-> #t)
                }
            });
            // Handles are looked up in the actor's resource table, which `HostCtx` gives.
            let uses_handles = f
                .params
                .iter()
                .map(|p| &p.ty)
                .chain(&f.result)
                .any(|t| !t.handles().is_empty());
            let ctx = uses_handles.then(|| quote!(_ctx: &mut theater_runtime::HostCtx<'_>,));
            let body = body(iface, f);
            quote! {
                #[doc = #sig]
                #[doc = ""]
                #(#[doc = #docs])*
                #bind
                fn #name(&self, #ctx #(#params),*) #ret {
                    #body
                }
            }
        });
    quote! {
        impl #self_ty {
            #(#methods)*
        }
    }
}
