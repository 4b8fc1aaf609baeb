//! How values that hold resource handles reach the chain. Handles are not `Clone` and not `Serialize`, so the
//! glue records an owned copy in which each handle is a `theater_runtime::host::ResourceHandle` (`{"resource",
//! "handle"}`), and a generated type that holds handles gets a `Serialize` impl that writes them so.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use crate::model::{Model, Type, TypeDef, TypeDefKind, camel_name, snake_name, unraw};

/// An owned, serializable copy of `value` (an expression of type `&T`, `T` the Rust type of `ty`) for the chain: a
/// clone, except that each handle inside becomes a `ResourceHandle`, and a generated type holding handles is
/// encoded at once (`host::json_copy`, through its generated `Serialize`).
pub fn record_copy(model: &Model, value: TokenStream, ty: &Type) -> TokenStream {
    if !model.holds_handles(ty) {
        return quote!(::core::clone::Clone::clone(#value));
    }
    match ty {
        Type::Own(r) | Type::Borrow(r) => {
            let name = &r.name;
            quote!(::theater_runtime::host::ResourceHandle::of(#value, #name))
        }
        Type::List(t) => {
            let inner = record_copy(model, quote!(v), t);
            quote!((#value).iter().map(|v| #inner).collect::<::std::vec::Vec<_>>())
        }
        Type::Option(t) => {
            let inner = record_copy(model, quote!(v), t);
            quote!((#value).as_ref().map(|v| #inner))
        }
        Type::Result { ok, err } => {
            let side = |t: &Option<Box<Type>>| match t {
                Some(t) => record_copy(model, quote!(v), t),
                None => quote!(()),
            };
            let (ok, err) = (side(ok), side(err));
            quote!((#value).as_ref().map(|v| #ok).map_err(|v| #err))
        }
        Type::Tuple(ts) => {
            let items = ts.iter().enumerate().map(|(i, t)| {
                let i = syn::Index::from(i);
                record_copy(model, quote!(&(#value).#i), t)
            });
            quote!((#(#items,)*))
        }
        // `type x = own<r>` (or a container of handles): as its target.
        Type::Named(r) => match model.resolve_ref(r).map(|d| &d.kind) {
            Some(TypeDefKind::Alias(t)) => record_copy(model, value, t),
            _ => quote!(::theater_runtime::host::json_copy(#value)),
        },
        _ => quote!(::theater_runtime::host::json_copy(#value)),
    }
}

/// `impl Serialize` for a generated record or variant that holds handles (it cannot derive it), in serde's
/// derived shape: a record is a struct keyed by its Rust field names, a variant externally tagged by its Rust
/// case names; each field or payload is written as [`record_copy`] makes it.
pub fn serialize_impl(model: &Model, def: &TypeDef, name: &Ident) -> TokenStream {
    let serde = quote!(::theater_runtime::__private::serde);
    let body = match &def.kind {
        TypeDefKind::Record(fields) => {
            let count = fields.len();
            let entries = fields.iter().map(|f| {
                let ident = format_ident!("{}", snake_name(&f.name));
                let key = unraw(&ident.to_string()).to_owned();
                let copy = record_copy(model, quote!(&self.#ident), &f.ty);
                quote!(#serde::ser::SerializeStruct::serialize_field(&mut s, #key, &#copy)?;)
            });
            let type_name = name.to_string();
            quote! {
                let mut s = #serde::Serializer::serialize_struct(serializer, #type_name, #count)?;
                #(#entries)*
                #serde::ser::SerializeStruct::end(s)
            }
        }
        TypeDefKind::Variant(cases) => {
            let type_name = name.to_string();
            let arms = cases.iter().enumerate().map(|(i, c)| {
                let case = format_ident!("{}", camel_name(&c.name));
                let key = unraw(&case.to_string()).to_owned();
                let index = u32::try_from(i).unwrap_or(u32::MAX);
                match &c.ty {
                    Some(t) => {
                        let copy = record_copy(model, quote!(v), t);
                        quote! {
                            Self::#case(v) => #serde::Serializer::serialize_newtype_variant(
                                serializer, #type_name, #index, #key, &#copy,
                            ),
                        }
                    }
                    None => quote! {
                        Self::#case => #serde::Serializer::serialize_unit_variant(
                            serializer, #type_name, #index, #key,
                        ),
                    },
                }
            });
            quote!(match self { #(#arms)* })
        }
        _ => return TokenStream::new(),
    };
    quote! {
        impl #serde::Serialize for #name {
            fn serialize<S: #serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::core::result::Result<S::Ok, S::Error> {
                #body
            }
        }
    }
}
