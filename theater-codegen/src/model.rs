//! The owned model of a WIT package: interfaces, functions and types, built once from a `wit_parser::Resolve`
//! so that checks and emitters never see wit-parser types.

use std::collections::BTreeMap;

use heck::{ToShoutySnakeCase, ToSnakeCase, ToUpperCamelCase};
use wit_parser::{Resolve, TypeDefKind as WitKind, TypeOwner};

/// An interface's fully qualified name: `theater:simple/random` is namespace `theater`, package `simple`,
/// name `random`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfaceName {
    /// WIT namespace, e.g. `theater`.
    pub namespace: String,
    /// WIT package name, e.g. `simple`.
    pub package: String,
    /// Interface name, e.g. `random`.
    pub name: String,
}

impl IfaceName {
    /// Parses `ns:pkg/name`, ignoring an `@version` suffix.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.split('@').next()?;
        let (pkg, name) = s.split_once('/')?;
        let (namespace, package) = pkg.split_once(':')?;
        if [namespace, package, name].iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(Self {
            namespace: namespace.into(),
            package: package.into(),
            name: name.into(),
        })
    }

    /// `ns:pkg/name`.
    pub fn full(&self) -> String {
        format!("{}:{}/{}", self.namespace, self.package, self.name)
    }

    /// Rust module path segments: `["theater", "simple", "random"]` (snake case).
    pub fn module_path(&self) -> [String; 3] {
        [
            self.namespace.to_snake_case(),
            self.package.to_snake_case(),
            self.name.to_snake_case(),
        ]
    }
}

/// A WIT type, as used in a function signature or a field.
#[derive(Clone, Debug, PartialEq)]
pub enum Type {
    Bool,
    U8,
    U16,
    U32,
    U64,
    S8,
    S16,
    S32,
    S64,
    F32,
    F64,
    Char,
    String,
    List(Box<Type>),
    Option(Box<Type>),
    Result {
        ok: Option<Box<Type>>,
        err: Option<Box<Type>>,
    },
    Tuple(Vec<Type>),
    /// A named type defined (or `use`d) in an interface.
    Named(TypeRef),
}

/// A reference to a named type: the interface it is reachable from, and its WIT name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TypeRef {
    /// The interface whose module holds it (its definition or a `use`).
    pub iface: IfaceName,
    /// The WIT name, e.g. `chain-event`.
    pub name: String,
}

impl TypeRef {
    /// The Rust type name (`ChainEvent`).
    pub fn rust_name(&self) -> String {
        self.name.to_upper_camel_case()
    }
}

/// A named type definition of an interface.
#[derive(Clone, Debug)]
pub struct TypeDef {
    /// WIT name.
    pub name: String,
    /// WIT doc comment.
    pub docs: Option<String>,
    /// What it is.
    pub kind: TypeDefKind,
}

/// The kinds of named type definitions.
#[derive(Clone, Debug)]
pub enum TypeDefKind {
    Record(Vec<Field>),
    Variant(Vec<Case>),
    Enum(Vec<Case>),
    Flags(Vec<Case>),
    /// `type x = ...` within the interface.
    Alias(Type),
    /// `use other.{x}`: the definition lives in another interface.
    Use(TypeRef),
}

/// A record field.
#[derive(Clone, Debug)]
pub struct Field {
    pub name: String,
    pub docs: Option<String>,
    pub ty: Type,
}

/// A variant case, enum case or flag (`ty` is `None` for the latter two and for payload-less cases).
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub docs: Option<String>,
    pub ty: Option<Type>,
}

/// A function parameter.
#[derive(Clone, Debug)]
pub struct Param {
    /// WIT name (`store-id`).
    pub name: String,
    pub ty: Type,
}

impl Param {
    /// Rust name (`store_id`), keywords escaped.
    pub fn rust_name(&self) -> String {
        rust_ident(&self.name.to_snake_case())
    }
}

/// A function of an interface.
#[derive(Clone, Debug)]
pub struct Function {
    /// WIT name (`random-bytes`).
    pub name: String,
    pub docs: Option<String>,
    pub params: Vec<Param>,
    pub result: Option<Type>,
}

impl Function {
    /// The Rust method name (`random_bytes`).
    pub fn rust_name(&self) -> String {
        rust_ident(&self.name.to_snake_case())
    }

    /// The name of its generated spec static (`RANDOM_BYTES`).
    pub fn spec_name(&self) -> String {
        format!("{}_SPEC", self.name.to_shouty_snake_case())
    }
}

/// An interface.
#[derive(Clone, Debug)]
pub struct Interface {
    pub name: IfaceName,
    pub docs: Option<String>,
    pub functions: Vec<Function>,
    /// Named types, in WIT order (including `use`d ones).
    pub types: Vec<TypeDef>,
}

impl Interface {
    /// A named type of this interface.
    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.types.iter().find(|t| t.name == name)
    }
}

/// Every interface of a resolved WIT package set, by name.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub interfaces: BTreeMap<IfaceName, Interface>,
}

impl Model {
    /// Builds the model of every named interface in `resolve`.
    ///
    /// # Errors
    /// A WIT construct the generator does not support (resources, futures, streams, maps, fixed-length lists,
    /// error-context), named with its interface.
    pub fn build(resolve: &Resolve) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let mut interfaces = BTreeMap::new();
        for (id, iface) in resolve.interfaces.iter() {
            let Some(name) = iface_name(resolve, id) else {
                continue;
            };
            let mut cx = Cx {
                resolve,
                errors: &mut errors,
                at: name.full(),
            };
            let functions = iface
                .functions
                .values()
                .map(|f| Function {
                    name: f.name.clone(),
                    docs: f.docs.contents.clone(),
                    params: f
                        .params
                        .iter()
                        .map(|p| Param {
                            name: p.name.clone(),
                            ty: cx.ty(&p.ty),
                        })
                        .collect(),
                    result: f.result.as_ref().map(|t| cx.ty(t)),
                })
                .collect();
            let types = iface
                .types
                .iter()
                .map(|(tname, tid)| {
                    let def = &resolve.types[*tid];
                    TypeDef {
                        name: tname.clone(),
                        docs: def.docs.contents.clone(),
                        kind: cx.type_def(def),
                    }
                })
                .collect();
            interfaces.insert(
                name.clone(),
                Interface {
                    name,
                    docs: iface.docs.contents.clone(),
                    functions,
                    types,
                },
            );
        }
        if errors.is_empty() {
            Ok(Self { interfaces })
        } else {
            Err(errors)
        }
    }

    /// The interface named `name` (version ignored).
    pub fn interface(&self, name: &IfaceName) -> Option<&Interface> {
        self.interfaces.get(name)
    }

    /// Follows `use`s and aliases to the definition a reference names.
    pub fn resolve_ref(&self, r: &TypeRef) -> Option<&TypeDef> {
        let def = self.interfaces.get(&r.iface)?.type_def(&r.name)?;
        match &def.kind {
            TypeDefKind::Use(inner) => self.resolve_ref(inner),
            _ => Some(def),
        }
    }

    /// The interfaces `roots` need, transitively through `use`s and type references, in a stable order.
    pub fn closure(&self, roots: &[IfaceName]) -> Vec<IfaceName> {
        let mut seen: Vec<IfaceName> = Vec::new();
        let mut stack: Vec<IfaceName> = roots.to_vec();
        while let Some(name) = stack.pop() {
            if seen.contains(&name) {
                continue;
            }
            if let Some(iface) = self.interfaces.get(&name) {
                let mut refs = Vec::new();
                for f in &iface.functions {
                    f.params.iter().for_each(|p| collect_refs(&p.ty, &mut refs));
                    if let Some(r) = &f.result {
                        collect_refs(r, &mut refs);
                    }
                }
                for t in &iface.types {
                    match &t.kind {
                        TypeDefKind::Record(fields) => {
                            fields.iter().for_each(|f| collect_refs(&f.ty, &mut refs))
                        }
                        TypeDefKind::Variant(cases) => cases
                            .iter()
                            .filter_map(|c| c.ty.as_ref())
                            .for_each(|t| collect_refs(t, &mut refs)),
                        TypeDefKind::Alias(t) => collect_refs(t, &mut refs),
                        TypeDefKind::Use(r) => refs.push(r.clone()),
                        TypeDefKind::Enum(_) | TypeDefKind::Flags(_) => {}
                    }
                }
                stack.extend(refs.into_iter().map(|r| r.iface));
            }
            seen.push(name);
        }
        seen.sort();
        seen
    }
}

fn collect_refs(ty: &Type, out: &mut Vec<TypeRef>) {
    match ty {
        Type::List(t) | Type::Option(t) => collect_refs(t, out),
        Type::Result { ok, err } => {
            ok.iter()
                .chain(err.iter())
                .for_each(|t| collect_refs(t, out));
        }
        Type::Tuple(ts) => ts.iter().for_each(|t| collect_refs(t, out)),
        Type::Named(r) => out.push(r.clone()),
        _ => {}
    }
}

/// The name of a named interface.
fn iface_name(resolve: &Resolve, id: wit_parser::InterfaceId) -> Option<IfaceName> {
    let iface = &resolve.interfaces[id];
    let pkg = &resolve.packages[iface.package?];
    Some(IfaceName {
        namespace: pkg.name.namespace.clone(),
        package: pkg.name.name.clone(),
        name: iface.name.clone()?,
    })
}

struct Cx<'a> {
    resolve: &'a Resolve,
    errors: &'a mut Vec<String>,
    at: String,
}

impl Cx<'_> {
    fn unsupported(&mut self, what: &str) -> Type {
        self.errors
            .push(format!("{}: unsupported WIT type: {what}", self.at));
        Type::Tuple(Vec::new())
    }

    fn ty(&mut self, ty: &wit_parser::Type) -> Type {
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
            W::ErrorContext => self.unsupported("error-context"),
            W::Id(id) => {
                let def = &self.resolve.types[*id];
                if let (Some(name), TypeOwner::Interface(owner)) = (&def.name, def.owner)
                    && let Some(iface) = iface_name(self.resolve, owner)
                {
                    return Type::Named(TypeRef {
                        iface,
                        name: name.clone(),
                    });
                }
                self.anonymous(&def.kind)
            }
        }
    }

    fn anonymous(&mut self, kind: &WitKind) -> Type {
        match kind {
            WitKind::List(t) => Type::List(Box::new(self.ty(t))),
            WitKind::Option(t) => Type::Option(Box::new(self.ty(t))),
            WitKind::Result(r) => Type::Result {
                ok: r.ok.as_ref().map(|t| Box::new(self.ty(t))),
                err: r.err.as_ref().map(|t| Box::new(self.ty(t))),
            },
            WitKind::Tuple(t) => Type::Tuple(t.types.iter().map(|t| self.ty(t)).collect()),
            WitKind::Type(t) => self.ty(t),
            other => self.unsupported(&format!("anonymous {}", other.as_str())),
        }
    }

    fn type_def(&mut self, def: &wit_parser::TypeDef) -> TypeDefKind {
        match &def.kind {
            WitKind::Record(r) => TypeDefKind::Record(
                r.fields
                    .iter()
                    .map(|f| Field {
                        name: f.name.clone(),
                        docs: f.docs.contents.clone(),
                        ty: self.ty(&f.ty),
                    })
                    .collect(),
            ),
            WitKind::Variant(v) => TypeDefKind::Variant(
                v.cases
                    .iter()
                    .map(|c| Case {
                        name: c.name.clone(),
                        docs: c.docs.contents.clone(),
                        ty: c.ty.as_ref().map(|t| self.ty(t)),
                    })
                    .collect(),
            ),
            WitKind::Enum(e) => TypeDefKind::Enum(
                e.cases
                    .iter()
                    .map(|c| Case {
                        name: c.name.clone(),
                        docs: c.docs.contents.clone(),
                        ty: None,
                    })
                    .collect(),
            ),
            WitKind::Flags(f) => TypeDefKind::Flags(
                f.flags
                    .iter()
                    .map(|c| Case {
                        name: c.name.clone(),
                        docs: c.docs.contents.clone(),
                        ty: None,
                    })
                    .collect(),
            ),
            WitKind::Type(t) => match (self.ty(t), t) {
                // `use other.{x}`: a named type owned by another interface is re-exported, not redefined.
                (Type::Named(r), wit_parser::Type::Id(target))
                    if self.resolve.types[*target].owner != def.owner =>
                {
                    TypeDefKind::Use(r)
                }
                (other, _) => TypeDefKind::Alias(other),
            },
            WitKind::List(_) | WitKind::Option(_) | WitKind::Result(_) | WitKind::Tuple(_) => {
                TypeDefKind::Alias(self.anonymous(&def.kind))
            }
            other => {
                self.unsupported(other.as_str());
                TypeDefKind::Alias(Type::Tuple(Vec::new()))
            }
        }
    }
}

/// Escapes a Rust keyword (`type` → `r#type`); the result is a valid identifier string for `format_ident!`.
pub fn rust_ident(s: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn",
        "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
        "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use",
        "where", "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final",
        "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
    ];
    if KEYWORDS.contains(&s) {
        format!("r#{s}")
    } else {
        s.to_owned()
    }
}
