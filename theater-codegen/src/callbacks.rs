//! The callback interfaces a handler calls (`export = ...`), analysed before anything is emitted: which functions
//! follow the Theater callback convention (`func(state: option<list<u8>>, params: tuple<...>) ->
//! result<tuple<option<list<u8>>, tuple<R>?>, string>`), their own parameters and result, and which of those are
//! payload values (handlers.md §1.1). `emit/exports.rs` emits from this.

use crate::model::{Function, Interface, Model, Type, TypeDefKind, camel_name};

/// A callback in the Theater convention: its parameter tuple's elements and its own result, if any.
pub struct Callback<'a> {
    pub function: &'a Function,
    pub params: &'a [Type],
    pub value: Option<&'a Type>,
}

/// Splits every function of `iface` into the convention, or names the first that does not follow it. An interface
/// with a type named `callbacks` is refused too: its generated `Callbacks` would clash with the callers'; so is
/// a callback whose method would clash with one of the callers' (`new`, `with_timeout`, or another callback's).
pub fn callbacks(iface: &Interface) -> Result<Vec<Callback<'_>>, String> {
    if let Some(t) = iface
        .types
        .iter()
        .find(|t| camel_name(&t.name) == "Callbacks")
    {
        return Err(format!(
            "type `{}` of {} would be generated as `Callbacks`, the name of the callers #[theater_handler(export)] \
             generates in the same module: rename the type",
            t.name,
            iface.name.full()
        ));
    }
    for (i, f) in iface.functions.iter().enumerate() {
        let method = f.rust_name();
        if ["new", "with_timeout"].contains(&method.as_str()) {
            return Err(format!(
                "callback `{}` of {} would be generated as `Callbacks::{method}`, a method the callers already \
                 have: rename the callback",
                f.name,
                iface.name.full()
            ));
        }
        if let Some(g) = iface.functions[..i]
            .iter()
            .find(|g| g.rust_name() == method)
        {
            return Err(format!(
                "callbacks `{}` and `{}` of {} would both be generated as `Callbacks::{method}`: rename one",
                g.name,
                f.name,
                iface.name.full()
            ));
        }
    }
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
