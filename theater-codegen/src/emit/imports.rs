//! The import side: one `CallSpec` and one `func_wrap`/`func_wrap_async` per WIT function of the imported
//! interface. Each host function is a few calls into `theater_runtime::host`: encode the parameters, find this
//! actor's instance, call the user's method, record one chain event.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use super::mode_tokens;
use crate::check::Bound;
use crate::model::{Function, Interface, Param};
use crate::typemap::{Scope, rust_type};

/// `static <FN>_SPEC: CallSpec = ...;` for every bound function.
pub fn call_specs(iface: &Interface, bound: &[Bound<'_>]) -> TokenStream {
    let interface = iface.name.full();
    bound
        .iter()
        .map(|b| {
            let f = b.function;
            let spec = format_ident!("{}", f.spec_name());
            let function = &f.name;
            let event_type = format!("{interface}/{function}");
            let params = f.params.iter().map(|p| &p.name);
            let payload = b.payload.iter().map(|(value, mode)| {
                let mode = mode_tokens(*mode);
                quote!((#value, #mode))
            });
            quote! {
                static #spec: ::theater_runtime::CallSpec = ::theater_runtime::CallSpec {
                    interface: #interface,
                    function: #function,
                    event_type: #event_type,
                    params: &[#(#params),*],
                    payload: &[#(#payload),*],
                };
            }
        })
        .collect()
}

/// The statements of `Handler::add_to_linker`: define every host function on `inst`.
pub fn linker_functions(bound: &[Bound<'_>]) -> TokenStream {
    bound.iter().map(host_function).collect()
}

/// The locals of a host function's glue, besides its parameters.
const GLUE_LOCALS: &[&str] = &["store", "call", "this", "result"];

/// The glue's binding of a parameter: its Rust name, or with a trailing `_` where that is one of the glue's own
/// locals (a WIT parameter named `store` or `result`).
fn binding(p: &Param) -> Ident {
    let name = p.rust_name();
    if GLUE_LOCALS.contains(&name.as_str()) {
        format_ident!("{name}_")
    } else {
        format_ident!("{name}")
    }
}

fn host_function(b: &Bound<'_>) -> TokenStream {
    let f: &Function = b.function;
    let wit_name = &f.name;
    let spec = format_ident!("{}", f.spec_name());
    let names: Vec<_> = f.params.iter().map(binding).collect();
    let types = f.params.iter().map(|p| rust_type(&p.ty, Scope::Root));
    let method = &b.method;
    let ctx_arg = b.ctx.then(|| {
        quote! {
            &mut ::theater_runtime::HostCtx::new(
                ::theater_runtime::__private::wasmtime::AsContextMut::as_context_mut(&mut store),
            ),
        }
    });
    // Spanned at the user's method so that rustc's type errors point at the handler's code.
    let call = quote_spanned!(method.span()=> this.#method(#ctx_arg #(#names),*));
    let call = if b.is_async {
        quote!(#call.await)
    } else {
        call
    };
    let ret = if f.result.is_some() {
        quote!((result,))
    } else {
        quote!(())
    };
    // A synchronous method without `HostCtx` borrows its instance from the store (it needs the store again only
    // after the call); async methods and those given the store hold an `Arc` of it.
    let lookup = if b.is_async || b.ctx {
        quote!(let this: ::std::sync::Arc<Self> = ::theater_runtime::host::instance(store.data())?;)
    } else {
        quote!(let this: &Self = ::theater_runtime::host::instance_ref(store.data())?;)
    };
    let body = quote! {
        let call = ::theater_runtime::host::begin(
            store.data(),
            &#spec,
            || (#(::core::clone::Clone::clone(&#names),)*),
        );
        #lookup
        #[allow(clippy::let_unit_value)]
        let result = #call;
        ::theater_runtime::host::finish(store.data_mut(), call, &result);
        ::core::result::Result::Ok::<_, ::theater_runtime::__private::wasmtime::Error>(#ret)
    };
    let store_ty = quote!(
        ::theater_runtime::__private::wasmtime::StoreContextMut<'_, ::theater_runtime::ActorStore>
    );
    if b.is_async {
        quote! {
            inst.func_wrap_async(
                #wit_name,
                |mut store: #store_ty, (#(#names,)*): (#(#types,)*)| {
                    ::std::boxed::Box::new(async move {
                        #body
                    })
                },
            )?;
        }
    } else {
        quote! {
            inst.func_wrap(
                #wit_name,
                |mut store: #store_ty, (#(#names,)*): (#(#types,)*)|
                    -> ::theater_runtime::__private::wasmtime::Result<_> {
                    #body
                },
            )?;
        }
    }
}
