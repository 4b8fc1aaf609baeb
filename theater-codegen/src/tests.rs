//! Expansion tests from `quote!` input (as dtolnay/cxx tests its macro): the output parses, and errors are
//! accumulated.

use std::path::{Path, PathBuf};

use quote::quote;

use crate::model::{Builder, IfaceName, Model, TypeDefKind};

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

/// The expansion of `#[theater_handler(attr)] item` (WIT paths relative to the workspace), which must have no
/// problem: a failure lists them.
fn expand_ok(
    attr: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    crate::try_expand_handler(attr, item, &workspace())
        .unwrap_or_else(|f| panic!("{:?}", f.errors.messages().collect::<Vec<_>>()))
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
    let out = expand_ok(attr, item);
    let text = out.to_string();
    // Each mode has its definer: sync, async, and with `HostCtx`.
    for definer in [". sync (", ". async_ (", ". sync_ctx ("] {
        assert!(text.contains(definer), "{definer} in {text}");
    }
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
            #[theater(create_instance, name = "x", replay = "rerun")]
            fn a(&self, actor: &ActorContext) -> anyhow::Result<Self> { todo!() }
            #[theater(create_instance, create_instance)]
            fn b(&self, actor: &ActorContext) -> anyhow::Result<Self> { todo!() }
            #[theater(start)]
            fn c(self: Arc<Self>, a: ActorHandle, s: ShutdownSignal) -> anyhow::Result<()> { todo!() }
            #[theater(record(result = "digest", result = "full"), bogus)]
            fn random_bytes(&self, length: u32) -> Result<Vec<u8>, String> { todo!() }
            #[theater(replay = "sometimes")]
            fn random_range(&self, min: u64, max: u64) -> Result<u64, String> { todo!() }
            fn random_float(&self) -> Result<f64, String> { todo!() }
            fn generate_uuid(&self) -> Result<String, String> { todo!() }
        }
    });
    let expected = [
        "`name` has no effect on a #[theater(create_instance)] method",
        "`replay` has no effect on a #[theater(create_instance)] method",
        "duplicate key `create_instance` in #[theater]",
        "only one method may be #[theater(create_instance)]; `a` already is",
        "a #[theater(start)] method must be an `async fn`",
        "duplicate value `result` in #[theater(record(...))]",
        "unknown key `bogus` in #[theater]: expected `name`, `record`, `replay`, `create_instance` or `start`",
        "unknown replay rule `sometimes`: expected `feed`, `rerun` or `feed-or-rerun`",
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

/// The model of the interface `root` of an inline WIT package.
fn inline_model(src: &str, root: &str) -> Result<Model, Vec<String>> {
    let mut resolve = wit_parser::Resolve::default();
    resolve.push_str("inline.wit", src).unwrap();
    let loaded = crate::load::Loaded {
        package: resolve.packages.iter().next().unwrap().0,
        resolve,
        files: Vec::new(),
    };
    let id = loaded.find_interface(root).map_err(|e| vec![e])?;
    let mut builder = Builder::new(&loaded.resolve);
    builder.add_root(id)?;
    Ok(builder.finish())
}

#[test]
fn model_from_inline_wit() {
    let model = inline_model(
        "package a:b;
        interface shared { type id = u64; type unused = string; }
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
        "a:b/i",
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
                TypeDefKind::Resource => "resource",
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
    // The root and what it reaches: `shared` with only `id`.
    let names: Vec<&IfaceName> = model.interfaces.keys().collect();
    assert_eq!(
        names,
        [
            &IfaceName::parse("a:b/i").unwrap(),
            &IfaceName::parse("a:b/shared").unwrap()
        ]
    );
    let shared = &model.interfaces[names[1]];
    assert!(shared.functions.is_empty());
    assert_eq!(
        shared
            .types
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["id"]
    );
}

#[test]
fn resources_are_modelled_with_their_functions_and_a_destructor() {
    let model = inline_model(
        "package a:b;
        interface i {
            resource file {
                constructor(path: string);
                read: func(len: u32) -> list<u8>;
                join: static func(a: borrow<file>, b: own<file>) -> file;
            }
            open: func() -> option<file>;
        }",
        "a:b/i",
    )
    .unwrap();
    let i = model
        .interface(&IfaceName::parse("a:b/i").unwrap())
        .unwrap();
    let functions: Vec<(&str, String, String)> = i
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.rust_name(), f.wit_signature()))
        .collect();
    assert_eq!(
        functions,
        [
            (
                "[constructor]file",
                "file_new".into(),
                "[constructor]file: func(path: string) -> own<file>".into()
            ),
            (
                "[method]file.read",
                "file_read".into(),
                "[method]file.read: func(self: borrow<file>, len: u32) -> list<u8>".into()
            ),
            (
                "[static]file.join",
                "file_join".into(),
                "[static]file.join: func(a: borrow<file>, b: own<file>) -> own<file>".into()
            ),
            (
                "open",
                "open".into(),
                "open: func() -> option<own<file>>".into()
            ),
            (
                "[resource-drop]file",
                "file_drop".into(),
                "[resource-drop]file: func(self: own<file>)".into()
            ),
        ]
    );
    assert!(i.functions.iter().filter(|f| f.optional()).count() == 1);
    assert_eq!(i.resources().collect::<Vec<_>>(), ["file"]);
    assert!(matches!(
        i.type_def("file").map(|t| &t.kind),
        Some(TypeDefKind::Resource)
    ));
}

#[test]
fn handles_inside_named_types_are_modelled() {
    let model = inline_model(
        "package a:b;
        interface i {
            resource file;
            record entry { f: own<file>, name: string }
            variant found { one(borrow<file>), none }
            list-entries: func() -> list<entry>;
            look: func(f: found) -> u32;
        }",
        "a:b/i",
    )
    .unwrap();
    let i = model
        .interface(&IfaceName::parse("a:b/i").unwrap())
        .unwrap();
    let holds = |name: &str| model.def_holds_handles(i.type_def(name).unwrap());
    assert!(holds("entry") && holds("found") && !holds("file"));
    assert!(model.holds_handles(&i.functions[0].result.clone().unwrap()));
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn generate_err(wit: &Path, import: &str) -> Vec<String> {
    match crate::generate(wit, Some(import), None) {
        Ok(tokens) => panic!("{import} expanded: {tokens}"),
        Err(diag) => diag.messages().collect(),
    }
}

#[test]
fn wit_may_be_a_single_file() {
    let out = expand_ok(
        quote!(
            wit = "theater-codegen/tests/fixtures/reachable/reachable.wit",
            import = "fixture:reachable/reachable"
        ),
        quote! {
            impl H {
                fn move_by(&self, p: fixture::reachable::shared::Point, dx: i32) -> fixture::reachable::shared::Point { p }
            }
        },
    );
    let text = out.to_string();
    assert!(
        text.contains("reachable.wit\""),
        "the file is included: {text}"
    );
}

#[test]
fn interface_names_with_and_without_versions() {
    let wit = fixture("versioned");
    let text = crate::generate(&wit, Some("dep:shared/api@0.2.0"), None)
        .unwrap()
        .to_string();
    assert!(text.contains("fn ping (& self , _n : u32)"), "{text}");
    let text = crate::generate(&wit, Some("dep:shared/api@0.1.0"), None)
        .unwrap()
        .to_string();
    assert!(
        text.contains("fn ping (& self ,) -> theater_runtime :: HostResult < u32 >"),
        "{text}"
    );
    // The generated names stay unversioned: the runtime matches imports without their version.
    assert!(text.contains("Some (\"dep:shared/api\")"), "{text}");
    // Unambiguous without a version.
    crate::generate(&wit, Some("fixture:versioned/versioned"), None).unwrap();
    assert_eq!(
        generate_err(&wit, "dep:shared/api"),
        [
            "interface `dep:shared/api` is ambiguous: the WIT has dep:shared/api@0.1.0, dep:shared/api@0.2.0; \
          name one with its version"
        ]
    );
    let unknown = generate_err(&wit, "dep:shared/api@0.3.0");
    assert!(
        unknown[0].starts_with("unknown interface `dep:shared/api@0.3.0`: the WIT package has ")
            && unknown[0].contains("dep:shared/api@0.1.0"),
        "{unknown:?}"
    );
}

#[test]
fn only_types_reachable_from_the_interface_are_modelled() {
    let wit = fixture("reachable");
    let text = crate::generate(&wit, Some("fixture:reachable/reachable"), None)
        .unwrap()
        .to_string();
    assert!(text.contains("pub struct Point"), "{text}");
    assert!(!text.contains("Chunked"), "not reachable: {text}");
    // The resource interface beside it generates too, without the unreachable `chunked`.
    let files = crate::generate(&wit, Some("fixture:reachable/files"), None)
        .unwrap()
        .to_string();
    assert!(!files.contains("Chunked"), "not reachable: {files}");
}

#[test]
fn odd_names_generate_valid_rust() {
    let tokens = crate::generate(&fixture("names"), Some("fixture:names/names"), None)
        .unwrap_or_else(|e| panic!("{e}"));
    let text = tokens.to_string();
    for name in [
        "fn r#impl",
        "fn super_",
        "fn r#match",
        "fn r#fn",
        "fn kebab_case",
        "fn get_http_status",
        "fn r#async",
        "fn crate_",
        "pub mod self_",
        "pub enum Self_",
        "Self_ (u32)",
        "pub r#type : u32",
        "pub self_ :",
    ] {
        assert!(text.contains(name), "{name}: {text}");
    }
    syn::parse2::<syn::File>(tokens).unwrap();
}

#[test]
fn unsupported_constructs_name_the_construct_and_the_function() {
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wit-unsupported");
    assert_eq!(
        generate_err(&wit, "bad:unsupported/async-types"),
        [
            "function `read` of bad:unsupported/async-types: `stream<u8>` (parameter `s`) is not supported: \
             futures, streams and error-context are component-model async, which #[theater_handler] does not serve",
            "function `wait` of bad:unsupported/async-types: `future<string>` (the result) is not supported: \
             futures, streams and error-context are component-model async, which #[theater_handler] does not serve",
            "function `fail` of bad:unsupported/async-types: `error-context` (parameter `e`) is not supported: \
             futures, streams and error-context are component-model async, which #[theater_handler] does not serve",
        ]
    );
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wit-unstable");
    assert_eq!(
        generate_err(&wit, "bad:unstable/unstable"),
        [
            "function `shiny` of bad:unstable/unstable is `@unstable(feature = shiny)`: \
          unstable WIT items are not supported"
        ]
    );
}

#[test]
fn record_keys_may_be_raw_identifiers() {
    let out = expand_ok(
        quote!(
            wit = "theater-codegen/tests/fixtures/names",
            import = "fixture:names/names"
        ),
        quote! {
            impl H {
                #[theater(record(r#type = "digest", result = "full"))]
                fn r#impl(&self, self_: u32, r#type: Vec<u8>) -> Vec<u8> { r#type }
                fn super_(&self, r#match: Record) -> Self_ { todo!() }
                fn r#match(&self, r#fn: Enum, super_: Flags) -> bool { todo!() }
                fn r#fn(&self) {}
                fn kebab_case(&self, store: u32, call: String, this: bool, result: u8) -> u64 { 0 }
                fn get_http_status(&self, with_id: u64) -> u16 { 0 }
                fn r#async(&self, r#await: u32) -> u32 { r#await }
                fn crate_(&self, super_: String) {}
            }
        },
    );
    let text = out.to_string();
    assert!(
        text.contains("payload : & [(\"type\" , :: theater_runtime :: RecordMode :: Digest) , (\"result\" , :: theater_runtime :: RecordMode :: Full)]"),
        "{text}"
    );
}

#[test]
fn with_reuses_types_generated_elsewhere_and_names_bad_entries() {
    let attr = quote!(
        wit = "wit",
        import = "theater:simple/supervisor",
        with = "theater:simple/types = other::theater::simple::types"
    );
    let item = quote!(impl H {});
    let text = crate::expand_handler(attr, item, &workspace()).to_string();
    assert!(
        text.contains("pub mod types { pub use other :: theater :: simple :: types :: * ; }"),
        "{text}"
    );
    assert!(!text.contains("pub struct ChainEvent"), "{text}");
    let attr = quote!(
        wit = "wit",
        import = "theater:simple/random",
        with = "theater:simple/types = a::b, nonsense"
    );
    let text = crate::expand_handler(attr, quote!(impl H {}), &workspace()).to_string();
    assert!(
        text.contains("`theater:simple/types` is not an interface this handler reaches"),
        "{text}"
    );
    assert!(
        text.contains("`nonsense` is not `ns:pkg/iface = path::to::module`"),
        "{text}"
    );
    // `types` generates every type of an interface the import does not reach.
    let attr = quote!(
        wit = "wit",
        import = "theater:simple/random",
        types = "theater:simple/types"
    );
    let text = crate::expand_handler(attr, quote!(impl H {}), &workspace()).to_string();
    assert!(text.contains("pub struct ChainEvent"), "{text}");
}

#[test]
fn an_exported_type_named_callbacks_is_refused_at_the_export() {
    let model = inline_model(
        "package a:b;
        interface cb {
            record callbacks { n: u32 }
            handle-x: func(state: option<list<u8>>, params: tuple<callbacks>) -> result<tuple<option<list<u8>>>, string>;
        }",
        "a:b/cb",
    )
    .unwrap();
    let iface = model
        .interface(&IfaceName::parse("a:b/cb").unwrap())
        .unwrap();
    let err = crate::callbacks::callbacks(iface).err().unwrap();
    assert!(
        err.contains("type `callbacks` of a:b/cb would be generated as `Callbacks`"),
        "{err}"
    );
}
