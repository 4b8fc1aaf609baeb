//! The export side: for a callback interface (analysed in `callbacks.rs`), one `ExportSpec` per function, the
//! typed `Callbacks` callers, and the checks `Handler::add_export_functions` runs at spawn. The actor-state convention
//! (`state: option<list<u8>>` in, new state out) is the runtime's: callers see only the callback's own values.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use super::docs;
pub use crate::callbacks::Callback;
use crate::callbacks::payload_values;
use crate::model::{Function, Interface, Model, Type};
use crate::typemap::{Scope, rust_type};

fn spec_ident(iface: &Interface, f: &Function) -> proc_macro2::Ident {
    format_ident!("{}", iface.spec_name(f))
}

/// The `O` type of a callback's `theater_runtime::Callback<P, O>` (its `ok` result), in its interface's module.
fn ok_type(cb: &Callback<'_>) -> TokenStream {
    match cb.value {
        None => quote!(::theater_runtime::StateOnly),
        Some(v) => {
            let v = rust_type(v, Scope::Here);
            quote!(::theater_runtime::StateAnd<#v>)
        }
    }
}

/// Items added to the export interface's module: the specs and `Callbacks`.
pub fn module_items(model: &Model, iface: &Interface, callbacks: &[Callback<'_>]) -> TokenStream {
    let interface = iface.name.full();
    let specs = callbacks.iter().map(|cb| {
        let spec = spec_ident(iface, cb.function);
        let event_type = format!("{interface}/{}", cb.function.name);
        let payload = payload_values(model, cb);
        let params = rust_type(&Type::Tuple(cb.params.to_vec()), Scope::Here);
        let ok = ok_type(cb);
        quote! {
            #[doc(hidden)]
            pub static #spec: ::theater_runtime::Callback<#params, #ok> =
                ::theater_runtime::Callback::new(#event_type, &[#(#payload),*]);
        }
    });
    let methods = callbacks.iter().map(|cb| {
        let f = cb.function;
        let method = format_ident!("{}", f.rust_name());
        let spec = spec_ident(iface, f);
        let args: Vec<_> = (0..cb.params.len()).map(|i| format_ident!("arg{i}")).collect();
        let arg_types = cb.params.iter().map(|t| rust_type(t, Scope::Here));
        let ret = cb.value.map(|v| rust_type(v, Scope::Here)).unwrap_or_else(|| quote!(()));
        let wit = format!(" WIT: `{}`", f.wit_signature());
        let doc = docs(&f.docs);
        quote! {
            #[doc = #wit]
            #[doc = ""]
            #doc
            pub async fn #method(&self, #(#args: #arg_types),*) -> ::theater_runtime::CallResult<#ret> {
                self.0.call(&#spec, (#(#args,)*)).await
            }
        }
    });
    let doc = format!(
        " Typed callers of the callbacks of `{interface}` exported by one actor. Each passes the actor's state in \
         and keeps the new state (the runtime's convention), and returns the callback's own value."
    );
    quote! {
        #(#specs)*

        #[doc = #doc]
        #[doc = ""]
        #[doc = " # Errors"]
        #[doc = " Each method: the guest's `Err` ([`ActorError::Guest`](::theater_runtime::ActorError::Guest)), a trap or deadline, a stopped or busy actor, or a component that does not export the function."]
        #[derive(Clone, Copy, Debug)]
        pub struct Callbacks<'a>(::theater_runtime::Caller<'a>);

        impl<'a> Callbacks<'a> {
            /// Callers for `actor`, waiting as long as its own call deadline allows.
            pub fn new(actor: &'a ::theater_runtime::ActorHandle) -> Self {
                Self(::theater_runtime::Caller::new(actor))
            }

            /// Bounds each call's whole wait (queueing included) by `timeout`.
            pub fn with_timeout(self, timeout: ::std::time::Duration) -> Self {
                Self(self.0.with_timeout(timeout))
            }

            #(#methods)*
        }
    }
}

/// The statements of `Handler::add_export_functions`, beside the module `tree` that holds the generated tree.
pub fn resolve_calls(iface: &Interface, callbacks: &[Callback<'_>], tree: &Ident) -> TokenStream {
    let [ns, pkg, module] = iface.name.module_path().map(|s| format_ident!("{}", s));
    callbacks
        .iter()
        .map(|cb| {
            let spec = spec_ident(iface, cb.function);
            quote! { exports.add(&#tree::#ns::#pkg::#module::#spec)?; }
        })
        .collect()
}
