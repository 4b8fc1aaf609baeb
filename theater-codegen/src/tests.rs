//! Expansion tests from `quote!` input (as dtolnay/cxx tests its macro): the output parses, and errors are
//! accumulated.

use std::path::{Path, PathBuf};

use quote::quote;

use crate::model::{IfaceName, Model, TypeDefKind};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model() -> Model {
    let loaded = crate::load::load(&workspace(), Path::new("wit")).unwrap();
    Model::build(&loaded.resolve).unwrap()
}

#[test]
fn model_has_every_interface_and_uses() {
    let model = model();
    let names: Vec<String> = model.interfaces.keys().map(IfaceName::full).collect();
    for iface in [
        "random",
        "runtime",
        "http-handlers",
        "types",
        "store",
        "process-handlers",
    ] {
        assert!(
            names.contains(&format!("theater:simple/{iface}")),
            "{names:?}"
        );
    }
    let runtime = model
        .interface(&IfaceName::parse("theater:simple/runtime").unwrap())
        .unwrap();
    assert!(matches!(
        runtime.type_def("chain").unwrap().kind,
        TypeDefKind::Use(_)
    ));
    let types = model
        .interface(&IfaceName::parse("theater:simple/types").unwrap())
        .unwrap();
    assert!(matches!(
        types.type_def("actor-id").unwrap().kind,
        TypeDefKind::Alias(_)
    ));
    assert!(matches!(
        types.type_def("wit-error-type").unwrap().kind,
        TypeDefKind::Enum(_)
    ));
}

#[test]
fn generate_every_interface_parses() {
    let wit = workspace().join("wit");
    let model = model();
    for name in model.interfaces.keys() {
        let full = name.full();
        let iface = model.interface(name).unwrap();
        let callbacks = full.ends_with("-handlers")
            || full.ends_with("message-server-client")
            || full.ends_with("/actor");
        let tokens = if callbacks {
            crate::generate(&wit, None, Some(&full))
        } else {
            crate::generate(&wit, Some(&full), None)
        }
        .unwrap_or_else(|e| panic!("{full}: {e}"));
        syn::parse2::<syn::File>(tokens).unwrap_or_else(|e| panic!("{full}: {e}"));
        let _ = iface;
    }
}

#[test]
fn handler_expansion_parses() {
    let attr = quote!(wit = "wit", import = "theater:simple/random");
    let item = quote! {
        impl RandomHandler {
            fn random_bytes(&self, length: u32) -> Result<Vec<u8>, String> { todo!() }
            async fn random_range(&self, min: u64, max: u64) -> Result<u64, String> { todo!() }
            #[theater(record(result = "digest"))]
            fn random_float(&self) -> Result<f64, String> { todo!() }
            fn generate_uuid(&self, ctx: &mut HostCtx<'_>) -> Result<String, String> { todo!() }
        }
    };
    let out = crate::expand_handler(attr, item, &workspace());
    let text = out.to_string();
    assert!(!text.contains("compile_error"), "{text}");
    assert!(
        text.contains("func_wrap_async"),
        "async fn → func_wrap_async"
    );
    assert!(text.contains("RecordMode :: Digest"));
    assert!(
        !text.contains("# [theater"),
        "#[theater] attributes are stripped"
    );
    syn::parse2::<syn::File>(out).unwrap();
}

/// The messages of checking `item` against `theater:simple/random`.
fn check_random(item: proc_macro2::TokenStream) -> Vec<String> {
    let mut diag = crate::diag::Diagnostics::new();
    let mut item: syn::ItemImpl = syn::parse2(item).unwrap();
    let model = model();
    let iface = model.interface(&IfaceName::parse("theater:simple/random").unwrap());
    crate::check::bind(&model, iface, &mut item, &mut diag);
    diag.messages().collect()
}

#[test]
fn errors_are_accumulated_at_their_spans() {
    let messages = check_random(quote! {
        impl RandomHandler {
            fn random_bytes(&self, length: u64) -> Result<Vec<u8>, String> { todo!() }
            fn random_flot(&self) -> Result<f64, String> { todo!() }
        }
    });
    assert_eq!(messages.len(), 4, "{messages:?}");
    assert!(messages[0].contains("parameter `length`") && messages[0].contains("u32"));
    assert!(messages[1].contains("random_flot") && messages[1].contains("random_float"));
    // `random-float` was suggested for `random_flot`: not reported missing as well.
    assert!(messages[2].starts_with("missing method for WIT function `random-range`"));
    assert!(messages[3].starts_with("missing method for WIT function `generate-uuid`"));
}

#[test]
fn two_missing_methods_are_two_errors() {
    let messages = check_random(quote! {
        impl RandomHandler {
            fn random_bytes(&self, length: u32) -> Result<Vec<u8>, String> { todo!() }
            fn random_range(&self, min: u64, max: u64) -> Result<u64, String> { todo!() }
        }
    });
    assert_eq!(
        messages,
        [
            "missing method for WIT function `random-float`: expected `fn random_float(&self) -> Result<f64, String>`",
            "missing method for WIT function `generate-uuid`: expected `fn generate_uuid(&self) -> Result<String, String>`",
        ]
    );
}

#[test]
fn suggestions_name_only_unserved_functions() {
    let messages = check_random(quote! {
        impl RandomHandler {
            fn random_bytes(&self, length: u32) -> Result<Vec<u8>, String> { todo!() }
            fn random_byte(&self, length: u32) -> Result<Vec<u8>, String> { todo!() }
            fn random_range(&self, min: u64, max: u64) -> Result<u64, String> { todo!() }
            fn random_float(&self) -> Result<f64, String> { todo!() }
            fn generate_uuid(&self) -> Result<String, String> { todo!() }
        }
    });
    assert_eq!(
        messages,
        ["`random_byte` is not a function of theater:simple/random"]
    );
}

#[test]
fn lifecycle_keys_are_checked() {
    let messages = check_random(quote! {
        impl RandomHandler {
            #[theater(create_instance, name = "x")]
            fn a(&self, actor: &ActorContext) -> anyhow::Result<Self> { todo!() }
            #[theater(create_instance, create_instance)]
            fn b(&self, actor: &ActorContext) -> anyhow::Result<Self> { todo!() }
            #[theater(start)]
            fn c(self: Arc<Self>, a: ActorHandle, s: ShutdownSignal) -> anyhow::Result<()> { todo!() }
            #[theater(record(result = "digest", result = "full"), bogus)]
            fn random_bytes(&self, length: u32) -> Result<Vec<u8>, String> { todo!() }
            fn random_range(&self, min: u64, max: u64) -> Result<u64, String> { todo!() }
            fn random_float(&self) -> Result<f64, String> { todo!() }
            fn generate_uuid(&self) -> Result<String, String> { todo!() }
        }
    });
    let expected = [
        "`name` has no effect on a #[theater(create_instance)] method",
        "duplicate key `create_instance` in #[theater]",
        "only one method may be #[theater(create_instance)]; `a` already is",
        "a #[theater(start)] method must be an `async fn`",
        "duplicate value `result` in #[theater(record(...))]",
        "unknown key `bogus` in #[theater]: expected `name`, `record`, `create_instance` or `start`",
    ];
    assert_eq!(messages, expected);
}

#[test]
fn bad_wit_path_and_unknown_interface_are_errors() {
    let out = crate::expand_handler(
        quote!(wit = "no-such-dir", import = "theater:simple/random"),
        quote!(impl X {}),
        &workspace(),
    );
    assert!(out.to_string().contains("does not exist"));
    let out = crate::expand_handler(
        quote!(wit = "wit", import = "theater:simple/nope"),
        quote!(impl X {}),
        &workspace(),
    );
    assert!(out.to_string().contains("unknown interface"));
}

#[test]
fn export_callers_are_generated() {
    let wit = workspace().join("tests/wit");
    let tokens = crate::generate(
        &wit,
        Some("theater:test/probe"),
        Some("theater:test/probe-handlers"),
    )
    .unwrap();
    let text = tokens.to_string();
    assert!(text.contains("pub struct Callbacks"));
    assert!(text.contains("pub async fn handle_add"));
    syn::parse2::<syn::File>(tokens).unwrap();
}

fn inline_model(src: &str) -> Result<Model, Vec<String>> {
    let mut resolve = wit_parser::Resolve::default();
    resolve.push_str("inline.wit", src).unwrap();
    Model::build(&resolve)
}

#[test]
fn model_from_inline_wit() {
    let model = inline_model(
        "package a:b;
        interface shared { type id = u64; }
        /// Docs of `i`.
        interface i {
            use shared.{id};
            record r { x: id, %type: option<string> }
            variant v { one(r), none }
            enum e { red, blue-ish }
            flags f { read, write }
            type l = list<tuple<u8, string>>;
            /// Docs of `do-it`.
            do-it: func(a: r, b: result<_, string>) -> result<list<e>>;
            nothing: func();
        }",
    )
    .unwrap();
    let i = model
        .interface(&IfaceName::parse("a:b/i").unwrap())
        .unwrap();
    assert_eq!(i.docs.as_deref(), Some("Docs of `i`."));
    let kinds: Vec<(&str, &str)> = i
        .types
        .iter()
        .map(|t| {
            let kind = match &t.kind {
                TypeDefKind::Record(_) => "record",
                TypeDefKind::Variant(_) => "variant",
                TypeDefKind::Enum(_) => "enum",
                TypeDefKind::Flags(_) => "flags",
                TypeDefKind::Alias(_) => "alias",
                TypeDefKind::Use(_) => "use",
            };
            (t.name.as_str(), kind)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("id", "use"),
            ("r", "record"),
            ("v", "variant"),
            ("e", "enum"),
            ("f", "flags"),
            ("l", "alias")
        ]
    );
    let f = &i.functions[0];
    assert_eq!(f.rust_name(), "do_it");
    assert_eq!(f.docs.as_deref(), Some("Docs of `do-it`."));
    assert_eq!(
        f.wit_signature(),
        "do-it: func(a: r, b: result<_, string>) -> result<list<e>>"
    );
    assert_eq!(i.functions[1].result, None);
    assert_eq!(
        model.closure(std::slice::from_ref(&i.name)),
        [
            IfaceName::parse("a:b/i").unwrap(),
            IfaceName::parse("a:b/shared").unwrap()
        ]
    );
}

#[test]
fn resources_are_unsupported() {
    let errors = inline_model(
        "package a:b;
        interface i {
            resource file;
            open: func() -> file;
        }",
    )
    .unwrap_err();
    assert!(
        errors.iter().all(|e| e.contains("unsupported WIT type")),
        "{errors:?}"
    );
    assert!(!errors.is_empty());
}
