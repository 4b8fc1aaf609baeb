//! WIT type → Rust type, in one place: as wasmtime's bindgen maps them (`list<T>` → `Vec<T>`, `option<T>` →
//! `Option<T>`, `result<T, E>` → `Result<T, E>` with `()` for a missing side, `tuple<..>` → a tuple, `string` →
//! `String`, named types → the generated type's path).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::model::{Type, TypeRef};

/// Where a generated path starts: at the scope of the annotated `impl`, beside the module that holds the generated
/// tree (`__theater_X::theater::simple::types::Chain`, see [`crate::emit::tree_module`]), or inside an interface
/// module of that tree, three levels below it (`super::super::super::theater::simple::types::Chain`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The scope of the annotated `impl` (a module, or a block: a function body), where the generated tree is the
    /// module named here. Paths name that module rather than the tree's re-exports, which another handler's in
    /// the same module may make ambiguous.
    Root(&'a proc_macro2::Ident),
    /// Inside `ns::pkg::iface` of the tree. Paths stay inside the tree's module: `super` would skip a block
    /// scope, so no path leaves it.
    Interface,
    /// Inside the module of the interface whose functions are being typed: every named type those functions use
    /// is defined or `use`d there (WIT scoping), so it is named bare (`HttpRequest`).
    Here,
    /// Code a person edits (scaffolds): prelude names (`Vec`, `String`, `Option`, `Result`) and paths from the
    /// module of the `impl`, through the tree's re-exports.
    User,
}

/// The Rust type of `ty`.
pub fn rust_type(ty: &Type, scope: Scope<'_>) -> TokenStream {
    match ty {
        Type::Bool => quote!(bool),
        Type::U8 => quote!(u8),
        Type::U16 => quote!(u16),
        Type::U32 => quote!(u32),
        Type::U64 => quote!(u64),
        Type::S8 => quote!(i8),
        Type::S16 => quote!(i16),
        Type::S32 => quote!(i32),
        Type::S64 => quote!(i64),
        Type::F32 => quote!(f32),
        Type::F64 => quote!(f64),
        Type::Char => quote!(char),
        Type::String if scope == Scope::User => quote!(String),
        Type::String => quote!(::std::string::String),
        Type::List(t) => {
            let t = rust_type(t, scope);
            if scope == Scope::User {
                quote!(Vec<#t>)
            } else {
                quote!(::std::vec::Vec<#t>)
            }
        }
        Type::Option(t) => {
            let t = rust_type(t, scope);
            if scope == Scope::User {
                quote!(Option<#t>)
            } else {
                quote!(::core::option::Option<#t>)
            }
        }
        Type::Result { ok, err } => {
            let side = |t: &Option<Box<Type>>| {
                t.as_deref()
                    .map(|t| rust_type(t, scope))
                    .unwrap_or_else(|| quote!(()))
            };
            let (ok, err) = (side(ok), side(err));
            if scope == Scope::User {
                quote!(Result<#ok, #err>)
            } else {
                quote!(::core::result::Result<#ok, #err>)
            }
        }
        Type::Tuple(ts) => {
            let ts = ts.iter().map(|t| rust_type(t, scope));
            quote!((#(#ts,)*))
        }
        Type::Named(r) => type_path(r, scope),
        // The handler picks the resource's Rust type (its methods' `Resource<T>`): generated code names it by the
        // resource's generated name, an alias of it; a scaffold names the state type it writes beside the handler.
        Type::Own(r) | Type::Borrow(r) => match scope {
            Scope::User => {
                let state = format_ident!("{}", resource_state_name(r));
                quote!(theater_runtime::Resource<#state>)
            }
            Scope::Root(_) | Scope::Interface | Scope::Here => {
                let path = type_path(r, scope);
                quote!(::theater_runtime::__private::wasmtime::component::Resource<#path>)
            }
        },
    }
}

/// The name a scaffold gives a resource's state type: `counter` → `CounterState`.
pub fn resource_state_name(r: &TypeRef) -> String {
    format!("{}State", r.rust_name().trim_start_matches("r#"))
}

/// The path of a named type from `scope`.
pub fn type_path(r: &TypeRef, scope: Scope<'_>) -> TokenStream {
    let [ns, pkg, iface] = r.iface.module_path().map(|s| format_ident!("{}", s));
    let name = format_ident!("{}", r.rust_name());
    match scope {
        Scope::Root(tree) => quote!(#tree::#ns::#pkg::#iface::#name),
        Scope::User => quote!(#ns::#pkg::#iface::#name),
        Scope::Interface => quote!(super::super::super::#ns::#pkg::#iface::#name),
        Scope::Here => quote!(#name),
    }
}

/// The Rust type of `ty` as a user would write it (`Result<Vec<u8>, String>`), for messages.
pub fn type_string(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::U8 => "u8".into(),
        Type::U16 => "u16".into(),
        Type::U32 => "u32".into(),
        Type::U64 => "u64".into(),
        Type::S8 => "i8".into(),
        Type::S16 => "i16".into(),
        Type::S32 => "i32".into(),
        Type::S64 => "i64".into(),
        Type::F32 => "f32".into(),
        Type::F64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "String".into(),
        Type::List(t) => format!("Vec<{}>", type_string(t)),
        Type::Option(t) => format!("Option<{}>", type_string(t)),
        Type::Result { ok, err } => {
            let side = |t: &Option<Box<Type>>| {
                t.as_deref().map(type_string).unwrap_or_else(|| "()".into())
            };
            format!("Result<{}, {}>", side(ok), side(err))
        }
        Type::Tuple(ts) if ts.len() == 1 => format!("({},)", type_string(&ts[0])),
        Type::Tuple(ts) => format!(
            "({})",
            ts.iter().map(type_string).collect::<Vec<_>>().join(", ")
        ),
        Type::Named(r) => r.rust_name(),
        Type::Own(_) | Type::Borrow(_) => "Resource<_>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IfaceName;

    fn s(ty: &Type) -> String {
        rust_type(ty, Scope::Interface).to_string().replace(' ', "")
    }

    #[test]
    fn primitives() {
        let cases = [
            (Type::Bool, "bool"),
            (Type::U8, "u8"),
            (Type::U16, "u16"),
            (Type::U32, "u32"),
            (Type::U64, "u64"),
            (Type::S8, "i8"),
            (Type::S16, "i16"),
            (Type::S32, "i32"),
            (Type::S64, "i64"),
            (Type::F32, "f32"),
            (Type::F64, "f64"),
            (Type::Char, "char"),
            (Type::String, "::std::string::String"),
        ];
        for (ty, want) in cases {
            assert_eq!(s(&ty), want);
        }
    }

    #[test]
    fn containers() {
        let bytes = Type::List(Box::new(Type::U8));
        assert_eq!(s(&bytes), "::std::vec::Vec<u8>");
        assert_eq!(
            s(&Type::Option(Box::new(bytes.clone()))),
            "::core::option::Option<::std::vec::Vec<u8>>"
        );
        let r = Type::Result {
            ok: None,
            err: Some(Box::new(Type::String)),
        };
        assert_eq!(s(&r), "::core::result::Result<(),::std::string::String>");
        assert_eq!(type_string(&r), "Result<(), String>");
        let t = Type::Tuple(vec![Type::U64, bytes]);
        assert_eq!(s(&t), "(u64,::std::vec::Vec<u8>,)");
        assert_eq!(type_string(&t), "(u64, Vec<u8>)");
        assert_eq!(type_string(&Type::Tuple(vec![Type::String])), "(String,)");
    }

    #[test]
    fn named_types_have_scoped_paths() {
        let r = TypeRef {
            iface: IfaceName::parse("theater:simple/http-types").unwrap(),
            name: "http-request".into(),
        };
        let tree = format_ident!("__theater_H");
        let root = type_path(&r, Scope::Root(&tree))
            .to_string()
            .replace(' ', "");
        assert_eq!(
            root,
            "__theater_H::theater::simple::http_types::HttpRequest"
        );
        let user = type_path(&r, Scope::User).to_string().replace(' ', "");
        assert_eq!(user, "theater::simple::http_types::HttpRequest");
        assert_eq!(
            s(&Type::Named(r.clone())),
            "super::super::super::theater::simple::http_types::HttpRequest"
        );
        assert_eq!(type_string(&Type::Named(r)), "HttpRequest");
    }
}
