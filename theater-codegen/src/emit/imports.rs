//! The import side: one `CallSpec` and one host function per WIT function of the imported interface. A function
//! whose values hold no resource handle is one call of a `theater_runtime::host` definer with the method call in a
//! closure; one with handles (not `Clone`, recorded as `{"resource","handle"}`) has its `func_wrap` written out:
//! capture the parameters, find this actor's instance, call the user's method, record one chain event.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use std::collections::BTreeMap;

use super::mode_tokens;
use super::record::record_copy;
use crate::attr::Replay;
use crate::check::{Bound, ResourceType};
use crate::model::{Function, Interface, Model, Param, ResourceFunctionKind, Type, TypeRef};
use crate::typemap::{Scope, rust_type};

/// `static <FN>_SPEC: CallSpec = ...;` for every function with glue (`glued`).
pub fn call_specs(iface: &Interface, bound: &[Bound<'_>]) -> TokenStream {
    let interface = iface.name.full();
    glued(iface, bound)
        .map(|(f, b)| {
            let spec = format_ident!("{}", iface.spec_name(f));
            let function = &f.name;
            let event_type = format!("{interface}/{function}");
            let params = f.params.iter().map(|p| &p.name);
            let payload = b.into_iter().flat_map(|b| &b.payload).map(|(value, mode)| {
                let mode = mode_tokens(*mode);
                quote!((#value, #mode))
            });
            let replay = match b.map(|b| b.replay).unwrap_or_default() {
                Replay::Feed => quote!(::theater_runtime::ReplayRule::Feed),
                Replay::Rerun => quote!(::theater_runtime::ReplayRule::Rerun),
                Replay::FeedOrRerun => quote!(::theater_runtime::ReplayRule::FeedOrRerun),
            };
            quote! {
                static #spec: ::theater_runtime::CallSpec = ::theater_runtime::CallSpec {
                    interface: #interface,
                    function: #function,
                    event_type: #event_type,
                    params: &[#(#params),*],
                    payload: &[#(#payload),*],
                    replay: #replay,
                };
            }
        })
        .collect()
}

/// Every function of `iface` that gets glue, with the method that serves it: the bound ones, and the destructor
/// of each resource the interface defines, which has glue (deleting the value from the table) even without a
/// method.
fn glued<'i, 'b>(
    iface: &'i Interface,
    bound: &'b [Bound<'i>],
) -> impl Iterator<Item = (&'i Function, Option<&'b Bound<'i>>)> {
    iface.functions.iter().filter_map(move |f| {
        let b = bound.iter().find(|b| std::ptr::eq(b.function, f));
        (b.is_some() || f.optional()).then_some((f, b))
    })
}

/// The statements of `Handler::add_to_linker`: define every host function and resource on `inst`.
pub fn linker_functions(
    model: &Model,
    iface: &Interface,
    bound: &[Bound<'_>],
    resources: &BTreeMap<TypeRef, ResourceType>,
    tree: &Ident,
) -> TokenStream {
    glued(iface, bound)
        .map(|(f, b)| match &f.resource {
            Some(r) if r.kind == ResourceFunctionKind::Drop => {
                let key = TypeRef {
                    iface: iface.name.clone(),
                    name: r.resource.clone(),
                };
                resource_definition(model, iface, f, b, resources.get(&key).map(|t| &t.ty), tree)
            }
            _ => b
                .map(|b| host_function(model, iface, b, tree))
                .unwrap_or_default(),
        })
        .collect()
}

/// The locals and closure parameters of a host function's glue that take ordinary names, besides its parameters
/// (the others are `__theater_*`, which no WIT name produces: WIT identifiers are kebab-case, so a Rust name
/// derived from one never starts with `_`).
const GLUE_LOCALS: &[&str] = &["store", "call", "this", "ctx", "result", "rep"];

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

/// How a replay feeds back a recorded result of type `ty` that holds resource handles: the type the record is
/// decoded as (each `own` handle as a `host::RecordedHandle`) and the expression that turns `value` of that type
/// into the result (each handle a `Resource` of the recorded index). `own` handles directly and inside options,
/// results and lists; `None` for handles inside records, variants and tuples, which are not fed yet.
fn fed_handles(
    model: &Model,
    ty: &Type,
    value: TokenStream,
    tree: &Ident,
) -> Option<(TokenStream, TokenStream)> {
    let side = |t: &Option<Box<Type>>| match t {
        Some(t) => fed_handles(model, t, quote!(v), tree),
        None => Some((quote!(()), quote!(v))),
    };
    Some(match ty {
        t if !model.holds_handles(t) => (rust_type(t, Scope::Root(tree)), value),
        Type::Own(_) => (
            quote!(::theater_runtime::host::RecordedHandle),
            quote!(::theater_runtime::Resource::new_own(#value.handle)),
        ),
        Type::Option(t) => {
            let (ty, expr) = fed_handles(model, t, quote!(v), tree)?;
            (
                quote!(::core::option::Option<#ty>),
                quote!(#value.map(|v| #expr)),
            )
        }
        Type::Result { ok, err } => {
            let ((ok_ty, ok), (err_ty, err)) = (side(ok)?, side(err)?);
            (
                quote!(::core::result::Result<#ok_ty, #err_ty>),
                quote!(#value.map(|v| #ok).map_err(|v| #err)),
            )
        }
        Type::List(t) => {
            let (ty, expr) = fed_handles(model, t, quote!(v), tree)?;
            (
                quote!(::std::vec::Vec<#ty>),
                quote!(#value.into_iter().map(|v| #expr).collect::<::std::vec::Vec<_>>()),
            )
        }
        _ => return None,
    })
}

/// The call a glue body makes.
struct Call {
    /// How the glue finds the handler instance (`this`).
    lookup: TokenStream,
    /// The call expression.
    expr: TokenStream,
    /// Whether it returns `Result<T, E>` whose `Err` traps.
    trappable: bool,
    /// Whether it is awaited: it adds the ticks it spends pending to `__theater_waited` (`method_call`), as only
    /// those are not the guest's run time; a synchronous call's are all its own.
    is_async: bool,
}

/// The body shared by a host function's and a destructor's glue: record the parameters, call, record the
/// result, return it (`(result,)` for a function with a result).
fn glue_body(
    model: &Model,
    iface: &Interface,
    f: &Function,
    names: &[Ident],
    call: Call,
    tree: &Ident,
) -> TokenStream {
    let Call {
        lookup,
        expr: call,
        trappable,
        is_async,
    } = call;
    let spec = format_ident!("{}", iface.spec_name(f));
    let copies = names
        .iter()
        .zip(&f.params)
        .map(|(n, p)| record_copy(model, quote!(&#n), &p.ty));
    let call = if trappable {
        quote! {
            match #call {
                ::core::result::Result::Ok(value) => value,
                ::core::result::Result::Err(e) => {
                    return ::core::result::Result::Err(
                        ::theater_runtime::host::trap(store.data_mut(), call, e),
                    );
                }
            }
        }
    } else {
        call
    };
    let finish = match &f.result {
        Some(t) if model.holds_handles(t) => {
            let copy = record_copy(model, quote!(&result), t);
            quote!(::theater_runtime::host::finish_recorded(store.data_mut(), call, || #copy);)
        }
        _ => quote!(::theater_runtime::host::finish(store.data_mut(), call, &result);),
    };
    let ret = if f.result.is_some() {
        quote!((result,))
    } else {
        quote!(())
    };
    // In a replay the recorded result is fed back (its type inferred from the method's): a value without
    // handles as decoded, an `own` handle as a `Resource` of the recorded index. A result with handles inside
    // another type cannot be fed yet: the replay stops there.
    let fed = match &f.result {
        Some(t) if model.holds_handles(t) => {
            fed_handles(model, t, quote!(value), tree).map(|(ty, expr)| {
                quote! {{
                    let value: #ty = value;
                    #expr
                }}
            })
        }
        _ => Some(quote!(value)),
    };
    let (unreplayable, result) = match fed {
        Some(fed) => (
            TokenStream::new(),
            quote! {
                match ::theater_runtime::host::replayed(store.data_mut(), &#spec) {
                    ::core::option::Option::Some(::core::result::Result::Ok(value)) => #fed,
                    ::core::option::Option::Some(::core::result::Result::Err(e)) => {
                        return ::core::result::Result::Err(::theater_runtime::host::trap(store.data_mut(), call, e));
                    }
                    ::core::option::Option::None => {
                        #lookup
                        #call
                    }
                }
            },
        ),
        None => (
            quote!(::theater_runtime::host::not_replayed(store.data_mut(), &#spec)?;),
            quote!({
                #lookup
                #call
            }),
        ),
    };
    // A synchronous call waits on nothing: all its time is the guest's, which is what `begin` assumes.
    let (waits, waited) = if is_async {
        (
            quote! {
                let __theater_ticks = ::theater_runtime::host::ticks(store.data());
                let mut __theater_waited = 0u64;
            },
            quote!(let call = call.host_waited(__theater_waited);),
        )
    } else {
        (TokenStream::new(), TokenStream::new())
    };
    quote! {
        #unreplayable
        let call = ::theater_runtime::host::begin(store.data(), &#spec, || (#(#copies,)*));
        #waits
        #[allow(clippy::let_unit_value)]
        let result = #result;
        #waited
        #finish
        ::core::result::Result::Ok::<_, ::theater_runtime::__private::wasmtime::Error>(#ret)
    }
}

/// How the glue finds the handler instance, and the user's method call.
fn method_call(b: &Bound<'_>, names: &[Ident]) -> (TokenStream, TokenStream) {
    let method = &b.method;
    let ctx_arg = b.ctx.then(|| {
        quote! {
            &mut ::theater_runtime::HostCtx::new(
                ::theater_runtime::__private::wasmtime::AsContextMut::as_context_mut(&mut store),
            ),
        }
    });
    // Spanned at the user's method so that rustc's type errors point at the handler's code. Called by path, not
    // as `this.method(..)`: `this` may be an `Arc<Self>`, whose own methods (`clone`, `as_ref`, ...) would win.
    let call = quote_spanned!(method.span()=> <Self>::#method(&*this, #ctx_arg #(#names),*));
    let call = if b.is_async {
        quote! {{
            let (__theater_value, __theater_pending) =
                ::theater_runtime::host::waits(__theater_ticks, #call).await;
            __theater_waited += __theater_pending;
            __theater_value
        }}
    } else {
        call
    };
    // A synchronous method without `HostCtx` borrows its instance from the store (it needs the store again only
    // after the call); async methods and those given the store hold an `Arc` of it.
    let lookup = if b.is_async || b.ctx {
        quote!(let this: ::std::sync::Arc<Self> = ::theater_runtime::host::instance(store.data())?;)
    } else {
        quote!(let this: &Self = ::theater_runtime::host::instance_ref(store.data())?;)
    };
    (lookup, call)
}

fn store_type() -> TokenStream {
    quote!(
        ::theater_runtime::__private::wasmtime::StoreContextMut<'_, ::theater_runtime::ActorStore>
    )
}

/// A function whose values hold no handle: one call of a definer (`theater_runtime::host::define`), which does
/// everything but the method call; the closure's body is the call and its results tuple. The parameter tuple's
/// type is the method's (checked against the WIT function by `check_params`), inferred from the call.
fn defined_function(iface: &Interface, b: &Bound<'_>) -> TokenStream {
    let f: &Function = b.function;
    let spec = format_ident!("{}", iface.spec_name(f));
    let names: Vec<_> = f.params.iter().map(binding).collect();
    let method = &b.method;
    let ctx = b.ctx.then(|| quote!(ctx,));
    // Spanned at the user's method so that rustc's type errors point at the handler's code. Called by path, as in
    // `method_call`: `this` is an `Arc<Self>` for async methods.
    let call = quote_spanned!(method.span()=> <Self>::#method(&*this, #ctx #(#names),*));
    let call = if b.is_async {
        quote!(#call.await)
    } else {
        call
    };
    let ok = quote!(::core::result::Result::Ok);
    let results = match (f.result.is_some(), b.trappable) {
        (true, false) => quote!(#ok((#call,))),
        (true, true) => quote!(#call.map(|result| (result,))),
        (false, false) => quote!({ #call; #ok(()) }),
        (false, true) => call,
    };
    let (definer, body) = match (b.is_async, b.ctx) {
        (false, false) => (quote!(sync), results),
        (false, true) => (quote!(sync_ctx), results),
        (true, false) => (quote!(async_), quote!(async move { #results })),
        (true, true) => (
            quote!(async_ctx),
            quote!(::std::boxed::Box::pin(async move { #results })),
        ),
    };
    quote! {
        ::theater_runtime::host::define::<Self>(&mut inst).#definer(
            &#spec,
            |this, #ctx (#(#names,)*)| #body,
        )?;
    }
}

fn host_function(model: &Model, iface: &Interface, b: &Bound<'_>, tree: &Ident) -> TokenStream {
    let f: &Function = b.function;
    let holds_handles = f
        .params
        .iter()
        .map(|p| &p.ty)
        .chain(&f.result)
        .any(|t| model.holds_handles(t));
    if !holds_handles {
        return defined_function(iface, b);
    }
    let wit_name = &f.name;
    let names: Vec<_> = f.params.iter().map(binding).collect();
    let types = f.params.iter().map(|p| rust_type(&p.ty, Scope::Root(tree)));
    let (lookup, call) = method_call(b, &names);
    let call = Call {
        lookup,
        expr: call,
        trappable: b.trappable,
        is_async: b.is_async,
    };
    let body = glue_body(model, iface, f, &names, call, tree);
    let store_ty = store_type();
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

/// The definition of a resource the imported interface defines, as `ResourceType::host::<T>()` with `T` the
/// handler's type for it (a private uninhabited type when no method names one), and its destructor: the drop
/// method if the handler has one, else [`drop_resource`], recorded as `[resource-drop]<name>`.
///
/// [`drop_resource`]: theater_runtime::host::drop_resource
fn resource_definition(
    model: &Model,
    iface: &Interface,
    f: &Function,
    b: Option<&Bound<'_>>,
    ty: Option<&syn::Type>,
    tree: &Ident,
) -> TokenStream {
    let name = f
        .resource
        .as_ref()
        .map(|r| r.resource.as_str())
        .unwrap_or_default();
    let (marker, ty) = match ty {
        Some(t) => (TokenStream::new(), quote!(#t)),
        None => {
            let m = format_ident!(
                "__Unused{}",
                crate::model::camel_name(name).trim_start_matches("r#")
            );
            (quote!(enum #m {}), quote!(#m))
        }
    };
    let names: Vec<_> = f.params.iter().map(binding).collect();
    let handle = &names[0];
    let (lookup, call, trappable, is_async) = match b {
        Some(b) => {
            let (lookup, call) = method_call(b, &names);
            (lookup, call, b.trappable, b.is_async)
        }
        None => (
            TokenStream::new(),
            quote!(::theater_runtime::host::drop_resource(store.data_mut(), #handle)),
            true,
            false,
        ),
    };
    let call = Call {
        lookup,
        expr: call,
        trappable,
        is_async,
    };
    let body = glue_body(model, iface, f, &names, call, tree);
    let wasmtime = quote!(::theater_runtime::__private::wasmtime);
    let store_ty = store_type();
    let head = quote! {
        let #handle = #wasmtime::component::Resource::<#ty>::new_own(rep);
    };
    let definition = if is_async {
        quote! {
            inst.resource_async(
                #name,
                #wasmtime::component::ResourceType::host::<#ty>(),
                |mut store: #store_ty, rep: u32| {
                    ::std::boxed::Box::new(async move {
                        #head
                        #body
                    })
                },
            )?;
        }
    } else {
        quote! {
            inst.resource(
                #name,
                #wasmtime::component::ResourceType::host::<#ty>(),
                |mut store: #store_ty, rep: u32| -> #wasmtime::Result<()> {
                    #head
                    #body
                },
            )?;
        }
    };
    quote! { #marker #definition }
}
