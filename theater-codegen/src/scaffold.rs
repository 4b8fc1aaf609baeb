//! The skeleton `impl` of a handler: one method per WIT function, in WIT order, whose first doc line is the WIT
//! signature and whose body says it is not implemented. `theater-codegen generate` expands it; `new-handler`
//! writes it into a new crate.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use crate::model::{Function, Interface, Type};
use crate::typemap::{Scope, rust_type};

/// `random-bytes: func(length: u32) -> result<list<u8>, string>`.
pub fn wit_signature(f: &Function) -> String {
    let params: Vec<String> = f
        .params
        .iter()
        .map(|p| format!("{}: {}", p.name, wit_type(&p.ty)))
        .collect();
    let result = f
        .result
        .as_ref()
        .map(|t| format!(" -> {}", wit_type(t)))
        .unwrap_or_default();
    format!("{}: func({}){result}", f.name, params.join(", "))
}

/// A WIT type as written in WIT.
pub fn wit_type(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::U8 => "u8".into(),
        Type::U16 => "u16".into(),
        Type::U32 => "u32".into(),
        Type::U64 => "u64".into(),
        Type::S8 => "s8".into(),
        Type::S16 => "s16".into(),
        Type::S32 => "s32".into(),
        Type::S64 => "s64".into(),
        Type::F32 => "f32".into(),
        Type::F64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(t) => format!("list<{}>", wit_type(t)),
        Type::Option(t) => format!("option<{}>", wit_type(t)),
        Type::Result {
            ok: None,
            err: None,
        } => "result".into(),
        Type::Result { ok, err } => format!(
            "result<{}, {}>",
            ok.as_deref().map(wit_type).unwrap_or_else(|| "_".into()),
            err.as_deref().map(wit_type).unwrap_or_else(|| "_".into())
        ),
        Type::Tuple(ts) => format!(
            "tuple<{}>",
            ts.iter().map(wit_type).collect::<Vec<_>>().join(", ")
        ),
        Type::Named(r) => r.name.clone(),
    }
}

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
        let sig = format!(" WIT: `{}`", wit_signature(f));
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
