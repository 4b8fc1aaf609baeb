//! The skeleton `impl` of a handler: one method per WIT function, in WIT order, whose first doc line is the WIT
//! signature and whose body says it is not implemented. `theater-codegen generate` expands it; `new-handler`
//! writes it into a new crate.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use crate::model::{Function, Interface, Type};
use crate::typemap::{Scope, rust_type};

/// The body of a method that is not implemented yet: an `Err("not implemented: <iface>/<fn>")` when the WIT
/// function can fail with a string, else the type's default (a type without one is a compile error to fix).
fn body(iface: &Interface, f: &Function) -> TokenStream {
    let msg = format!("not implemented: {}/{}", iface.name.full(), f.name);
    match &f.result {
        Some(Type::Result { err: Some(e), .. }) if **e == Type::String => {
            quote!(Err(#msg.to_owned()))
        }
        None => quote!(let _ = #msg;),
        Some(_) => quote!(let _ = #msg; Default::default()),
    }
}

/// The skeleton `impl` of `self_ty` for `iface` (without the attribute).
pub fn skeleton_impl(self_ty: &Ident, iface: &Interface) -> TokenStream {
    let methods = iface.functions.iter().map(|f| {
        // The scaffold's own `new` and `config` would clash with a method of the same name.
        let (name, bind) = match f.rust_name().as_str() {
            clash @ ("new" | "config") => {
                let wit_name = &f.name;
                (
                    format_ident!("wit_{clash}"),
                    Some(quote!(#[theater(name = #wit_name)])),
                )
            }
            other => (format_ident!("{}", other), None),
        };
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
            quote!(-> #t)
        });
        let body = body(iface, f);
        quote! {
            #[doc = #sig]
            #[doc = ""]
            #(#[doc = #docs])*
            #bind
            fn #name(&self, #(#params),*) #ret {
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
