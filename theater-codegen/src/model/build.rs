//! Building the [`Model`] from a `wit_parser::Resolve`: the only place that sees wit-parser types.
//!
//! Only what a handler can reach is modelled: every function and type of the interfaces it names (the roots),
//! and, transitively, the named types those use, wherever they live. A construct the generator does not serve
//! (futures, streams, error-context, `@unstable` items, ...) is an error only when it is reached, and the error
//! names the construct and the function or type it was reached from.

use std::collections::{BTreeMap, HashSet};

use wit_parser::{
    FunctionKind, Handle, InterfaceId, Resolve, Stability, TypeDefKind as WitKind, TypeId,
    TypeOwner,
};

use super::{
    Case, Field, Function, IfaceName, Interface, Model, Param, ResourceFunction,
    ResourceFunctionKind, Type, TypeDef, TypeDefKind, TypeRef,
};

/// Why component-model async constructs are refused.
const ASYNC: &str = "futures, streams and error-context are component-model async, which #[theater_handler] \
                     does not serve";

impl Model {
    /// The model of every named interface in `resolve`, each one a root (the fuzz harness in
    /// `fuzz/src/harness.rs` and its stable replay build this). A handler's model holds only what the
    /// interfaces it names reach: see [`Builder`].
    ///
    /// # Errors
    /// Every unsupported construct in any interface, as [`Builder::add_root`] reports them.
    pub fn build(resolve: &Resolve) -> Result<Self, Vec<String>> {
        let mut builder = Builder::new(resolve);
        let mut errors = Vec::new();
        for (id, iface) in resolve.interfaces.iter() {
            if iface.name.is_some()
                && let Err(e) = builder.add_root(id)
            {
                errors.extend(e);
            }
        }
        if errors.is_empty() {
            Ok(builder.finish())
        } else {
            Err(errors)
        }
    }
}

/// Builds a [`Model`] one root interface at a time, so that each root's errors can be reported at the attribute
/// value that named it. Types reached from several roots are modelled once.
pub struct Builder<'r> {
    resolve: &'r Resolve,
    interfaces: BTreeMap<IfaceName, Partial>,
    /// Named types modelled (or being modelled).
    seen: HashSet<TypeId>,
    roots: HashSet<InterfaceId>,
}

/// An interface being modelled: its types keyed by their position in the WIT, so the model keeps WIT order.
struct Partial {
    docs: Option<String>,
    functions: Vec<Function>,
    types: BTreeMap<usize, TypeDef>,
}

/// Where a type occurs. `site` is the function or type that holds it (``function `read` of a:b/i``) and `what`
/// the place within it (``parameter `s` ``), for messages; `reach` is the root item that named types reached from
/// here are attributed to (the function itself, or the root's type that leads to them).
#[derive(Clone, Copy)]
struct At<'a> {
    site: &'a str,
    what: &'a str,
    reach: &'a str,
}

impl<'r> Builder<'r> {
    /// An empty model over `resolve`.
    pub fn new(resolve: &'r Resolve) -> Self {
        Self {
            resolve,
            interfaces: BTreeMap::new(),
            seen: HashSet::new(),
            roots: HashSet::new(),
        }
    }

    /// Models the interface `id` with all its functions and types, and the types they reach.
    ///
    /// # Errors
    /// One message per unsupported construct reached (each naming the construct and the function or type that
    /// holds it); the interface is unnamed; two versions of one package are reached.
    pub fn add_root(&mut self, id: InterfaceId) -> Result<IfaceName, Vec<String>> {
        let iface = &self.resolve.interfaces[id];
        let Some(name) = iface_name(self.resolve, id) else {
            return Err(vec![
                "internal error in theater-codegen: an unnamed interface was named".into(),
            ]);
        };
        if !self.roots.insert(id) {
            return Ok(name);
        }
        let mut errors = Vec::new();
        let full = name.versioned();
        if let Some(feature) = unstable(&iface.stability) {
            errors.push(format!(
                "interface {full} is `@unstable(feature = {feature})`: unstable WIT items are not supported"
            ));
        }
        self.partial(&name, id);
        for &tid in iface.types.values() {
            self.named(tid, "", &mut errors);
        }
        let mut functions = Vec::new();
        for f in iface.functions.values() {
            let site = format!("function `{}` of {full}", f.name);
            let resource = |id: &TypeId, kind| {
                Some(ResourceFunction {
                    resource: self.resolve.types[*id].name.clone().unwrap_or_default(),
                    kind,
                })
            };
            let resource = match &f.kind {
                FunctionKind::Freestanding => None,
                FunctionKind::Constructor(id) => resource(id, ResourceFunctionKind::Constructor),
                FunctionKind::Method(id) => resource(id, ResourceFunctionKind::Method),
                FunctionKind::Static(id) => resource(id, ResourceFunctionKind::Static),
                FunctionKind::AsyncFreestanding
                | FunctionKind::AsyncMethod(_)
                | FunctionKind::AsyncStatic(_) => {
                    errors.push(format!(
                        "{site} is an `async func`: component-model async functions are not supported"
                    ));
                    continue;
                }
            };
            if let Some(feature) = unstable(&f.stability) {
                errors.push(format!(
                    "{site} is `@unstable(feature = {feature})`: unstable WIT items are not supported"
                ));
                continue;
            }
            let params = f
                .params
                .iter()
                .map(|p| {
                    let what = format!("parameter `{}`", p.name);
                    let at = At {
                        site: &site,
                        what: &what,
                        reach: &site,
                    };
                    Param {
                        name: p.name.clone(),
                        ty: self.ty(&p.ty, at, &mut errors),
                    }
                })
                .collect();
            let at = At {
                site: &site,
                what: "the result",
                reach: &site,
            };
            let result = f.result.as_ref().map(|t| self.ty(t, at, &mut errors));
            functions.push(Function {
                name: f.name.clone(),
                docs: f.docs.contents.clone(),
                params,
                result,
                resource,
            });
        }
        // Each resource the interface defines has a destructor, served by an optional method.
        for (tname, &tid) in &iface.types {
            if matches!(self.resolve.types[tid].kind, WitKind::Resource) {
                functions.push(Function {
                    name: format!("[resource-drop]{tname}"),
                    docs: None,
                    params: vec![Param {
                        name: "self".into(),
                        ty: Type::Own(TypeRef {
                            iface: name.clone(),
                            name: tname.clone(),
                        }),
                    }],
                    result: None,
                    resource: Some(ResourceFunction {
                        resource: tname.clone(),
                        kind: ResourceFunctionKind::Drop,
                    }),
                });
            }
        }
        if let Some(partial) = self.interfaces.get_mut(&name) {
            partial.functions = functions;
        }
        errors.extend(self.version_clashes());
        if errors.is_empty() {
            Ok(name)
        } else {
            Err(errors)
        }
    }

    /// The model of every root added and of what they reach.
    pub fn finish(self) -> Model {
        let interfaces = self
            .interfaces
            .into_iter()
            .map(|(name, p)| {
                let iface = Interface {
                    name: name.clone(),
                    docs: p.docs,
                    functions: p.functions,
                    types: p.types.into_values().collect(),
                };
                (name, iface)
            })
            .collect();
        Model { interfaces }
    }

    fn partial(&mut self, name: &IfaceName, id: InterfaceId) -> &mut Partial {
        let docs = &self.resolve.interfaces[id].docs;
        self.interfaces
            .entry(name.clone())
            .or_insert_with(|| Partial {
                docs: docs.contents.clone(),
                functions: Vec::new(),
                types: BTreeMap::new(),
            })
    }

    /// Two versions of one package would share a Rust module.
    fn version_clashes(&self) -> Option<String> {
        let names: Vec<&IfaceName> = self.interfaces.keys().collect();
        let clash = names.windows(2).find(|w| {
            w[0].namespace == w[1].namespace
                && w[0].package == w[1].package
                && w[0].version != w[1].version
        })?;
        Some(format!(
            "two versions of the WIT package `{}:{}` are reachable ({} and {}): one handler can use only one",
            clash[0].namespace,
            clash[0].package,
            clash[0].versioned(),
            clash[1].versioned()
        ))
    }

    /// Models the named type `id` in its interface, once. `origin` is the root item it is reached from, if it is
    /// not a type of a root interface itself.
    fn named(&mut self, id: TypeId, origin: &str, errors: &mut Vec<String>) {
        if !self.seen.insert(id) {
            return;
        }
        let resolve = self.resolve;
        let def = &resolve.types[id];
        let (Some(tname), TypeOwner::Interface(owner)) = (&def.name, def.owner) else {
            return;
        };
        let Some(iname) = iface_name(resolve, owner) else {
            return;
        };
        let mut site = format!("type `{tname}` of {}", iname.versioned());
        if !origin.is_empty() {
            site = format!("{site} (used by {origin})");
        }
        if let Some(feature) = unstable(&def.stability) {
            errors.push(format!(
                "{site} is `@unstable(feature = {feature})`: unstable WIT items are not supported"
            ));
        }
        // Types reached from here are attributed to the same root item: it is what the user can act on.
        let reach = if origin.is_empty() { &site } else { origin };
        let kind = self.type_def(def, &site, reach, errors);
        let index = resolve.interfaces[owner]
            .types
            .get_index_of(tname.as_str())
            .unwrap_or(usize::MAX);
        let def = TypeDef {
            name: tname.clone(),
            docs: def.docs.contents.clone(),
            kind,
        };
        self.partial(&iname, owner).types.insert(index, def);
    }

    fn unsupported(
        &self,
        construct: String,
        why: &str,
        at: At<'_>,
        errors: &mut Vec<String>,
    ) -> Type {
        errors.push(format!(
            "{}: `{construct}` ({}) is not supported: {why}",
            at.site, at.what
        ));
        Type::Tuple(Vec::new())
    }

    fn ty(&mut self, ty: &wit_parser::Type, at: At<'_>, errors: &mut Vec<String>) -> Type {
        use wit_parser::Type as W;
        match ty {
            W::Bool => Type::Bool,
            W::U8 => Type::U8,
            W::U16 => Type::U16,
            W::U32 => Type::U32,
            W::U64 => Type::U64,
            W::S8 => Type::S8,
            W::S16 => Type::S16,
            W::S32 => Type::S32,
            W::S64 => Type::S64,
            W::F32 => Type::F32,
            W::F64 => Type::F64,
            W::Char => Type::Char,
            W::String => Type::String,
            W::ErrorContext => self.unsupported("error-context".into(), ASYNC, at, errors),
            W::Id(id) => {
                let def = &self.resolve.types[*id];
                if let (Some(name), TypeOwner::Interface(owner)) = (&def.name, def.owner)
                    && let Some(iface) = iface_name(self.resolve, owner)
                {
                    self.named(*id, at.reach, errors);
                    return Type::Named(TypeRef {
                        iface,
                        name: name.clone(),
                    });
                }
                self.anonymous(&def.kind, at, errors)
            }
        }
    }

    fn anonymous(&mut self, kind: &WitKind, at: At<'_>, errors: &mut Vec<String>) -> Type {
        match kind {
            WitKind::List(t) => Type::List(Box::new(self.ty(t, at, errors))),
            WitKind::Option(t) => Type::Option(Box::new(self.ty(t, at, errors))),
            WitKind::Result(r) => Type::Result {
                ok: r.ok.as_ref().map(|t| Box::new(self.ty(t, at, errors))),
                err: r.err.as_ref().map(|t| Box::new(self.ty(t, at, errors))),
            },
            WitKind::Tuple(t) => {
                Type::Tuple(t.types.iter().map(|t| self.ty(t, at, errors)).collect())
            }
            WitKind::Type(t) => self.ty(t, at, errors),
            WitKind::Future(_) | WitKind::Stream(_) => {
                self.unsupported(wit_kind_text(self.resolve, kind), ASYNC, at, errors)
            }
            WitKind::Handle(Handle::Own(id)) => match self.resource(*id, at, errors) {
                Some(r) => Type::Own(r),
                None => Type::Tuple(Vec::new()),
            },
            WitKind::Handle(Handle::Borrow(id)) => match self.resource(*id, at, errors) {
                Some(r) => Type::Borrow(r),
                None => Type::Tuple(Vec::new()),
            },
            other => {
                let why = format!("{} types are not supported yet", other.as_str());
                self.unsupported(wit_kind_text(self.resolve, kind), &why, at, errors)
            }
        }
    }

    /// The resource a handle names, where it is defined (following `use`s), modelled like any named type.
    fn resource(&mut self, id: TypeId, at: At<'_>, errors: &mut Vec<String>) -> Option<TypeRef> {
        let mut id = id;
        while let WitKind::Type(wit_parser::Type::Id(next)) = &self.resolve.types[id].kind {
            id = *next;
        }
        let def = &self.resolve.types[id];
        let (Some(name), TypeOwner::Interface(owner)) = (&def.name, def.owner) else {
            errors.push(format!(
                "{}: {} names a resource outside any named interface, which is not supported",
                at.site, at.what
            ));
            return None;
        };
        let iface = iface_name(self.resolve, owner)?;
        self.named(id, at.reach, errors);
        Some(TypeRef {
            iface,
            name: name.clone(),
        })
    }

    /// The definition of the named type `def`; `site` names it, and named types it reaches are attributed to
    /// `reach`.
    fn type_def(
        &mut self,
        def: &wit_parser::TypeDef,
        site: &str,
        reach: &str,
        errors: &mut Vec<String>,
    ) -> TypeDefKind {
        match &def.kind {
            WitKind::Record(r) => TypeDefKind::Record(
                r.fields
                    .iter()
                    .map(|f| {
                        let what = format!("field `{}`", f.name);
                        let at = At {
                            site,
                            what: &what,
                            reach,
                        };
                        Field {
                            name: f.name.clone(),
                            docs: f.docs.contents.clone(),
                            ty: self.ty(&f.ty, at, errors),
                        }
                    })
                    .collect(),
            ),
            WitKind::Variant(v) => TypeDefKind::Variant(
                v.cases
                    .iter()
                    .map(|c| {
                        let what = format!("case `{}`", c.name);
                        let at = At {
                            site,
                            what: &what,
                            reach,
                        };
                        let ty = c.ty.as_ref().map(|t| self.ty(t, at, errors));
                        case(&c.name, &c.docs, ty)
                    })
                    .collect(),
            ),
            WitKind::Enum(e) => TypeDefKind::Enum(
                e.cases
                    .iter()
                    .map(|c| case(&c.name, &c.docs, None))
                    .collect(),
            ),
            WitKind::Flags(f) => TypeDefKind::Flags(
                f.flags
                    .iter()
                    .map(|c| case(&c.name, &c.docs, None))
                    .collect(),
            ),
            WitKind::Resource => TypeDefKind::Resource,
            WitKind::Unknown => {
                errors.push(format!(
                    "internal error in theater-codegen: {site} is of an unresolved kind"
                ));
                TypeDefKind::Alias(Type::Tuple(Vec::new()))
            }
            // `type x = ...`, including `use other.{x}` and anonymous containers.
            kind => {
                let at = At {
                    site,
                    what: "its definition",
                    reach,
                };
                match (self.anonymous(kind, at, errors), kind) {
                    // `use other.{x}`: a named type owned by another interface is re-exported, not redefined.
                    (Type::Named(r), WitKind::Type(wit_parser::Type::Id(target)))
                        if self.resolve.types[*target].owner != def.owner =>
                    {
                        TypeDefKind::Use(r)
                    }
                    (ty, _) => TypeDefKind::Alias(ty),
                }
            }
        }
    }
}

/// The feature of an `@unstable` item.
fn unstable(stability: &Stability) -> Option<&str> {
    match stability {
        Stability::Unstable { feature, .. } => Some(feature),
        _ => None,
    }
}

/// The name of a named interface, with its package's version; `None` for an interface without a name.
pub(crate) fn iface_name(resolve: &Resolve, id: InterfaceId) -> Option<IfaceName> {
    let iface = &resolve.interfaces[id];
    let pkg = &resolve.packages[iface.package?];
    Some(IfaceName {
        namespace: pkg.name.namespace.clone(),
        package: pkg.name.name.clone(),
        name: iface.name.clone()?,
        version: pkg.name.version.as_ref().map(ToString::to_string),
    })
}

/// A wit-parser type as WIT writes it (`stream<u8>`, `own<file>`), for messages.
fn wit_text(resolve: &Resolve, ty: &wit_parser::Type) -> String {
    use wit_parser::Type as W;
    match ty {
        W::Bool => "bool".into(),
        W::U8 => "u8".into(),
        W::U16 => "u16".into(),
        W::U32 => "u32".into(),
        W::U64 => "u64".into(),
        W::S8 => "s8".into(),
        W::S16 => "s16".into(),
        W::S32 => "s32".into(),
        W::S64 => "s64".into(),
        W::F32 => "f32".into(),
        W::F64 => "f64".into(),
        W::Char => "char".into(),
        W::String => "string".into(),
        W::ErrorContext => "error-context".into(),
        W::Id(id) => {
            let def = &resolve.types[*id];
            match &def.name {
                Some(name) => name.clone(),
                None => wit_kind_text(resolve, &def.kind),
            }
        }
    }
}

/// An anonymous wit-parser type as WIT writes it.
fn wit_kind_text(resolve: &Resolve, kind: &WitKind) -> String {
    let t = |ty: &wit_parser::Type| wit_text(resolve, ty);
    let opt = |ty: &Option<wit_parser::Type>| ty.as_ref().map(t);
    let resource = |id: &TypeId| resolve.types[*id].name.clone().unwrap_or_default();
    match kind {
        WitKind::List(e) => format!("list<{}>", t(e)),
        WitKind::FixedLengthList(e, n) => format!("list<{}, {n}>", t(e)),
        WitKind::Map(k, v) => format!("map<{}, {}>", t(k), t(v)),
        WitKind::Option(e) => format!("option<{}>", t(e)),
        WitKind::Result(r) => match (opt(&r.ok), opt(&r.err)) {
            (None, None) => "result".into(),
            (Some(ok), None) => format!("result<{ok}>"),
            (ok, Some(err)) => format!("result<{}, {err}>", ok.unwrap_or_else(|| "_".into())),
        },
        WitKind::Tuple(ts) => format!(
            "tuple<{}>",
            ts.types.iter().map(t).collect::<Vec<_>>().join(", ")
        ),
        WitKind::Future(e) => opt(e).map_or("future".into(), |e| format!("future<{e}>")),
        WitKind::Stream(e) => opt(e).map_or("stream".into(), |e| format!("stream<{e}>")),
        WitKind::Handle(Handle::Own(r)) => format!("own<{}>", resource(r)),
        WitKind::Handle(Handle::Borrow(r)) => format!("borrow<{}>", resource(r)),
        WitKind::Type(ty) => t(ty),
        other => other.as_str().into(),
    }
}

/// A variant case, enum case or flag of the model (variants carry `ty`).
fn case(name: &str, docs: &wit_parser::Docs, ty: Option<Type>) -> Case {
    Case {
        name: name.to_owned(),
        docs: docs.contents.clone(),
        ty,
    }
}
