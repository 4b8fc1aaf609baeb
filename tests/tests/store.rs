//! End-to-end tests of `theater:simple/store` (handlers.md §9) from the `local` guest.

use std::path::Path;

use theater_handler_store::StoreConfig;
use theater_handler_store::content_store::hash_of;
use theater_runtime::{ActorHandle, TheaterRuntime};
use theater_tests::guests;
use theater_tests::support::{
    LocalConfig, events_of, local_handlers, runtime, script_lines as lines, spawn,
};

fn config(root: &Path, namespace: &str) -> StoreConfig {
    StoreConfig {
        root: Some(root.to_owned()),
        namespace: Some(namespace.into()),
        ..Default::default()
    }
}

async fn local(rt: &TheaterRuntime, store: StoreConfig) -> ActorHandle {
    let handlers = local_handlers(LocalConfig {
        store,
        ..Default::default()
    });
    spawn(rt, "local", guests::LOCAL, handlers, None)
        .await
        .unwrap()
}

#[tokio::test]
async fn store_every_function_from_a_guest() {
    let (rt, dir) = runtime();
    let actor = local(&rt, config(dir.path(), "ns")).await;
    let (hello, world, x, y) = (
        hash_of(b"hello"),
        hash_of(b"world"),
        hash_of(b"x"),
        hash_of(b"y"),
    );
    let absent = hash_of(b"absent");
    let s = format!(
        "snew;sput:hello;sput:hello;sput:world;sget:{hello};sexists:{hello};sexists:{absent};\
         slabel:l,{hello};slabel:l,{world};sgetl:l;slabel:l,{hello};sgetl:l;srmfrom:l,{hello};sgetl:l;\
         sputl:m,x;sreplc:m,y;sgetl:m;srepl:m,{hello};sgetl:m;slabels;sall;ssize;srml:l;slabels;srml:l;\
         srmfrom:m,{world}"
    );
    let out = lines(&actor, &s).await;
    let id = out[0].strip_prefix("snew=").unwrap().to_owned();
    uuid::Uuid::parse_str(&id).unwrap();
    let mut all = [hello.clone(), world.clone(), x.clone(), y.clone()];
    all.sort();
    let want = [
        format!("snew={id}"),
        format!("sput={hello}"),
        format!("sput={hello}"),
        format!("sput={world}"),
        "sget=hello".into(),
        "sexists=true".into(),
        "sexists=false".into(),
        "slabel".into(),
        "slabel".into(),
        format!("sgetl={world}"),
        "slabel".into(),
        format!("sgetl={hello}"),
        "srmfrom".into(),
        format!("sgetl={world}"),
        format!("sputl={x}"),
        format!("sreplc={y}"),
        format!("sgetl={y}"),
        "srepl".into(),
        format!("sgetl={hello}"),
        "slabels=l,m".into(),
        format!("sall={}", all.join(",")),
        "ssize=12".into(),
        "srml".into(),
        "slabels=m".into(),
        "srml!label l not found".into(),
        format!("srmfrom!content {world} is not in label m"),
    ];
    assert_eq!(out, want);
    // One event per host call; stored content is a payload recorded in full.
    let chain = actor.chain();
    chain.verify().unwrap();
    assert_eq!(events_of(&chain, "theater:simple/store/new").len(), 1);
    let puts = events_of(&chain, "theater:simple/store/store");
    assert_eq!(puts.len(), 3);
    assert_eq!(
        puts[0]["params"]["content"],
        "aGVsbG8=" // base64 of "hello"
    );
    assert_eq!(puts[0]["result"]["Ok"]["hash"], hello);
}

#[tokio::test]
async fn store_content_survives_a_runtime_restart() {
    let root = tempfile::tempdir().unwrap();
    let id = {
        let (rt, _dir) = runtime();
        let actor = local(&rt, config(root.path(), "persist")).await;
        let out = lines(&actor, "snew;sputl:k,kept across restarts").await;
        rt.shutdown().await;
        out[0].strip_prefix("snew=").unwrap().to_owned()
    };
    let (rt, _dir) = runtime();
    let actor = local(&rt, config(root.path(), "persist")).await;
    let hash = hash_of(b"kept across restarts");
    let out = lines(&actor, &format!("suse:{id};sgetl:k;sget:{hash}")).await;
    assert_eq!(
        out,
        [
            "suse".to_string(),
            format!("sgetl={hash}"),
            "sget=kept across restarts".into()
        ]
    );
}

/// `list-all-content` returns at most `max_list_entries` references: a store of one more item is an `Err` naming
/// the limit, while `calculate-total-size` still sums every item.
#[tokio::test]
async fn store_list_all_content_is_bounded_by_max_list_entries() {
    let (rt, dir) = runtime();
    let actor = local(
        &rt,
        StoreConfig {
            max_list_entries: 3,
            ..config(dir.path(), "ns")
        },
    )
    .await;
    let out = lines(&actor, "snew;sput:a;sput:b;sput:c;sall;sput:d;sall;ssize").await;
    let id = out[0].strip_prefix("snew=").unwrap();
    let mut three = [hash_of(b"a"), hash_of(b"b"), hash_of(b"c")];
    three.sort();
    assert_eq!(out[4], format!("sall={}", three.join(",")));
    assert_eq!(
        out[6],
        format!("sall!list-all-content: store {id} holds more than 3 items (max_list_entries)")
    );
    assert_eq!(out[7], "ssize=4");
}

#[tokio::test]
async fn store_denials_touch_nothing() {
    let (rt, _data) = runtime();
    let dir = tempfile::tempdir().unwrap();
    let a = local(
        &rt,
        StoreConfig {
            max_content_bytes: 8,
            ..config(dir.path(), "a")
        },
    )
    .await;
    for bad in ["..", "../x", "a/b", ""] {
        assert_eq!(
            lines(&a, &format!("suse:{bad};sput:x")).await[1],
            "sput!invalid store id",
            "{bad:?}"
        );
    }
    let out = lines(&a, "snew;sget:../../etc/passwd;sput:123456789").await;
    let id = out[0].strip_prefix("snew=").unwrap().to_owned();
    assert!(
        out[1].starts_with("sget!invalid content hash"),
        "{}",
        out[1]
    );
    assert_eq!(out[2], "sput!store: 9 exceeds max_content_bytes (8)");
    // Another namespace cannot reach A's store, even knowing its id.
    let b = local(&rt, config(dir.path(), "b")).await;
    assert_eq!(
        lines(&b, &format!("suse:{id};sput:x")).await[1],
        format!("sput!store {id} not found")
    );
    // A failed disk write is an error to the guest (a regular file where the content directory was).
    let content = dir.path().join(hash_of(b"a")).join(&id).join("content");
    std::fs::remove_dir_all(&content).unwrap();
    std::fs::write(&content, b"not a directory").unwrap();
    let out = lines(&a, &format!("suse:{id};sput:y")).await;
    assert!(out[1].starts_with("sput!write "), "{}", out[1]);
    // Nothing was written outside the namespaces' directories.
    let mut entries: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    let mut want = vec![hash_of(b"a"), hash_of(b"b")];
    want.sort();
    want.retain(|h| dir.path().join(h).exists());
    assert_eq!(entries, want);
}
