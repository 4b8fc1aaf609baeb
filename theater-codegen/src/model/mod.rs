//! The owned model of a WIT package: interfaces, functions and types, built once from a `wit_parser::Resolve`
//! (in `build.rs`) so that checks and emitters never see wit-parser types. Names follow `names.rs`
//! ([`rust_ident`]).

mod build;
mod names;

use std::collections::BTreeMap;

use heck::{ToShoutySnakeCase, ToSnakeCase, ToUpperCamelCase};

pub use names::rust_ident;

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
