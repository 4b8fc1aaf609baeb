//! The owned model of what a handler needs from a WIT package: the interfaces it names and the types they reach,
//! built once from a `wit_parser::Resolve` (in `build.rs`, [`Builder`]) so that checks and emitters never see
//! wit-parser types. Rust names follow `names.rs` ([`snake_name`], [`camel_name`]).

mod build;
mod names;

use std::collections::BTreeMap;

use heck::ToShoutySnakeCase;

pub use build::Builder;
pub(crate) use build::iface_name;
pub use names::{camel_name, rust_ident, snake_name, unraw};

/// An interface's fully qualified name: `wasi:cli/environment@0.2.6` is namespace `wasi`, package `cli`, name
/// `environment`, version `0.2.6` (the package's; `None` for an unversioned package such as `theater:simple`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfaceName {
    /// WIT namespace, e.g. `theater`.
    pub namespace: String,
    /// WIT package name, e.g. `simple`.
    pub package: String,
    /// Interface name, e.g. `random`.
    pub name: String,
    /// The package's version, e.g. `0.2.6`.
    pub version: Option<String>,
}

impl IfaceName {
    /// Parses `ns:pkg/name` or `ns:pkg/name@version`.
    pub fn parse(s: &str) -> Option<Self> {
        let (s, version) = match s.split_once('@') {
            Some((s, v)) if !v.is_empty() => (s, Some(v.to_owned())),
            Some(_) => return None,
            None => (s, None),
        };
        let (pkg, name) = s.split_once('/')?;
        let (namespace, package) = pkg.split_once(':')?;
        if [namespace, package, name].iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(Self {
            namespace: namespace.into(),
            package: package.into(),
            name: name.into(),
            version,
        })
    }

    /// `ns:pkg/name`, without the version: the name `Handler::imports` returns and chain event types start with
    /// (the runtime matches a component's imports without their version).
    pub fn full(&self) -> String {
        format!("{}:{}/{}", self.namespace, self.package, self.name)
    }

    /// `ns:pkg/name@version`, or `ns:pkg/name` for an unversioned package: the name as WIT writes it.
    pub fn versioned(&self) -> String {
        match &self.version {
            Some(v) => format!("{}@{v}", self.full()),
            None => self.full(),
        }
    }

    /// Rust module path segments, escaped ([`snake_name`]): `["theater", "simple", "random"]`.
    pub fn module_path(&self) -> [String; 3] {
        [
            snake_name(&self.namespace),
            snake_name(&self.package),
            snake_name(&self.name),
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
    /// `own<r>`: a resource handle the receiver owns (wasmtime's `Resource<T>`); `r` names the resource where it
    /// is defined.
    Own(TypeRef),
    /// `borrow<r>`: a handle lent for the call (also `Resource<T>`).
    Borrow(TypeRef),
}

impl Type {
    /// The resources whose handles this type holds, outermost first.
    pub fn handles(&self) -> Vec<&TypeRef> {
        match self {
            Type::Own(r) | Type::Borrow(r) => vec![r],
            Type::List(t) | Type::Option(t) => t.handles(),
            Type::Result { ok, err } => ok.iter().chain(err).flat_map(|t| t.handles()).collect(),
            Type::Tuple(ts) => ts.iter().flat_map(Type::handles).collect(),
            _ => Vec::new(),
        }
    }
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
    /// The Rust type name (`ChainEvent`; [`camel_name`]).
    pub fn rust_name(&self) -> String {
        camel_name(&self.name)
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
    /// `resource x`: a handler picks the Rust type its values have in the actor's `ResourceTable` by writing
    /// `Resource<T>` in its methods; the generated `X` is an alias of that type (or, where no method names one,
    /// an uninhabited marker, as `bindgen!` makes without `with`), so that generated types holding handles
    /// (`Resource<X>`) agree with the methods.
    Resource,
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
    /// Rust name (`store_id`; [`snake_name`]).
    pub fn rust_name(&self) -> String {
        snake_name(&self.name)
    }
}

/// A function of an interface.
#[derive(Clone, Debug)]
pub struct Function {
    /// WIT name (`random-bytes`, `[method]counter.get`).
    pub name: String,
    pub docs: Option<String>,
    pub params: Vec<Param>,
    pub result: Option<Type>,
    /// For a resource's function: which resource, and which kind of function.
    pub resource: Option<ResourceFunction>,
}

/// What a resource's function is: the WIT item kinds wasmtime's `bindgen!` serves, plus the destructor the
/// component model calls when the guest drops an owned handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceFunctionKind {
    /// `constructor(...)`: WIT name `[constructor]counter`, Rust `counter_new`.
    Constructor,
    /// `get: func(...)` in the resource: WIT `[method]counter.get` (its first parameter is `self:
    /// borrow<counter>`), Rust `counter_get`.
    Method,
    /// `merge: static func(...)`: WIT `[static]counter.merge`, Rust `counter_merge`.
    Static,
    /// The destructor: WIT `[resource-drop]counter`, Rust `counter_drop`, one parameter `self: own<counter>`. A
    /// handler may leave it out: the handle's value is then deleted from the actor's `ResourceTable`.
    Drop,
}

/// The resource a function belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceFunction {
    /// The resource's WIT name (`counter`).
    pub resource: String,
    pub kind: ResourceFunctionKind,
}

impl Function {
    /// The Rust method name: `random_bytes` for `random-bytes` ([`snake_name`]); for a resource's functions,
    /// `<resource>_<item>` (`counter_get`), with `new` for the constructor and `drop` for the destructor.
    pub fn rust_name(&self) -> String {
        let Some(r) = &self.resource else {
            return snake_name(&self.name);
        };
        let item = match r.kind {
            ResourceFunctionKind::Constructor => "new",
            ResourceFunctionKind::Drop => "drop",
            ResourceFunctionKind::Method | ResourceFunctionKind::Static => self
                .name
                .split_once('.')
                .map_or(self.name.as_str(), |(_, item)| item),
        };
        snake_name(&format!("{}-{item}", r.resource))
    }

    /// Whether a handler may leave this function without a method (a resource's destructor).
    pub fn optional(&self) -> bool {
        self.resource
            .as_ref()
            .is_some_and(|r| r.kind == ResourceFunctionKind::Drop)
    }
}

/// The names of the generated spec statics of `functions` (one interface's), in order: the WIT name in
/// SHOUTY_SNAKE_CASE and `_SPEC` (`RANDOM_BYTES_SPEC`). Where several functions share that (`get-http` and
/// `get-HTTP`; `[method]a-b.c` and `[method]a.b-c`; `method-counter-get` and `[method]counter.get`), each of them
/// also has its index (`GET_HTTP_SPEC_0`, `GET_HTTP_SPEC_1`): a name ends with digits only then, so no two
/// collide.
pub fn spec_names(functions: &[Function]) -> Vec<String> {
    let shouty: Vec<String> = functions
        .iter()
        .map(|f| f.name.to_shouty_snake_case())
        .collect();
    shouty
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if shouty.iter().filter(|t| *t == s).count() > 1 {
                format!("{s}_SPEC_{i}")
            } else {
                format!("{s}_SPEC")
            }
        })
        .collect()
}

/// An interface.
#[derive(Clone, Debug)]
pub struct Interface {
    pub name: IfaceName,
    pub docs: Option<String>,
    /// Its freestanding functions, in WIT order; empty for an interface that is only reached through types.
    pub functions: Vec<Function>,
    /// Named types, in WIT order (including `use`d ones): all of them for an interface a handler names, only
    /// the reachable ones for the others.
    pub types: Vec<TypeDef>,
}

impl Interface {
    /// The WIT names of the resources this interface defines (not those it `use`s), in WIT order: the ones
    /// a handler of it defines in the linker.
    pub fn resources(&self) -> impl Iterator<Item = &str> {
        self.functions.iter().filter_map(|f| match &f.resource {
            Some(r) if r.kind == ResourceFunctionKind::Drop => Some(r.resource.as_str()),
            _ => None,
        })
    }
}

impl Interface {
    /// The name of the generated spec static of `f`, one of this interface's functions ([`spec_names`]).
    pub fn spec_name(&self, f: &Function) -> String {
        let names = spec_names(&self.functions);
        self.functions
            .iter()
            .position(|g| std::ptr::eq(g, f))
            .map(|i| names[i].clone())
            .unwrap_or_else(|| format!("{}_SPEC", f.name.to_shouty_snake_case()))
    }

    /// The functions whose Rust name ([`Function::rust_name`]) is `f`'s too, `f` excepted: a method named so
    /// cannot say which it serves, so each must be bound by its WIT name (`#[theater(name = "...")]`).
    pub fn rust_name_sharers<'a>(&'a self, f: &Function) -> impl Iterator<Item = &'a Function> {
        let name = f.rust_name();
        let f: *const Function = f;
        self.functions
            .iter()
            .filter(move |g| !std::ptr::eq(*g, f) && g.rust_name() == name)
    }

    /// A named type of this interface.
    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.types.iter().find(|t| t.name == name)
    }
}

/// The interfaces a handler names (with all their functions and types) and the interfaces whose types those
/// reach (with only the types reached), by name. Built by [`Builder`].
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub interfaces: BTreeMap<IfaceName, Interface>,
}

impl Model {
    /// The interface named `name`.
    pub fn interface(&self, name: &IfaceName) -> Option<&Interface> {
        self.interfaces.get(name)
    }

    /// Whether a value of `ty` holds a resource handle anywhere: directly, in a container, or in a named type's
    /// fields, cases or alias target. (WIT types are not recursive, so this ends.)
    pub fn holds_handles(&self, ty: &Type) -> bool {
        self.holds_handles_of(ty, &|_| true)
    }

    /// Whether a value of the named type `def` holds a resource handle ([`Model::holds_handles`]).
    pub fn def_holds_handles(&self, def: &TypeDef) -> bool {
        self.def_holds_handles_of(def, &|_| true)
    }

    /// Whether a value of `ty` holds a handle of a resource `of` accepts (where it is found as
    /// [`Model::holds_handles`] finds handles).
    pub fn holds_handles_of(&self, ty: &Type, of: &dyn Fn(&TypeRef) -> bool) -> bool {
        match ty {
            Type::Own(r) | Type::Borrow(r) => of(r),
            Type::List(t) | Type::Option(t) => self.holds_handles_of(t, of),
            Type::Result { ok, err } => ok.iter().chain(err).any(|t| self.holds_handles_of(t, of)),
            Type::Tuple(ts) => ts.iter().any(|t| self.holds_handles_of(t, of)),
            Type::Named(r) => self
                .resolve_ref(r)
                .is_some_and(|d| self.def_holds_handles_of(d, of)),
            _ => false,
        }
    }

    /// Whether a value of the named type `def` holds a handle of a resource `of` accepts.
    pub fn def_holds_handles_of(&self, def: &TypeDef, of: &dyn Fn(&TypeRef) -> bool) -> bool {
        match &def.kind {
            TypeDefKind::Record(fields) => fields.iter().any(|f| self.holds_handles_of(&f.ty, of)),
            TypeDefKind::Variant(cases) => cases
                .iter()
                .filter_map(|c| c.ty.as_ref())
                .any(|t| self.holds_handles_of(t, of)),
            TypeDefKind::Alias(t) => self.holds_handles_of(t, of),
            TypeDefKind::Use(r) => self
                .resolve_ref(r)
                .is_some_and(|d| self.def_holds_handles_of(d, of)),
            TypeDefKind::Enum(_) | TypeDefKind::Flags(_) | TypeDefKind::Resource => false,
        }
    }

    /// Follows `use`s and aliases to the definition a reference names.
    pub fn resolve_ref(&self, r: &TypeRef) -> Option<&TypeDef> {
        let def = self.interfaces.get(&r.iface)?.type_def(&r.name)?;
        match &def.kind {
            TypeDefKind::Use(inner) => self.resolve_ref(inner),
            _ => Some(def),
        }
    }
}
