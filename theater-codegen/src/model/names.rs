//! Rust names derived from WIT names, and WIT text for messages and docs.
//!
//! The naming rules (documented for users in `docs/handlers.md`):
//! * case conversion is heck's: functions, parameters, fields and modules in snake_case (`get-HTTP-status` →
//!   `get_http_status`), types and cases in UpperCamelCase (`blue-ish` → `BlueIsh`), flags in SHOUTY_SNAKE_CASE;
//! * a name that is a Rust keyword becomes a raw identifier (`type` → `r#type`, `match` → `r#match`);
//! * the keywords that cannot be raw identifiers take a trailing underscore instead: `self` → `self_`,
//!   `super` → `super_`, `crate` → `crate_`, and in UpperCamelCase `Self` → `Self_`.

use heck::{ToSnakeCase, ToUpperCamelCase};

use super::{Function, Type};

/// Rust keywords (strict, reserved and edition-2024 ones), which WIT names may spell with `%`.
const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// Keywords that `r#` cannot escape.
const NOT_RAW: &[&str] = &["self", "super", "crate", "Self"];

/// Escapes a Rust keyword in an identifier that is already snake_case: `type` → `r#type`, `self` → `self_`. The
/// result is a valid identifier string for `format_ident!`.
pub fn rust_ident(s: &str) -> String {
    if NOT_RAW.contains(&s) {
        format!("{s}_")
    } else if KEYWORDS.contains(&s) {
        format!("r#{s}")
    } else {
        s.to_owned()
    }
}

/// The snake_case Rust name of a WIT function, parameter, field or module: `get-HTTP-status` →
/// `get_http_status`, `type` → `r#type`, `self` → `self_`.
pub fn snake_name(wit: &str) -> String {
    rust_ident(&wit.to_snake_case())
}

/// The UpperCamelCase Rust name of a WIT type or case: `chain-event` → `ChainEvent`, `self` → `Self_`.
pub fn camel_name(wit: &str) -> String {
    rust_ident(&wit.to_upper_camel_case())
}

/// A Rust name without its `r#` prefix, as a method name is compared with a WIT name (`r#type` → `type`).
pub fn unraw(s: &str) -> &str {
    s.strip_prefix("r#").unwrap_or(s)
}

impl Function {
    /// The WIT signature as written in WIT: `random-bytes: func(length: u32) -> result<list<u8>, string>`.
    pub fn wit_signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| format!("{}: {}", p.name, p.ty.wit()))
            .collect();
        let result = self
            .result
            .as_ref()
            .map(|t| format!(" -> {}", t.wit()))
            .unwrap_or_default();
        format!("{}: func({}){result}", self.name, params.join(", "))
    }
}

impl Type {
    /// The type as written in WIT (`list<u8>`, `result<_, string>`, `chain-event`).
    pub fn wit(&self) -> String {
        match self {
            Type::Bool => "bool".into(),
            Type::U8 => "u8".into(),
            Type::U16 => "u16".into(),
            Type::U32 => "u32".into(),
            Type::U64 => "u64".into(),
            Type::S8 => "s8".into(),
            Type::S16 => "s16".into(),
            Type::S32 => "s32".into(),
            Type::S64 => "s64".into(),
            Type::F32 => "f32".into(),
            Type::F64 => "f64".into(),
            Type::Char => "char".into(),
            Type::String => "string".into(),
            Type::List(t) => format!("list<{}>", t.wit()),
            Type::Option(t) => format!("option<{}>", t.wit()),
            Type::Result {
                ok: None,
                err: None,
            } => "result".into(),
            Type::Result { ok, err: None } => {
                format!(
                    "result<{}>",
                    ok.as_deref().map(Type::wit).unwrap_or_default()
                )
            }
            Type::Result { ok, err } => format!(
                "result<{}, {}>",
                ok.as_deref().map(Type::wit).unwrap_or_else(|| "_".into()),
                err.as_deref().map(Type::wit).unwrap_or_else(|| "_".into())
            ),
            Type::Tuple(ts) => format!(
                "tuple<{}>",
                ts.iter().map(Type::wit).collect::<Vec<_>>().join(", ")
            ),
            Type::Named(r) => r.name.clone(),
            Type::Own(r) => format!("own<{}>", r.name),
            Type::Borrow(r) => format!("borrow<{}>", r.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_escaped() {
        assert_eq!(rust_ident("type"), "r#type");
        assert_eq!(rust_ident("store_id"), "store_id");
        assert_eq!(snake_name("self"), "self_");
        assert_eq!(snake_name("super"), "super_");
        assert_eq!(snake_name("crate"), "crate_");
        assert_eq!(snake_name("match"), "r#match");
        assert_eq!(snake_name("kebab-case"), "kebab_case");
        assert_eq!(snake_name("get-HTTP-status"), "get_http_status");
        assert_eq!(camel_name("self"), "Self_");
        assert_eq!(camel_name("type"), "Type");
        assert_eq!(camel_name("blue-ish"), "BlueIsh");
        // Every escaped name is an identifier `format_ident!` accepts.
        for k in KEYWORDS.iter().chain(NOT_RAW) {
            let _ = quote::format_ident!("{}", snake_name(k));
            let _ = quote::format_ident!("{}", camel_name(k));
        }
    }

    #[test]
    fn wit_text() {
        let f = Function {
            name: "random-bytes".into(),
            docs: None,
            params: vec![super::super::Param {
                name: "length".into(),
                ty: Type::U32,
            }],
            resource: None,
            result: Some(Type::Result {
                ok: Some(Box::new(Type::List(Box::new(Type::U8)))),
                err: Some(Box::new(Type::String)),
            }),
        };
        assert_eq!(
            f.wit_signature(),
            "random-bytes: func(length: u32) -> result<list<u8>, string>"
        );
        let no_err = Type::Result {
            ok: Some(Box::new(Type::String)),
            err: None,
        };
        assert_eq!(no_err.wit(), "result<string>");
    }
}
