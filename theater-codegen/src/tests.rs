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
        "a #[theater(start)] method must be an `async fn`: expected `async fn c(self: Arc<Self>, actor: \
         ActorHandle, shutdown: ShutdownSignal) -> anyhow::Result<()>`",
        "duplicate value `result` in #[theater(record(...))]",
        "unknown key `bogus` in #[theater]: expected `name`, `record`, `replay`, `create_instance` or `start`",
        "unknown replay rule `sometimes`: expected `feed`, `rerun` or `feed-or-rerun`",
    ];
    assert_eq!(messages, expected);
}

/// The lifecycle signatures are checked as written, by last path segment: the forms docs/handlers.md gives pass,
/// with the self type's name for `Self`, a two-argument `Result`, paths and a `mut` binding.
#[test]
fn lifecycle_signatures_in_their_written_forms_pass() {
    let random = quote! {
        fn random_bytes(&self, length: u32) -> Result<Vec<u8>, String> { todo!() }
        fn random_range(&self, min: u64, max: u64) -> Result<u64, String> { todo!() }
        fn random_float(&self) -> Result<f64, String> { todo!() }
        fn generate_uuid(&self) -> Result<String, String> { todo!() }
    };
    let hooks = [
        quote! {
            #[theater(create_instance)]
            fn a(&self, actor: &ActorContext) -> anyhow::Result<Self> { todo!() }
            #[theater(start)]
            async fn b(self: Arc<Self>, a: ActorHandle, s: ShutdownSignal) -> anyhow::Result<()> { todo!() }
        },
        quote! {
            #[theater(create_instance)]
            async fn a(&self, _: &theater_runtime::ActorContext) -> Result<RandomHandler, std::io::Error> { todo!() }
            #[theater(start)]
            async fn b(
                mut self: std::sync::Arc<Self>,
                _: theater_runtime::ActorHandle,
                _: theater_runtime::ShutdownSignal,
            ) -> Result<(), anyhow::Error> { todo!() }
        },
    ];
    for hooks in hooks {
        let messages = check_random(quote!(impl RandomHandler { #hooks #random }));
        assert!(messages.is_empty(), "{messages:?}");
    }
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

/// Expands `item` under `#[theater_handler(wit = <src, written to a temporary file>, <rest>)]`.
fn expand_inline(
    src: &str,
    rest: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> Result<proc_macro2::TokenStream, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let wit = dir.path().join("inline.wit");
    std::fs::write(&wit, src).unwrap();
    let wit = wit.display().to_string();
    crate::try_expand_handler(quote!(wit = #wit, #rest), item, dir.path())
        .map_err(|f| f.errors.messages().collect())
}

/// The errors of an expansion that must fail.
trait ExpectErrors {
    fn errors(self) -> Vec<String>;
}

impl ExpectErrors for Result<proc_macro2::TokenStream, Vec<String>> {
    fn errors(self) -> Vec<String> {
        match self {
            Ok(tokens) => panic!("expanded without errors: {tokens}"),
            Err(errors) => errors,
        }
    }
}

/// The names a pattern binds.
fn pattern_names(pat: &syn::Pat, out: &mut Vec<String>) {
    struct Names<'a>(&'a mut Vec<String>);
    impl syn::visit_mut::VisitMut for Names<'_> {
        fn visit_pat_ident_mut(&mut self, p: &mut syn::PatIdent) {
            self.0.push(p.ident.to_string());
            syn::visit_mut::visit_pat_ident_mut(self, p);
        }
    }
    syn::visit_mut::VisitMut::visit_pat_mut(&mut Names(out), &mut pat.clone());
}

/// For the host function glue of the WIT function `wit_name` in `file` (the closure passed with it): the names
/// its parameters bind, and every name a `let` in its body binds. A glue local must not rebind a parameter.
fn glue_bindings(file: &syn::File, wit_name: &str) -> (Vec<String>, Vec<String>) {
    struct Find<'a> {
        wit_name: &'a str,
        found: Option<syn::ExprClosure>,
    }
    impl syn::visit_mut::VisitMut for Find<'_> {
        fn visit_expr_method_call_mut(&mut self, call: &mut syn::ExprMethodCall) {
            let named = matches!(call.args.first(), Some(syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. })) if s.value() == self.wit_name);
            if named && let Some(syn::Expr::Closure(c)) = call.args.iter().nth(1) {
                self.found = Some(c.clone());
            }
            syn::visit_mut::visit_expr_method_call_mut(self, call);
        }
    }
    struct Lets(Vec<String>);
    impl syn::visit_mut::VisitMut for Lets {
        fn visit_local_mut(&mut self, l: &mut syn::Local) {
            pattern_names(&l.pat, &mut self.0);
            syn::visit_mut::visit_local_mut(self, l);
        }
    }
    let mut find = Find {
        wit_name,
        found: None,
    };
    syn::visit_mut::VisitMut::visit_file_mut(&mut find, &mut file.clone());
    let mut closure = find
        .found
        .unwrap_or_else(|| panic!("no glue for `{wit_name}`"));
    let mut params = Vec::new();
    for p in &closure.inputs {
        pattern_names(p, &mut params);
    }
    let mut lets = Lets(Vec::new());
    syn::visit_mut::VisitMut::visit_expr_mut(&mut lets, &mut closure.body);
    (params, lets.0)
}

/// WIT for the glue-locals tests: an async function whose values hold handles has its glue written out, with
/// locals of its own.
const TIMER_WIT: &str = "package a:b;
interface i {
    resource timer { constructor(); }
    sleep: func(t: borrow<timer>, ticks: u64, waited: u64, value: u64, pending: u64, call: u64, this: u64) -> u64;
}";

#[test]
fn glue_locals_do_not_hide_parameters() {
    let out = expand_inline(
        TIMER_WIT,
        quote!(import = "a:b/i"),
        quote! {
            impl H {
                fn timer_new(&self) -> Resource<T> { todo!() }
                async fn sleep(&self, t: Resource<T>, ticks: u64, waited: u64, value: u64, pending: u64, call: u64, this: u64) -> u64 { waited }
            }
        },
    )
    .unwrap();
    let file: syn::File = syn::parse2(out).unwrap();
    let (params, lets) = glue_bindings(&file, "sleep");
    for p in ["t", "ticks", "waited", "value", "pending", "call_", "this_"] {
        assert!(params.contains(&p.to_owned()), "{p} in {params:?}");
    }
    let hidden: Vec<&String> = lets.iter().filter(|l| params.contains(l)).collect();
    assert!(
        hidden.is_empty(),
        "glue locals rebind parameters {hidden:?}"
    );
    // The user's values reach the call.
    let text = quote!(#file).to_string();
    assert!(
        text.contains(
            "< Self > :: sleep (& * this , t , ticks , waited , value , pending , call_ , this_)"
        ),
        "{text}"
    );
}

/// The names of the items of `file` (statics, modules, types, functions, and the methods of one `impl`) that
/// are defined more than once in one scope: a module, a block such as `const _: () = { ... };`, an `impl`.
fn duplicate_items(file: &syn::File) -> Vec<String> {
    fn item_name(item: &syn::Item) -> Option<String> {
        match item {
            syn::Item::Static(s) => Some(format!("static {}", s.ident)),
            syn::Item::Mod(m) => Some(format!("mod {}", m.ident)),
            syn::Item::Struct(s) => Some(format!("type {}", s.ident)),
            syn::Item::Enum(e) => Some(format!("type {}", e.ident)),
            syn::Item::Type(t) => Some(format!("type {}", t.ident)),
            syn::Item::Fn(f) => Some(format!("fn {}", f.sig.ident)),
            _ => None,
        }
    }
    fn scope(items: &[syn::Item], out: &mut Vec<String>) {
        let mut seen = std::collections::HashSet::new();
        for name in items.iter().filter_map(item_name) {
            if !seen.insert(name.clone()) {
                out.push(name);
            }
        }
    }
    struct Scopes(Vec<String>);
    impl syn::visit_mut::VisitMut for Scopes {
        fn visit_item_mod_mut(&mut self, m: &mut syn::ItemMod) {
            if let Some((_, items)) = &m.content {
                scope(items, &mut self.0);
            }
            syn::visit_mut::visit_item_mod_mut(self, m);
        }
        fn visit_block_mut(&mut self, b: &mut syn::Block) {
            let items: Vec<syn::Item> = b
                .stmts
                .iter()
                .filter_map(|s| match s {
                    syn::Stmt::Item(i) => Some(i.clone()),
                    _ => None,
                })
                .collect();
            scope(&items, &mut self.0);
            syn::visit_mut::visit_block_mut(self, b);
        }
        fn visit_item_impl_mut(&mut self, i: &mut syn::ItemImpl) {
            let mut seen = std::collections::HashSet::new();
            for item in &i.items {
                if let syn::ImplItem::Fn(f) = item
                    && !seen.insert(f.sig.ident.to_string())
                {
                    self.0.push(format!("fn {}", f.sig.ident));
                }
            }
            syn::visit_mut::visit_item_impl_mut(self, i);
        }
    }
    let mut out = Vec::new();
    scope(&file.items, &mut out);
    let mut scopes = Scopes(out);
    syn::visit_mut::VisitMut::visit_file_mut(&mut scopes, &mut file.clone());
    scopes.0
}

const CASE_WIT: &str = "package a:b;
interface i {
    get-http: func() -> u32;
    get-HTTP: func() -> u32;
    method-counter-get: func() -> u32;
    resource counter { get: func() -> u32; }
}";

#[test]
fn functions_with_one_rust_name_are_bound_by_wit_name() {
    // The workaround: one of them bound by its WIT name, on a method of another name.
    let out = expand_inline(
        CASE_WIT,
        quote!(import = "a:b/i"),
        quote! {
            impl H {
                fn get_http(&self) -> u32 { 1 }
                #[theater(name = "get-HTTP")]
                fn get_http_upper(&self) -> u32 { 2 }
                fn method_counter_get(&self) -> u32 { 3 }
                fn counter_get(&self, c: Resource<C>) -> u32 { 4 }
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let file: syn::File = syn::parse2(out).unwrap();
    assert_eq!(duplicate_items(&file), Vec::<String>::new());
    let text = prettyplease::unparse(&file);
    assert!(text.contains("function: \"get-HTTP\""), "{text}");
}

#[test]
fn a_method_name_two_functions_share_is_an_error_naming_both() {
    let errors = expand_inline(
        CASE_WIT,
        quote!(import = "a:b/i"),
        quote! {
            impl H {
                fn get_http(&self) -> u32 { 1 }
                fn method_counter_get(&self) -> u32 { 3 }
                fn counter_get(&self, c: Resource<C>) -> u32 { 4 }
            }
        },
    )
    .errors();
    assert_eq!(
        errors,
        [
            "`get_http` is the Rust name of both WIT functions `get-http` and `get-HTTP`: \
             bind each with #[theater(name = \"...\")] on a method of another name"
        ]
    );
    // A resource method and a function of another resource: `a-b.c` and `a.b-c` are both `a_b_c`.
    let errors = expand_inline(
        "package a:b;
        interface i {
            resource a-b { c: func(); }
            resource a { b-c: func(); }
        }",
        quote!(import = "a:b/i"),
        quote! {
            impl H {
                fn a_b_c(&self, s: Resource<X>) {}
            }
        },
    )
    .errors();
    assert_eq!(
        errors,
        [
            "`a_b_c` is the Rust name of both WIT functions `[method]a-b.c` and `[method]a.b-c`: \
             bind each with #[theater(name = \"...\")] on a method of another name"
        ]
    );
    // Without any method, each is missing, with how to bind it.
    let errors = expand_inline(CASE_WIT, quote!(import = "a:b/i"), quote!(impl H {})).errors();
    assert_eq!(
        errors[1],
        "missing method for WIT function `get-HTTP`: its Rust name `get_http` is also that of `get-http`, so \
         bind it by its WIT name: expected `#[theater(name = \"get-HTTP\")] fn get_http(&self) -> u32` with a \
         method name of your choice"
    );
    // With `get-HTTP` bound by WIT name, `get_http` is `get-http`'s again.
    let errors = expand_inline(
        CASE_WIT,
        quote!(import = "a:b/i"),
        quote! {
            impl H {
                #[theater(name = "get-HTTP")]
                fn get_http_upper(&self) -> u32 { 2 }
            }
        },
    )
    .errors();
    assert!(
        errors[0].starts_with(
            "missing method for WIT function `get-http`: expected `fn get_http(&self) -> u32`"
        ),
        "{errors:?}"
    );
}

#[test]
fn a_resource_method_named_drop_does_not_take_the_destructor() {
    let wit = "package a:b;
    interface i {
        resource counter { constructor(); drop: func(); }
    }";
    let errors = expand_inline(
        wit,
        quote!(import = "a:b/i"),
        quote! {
            impl H {
                fn counter_new(&self) -> Resource<C> { todo!() }
                fn counter_drop(&self, c: Resource<C>) {}
            }
        },
    )
    .errors();
    assert!(
        errors[0].starts_with(
            "`counter_drop` is the Rust name of both WIT functions `[method]counter.drop` and `[resource-drop]counter`"
        ),
        "{errors:?}"
    );
    // Bound by WIT name, the method leaves `counter_drop` to the destructor.
    let out = expand_inline(
        wit,
        quote!(import = "a:b/i"),
        quote! {
            impl H {
                fn counter_new(&self) -> Resource<C> { todo!() }
                #[theater(name = "[method]counter.drop")]
                fn counter_drop_method(&self, c: Resource<C>) {}
                fn counter_drop(&self, c: Resource<C>) {}
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let text = out.to_string();
    assert!(text.contains("counter_drop_method"), "{text}");
}

#[test]
fn the_scaffold_gives_functions_of_one_rust_name_distinct_methods() {
    let dir = tempfile::tempdir().unwrap();
    let wit = dir.path().join("x.wit");
    std::fs::write(
        &wit,
        "package a:b;
        interface i {
            resource counter { constructor(); new: static func() -> counter; drop: func(); }
            resource blob { constructor(); }
            blob-new: func() -> blob;
            get-http: func();
            get-HTTP: func();
            callbacks: func();
        }",
    )
    .unwrap();
    let tokens = crate::generate(&wit, Some("a:b/i"), None).unwrap_or_else(|e| panic!("{e}"));
    let file: syn::File = syn::parse2(tokens).unwrap();
    assert_eq!(duplicate_items(&file), Vec::<String>::new());
    let skeleton = crate::skeleton(&wit, Some("a:b/i"), None).unwrap();
    let item: syn::File = syn::parse2(skeleton.item).unwrap();
    assert_eq!(duplicate_items(&item), Vec::<String>::new());
}

const CALLBACK_WIT: &str = "package a:b;
interface host { callbacks: func() -> u32; }
interface cb {
    new: func(state: option<list<u8>>, params: tuple<u32>) -> result<tuple<option<list<u8>>>, string>;
}
interface cb2 {
    with-timeout: func(state: option<list<u8>>, params: tuple<>) -> result<tuple<option<list<u8>>>, string>;
}
interface cb3 {
    handle-x: func(state: option<list<u8>>, params: tuple<>) -> result<tuple<option<list<u8>>>, string>;
    handle-X: func(state: option<list<u8>>, params: tuple<>) -> result<tuple<option<list<u8>>>, string>;
}
interface cb-ok {
    handle-x: func(state: option<list<u8>>, params: tuple<u32>) -> result<tuple<option<list<u8>>>, string>;
}";

#[test]
fn names_the_generated_callers_take_are_refused() {
    let errors = expand_inline(CALLBACK_WIT, quote!(export = "a:b/cb"), quote!(impl H {})).errors();
    assert_eq!(
        errors,
        [
            "callback `new` of a:b/cb would be generated as `Callbacks::new`, a method the callers already have: \
          rename the callback"
        ]
    );
    let errors =
        expand_inline(CALLBACK_WIT, quote!(export = "a:b/cb2"), quote!(impl H {})).errors();
    assert_eq!(
        errors,
        [
            "callback `with-timeout` of a:b/cb2 would be generated as `Callbacks::with_timeout`, a method the \
          callers already have: rename the callback"
        ]
    );
    let errors =
        expand_inline(CALLBACK_WIT, quote!(export = "a:b/cb3"), quote!(impl H {})).errors();
    assert_eq!(
        errors,
        [
            "callbacks `handle-x` and `handle-X` of a:b/cb3 would both be generated as `Callbacks::handle_x`: \
          rename one"
        ]
    );
    // A method named `callbacks` beside an export: the generated `callbacks` would clash with it.
    let errors = expand_inline(
        CALLBACK_WIT,
        quote!(import = "a:b/host", export = "a:b/cb-ok"),
        quote! {
            impl H {
                fn callbacks(&self) -> u32 { 1 }
            }
        },
    )
    .errors();
    assert_eq!(
        errors,
        [
            "`callbacks` is the method #[theater_handler(export = ...)] generates (the typed callers): rename \
             this one (a WIT function `callbacks` is served by a method of another name with \
             #[theater(name = \"callbacks\")])"
        ]
    );
    expand_inline(
        CALLBACK_WIT,
        quote!(import = "a:b/host", export = "a:b/cb-ok"),
        quote! {
            impl H {
                #[theater(name = "callbacks")]
                fn wit_callbacks(&self) -> u32 { 1 }
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
}

#[test]
fn flags_types_have_distinct_helper_modules() {
    let tokens = expand_inline(
        "package a:b;
        interface i {
            flags x-y { a }
            flags xy { b }
            f: func(p: x-y, q: xy);
        }",
        quote!(import = "a:b/i"),
        quote! {
            impl H {
                fn f(&self, p: XY, q: Xy) {}
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let file: syn::File = syn::parse2(tokens).unwrap();
    assert_eq!(duplicate_items(&file), Vec::<String>::new());
}

#[test]
fn methods_are_called_on_the_handler_not_on_its_arc() {
    // `this` is an `Arc<Self>` in async and `HostCtx` glue: `this.clone()` would be `Arc::clone`.
    let tokens = expand_inline(
        "package a:b;
        interface i {
            resource r { constructor(); }
            clone: func() -> u32;
            as-ref: func() -> u32;
            into: func(x: borrow<r>) -> u32;
            to-owned: func() -> u32;
        }",
        quote!(import = "a:b/i"),
        quote! {
            impl H {
                fn r_new(&self) -> Resource<R> { todo!() }
                async fn clone(&self) -> u32 { 1 }
                fn as_ref(&self, ctx: &mut HostCtx<'_>) -> u32 { 2 }
                async fn into(&self, x: Resource<R>) -> u32 { 3 }
                fn to_owned(&self) -> u32 { 4 }
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let text = tokens.to_string();
    for method in ["clone", "as_ref", "into", "to_owned", "r_new"] {
        assert!(
            !text.contains(&format!("this . {method} (")),
            "{method} called as a method of `this`: {text}"
        );
        assert!(
            text.contains(&format!("< Self > :: {method} (& * this")),
            "{method}: {text}"
        );
    }
}
