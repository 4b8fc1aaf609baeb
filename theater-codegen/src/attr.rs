//! The attribute keys: `#[theater_handler(...)]` on the `impl`, and `#[theater(...)]` on its methods. Each value
//! remembers its span; unknown and duplicate keys are errors at the key (as serde_derive's `Attr::set`).

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, LitStr, MetaNameValue, Token};

use crate::diag::Diagnostics;

/// A string value with the span of its literal.
#[derive(Clone, Debug)]
pub struct Spanned {
    pub value: String,
    pub span: Span,
}

/// `#[theater_handler(wit = "...", import = "...", export = "...", name = "...")]`.
#[derive(Debug, Default)]
pub struct HandlerAttr {
    /// The WIT package directory, relative to `CARGO_MANIFEST_DIR`.
    pub wit: Option<Spanned>,
    /// The imported interface the handler serves.
    pub import: Option<Spanned>,
    /// The exported callback interface the handler calls.
    pub export: Option<Spanned>,
    /// The manifest `type` (default: the import interface's name).
    pub name: Option<Spanned>,
    /// Interfaces whose types are generated elsewhere: `"ns:pkg/iface = path::to::module, ..."` ([`crate::with`]).
    pub with: Option<Spanned>,
    /// Interfaces every type of which is generated here, for other crates' `with`: `"ns:pkg/iface, ..."`.
    pub types: Option<Spanned>,
}

impl HandlerAttr {
    /// Parses the attribute's arguments, recording errors in `diag`.
    pub fn parse(args: TokenStream, diag: &mut Diagnostics) -> Self {
        let mut attr = Self::default();
        let pairs = match Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(args) {
            Ok(pairs) => pairs,
            Err(e) => {
                diag.syn(e);
                return attr;
            }
        };
        let before = diag.len();
        for pair in pairs {
            let key = pair
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            let key_span = syn::spanned::Spanned::span(&pair.path);
            let slot = match key.as_str() {
                "wit" => &mut attr.wit,
                "import" => &mut attr.import,
                "export" => &mut attr.export,
                "name" => &mut attr.name,
                "with" => &mut attr.with,
                "types" => &mut attr.types,
                _ => {
                    diag.error(
                        key_span,
                        format!("unknown key `{key}` in #[theater_handler]: expected `wit`, `import`, `export`, `name`, `with` or `types`"),
                    );
                    continue;
                }
            };
            let Some(lit) = string_lit(&pair.value) else {
                diag.error(
                    syn::spanned::Spanned::span(&pair.value),
                    format!("`{key}` takes a string literal"),
                );
                continue;
            };
            if slot.is_some() {
                diag.error(
                    key_span,
                    format!("duplicate key `{key}` in #[theater_handler]"),
                );
                continue;
            }
            *slot = Some(Spanned {
                value: lit.value(),
                span: lit.span(),
            });
        }
        // A misspelled key already has its error; "needs `import`" would only repeat it.
        if diag.len() != before {
            return attr;
        }
        if attr.wit.is_none() {
            diag.error(
                Span::call_site(),
                "#[theater_handler] needs `wit = \"<WIT package directory>\"`",
            );
        }
        if attr.import.is_none() && attr.export.is_none() {
            diag.error(
                Span::call_site(),
                "#[theater_handler] needs `import = \"<interface>\"` or `export = \"<interface>\"`",
            );
        }
        attr
    }
}

fn string_lit(e: &Expr) -> Option<&LitStr> {
    match e {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s),
        _ => None,
    }
}

/// How a payload value is recorded by default (`full`, `digest`, `keyed-digest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Full,
    Digest,
    KeyedDigest,
}

/// How replay answers a host function (`#[theater(replay = "...")]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Replay {
    /// From the recorded result (the default).
    #[default]
    Feed,
    /// By calling the method again (functions without effects outside the actor).
    Rerun,
    /// From the recorded result when it was recorded in full, else by calling the method again.
    FeedOrRerun,
}

/// `#[theater(...)]` on one method.
#[derive(Debug, Default)]
pub struct MethodAttr {
    /// `name = "wit-name"`: the WIT function this method binds.
    pub name: Option<Spanned>,
    /// `record(value = "mode", ...)`: payload values (WIT parameter names in snake case, or `result`); the span
    /// is the value's.
    pub record: Vec<(Spanned, Mode)>,
    /// `replay = "feed" | "rerun" | "feed-or-rerun"`: how replay answers the function.
    pub replay: Replay,
    /// The spans of the `name`, `record` and `replay` keys, if present.
    pub name_key: Option<Span>,
    pub record_key: Option<Span>,
    pub replay_key: Option<Span>,
    /// `create_instance`: the per-actor constructor.
    pub create_instance: Option<Span>,
    /// `start`: background work.
    pub start: Option<Span>,
}

impl MethodAttr {
    /// Parses and removes the `#[theater(...)]` attributes of a method.
    pub fn take(attrs: &mut Vec<syn::Attribute>, diag: &mut Diagnostics) -> Self {
        let mut out = Self::default();
        attrs.retain(|a| {
            if !a.path().is_ident("theater") {
                return true;
            }
            let result = a.parse_nested_meta(|meta| {
                let key = meta.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
                let span = syn::spanned::Spanned::span(&meta.path);
                match key.as_str() {
                    "name" => {
                        let lit: LitStr = meta.value()?.parse()?;
                        if out.name.is_some() {
                            diag.error(span, "duplicate key `name` in #[theater]");
                        }
                        out.name = Some(Spanned { value: lit.value(), span: lit.span() });
                        out.name_key = Some(span);
                    }
                    "record" => {
                        out.record_key.get_or_insert(span);
                        meta.parse_nested_meta(|inner| {
                        let value = inner.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
                        let vspan = syn::spanned::Spanned::span(&inner.path);
                        let lit: LitStr = inner.value()?.parse()?;
                        let mode = match lit.value().as_str() {
                            "full" => Mode::Full,
                            "digest" => Mode::Digest,
                            "keyed-digest" => Mode::KeyedDigest,
                            other => {
                                diag.error(
                                    lit.span(),
                                    format!("unknown record mode `{other}`: expected `full`, `digest` or `keyed-digest`"),
                                );
                                return Ok(());
                            }
                        };
                        if out.record.iter().any(|(v, _)| v.value == value) {
                            diag.error(vspan, format!("duplicate value `{value}` in #[theater(record(...))]"));
                            return Ok(());
                        }
                        out.record.push((Spanned { value, span: vspan }, mode));
                        Ok(())
                    })?
                    }
                    "replay" => {
                        let lit: LitStr = meta.value()?.parse()?;
                        if out.replay_key.is_some() {
                            diag.error(span, "duplicate key `replay` in #[theater]");
                        }
                        out.replay_key = Some(span);
                        out.replay = match lit.value().as_str() {
                            "feed" => Replay::Feed,
                            "rerun" => Replay::Rerun,
                            "feed-or-rerun" => Replay::FeedOrRerun,
                            other => {
                                diag.error(
                                    lit.span(),
                                    format!(
                                        "unknown replay rule `{other}`: expected `feed`, `rerun` or `feed-or-rerun`"
                                    ),
                                );
                                Replay::Feed
                            }
                        };
                    }
                    "create_instance" | "start" => {
                        let slot = if key == "start" { &mut out.start } else { &mut out.create_instance };
                        if slot.is_some() {
                            diag.error(span, format!("duplicate key `{key}` in #[theater]"));
                        }
                        *slot = Some(span);
                    }
                    _ => diag.error(
                        span,
                        format!(
                            "unknown key `{key}` in #[theater]: expected `name`, `record`, `replay`, `create_instance` or `start`"
                        ),
                    ),
                }
                Ok(())
            });
            if let Err(e) = result {
                diag.syn(e);
            }
            false
        });
        out
    }
}

impl MethodAttr {
    /// Errors for keys that mean nothing on a lifecycle method (`name`, `record`, `replay`, the other lifecycle key), each
    /// at its key, so that no key is silently ignored. `hook` is `create_instance` or `start`.
    pub fn check_hook(&self, hook: &str, diag: &mut Diagnostics) {
        let unused = |span: Span, key: &str, diag: &mut Diagnostics| {
            diag.error(
                span,
                format!("`{key}` has no effect on a #[theater({hook})] method"),
            )
        };
        if let Some(span) = self.name_key {
            unused(span, "name", diag);
        }
        if let Some(span) = self.record_key {
            unused(span, "record", diag);
        }
        if let Some(span) = self.replay_key {
            unused(span, "replay", diag);
        }
        if hook == "create_instance"
            && let Some(s) = self.start
        {
            unused(s, "start", diag);
        }
    }
}
