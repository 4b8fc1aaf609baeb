//! Building the [`Model`] from a `wit_parser::Resolve`: the only place that sees wit-parser types. Unsupported
//! WIT constructs (resources, futures, streams, ...) become "unsupported WIT type" errors naming the interface.

use std::collections::BTreeMap;

use wit_parser::{Resolve, TypeDefKind as WitKind, TypeOwner};

use super::{
    Case, Field, Function, IfaceName, Interface, Model, Param, Type, TypeDef, TypeDefKind, TypeRef,
};

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
                    .map(|c| case(&c.name, &c.docs, c.ty.as_ref().map(|t| self.ty(t))))
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

/// A variant case, enum case or flag of the model (variants carry `ty`).
fn case(name: &str, docs: &wit_parser::Docs, ty: Option<Type>) -> Case {
    Case {
        name: name.to_owned(),
        docs: docs.contents.clone(),
        ty,
    }
}
