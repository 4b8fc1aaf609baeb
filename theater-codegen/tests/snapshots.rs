//! Snapshots of `generate` for every interface in `wit/` (host side, and callback side with its host interface)
//! and every fixture in `tests/fixtures/`: each output parses as a Rust file and is reviewed as a diff.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// Formats `generate`'s output, with machine-specific paths replaced by `<workspace>` *before* formatting, so
/// that the length of the checkout's path cannot change how prettyplease wraps lines.
fn expand(wit: &Path, import: Option<&str>, export: Option<&str>) -> String {
    let tokens = theater_codegen::generate(wit, import, export)
        .unwrap_or_else(|e| panic!("{import:?} {export:?}: {e}"));
    let portable: proc_macro2::TokenStream = tokens
        .to_string()
        .replace(&workspace().display().to_string(), "<workspace>")
        .parse()
        .expect("generated code re-lexes");
    theater_codegen::format(portable).expect("generated code parses as a file")
}

/// Callback interfaces and the host interface whose handler calls them.
const CALLBACKS: &[(&str, Option<&str>)] = &[
    ("actor", None),
    ("process-handlers", Some("process")),
    ("supervisor-handlers", Some("supervisor")),
    ("message-server-client", Some("message-server-host")),
    ("http-handlers", Some("http-framework")),
];

#[test]
fn every_interface_in_wit() {
    let wit = workspace().join("wit");
    let mut names: Vec<String> = std::fs::read_dir(&wit)
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .into_string()
                .ok()?
                .strip_suffix(".wit")
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 19, "{names:?}");
    for name in names {
        let text = match CALLBACKS.iter().find(|(cb, _)| *cb == name) {
            Some((cb, host)) => expand(
                &wit,
                host.map(|h| format!("theater:simple/{h}")).as_deref(),
                Some(&format!("theater:simple/{cb}")),
            ),
            None => expand(&wit, Some(&format!("theater:simple/{name}")), None),
        };
        insta::assert_snapshot!(name.as_str(), text);
    }
}

/// Every folder `tests/fixtures/<name>` holds the WIT package `fixture:<name>` (and maybe a `deps/` folder); its
/// interface `<name>` is the one expanded, snapshot `fixture-<name>`.
#[test]
fn every_fixture() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(&fixtures)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            e.file_type()
                .ok()?
                .is_dir()
                .then(|| e.file_name().into_string().ok())?
        })
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    for name in names {
        let import = format!("fixture:{name}/{name}");
        insta::assert_snapshot!(
            format!("fixture-{name}"),
            expand(&fixtures.join(&name), Some(&import), None)
        );
    }
}

/// Expands a hand-written `impl` (WIT paths relative to `dir`), with machine paths made portable, formatted.
fn expand_impl(
    dir: &Path,
    attr: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> String {
    let tokens = theater_codegen::try_expand_handler(attr, item, dir)
        .unwrap_or_else(|f| panic!("{:?}", f.errors.messages().collect::<Vec<_>>()));
    let portable: proc_macro2::TokenStream = tokens
        .to_string()
        .replace(&workspace().display().to_string(), "<workspace>")
        .parse()
        .unwrap();
    theater_codegen::format(portable).unwrap()
}

/// Every glue mode, from hand-written `impl`s: over `theater:simple/random`, the four definers (a synchronous
/// method, one given `HostCtx` and returning `HostResult`, `async` ones with and without `HostCtx`); over
/// `tests/wit`'s `theater:test/counters`, the written-out glue of functions with handles (the resource's
/// constructor, methods, static function and destructor, handles in lists and results), sync and async.
#[test]
fn every_glue_mode() {
    let random = quote::quote! {
        impl H {
            fn random_bytes(&self, length: u32) -> Result<Vec<u8>, String> { todo!() }
            async fn random_range(&self, min: u64, max: u64) -> Result<u64, String> { todo!() }
            fn random_float(&self, ctx: &mut HostCtx<'_>) -> HostResult<Result<f64, String>> { todo!() }
            async fn generate_uuid(&self, ctx: &mut HostCtx<'_>) -> Result<String, String> { todo!() }
        }
    };
    let attr = quote::quote!(wit = "wit", import = "theater:simple/random");
    let definers = expand_impl(&workspace(), attr, random);
    let item = quote::quote! {
        impl H {
            fn counter_new(&self, ctx: &mut HostCtx<'_>, start: u64) -> HostResult<Resource<Counter>> { todo!() }
            async fn counter_add(&self, ctx: &mut HostCtx<'_>, self_: Resource<Counter>, n: u64) -> u64 { todo!() }
            async fn counter_get(&self, self_: Resource<Counter>) -> u64 { todo!() }
            fn counter_merge(&self, a: Resource<Counter>, b: Resource<Counter>) -> Resource<Counter> { todo!() }
            fn counter_drop(&self, ctx: &mut HostCtx<'_>, self_: Resource<Counter>) -> HostResult<()> { todo!() }
            fn values(&self, ctx: &mut HostCtx<'_>, cs: Vec<Resource<Counter>>) -> HostResult<Vec<u64>> { todo!() }
            fn open_even(&self, start: u64) -> Result<Resource<Counter>, String> { todo!() }
            #[theater(record(result = "digest"))]
            async fn live(&self) -> u32 { todo!() }
        }
    };
    let attr = quote::quote!(
        wit = "wit",
        import = "theater:test/counters",
        name = "counters"
    );
    let handles = expand_impl(&workspace().join("tests"), attr, item);
    insta::assert_snapshot!(
        "modes",
        format!("{definers}\n// ---- functions with handles ----\n\n{handles}")
    );
}
