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

#[test]
fn errors_are_accumulated_at_their_spans() {
    let attr = quote!(wit = "wit", import = "theater:simple/random");
    let item = quote! {
        impl RandomHandler {
            fn random_bytes(&self, length: u64) -> Result<Vec<u8>, String> { todo!() }
            fn random_flot(&self) -> Result<f64, String> { todo!() }
        }
    };
    let mut diag = crate::diag::Diagnostics::new();
    let mut item: syn::ItemImpl = syn::parse2(item).unwrap();
    let model = model();
    let iface = model.interface(&IfaceName::parse("theater:simple/random").unwrap());
    crate::check::bind(&model, iface, &mut item, &mut diag);
    let messages: Vec<&str> = diag.messages().collect();
    assert_eq!(messages.len(), 5, "{messages:?}");
    assert!(messages[0].contains("parameter `length`") && messages[0].contains("u32"));
    assert!(messages[1].contains("random_flot") && messages[1].contains("random_float"));
    assert!(
        messages[2..]
            .iter()
            .all(|m| m.starts_with("missing method"))
    );
    let _ = attr;
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
