//! The export side: for a callback interface, one `ExportSpec` per function, the typed `Callbacks` callers, and
//! the checks `Handler::add_export_functions` runs at spawn. The actor-state convention
//! (`state: option<list<u8>>` in, new state out) is the runtime's: callers see only the callback's own values.

use heck::ToShoutySnakeCase;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::docs;
use crate::model::{Function, Interface, Model, Type, TypeDefKind};
use crate::typemap::{Scope, rust_type, type_string};

/// A callback in the Theater convention: its parameter tuple's elements and its own result, if any.
pub struct Callback<'a> {
    pub function: &'a Function,
    pub params: &'a [Type],
    pub value: Option<&'a Type>,
}

/// Splits every function of `iface` into the convention, or names the first that does not follow it.
pub fn callbacks(iface: &Interface) -> Result<Vec<Callback<'_>>, String> {
    iface
        .functions
        .iter()
        .map(|f| {
            convention(f).ok_or_else(|| {
                format!(
                    "callback `{}` of {} does not follow the Theater convention \
                     `func(state: option<list<u8>>, params: tuple<...>) -> result<tuple<option<list<u8>>, tuple<R>?>, string>`",
                    f.name,
                    iface.name.full()
                )
            })
        })
        .collect()
}

fn convention(f: &Function) -> Option<Callback<'_>> {
    let state = Type::Option(Box::new(Type::List(Box::new(Type::U8))));
    let [first, second] = f.params.as_slice() else {
        return None;
    };
    let Type::Tuple(params) = &second.ty else {
        return None;
    };
    if first.ty != state {
        return None;
    }
    let Some(Type::Result {
        ok: Some(ok),
        err: Some(err),
    }) = &f.result
    else {
        return None;
    };
    if **err != Type::String {
        return None;
    }
    let Type::Tuple(ok) = &**ok else { return None };
    let value = match ok.as_slice() {
        [s] if *s == state => None,
        [s, Type::Tuple(v)] if *s == state && v.len() == 1 => Some(&v[0]),
        _ => return None,
    };
    Some(Callback {
        function: f,
        params,
        value,
    })
}

fn spec_ident(f: &Function) -> proc_macro2::Ident {
    format_ident!("{}_SPEC", f.name.to_shouty_snake_case())
}

/// The `O` type of `ExportResolver::resolve` / `ActorHandle::call_export` for a callback, from `scope`.
fn ok_type(cb: &Callback<'_>, scope: Scope) -> TokenStream {
    match cb.value {
        None => quote!((::core::option::Option<::std::vec::Vec<u8>>,)),
        Some(v) => {
            let v = rust_type(v, scope);
            quote!((::core::option::Option<::std::vec::Vec<u8>>, (#v,)))
        }
    }
}

fn params_type(cb: &Callback<'_>, scope: Scope) -> TokenStream {
    rust_type(&Type::Tuple(cb.params.to_vec()), scope)
}

/// Whether values of `ty` carry bytes (a `list<u8>` anywhere inside, through records, variants and aliases).
fn carries_bytes(model: &Model, ty: &Type, depth: usize) -> bool {
    // WIT types are not recursive; the bound only guards against a malformed model.
    if depth > 32 {
        return false;
    }
    let inner = |t: &Type| carries_bytes(model, t, depth + 1);
    match ty {
        Type::List(t) => **t == Type::U8 || inner(t),
        Type::Option(t) => inner(t),
        Type::Result { ok, err } => ok.iter().chain(err.iter()).any(|t| inner(t)),
        Type::Tuple(ts) => ts.iter().any(inner),
        Type::Named(r) => match model.resolve_ref(r).map(|d| &d.kind) {
            Some(TypeDefKind::Record(fields)) => fields.iter().any(|f| inner(&f.ty)),
            Some(TypeDefKind::Variant(cases)) => {
                cases.iter().filter_map(|c| c.ty.as_ref()).any(inner)
            }
            Some(TypeDefKind::Alias(t)) => inner(t),
            _ => false,
        },
        _ => false,
    }
}

/// A callback's payload values (handlers.md §1.1): the parameters (`params.N`) and result whose values carry
/// bytes. They are recorded in full by default; a manifest's `record` table may switch them to a digest.
pub fn payload_values(model: &Model, cb: &Callback<'_>) -> Vec<String> {
    let params = cb
        .params
        .iter()
        .enumerate()
        .filter(|(_, t)| carries_bytes(model, t, 0))
        .map(|(i, _)| format!("params.{i}"));
    let result = cb
        .value
        .filter(|t| carries_bytes(model, t, 0))
        .map(|_| "result".to_owned());
    params.chain(result).collect()
}

/// Items added to the export interface's module: the specs and `Callbacks`.
pub fn module_items(model: &Model, iface: &Interface, callbacks: &[Callback<'_>]) -> TokenStream {
    let interface = iface.name.full();
    let specs = callbacks.iter().map(|cb| {
        let spec = spec_ident(cb.function);
        let function = &cb.function.name;
        let event_type = format!("{interface}/{function}");
        let payload = payload_values(model, cb);
        quote! {
            #[doc(hidden)]
            pub static #spec: ::theater_runtime::ExportSpec = ::theater_runtime::ExportSpec {
                interface: #interface,
                function: #function,
                event_type: #event_type,
                payload: &[#((#payload, ::theater_runtime::RecordMode::Full)),*],
            };
        }
    });
    let methods = callbacks.iter().map(|cb| {
        let f = cb.function;
        let method = format_ident!("{}", f.rust_name());
        let spec = spec_ident(f);
        let args: Vec<_> = (0..cb.params.len()).map(|i| format_ident!("arg{i}")).collect();
        let arg_types = cb.params.iter().map(|t| rust_type(t, Scope::Interface));
        let params = params_type(cb, Scope::Interface);
        let ok = ok_type(cb, Scope::Interface);
        let ret = cb.value.map(|v| rust_type(v, Scope::Interface)).unwrap_or_else(|| quote!(()));
        let wit = format!(" WIT: `{}`", f.wit_signature());
        let convention = format!(
            " Calls `{}` with ({}) and returns its `{}`; the actor's state is passed in and kept by the runtime.",
            f.name,
            cb.params.iter().map(type_string).collect::<Vec<_>>().join(", "),
            cb.value.map(type_string).unwrap_or_else(|| "()".into())
        );
        let doc = docs(&f.docs);
        quote! {
            #[doc = #wit]
            #[doc = ""]
            #doc
            #[doc = ""]
            #[doc = #convention]
            #[doc = ""]
            #[doc = " # Errors"]
            #[doc = " The guest's `Err` ([`ActorError::Guest`](::theater_runtime::ActorError::Guest)), a trap or deadline, a stopped actor, or a component that does not export this function."]
            pub async fn #method(&self, #(#args: #arg_types),*) -> ::core::result::Result<#ret, ::theater_runtime::ActorError> {
                self.actor
                    .call_export::<#params, #ok>(&#spec, (#(#args,)*), self.timeout)
                    .await
            }
        }
    });
    let doc = format!(" Typed callers of the callbacks of `{interface}` exported by one actor.");
    quote! {
        #(#specs)*

        #[doc = #doc]
        #[derive(Clone, Copy, Debug)]
        pub struct Callbacks<'a> {
            actor: &'a ::theater_runtime::ActorHandle,
            timeout: ::core::option::Option<::std::time::Duration>,
        }

        impl<'a> Callbacks<'a> {
            /// Callers for `actor`, waiting as long as its own call deadline allows.
            pub fn new(actor: &'a ::theater_runtime::ActorHandle) -> Self {
                Self { actor, timeout: ::core::option::Option::None }
            }

            /// Bounds each call's whole wait (queueing included) by `timeout`.
            pub fn with_timeout(self, timeout: ::std::time::Duration) -> Self {
                Self { timeout: ::core::option::Option::Some(timeout), ..self }
            }

            #(#methods)*
        }
    }
}

/// The statements of `Handler::add_export_functions`.
pub fn resolve_calls(iface: &Interface, callbacks: &[Callback<'_>]) -> TokenStream {
    let [ns, pkg, module] = iface.name.module_path().map(|s| format_ident!("{}", s));
    callbacks
        .iter()
        .map(|cb| {
            let spec = spec_ident(cb.function);
            let params = params_type(cb, Scope::Root);
            let ok = ok_type(cb, Scope::Root);
            quote! { exports.resolve::<#params, #ok>(&#ns::#pkg::#module::#spec)?; }
        })
        .collect()
}
