//! Named checks between the WIT model and the user's `impl`: every function has a method, every method binds a
//! function, and the parameter and return types agree. Each problem is an error at the user's tokens.

use proc_macro2::Span;
use syn::{FnArg, GenericArgument, ImplItem, ItemImpl, PathArguments, ReturnType};

use crate::attr::{MethodAttr, Mode, Replay};
use crate::diag::Diagnostics;
use std::collections::BTreeMap;

use crate::model::{Function, Interface, Model, Type, TypeDefKind, TypeRef, unraw};
use crate::typemap::type_string;

/// A WIT function and the method that serves it.
pub struct Bound<'a> {
    pub function: &'a Function,
    pub method: syn::Ident,
    pub is_async: bool,
    /// Whether the method takes `ctx: &mut HostCtx<'_>` after `&self`.
    pub ctx: bool,
    /// Payload values (WIT names, or `result`) and their default modes.
    pub payload: Vec<(String, Mode)>,
    /// How replay answers the function.
    pub replay: Replay,
    /// Whether the method returns `HostResult<T>` (`wasmtime::Result<T>`) around the WIT result: an `Err` traps
    /// the call.
    pub trappable: bool,
}

/// The Rust type a handler gives a resource's values in the actor's `ResourceTable`: the `T` of the
/// `Resource<T>` its methods take and return, with the first place it was written.
pub struct ResourceType {
    pub ty: syn::Type,
    /// The method it was first seen in.
    pub method: syn::Ident,
}

/// A lifecycle hook method.
pub struct Hook {
    pub method: syn::Ident,
    pub is_async: bool,
}

/// What the expansion needs from the user's `impl`, after the checks.
#[derive(Default)]
pub struct Plan<'a> {
    pub bound: Vec<Bound<'a>>,
    pub create_instance: Option<Hook>,
    pub start: Option<Hook>,
    /// Every resource whose handles the bound methods take or return, with its Rust type.
    pub resources: BTreeMap<TypeRef, ResourceType>,
}

/// Binds the methods of `item` to the functions of `iface`, stripping `#[theater]` attributes from `item`.
pub fn bind<'a>(
    model: &Model,
    iface: Option<&'a Interface>,
    item: &mut ItemImpl,
    diag: &mut Diagnostics,
) -> Plan<'a> {
    let mut plan = Plan::default();
    let functions: &[Function] = iface.map(|i| i.functions.as_slice()).unwrap_or(&[]);
    let mut served = vec![false; functions.len()];
    // Methods that name no WIT function: (method, name looked for, whether that is a WIT name, span).
    let mut unbound: Vec<(String, String, bool, Span)> = Vec::new();
    // Functions not to report missing: suggested at a method of another name, or named by a method whose name
    // is the Rust name of several (the error there says what to write).
    let mut suggested: Vec<&str> = Vec::new();
    // The WIT functions some method binds by WIT name (a lifecycle method binds none): a method binding by Rust
    // name serves none of them, so a Rust name several functions share is free for the one left. (Read from a
    // copy of the attributes: their errors are reported once, below.)
    let by_wit_name: Vec<String> = item
        .items
        .iter()
        .filter_map(|i| match i {
            ImplItem::Fn(m) => Some(MethodAttr::take(
                &mut m.attrs.clone(),
                &mut Diagnostics::new(),
            )),
            _ => None,
        })
        .filter(|a| a.create_instance.is_none() && a.start.is_none())
        .filter_map(|a| a.name.map(|n| n.value))
        .collect();
    let self_ty = (*item.self_ty).clone();
    for impl_item in &mut item.items {
        let method = match impl_item {
            ImplItem::Fn(m) => m,
            other => {
                diag.error_spanned(
                    &*other,
                    "#[theater_handler] impl blocks hold only methods: move other items to a separate impl",
                );
                continue;
            }
        };
        let attr = MethodAttr::take(&mut method.attrs, diag);
        let sig = &method.sig;
        let hook = || Hook {
            method: sig.ident.clone(),
            is_async: sig.asyncness.is_some(),
        };
        if let Some(span) = attr.create_instance {
            attr.check_hook("create_instance", diag);
            check_create_instance(sig, &self_ty, diag);
            set_hook(
                &mut plan.create_instance,
                hook(),
                "create_instance",
                span,
                diag,
            );
            continue;
        }
        if let Some(span) = attr.start {
            attr.check_hook("start", diag);
            check_start(sig, diag);
            set_hook(&mut plan.start, hook(), "start", span, diag);
            continue;
        }
        // `#[theater(name = "wit-name")]` binds by WIT name; otherwise the method's name is the function's Rust
        // name (`r#type` and `type` alike).
        let method_name = unraw(&sig.ident.to_string()).to_owned();
        let index = match &attr.name {
            Some(n) => functions.iter().position(|f| f.name == n.value),
            None => {
                let named: Vec<usize> = (0..functions.len())
                    .filter(|&i| {
                        unraw(&functions[i].rust_name()) == method_name
                            && !by_wit_name.contains(&functions[i].name)
                    })
                    .collect();
                if let [_, _, ..] = named.as_slice() {
                    let wit: Vec<String> = named
                        .iter()
                        .map(|&i| format!("`{}`", functions[i].name))
                        .collect();
                    diag.error(
                        sig.ident.span(),
                        format!(
                            "`{method_name}` is the Rust name of {} WIT functions {}: bind each with \
                             #[theater(name = \"...\")] on a method of another name",
                            if named.len() == 2 { "both" } else { "all the" },
                            and_list(&wit)
                        ),
                    );
                    suggested.extend(named.iter().map(|&i| functions[i].name.as_str()));
                    continue;
                }
                named.first().copied()
            }
        };
        let Some(index) = index else {
            let (looked_for, by_wit_name, span) = match &attr.name {
                Some(n) => (n.value.clone(), true, n.span),
                None => (method_name, false, sig.ident.span()),
            };
            unbound.push((sig.ident.to_string(), looked_for, by_wit_name, span));
            continue;
        };
        let wit_name = &functions[index].name;
        if std::mem::replace(&mut served[index], true) {
            diag.error(
                sig.ident.span(),
                format!("WIT function `{wit_name}` already has a method"),
            );
            continue;
        }
        let function = &functions[index];
        if let Some(bound) =
            check_signature(model, function, method, &attr, &mut plan.resources, diag)
        {
            plan.bound.push(bound);
        }
    }
    // Suggest only functions no method serves; a function suggested this way is not reported missing too (the
    // error at the method already says what to write).
    for (method, looked_for, by_wit_name, span) in unbound {
        // Compared in the space it was looked up in: WIT names for `name = ".."`, Rust names otherwise.
        let key = |f: &Function| {
            if by_wit_name {
                f.name.clone()
            } else {
                unraw(&f.rust_name()).to_owned()
            }
        };
        let unserved: Vec<(String, &Function)> = functions
            .iter()
            .zip(&served)
            .filter(|(f, s)| !**s && !suggested.contains(&f.name.as_str()))
            .map(|(f, _)| (key(f), f))
            .collect();
        let near = nearest(&looked_for, unserved.iter().map(|(k, _)| k.as_str()))
            .and_then(|k| unserved.iter().find(|(key, _)| key == k))
            .map(|(_, f)| *f);
        let hint = near
            .map(|f| format!("; did you mean `{}` (WIT `{}`)?", f.rust_name(), f.name))
            .unwrap_or_default();
        suggested.extend(near.map(|f| f.name.as_str()));
        let iface_name = iface
            .map(|i| i.name.full())
            .unwrap_or_else(|| "the imported interface".into());
        diag.error(
            span,
            format!("`{method}` is not a function of {iface_name}{hint}"),
        );
    }
    check_every_function_served(iface, &served, &suggested, &by_wit_name, item, diag);
    // Keep WIT order, whatever the method order.
    plan.bound
        .sort_by_key(|b| functions.iter().position(|f| std::ptr::eq(f, b.function)));
    plan
}

/// Every WIT function has a method, but a resource's destructor (optional) and those already named at a method
/// (the error there says what to write). A function whose Rust name another shares (not bound by WIT name, as
/// those in `by_wit_name` are) is to be bound by WIT name.
fn check_every_function_served(
    iface: Option<&Interface>,
    served: &[bool],
    suggested: &[&str],
    by_wit_name: &[String],
    item: &ItemImpl,
    diag: &mut Diagnostics,
) {
    let Some(iface) = iface else { return };
    for (function, served) in iface.functions.iter().zip(served) {
        if *served || function.optional() || suggested.contains(&function.name.as_str()) {
            continue;
        }
        let sharers: Vec<String> = iface
            .rust_name_sharers(function)
            .filter(|f| !by_wit_name.contains(&f.name))
            .map(|f| format!("`{}`", f.name))
            .collect();
        let message = if sharers.is_empty() {
            format!(
                "missing method for WIT function `{}`: expected `{}`",
                function.name,
                expected_signature(function)
            )
        } else {
            format!(
                "missing method for WIT function `{}`: its Rust name `{}` is also that of {}, so bind it by its \
                 WIT name: expected `#[theater(name = \"{}\")] {}` with a method name of your choice",
                function.name,
                function.rust_name(),
                and_list(&sharers),
                function.name,
                expected_signature(function)
            )
        };
        diag.error_spanned(&item.self_ty, message);
    }
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Records the one method marked `#[theater(<key>)]`; a second is an error at its key.
fn set_hook(slot: &mut Option<Hook>, hook: Hook, key: &str, span: Span, diag: &mut Diagnostics) {
    match slot {
        Some(first) => diag.error(
            span,
            format!(
                "only one method may be #[theater({key})]; `{}` already is",
                first.method
            ),
        ),
        None => *slot = Some(hook),
    }
}

/// A `#[theater(create_instance)]` method has the signature the expansion calls (`self.x(actor)?`, awaited when
/// it is an `async fn`): `fn x(&self, actor: &ActorContext) -> anyhow::Result<Self>`. Each part that differs is an
/// error there, naming that signature.
fn check_create_instance(sig: &syn::Signature, self_ty: &syn::Type, diag: &mut Diagnostics) {
    let expected = format!(
        "expected `fn {}(&self, actor: &ActorContext) -> anyhow::Result<Self>` (or `async fn`)",
        sig.ident
    );
    let hook = "a #[theater(create_instance)] method";
    let receiver_ok = |r: &syn::Receiver| r.reference.is_some() && r.mutability.is_none();
    let receiver = format!(
        "{hook} takes `&self` (the prototype the actor's instance is built from): {expected}"
    );
    let Some(params) = check_hook_receiver(sig, receiver_ok, &receiver, diag) else {
        return;
    };
    let is_context = |t: &syn::Type| {
        matches!(t, syn::Type::Reference(r) if r.mutability.is_none()
            && last_ident(&r.elem).is_some_and(|(i, args)| i == "ActorContext" && args.is_empty()))
    };
    check_hook_params(
        sig,
        &params,
        &[("`&ActorContext`", &is_context)],
        hook,
        &expected,
        diag,
    );
    let self_name = last_ident(self_ty).map(|(i, _)| i);
    let returns_self = |t: &syn::Type| {
        last_ident(t).is_some_and(|(i, args)| {
            i == "Result"
                && matches!(args.len(), 1 | 2)
                && last_ident(args[0]).is_some_and(|(t, targs)| {
                    targs.is_empty() && (t == "Self" || Some(&t) == self_name.as_ref())
                })
        })
    };
    check_hook_return(
        sig,
        returns_self,
        &format!("{hook} returns the actor's instance, `anyhow::Result<Self>`"),
        &expected,
        diag,
    );
}

/// A `#[theater(start)]` method has the signature the expansion calls (`Box::pin(Self::x(self, actor,
/// shutdown))`, a `'static` future of `anyhow::Result<()>`): `async fn x(self: Arc<Self>, actor: ActorHandle,
/// shutdown: ShutdownSignal) -> anyhow::Result<()>`. Each part that differs is an error there, naming that
/// signature.
fn check_start(sig: &syn::Signature, diag: &mut Diagnostics) {
    let expected = format!(
        "expected `async fn {}(self: Arc<Self>, actor: ActorHandle, shutdown: ShutdownSignal) -> anyhow::Result<()>`",
        sig.ident
    );
    let hook = "a #[theater(start)] method";
    if sig.asyncness.is_none() {
        diag.error(
            sig.ident.span(),
            format!("{hook} must be an `async fn`: {expected}"),
        );
    }
    let receiver_ok = |r: &syn::Receiver| {
        r.reference.is_none()
            && r.colon_token.is_some()
            && last_ident(&r.ty).is_some_and(|(i, args)| {
                i == "Arc"
                    && matches!(args.as_slice(), [t] if last_ident(t).is_some_and(|(s, a)| s == "Self" && a.is_empty()))
            })
    };
    let receiver = format!(
        "{hook} takes `self: Arc<Self>` (it runs in the background, beyond any borrow of the handler): {expected}"
    );
    let Some(params) = check_hook_receiver(sig, receiver_ok, &receiver, diag) else {
        return;
    };
    let named = |name: &'static str| {
        move |t: &syn::Type| last_ident(t).is_some_and(|(i, args)| i == name && args.is_empty())
    };
    check_hook_params(
        sig,
        &params,
        &[
            ("`ActorHandle`", &named("ActorHandle")),
            ("`ShutdownSignal`", &named("ShutdownSignal")),
        ],
        hook,
        &expected,
        diag,
    );
    let returns_unit = |t: &syn::Type| {
        let unit = |t: &syn::Type| matches!(t, syn::Type::Tuple(tt) if tt.elems.is_empty());
        last_ident(t).is_some_and(|(i, args)| {
            i == "Result"
                && match args.as_slice() {
                    [ok] => unit(ok),
                    [ok, err] => unit(ok) && last_ident(err).is_some_and(|(e, _)| e == "Error"),
                    _ => false,
                }
        })
    };
    check_hook_return(
        sig,
        returns_unit,
        &format!("{hook} returns `anyhow::Result<()>`"),
        &expected,
        diag,
    );
}

/// The receiver of a lifecycle method: `message` at it (or at the method's name when there is none) unless `ok`
/// accepts it. Returns the parameters after it, or `None` when the method has no receiver (they are not checked:
/// which one was meant is unclear).
fn check_hook_receiver<'s>(
    sig: &'s syn::Signature,
    ok: impl Fn(&syn::Receiver) -> bool,
    message: &str,
    diag: &mut Diagnostics,
) -> Option<Vec<&'s syn::PatType>> {
    match sig.inputs.first() {
        Some(FnArg::Receiver(r)) => {
            if !ok(r) {
                diag.error_spanned(r, message);
            }
        }
        Some(other) => {
            diag.error_spanned(other, message);
            return None;
        }
        None => {
            diag.error(sig.ident.span(), message);
            return None;
        }
    }
    Some(
        sig.inputs
            .iter()
            .filter_map(|a| match a {
                FnArg::Typed(t) => Some(t),
                FnArg::Receiver(_) => None,
            })
            .collect(),
    )
}

/// A parameter a lifecycle method takes: its type as a message writes it, and a test of the user's type.
type HookParam<'a> = (&'a str, &'a dyn Fn(&syn::Type) -> bool);

/// The parameters of a lifecycle method after its receiver, one per entry of `want`: a wrong count is an error
/// at the first extra parameter or at the end of the list, a wrong type an error at it.
fn check_hook_params(
    sig: &syn::Signature,
    params: &[&syn::PatType],
    want: &[HookParam<'_>],
    hook: &str,
    expected: &str,
    diag: &mut Diagnostics,
) {
    if params.len() != want.len() {
        let types: Vec<String> = want.iter().map(|(t, _)| (*t).to_owned()).collect();
        let message = format!(
            "{hook} takes {} after its receiver ({}), this one has {}: {expected}",
            match want.len() {
                1 => "one parameter".to_owned(),
                n => format!("{n} parameters"),
            },
            and_list(&types),
            params.len()
        );
        match params.get(want.len()) {
            Some(extra) => diag.error_spanned(extra, message),
            None => diag.error(sig.paren_token.span.close(), message),
        }
        return;
    }
    for (i, (param, (ty, ok))) in params.iter().zip(want).enumerate() {
        if !ok(&param.ty) {
            let which = match (want.len(), i) {
                (1, _) => "the parameter".to_owned(),
                (_, 0) => "the first parameter".to_owned(),
                (_, 1) => "the second parameter".to_owned(),
                (_, n) => format!("parameter {}", n + 1),
            };
            diag.error_spanned(&param.ty, format!("{which} of {hook} is {ty}: {expected}"));
        }
    }
}

/// The return type of a lifecycle method: an error at it (or at the end of the parameter list when there is
/// none) unless `ok` accepts it.
fn check_hook_return(
    sig: &syn::Signature,
    ok: impl Fn(&syn::Type) -> bool,
    what: &str,
    expected: &str,
    diag: &mut Diagnostics,
) {
    let message = format!("{what}: {expected}");
    match &sig.output {
        ReturnType::Type(_, t) if !ok(t) => diag.error_spanned(t, message),
        ReturnType::Type(..) => {}
        ReturnType::Default => diag.error(sig.paren_token.span.close(), message),
    }
}

/// `fn random_bytes(&self, length: u32) -> Result<Vec<u8>, String>`.
pub fn expected_signature(f: &Function) -> String {
    let params: Vec<String> = f
        .params
        .iter()
        .map(|p| format!(", {}: {}", p.rust_name(), type_string(&p.ty)))
        .collect();
    let ret = f
        .result
        .as_ref()
        .map(|t| format!(" -> {}", type_string(t)))
        .unwrap_or_default();
    format!("fn {}(&self{}){}", f.rust_name(), params.concat(), ret)
}

/// Checks one method against the WIT function it serves, each part by a named check below; `None` when any
/// failed (their errors are in `diag`).
fn check_signature<'a>(
    model: &Model,
    function: &'a Function,
    method: &syn::ImplItemFn,
    attr: &MethodAttr,
    resources: &mut BTreeMap<TypeRef, ResourceType>,
    diag: &mut Diagnostics,
) -> Option<Bound<'a>> {
    let sig = &method.sig;
    let before = diag.len();
    // The `T` of every `Resource<T>` in the signature, checked against the resource's other uses at the end.
    let mut handles: Vec<(TypeRef, &syn::Type)> = Vec::new();
    check_receiver(function, sig, diag);
    let ctx = check_params(model, function, sig, &mut handles, diag);
    let trappable = check_return(model, function, sig, &mut handles, diag);
    let payload = check_record_keys(function, attr, diag);
    for (resource, ty) in handles {
        check_resource_type(resource, ty, &sig.ident, resources, diag);
    }
    if diag.len() != before {
        return None;
    }
    Some(Bound {
        function,
        method: sig.ident.clone(),
        is_async: sig.asyncness.is_some(),
        ctx,
        payload,
        replay: attr.replay,
        trappable,
    })
}

/// The receiver is `&self`: instances are shared by the actor's calls.
fn check_receiver(function: &Function, sig: &syn::Signature, diag: &mut Diagnostics) {
    match sig.inputs.first() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        Some(other) => diag.error_spanned(
            other,
            format!(
                "host function methods take `&self` (instances are shared by the actor's calls): {}",
                expected_signature(function)
            ),
        ),
        None => diag.error(
            sig.ident.span(),
            format!("missing `&self`: expected `{}`", expected_signature(function)),
        ),
    }
}

/// After `&self` and an optional `ctx: &mut HostCtx<'_>` (whether there is one is returned), one parameter per WIT
/// parameter, of its Rust type.
fn check_params<'u>(
    model: &Model,
    function: &Function,
    sig: &'u syn::Signature,
    handles: &mut Vec<(TypeRef, &'u syn::Type)>,
    diag: &mut Diagnostics,
) -> bool {
    let mut params: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .skip(1)
        .filter_map(|a| match a {
            FnArg::Typed(t) => Some(t),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let ctx = params.first().is_some_and(|p| is_host_ctx(&p.ty));
    if ctx {
        params.remove(0);
    }
    if params.len() != function.params.len() {
        let message = format!(
            "WIT function `{}` takes {} parameter(s), this method {}: expected `{}`",
            function.name,
            function.params.len(),
            params.len(),
            expected_signature(function)
        );
        // Too many: the first extra parameter; too few: the end of the parameter list.
        match params.get(function.params.len()) {
            Some(extra) => diag.error_spanned(extra, message),
            None => diag.error(sig.paren_token.span.close(), message),
        }
        return ctx;
    }
    for (user, wit) in params.iter().zip(&function.params) {
        if !matches(model, &user.ty, &wit.ty, handles) {
            let handle = if wit.ty.handles().is_empty() {
                String::new()
            } else {
                format!(
                    " (WIT `{}`: a handle is `Resource<T>`, its value in the actor's `ResourceTable`)",
                    wit.ty.wit()
                )
            };
            diag.error_spanned(
                &user.ty,
                format!(
                    "parameter `{}` of WIT function `{}` is `{}`{handle}",
                    wit.name,
                    function.name,
                    type_string(&wit.ty)
                ),
            );
        }
    }
    ctx
}

/// The return type is the WIT result's Rust type (`()` or none for no result), or `HostResult<T>`
/// (`wasmtime::Result<T>`) around it, whose `Err` traps the call: whether it is that is returned.
fn check_return<'u>(
    model: &Model,
    function: &Function,
    sig: &'u syn::Signature,
    handles: &mut Vec<(TypeRef, &'u syn::Type)>,
    diag: &mut Diagnostics,
) -> bool {
    let (output, trappable) = match &sig.output {
        ReturnType::Type(_, t) => match trap_result(t) {
            Some(inner) => (Some(inner), true),
            None => (Some(&**t), false),
        },
        ReturnType::Default => (None, false),
    };
    let unit = |t: &syn::Type| matches!(t, syn::Type::Tuple(tt) if tt.elems.is_empty());
    let ok = match (output, &function.result) {
        (None, None) => true,
        (Some(t), None) => unit(t),
        (None, Some(_)) => false,
        (Some(t), Some(want)) => matches(model, t, want, handles),
    };
    if !ok {
        let want = function
            .result
            .as_ref()
            .map(type_string)
            .unwrap_or_else(|| "()".into());
        let message = format!("WIT function `{}` returns `{want}`", function.name);
        match &sig.output {
            ReturnType::Default => diag.error(sig.paren_token.span.close(), message),
            ReturnType::Type(_, t) => diag.error_spanned(t, message),
        }
    }
    trappable
}

/// Each key of `#[theater(record(...))]` names a parameter (by its Rust or WIT name) or `result`; returns the
/// payload values by WIT name with their modes.
fn check_record_keys(
    function: &Function,
    attr: &MethodAttr,
    diag: &mut Diagnostics,
) -> Vec<(String, Mode)> {
    let mut payload = Vec::new();
    for (value, mode) in &attr.record {
        let name = unraw(&value.value);
        let known = if name == "result" && function.result.is_some() {
            Some("result")
        } else {
            function
                .params
                .iter()
                .find(|p| unraw(&p.rust_name()) == name || p.name == name)
                .map(|p| p.name.as_str())
        };
        let Some(known) = known else {
            diag.error(
                value.span,
                format!(
                    "`{}` is neither a parameter of `{}` nor `result`",
                    value.value, function.name
                ),
            );
            continue;
        };
        payload.push((known.to_owned(), *mode));
    }
    payload
}

/// One resource has one Rust type: the first `Resource<T>` written for it sets `T`, and every other must be the
/// same type (compared as tokens, as written).
fn check_resource_type(
    resource: TypeRef,
    ty: &syn::Type,
    method: &syn::Ident,
    resources: &mut BTreeMap<TypeRef, ResourceType>,
    diag: &mut Diagnostics,
) {
    let text = |t: &syn::Type| quote::ToTokens::to_token_stream(t).to_string();
    match resources.get(&resource) {
        Some(first) if text(&first.ty) != text(ty) => diag.error_spanned(
            ty,
            format!(
                "resource `{}` has one Rust type: `{}` in `{}`, `{}` here",
                resource.name,
                text(&first.ty).replace(' ', ""),
                first.method,
                text(ty).replace(' ', "")
            ),
        ),
        Some(_) => {}
        None => {
            resources.insert(
                resource,
                ResourceType {
                    ty: ty.clone(),
                    method: method.clone(),
                },
            );
        }
    }
}

/// The `T` of `HostResult<T>` (`theater_runtime::HostResult`, by its last segment) or `wasmtime::Result<T>` (a
/// path whose second-to-last segment is `wasmtime`), with one type argument.
fn trap_result(ty: &syn::Type) -> Option<&syn::Type> {
    let syn::Type::Path(p) = ty else { return None };
    let segments: Vec<_> = p.path.segments.iter().collect();
    let last = segments.last()?;
    let wasmtime_result = segments.len() >= 2
        && last.ident == "Result"
        && segments[segments.len() - 2].ident == "wasmtime";
    if !(wasmtime_result || last.ident == "HostResult") {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [GenericArgument::Type(t)] => Some(t),
        _ => None,
    }
}

/// Whether `ty` is `&mut HostCtx<'_>` (by its last path segment).
fn is_host_ctx(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Reference(r) => last_ident(&r.elem).is_some_and(|(i, _)| i == "HostCtx"),
        _ => false,
    }
}

fn last_ident(ty: &syn::Type) -> Option<(String, Vec<&syn::Type>)> {
    match ty {
        syn::Type::Path(p) if p.qself.is_none() => {
            let seg = p.path.segments.last()?;
            let args = match &seg.arguments {
                PathArguments::AngleBracketed(a) => a
                    .args
                    .iter()
                    .filter_map(|a| match a {
                        GenericArgument::Type(t) => Some(t),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Some((seg.ident.to_string(), args))
        }
        syn::Type::Group(g) => last_ident(&g.elem),
        syn::Type::Paren(p) => last_ident(&p.elem),
        _ => None,
    }
}

/// Whether the user's type is the Rust type of `want` (syntactically; rustc checks the generated call too). The
/// `T` of each `Resource<T>` matched against a handle is pushed to `handles` with the resource it names.
pub fn matches<'u>(
    model: &Model,
    user: &'u syn::Type,
    want: &Type,
    handles: &mut Vec<(TypeRef, &'u syn::Type)>,
) -> bool {
    if let syn::Type::Group(g) = user {
        return matches(model, &g.elem, want, handles);
    }
    if let syn::Type::Paren(p) = user {
        return matches(model, &p.elem, want, handles);
    }
    let prim = |name: &str| last_ident(user).is_some_and(|(i, args)| i == name && args.is_empty());
    let mut generic = |name: &str, wants: &[Option<&Type>]| {
        last_ident(user).is_some_and(|(i, args)| {
            i == name
                && args.len() == wants.len()
                && args.iter().zip(wants).all(|(a, w)| match w {
                    Some(w) => matches(model, a, w, handles),
                    None => matches!(a, syn::Type::Tuple(t) if t.elems.is_empty()),
                })
        })
    };
    match want {
        Type::Bool => prim("bool"),
        Type::U8 => prim("u8"),
        Type::U16 => prim("u16"),
        Type::U32 => prim("u32"),
        Type::U64 => prim("u64"),
        Type::S8 => prim("i8"),
        Type::S16 => prim("i16"),
        Type::S32 => prim("i32"),
        Type::S64 => prim("i64"),
        Type::F32 => prim("f32"),
        Type::F64 => prim("f64"),
        Type::Char => prim("char"),
        Type::String => prim("String"),
        Type::List(t) => generic("Vec", &[Some(t)]),
        Type::Option(t) => generic("Option", &[Some(t)]),
        Type::Result { ok, err } => generic("Result", &[ok.as_deref(), err.as_deref()]),
        Type::Tuple(ts) => match user {
            syn::Type::Tuple(t) => {
                t.elems.len() == ts.len()
                    && t.elems
                        .iter()
                        .zip(ts)
                        .all(|(u, w)| matches(model, u, w, handles))
            }
            _ => false,
        },
        Type::Own(r) | Type::Borrow(r) => match last_ident(user) {
            Some((i, args)) if i == "Resource" && args.len() == 1 => {
                handles.push((r.clone(), args[0]));
                true
            }
            _ => false,
        },
        Type::Named(r) => {
            if prim(&r.rust_name()) {
                return true;
            }
            match model
                .interface(&r.iface)
                .and_then(|i| i.type_def(&r.name))
                .map(|d| &d.kind)
            {
                Some(TypeDefKind::Use(inner)) => {
                    matches(model, user, &Type::Named(inner.clone()), handles)
                }
                Some(TypeDefKind::Alias(t)) => matches(model, user, t, handles),
                _ => false,
            }
        }
    }
}

/// The candidate nearest to `name` by edit distance, if reasonably near.
fn nearest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 2).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_name() {
        let names = [
            "random-bytes",
            "random-range",
            "random-float",
            "generate-uuid",
        ];
        assert_eq!(
            nearest("random-byte", names.iter().copied()),
            Some("random-bytes")
        );
        assert_eq!(nearest("zzz", names.iter().copied()), None);
    }
}
